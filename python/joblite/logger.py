"""joblib-style progress output (``Logger``, ``PrintTime``) and where it goes: print or logging.

Memory's verbose messages are printed to stdout by default, exactly in joblib's format. Call
:func:`use_logging` to send them to the stdlib logger ``"joblite"`` instead.
"""

from __future__ import annotations

import logging
import os
import pprint
import shutil
import sys
import time
from typing import Any, Optional

__all__ = ["Logger", "PrintTime", "format_time", "short_format_time", "use_logging"]

_log = logging.getLogger("joblite")
_route = {"logging": False, "level": logging.INFO}


def use_logging(enabled: bool = True, level: int = logging.INFO) -> None:
    """Send verbose messages to the stdlib logger ``"joblite"`` instead of printing them.

    Parameters
    ----------
    enabled : bool, default=True
        ``True`` routes every verbose message of joblite (Memory's ``[Memory] Calling ...``
        lines, durations, ...) through ``logging.getLogger("joblite")``; ``False`` prints
        them to stdout again (joblib's behaviour, the default).
    level : int, default=logging.INFO
        The logging level the messages are emitted at.

    Examples
    --------
    >>> import logging, joblite.logger
    >>> joblite.logger.use_logging(True)
    >>> joblite.logger.use_logging(False)
    """
    _route["logging"] = bool(enabled)
    _route["level"] = int(level)


def emit(msg: str) -> None:
    """Print ``msg`` or log it, following :func:`use_logging`."""
    if _route["logging"]:
        _log.log(_route["level"], msg)
    else:
        print(msg, flush=True)


def format_time(t: float) -> str:
    """``'1.2s, 0.0min'``: joblib's duration format."""
    return f"{t:.1f}s, {t / 60.0:.1f}min"


def short_format_time(t: float) -> str:
    """``'1.2s'`` below a minute, ``'3.1min'`` above."""
    return f"{t / 60.0:4.1f}min" if t > 60 else f" {t:5.1f}s"


class Logger:
    """Base class for objects that print joblib-style messages.

    Parameters
    ----------
    depth : int, default=3
        Nesting depth used by :meth:`format` when pretty-printing objects.
    name : str, optional
        Prefix of the messages (the class name by default).
    """

    def __init__(self, depth: int = 3, name: Optional[str] = None) -> None:
        self.depth = depth
        self._name = name if name is not None else type(self).__name__

    def warn(self, msg: str) -> None:
        """Log ``msg`` as a warning on the ``"joblite"`` logger."""
        _log.warning("[%s]: %s", self._name, msg)

    def info(self, msg: str) -> None:
        """Log ``msg`` at INFO level on the ``"joblite"`` logger."""
        _log.info("[%s]: %s", self._name, msg)

    def debug(self, msg: str) -> None:
        """Log ``msg`` at DEBUG level on the ``"joblite"`` logger."""
        _log.debug("[%s]: %s", self._name, msg)

    def format(self, obj: Any, indent: int = 0) -> str:
        """Pretty-print ``obj`` the way verbose messages show arguments."""
        return pprint.pformat(obj, indent=indent, depth=self.depth)


class PrintTime:
    """Print the time elapsed since creation and since the previous call.

    Parameters
    ----------
    logfile : str or os.PathLike, optional
        Also append every message to this file.
    logdir : str or os.PathLike, optional
        Shortcut for ``logfile=os.path.join(logdir, "joblib.log")``.

    Examples
    --------
    >>> from joblite import PrintTime
    >>> t = PrintTime()
    >>> t("loaded data")  # doctest: +SKIP
    loaded data: 0.00s, 0.0 min
    """

    def __init__(self, logfile: Any = None, logdir: Any = None) -> None:
        if logfile is not None and logdir is not None:
            raise ValueError("PrintTime: give logfile or logdir, not both")
        self.last_time = time.time()
        self.start_time = self.last_time
        self.logfile: Optional[str] = None
        if logdir is not None:
            logfile = os.path.join(os.fspath(logdir), "joblib.log")
        if logfile is not None:
            self.logfile = os.fspath(logfile)
            os.makedirs(os.path.dirname(os.path.abspath(self.logfile)), exist_ok=True)
            # keep one previous log, like joblib does
            if os.path.exists(self.logfile):
                shutil.move(self.logfile, self.logfile + ".1")
            with open(self.logfile, "w", encoding="utf-8") as f:
                f.write(f"\nLogging joblite python script\n\n{time.ctime(self.last_time)}\n")

    def __call__(self, msg: str = "", total: bool = False) -> None:
        """Print ``msg`` with the time since the previous call (``total``: since creation)."""
        now = time.time()
        delta = now - (self.start_time if total else self.last_time)
        full = f"{msg}: {delta:.2f}s, {delta / 60.0:.1f} min"
        print(full, file=sys.stderr)
        if self.logfile is not None:
            try:
                with open(self.logfile, "a", encoding="utf-8") as f:
                    f.write(full + "\n")
            except OSError:
                pass  # a log that cannot be written must never break the caller
        if not total:
            self.last_time = now
