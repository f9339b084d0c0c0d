"""joblib-style progress output (``Logger``, ``PrintTime``) and where it goes: print or logging.

Verbose messages (Memory's ``[Memory] Calling ...`` lines, Parallel's ``Done 10 out of 100``,
persistence's) are printed by default, exactly in joblib's format. :func:`use_logging` sends
each of them instead as one record to the stdlib loggers ``"joblite.memory"``,
``"joblite.parallel"`` and ``"joblite.persistence"`` (children of ``"joblite"``), in the
calling process and in the worker processes started after the switch.
"""

from __future__ import annotations

import logging
import os
import pprint
import shutil
import sys
import time
from typing import Any, Optional, TextIO

__all__ = [
    "Logger",
    "PrintTime",
    "emit",
    "format_time",
    "logging_enabled",
    "short_format_time",
    "use_logging",
]

_log = logging.getLogger("joblite")
# Worker processes inherit the environment: that is how the switch reaches them.
_ENV = "JOBLITE_LOGGING"


def _route_from_env() -> dict[str, Any]:
    raw = os.environ.get(_ENV, "")
    try:
        level = int(raw) if raw else 0
    except ValueError:
        level = logging.getLevelName(raw.upper()) if raw.upper() != "OFF" else 0
        level = level if isinstance(level, int) else logging.INFO
    return {"logging": level > 0, "level": level if level > 0 else logging.INFO}


_route = _route_from_env()
_worker_handler: Optional[logging.Handler] = None


def use_logging(enabled: bool = True, level: int = logging.INFO) -> None:
    """Send verbose messages to the stdlib logger ``"joblite"`` instead of printing them.

    Parameters
    ----------
    enabled : bool, default=True
        ``True`` turns every verbose message of joblite (Memory's ``[Memory] Calling ...``
        lines and durations, Parallel's progress lines, persistence's) into one
        :class:`logging.LogRecord` each, on ``"joblite.memory"``, ``"joblite.parallel"`` or
        ``"joblite.persistence"``; ``False`` prints them again (joblib's behaviour, the
        default). Worker processes started afterwards follow the switch (it is passed on in
        the ``JOBLITE_LOGGING`` environment variable, which also turns it on from outside);
        in a worker whose ``"joblite"`` logger has no handler, records go to its stderr.
    level : int, default=logging.INFO
        The level the messages are logged at.

    Examples
    --------
    >>> import logging, joblite
    >>> joblite.use_logging(True)          # same as joblite.logger.use_logging(True)
    >>> joblite.logging_enabled()
    True
    >>> joblite.use_logging(False)
    """
    if isinstance(level, bool) or not isinstance(level, int) or level <= 0:
        raise ValueError(
            f"level must be a positive logging level such as logging.INFO, got {level!r}"
        )
    _route["logging"] = bool(enabled)
    _route["level"] = int(level)
    if enabled:
        os.environ[_ENV] = str(int(level))
    else:
        os.environ.pop(_ENV, None)


def logging_enabled() -> bool:
    """Whether verbose messages go to :mod:`logging` (see :func:`use_logging`)."""
    return bool(_route["logging"])


def _in_worker() -> bool:
    import multiprocessing

    return (
        multiprocessing.parent_process() is not None
        or multiprocessing.current_process().name != "MainProcess"
    )


def _ensure_worker_handler() -> None:
    """In a worker process whose ``joblite`` logger has nowhere to go, log to stderr."""
    global _worker_handler
    if _worker_handler is not None or _log.hasHandlers() or not _in_worker():
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s:%(name)s:%(processName)s: %(message)s"))
    _log.addHandler(handler)
    if _log.getEffectiveLevel() > _route["level"]:
        _log.setLevel(_route["level"])
    _worker_handler = handler


def emit(msg: str, source: str = "memory", stream: Optional[TextIO] = None) -> None:
    """One verbose message: printed (to ``stream``, stdout by default) or logged as one record.

    Parameters
    ----------
    msg : str
        The whole message of one event (it may span lines: it is still one record).
    source : {"memory", "parallel", "persistence"}, default="memory"
        The logger is ``"joblite.<source>"``.
    stream : file, optional
        Where the printed message goes when logging is off (default ``sys.stdout``).
    """
    if _route["logging"]:
        _ensure_worker_handler()
        logging.getLogger(f"joblite.{source}").log(_route["level"], msg)
    else:
        out = stream if stream is not None else sys.stdout
        out.write(msg + "\n")
        out.flush()


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
    loaded data: 0.0s, 0.0min
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
        full = f"{msg}: {format_time(delta)}"  # joblib's "0.0s, 0.0min"
        print(full, file=sys.stderr)
        if self.logfile is not None:
            try:
                with open(self.logfile, "a", encoding="utf-8") as f:
                    f.write(full + "\n")
            except OSError:
                pass  # a log that cannot be written must never break the caller
        if not total:
            self.last_time = now
