"""Libraries that call joblib (scikit-learn, ...) follow joblite's ``parallel_config``.

Such libraries import the real joblib, which reads its own per-thread configuration, not
joblite's. Each joblite :class:`~joblite.parallel_config` therefore also enters the same
configuration in joblib, in the same thread, and restores it when it ends, so that
``with joblite.parallel_backend("threading", n_jobs=2): GridSearchCV(...).fit(X, y)``
runs its fits as joblib's own context manager would.

joblib is never imported by joblite. When joblib is already imported, a configuration is
mirrored at once; otherwise a watcher on ``sys.meta_path`` (a name comparison per import,
nothing else; installed by the first configuration entered before joblib's import) mirrors
the configurations active in the importing thread right after joblib's import finishes.
Without joblib installed the watcher never fires and nothing else happens.

How backends translate: joblib's own ``"sequential"``, ``"loky"``, ``"multiprocessing"``
and ``"dask"`` stay joblib's (their memory mapping and worker reuse are what libraries
were tested with); ``"threading"`` and backends registered with
:func:`joblite.register_parallel_backend` run on joblite's backend through
:func:`joblib_backend`, an adapter implementing joblib's backend interface. The adapters
of joblite's built-in backends can be put in joblib's registry under ``"joblite-<name>"``
with :func:`register_in_joblib`, on request only: joblib's registry is what code written
for joblib enumerates (its own test suite parametrizes over it), so joblite leaves it alone.
"""

from __future__ import annotations

import sys
import threading
import warnings
from typing import Any, Optional

from .. import _fork

__all__ = [
    "JOBLIB_NAMES",
    "ConfigMirror",
    "install",
    "joblib_backend",
    "mirror_config",
    "register_in_joblib",
]

# joblite backend names that joblib also has: the mirrored configuration names joblib's
JOBLIB_NAMES = frozenset({"sequential", "loky", "multiprocessing", "dask"})
# joblite backends register_in_joblib() puts in joblib's registry as "joblite-<name>"
_REGISTERED = ("threading", "loky", "multiprocessing", "sequential")
_PREFIX = "joblite-"
_CONFIG_KEYS = ("n_jobs", "verbose", "temp_folder", "max_nbytes", "mmap_mode", "prefer", "require")

_pending = threading.local()  # this thread's mirrors waiting for joblib's import
_lock = threading.Lock()

_fork.renew_in_child(globals(), "_lock")  # a lock another thread held at a fork
_watcher: Optional[_JoblibImportWatcher] = None
_adapter: Any = None  # the adapter class, built once joblib is imported


def _is_real_joblib(module: Any) -> bool:
    """Whether ``module`` is joblib itself, not joblite standing in for it (the alias of
    ``joblite.install_as_joblib``, or ``sys.modules["joblib"] = joblite`` done by hand):
    mirroring a configuration into joblite itself would recurse without end."""
    return getattr(module, "__name__", None) == "joblib"


def _joblib_ready() -> bool:
    module = sys.modules.get("joblib")
    if module is None or not _is_real_joblib(module):
        return False
    spec = getattr(module, "__spec__", None)
    parallel = sys.modules.get("joblib.parallel")
    return (
        not getattr(spec, "_initializing", False)
        and parallel is not None
        and getattr(parallel, "__name__", None) == "joblib.parallel"
    )


class ConfigMirror:
    """joblib's side of one joblite ``parallel_config``: entered with it, left with it.

    Parameters
    ----------
    values : dict
        The arguments the caller gave to joblite's ``parallel_config`` (``backend``,
        ``n_jobs``, ..., ``inner_max_num_threads``, ``backend_params``), defaults left out.
    """

    __slots__ = ("_config", "_done", "values")

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self._config: Any = None
        self._done = False

    def apply(self) -> None:
        """Enter the configuration in joblib (joblib must be imported)."""
        from joblib.parallel import parallel_config as joblib_parallel_config

        _pending.applying = True
        try:
            kwargs = _joblib_kwargs(self.values)
            self._config = joblib_parallel_config(**kwargs)
        except Exception as error:  # joblite accepted it: never fail the joblite config
            warnings.warn(
                "joblib's configuration is left unchanged by this parallel_config, so"
                f" libraries calling joblib inside it will not follow it: {error!r}",
                RuntimeWarning,
                stacklevel=4,
            )
        finally:
            _pending.applying = False

    def unregister(self) -> None:
        """Restore joblib's configuration of before (idempotent)."""
        if self._done:
            return
        self._done = True
        if self._config is not None:
            self._config.unregister()
            self._config = None
            return
        waiting = getattr(_pending, "mirrors", None)
        if waiting and self in waiting:
            waiting.remove(self)


def mirror_config(
    values: dict[str, Any],
    inner_max_num_threads: Optional[int] = None,
    backend_params: Optional[dict[str, Any]] = None,
    instance: Any = None,
) -> ConfigMirror:
    """Enter a joblite configuration in joblib too; give what undoes it.

    Called by :class:`joblite.parallel_config` after it took effect, with the arguments
    its caller gave (defaults left out) and the backend instance it built for a backend
    name. When joblib is not imported yet, the mirror waits for joblib's import in this
    thread.
    """
    values = dict(values)
    if instance is not None:
        values["instance"] = instance
    if inner_max_num_threads is not None:
        values["inner_max_num_threads"] = inner_max_num_threads
    if backend_params:
        values["backend_params"] = dict(backend_params)
    mirror = ConfigMirror(values)
    if getattr(_pending, "applying", False):
        # joblib's parallel_config called back into joblite's (a joblib whose names lead
        # back here): this configuration is joblite's own already, nothing to mirror
        mirror._done = True
        return mirror
    if _joblib_ready():
        mirror.apply()
        return mirror
    if _joblib_present_but_not_real():
        return mirror  # joblite stands in for joblib: one configuration, nothing to mirror
    install()
    waiting = getattr(_pending, "mirrors", None)
    if waiting is None:
        waiting = _pending.mirrors = []
    waiting.append(mirror)
    return mirror


def _joblib_present_but_not_real() -> bool:
    module = sys.modules.get("joblib")
    return module is not None and not _is_real_joblib(module)


def _joblib_kwargs(values: dict[str, Any]) -> dict[str, Any]:
    kwargs = {key: values[key] for key in _CONFIG_KEYS if key in values}
    spec = values.get("backend")
    if spec is None:
        # joblib takes backend parameters only with a backend: they stay joblite's.
        return kwargs
    params = dict(values.get("backend_params") or {})
    inner = values.get("inner_max_num_threads")
    if isinstance(spec, str) and spec in JOBLIB_NAMES and _is_builtin(spec):
        from joblib.parallel import BACKENDS

        kwargs["backend"] = spec
        kwargs.update(params)
        factory = BACKENDS.get(spec)
        if inner is not None and getattr(factory, "supports_inner_max_num_threads", True):
            kwargs["inner_max_num_threads"] = inner
        return kwargs
    instance = values.get("instance")
    if instance is not None and _speaks_joblib_natively(instance):
        # a backend from joblib's registry (ray, spark, ...): joblib runs the very
        # instance joblite's parallel_config built, so its state is one
        kwargs["backend"] = instance
        return kwargs
    kwargs["backend"] = _translate(spec, inner, params)
    return kwargs


def _speaks_joblib_natively(backend: Any) -> bool:
    from joblib.parallel import ParallelBackendBase as JoblibBackend

    return isinstance(backend, JoblibBackend)


def _is_builtin(name: str) -> bool:
    """Whether ``name`` still means joblite's own backend (not one a user registered)."""
    from . import BACKENDS

    factory = BACKENDS.get(name)
    return isinstance(factory, str) or getattr(factory, "__module__", "").startswith("joblite.")


def _translate(spec: Any, inner: Optional[int], params: dict[str, Any]) -> Any:
    from joblib.parallel import ParallelBackendBase as JoblibBackend

    from . import make_backend
    from .foreign import as_driver

    if not isinstance(spec, JoblibBackend):  # a name, a multiprocessing context, an instance
        spec = make_backend(spec, 0, inner, params)
    if isinstance(spec, JoblibBackend):  # written for joblib: joblib drives it itself
        return spec
    # a joblite backend, or an object speaking joblib's interface that joblite drives
    return joblib_backend(as_driver(spec))


def joblib_backend(backend: Any = "threading", **kwargs: Any) -> Any:
    """A joblib backend (``joblib.parallel.ParallelBackendBase``) running on joblite's.

    Parameters
    ----------
    backend : str or joblite.ParallelBackendBase, default "threading"
        A joblite backend name or instance.
    **kwargs
        ``nesting_level``, ``inner_max_num_threads`` and backend parameters, as joblib
        passes them to a backend factory.

    Examples
    --------
    >>> import joblib
    >>> from joblite.backends.joblib_bridge import joblib_backend
    >>> with joblib.parallel_config(backend=joblib_backend("threading"), n_jobs=2):
    ...     joblib.Parallel()(joblib.delayed(abs)(-i) for i in range(3))
    [0, 1, 2]
    """
    return _adapter_class()(backend, **kwargs)


def _adapter_class() -> Any:
    global _adapter
    if _adapter is None:
        _adapter = _build_adapter_class()
    return _adapter


def _build_adapter_class() -> Any:
    from joblib._parallel_backends import (
        AutoBatchingMixin,
        FallbackToBackend,
        SequentialBackend,
    )
    from joblib.parallel import ParallelBackendBase as JoblibBackend

    from . import ParallelBackendBase, get_backend_factory
    from .base import BatchedCalls

    class JobliteBackend(AutoBatchingMixin, JoblibBackend):  # type: ignore[misc, valid-type]
        """joblib's backend interface over a joblite backend (see :func:`joblib_backend`).

        Each batch joblib hands over runs as one call of a joblite batch, on the joblite
        backend's workers (for ``"threading"``, the Rust thread pool).
        """

        supports_retrieve_callback = True

        def __init__(
            self,
            backend: Any = "threading",
            nesting_level: Optional[int] = None,
            inner_max_num_threads: Optional[int] = None,
            **backend_kwargs: Any,
        ) -> None:
            super().__init__(
                nesting_level=nesting_level,
                inner_max_num_threads=inner_max_num_threads,
                **backend_kwargs,
            )
            if isinstance(backend, ParallelBackendBase):
                self.joblite_backend = backend
            else:
                self.joblite_backend = get_backend_factory(backend)(
                    nesting_level=nesting_level or 0,
                    inner_max_num_threads=inner_max_num_threads,
                    **backend_kwargs,
                )
            inner = self.joblite_backend
            self.uses_threads = bool(getattr(inner, "uses_threads", False))
            self.supports_sharedmem = bool(getattr(inner, "supports_sharedmem", False))
            self.supports_inner_max_num_threads = bool(
                getattr(inner, "supports_inner_max_num_threads", False)
            )
            self.default_n_jobs = getattr(inner, "default_n_jobs", 1)
            self.parallel: Any = None

        def __reduce__(self) -> tuple:
            return (
                _rebuild,
                (self.joblite_backend, self.nesting_level, self.inner_max_num_threads),
            )

        def __repr__(self) -> str:
            return f"JobliteBackend({self.joblite_backend!r})"

        def _sync(self) -> None:
            # joblib sets these on the instance after creating it (nesting, config).
            self.joblite_backend.nesting_level = self.nesting_level or 0
            if self.inner_max_num_threads is not None:
                self.joblite_backend.inner_max_num_threads = self.inner_max_num_threads

        def effective_n_jobs(self, n_jobs: Any) -> int:
            if n_jobs == 0:
                raise ValueError("n_jobs == 0 in Parallel has no meaning")
            if n_jobs is None:
                return 1
            self._sync()
            return int(self.joblite_backend.effective_n_jobs(int(n_jobs)))

        def configure(
            self,
            n_jobs: Any = 1,
            parallel: Any = None,
            prefer: Any = None,
            require: Any = None,
            **kwargs: Any,
        ) -> int:
            n_jobs = self.effective_n_jobs(n_jobs)
            if n_jobs == 1:
                raise FallbackToBackend(SequentialBackend(nesting_level=self.nesting_level))
            self.parallel = parallel
            options = {
                k: kwargs[k] for k in ("temp_folder", "max_nbytes", "mmap_mode") if k in kwargs
            }
            timeout = getattr(parallel, "timeout", None)
            return int(self.joblite_backend.configure(n_jobs=n_jobs, timeout=timeout, **options))

        def submit(self, func: Any, callback: Any = None) -> Any:
            batch = BatchedCalls([(func, (), {})], nested=self.joblite_backend.get_nested_backend())
            future = self.joblite_backend.submit(batch)
            if callback is not None:
                future.add_done_callback(callback)
            return future

        def retrieve_result_callback(self, out: Any) -> Any:
            return self.joblite_backend.retrieve(out)[0]

        def compute_batch_size(self) -> int:
            if self.uses_threads:  # as joblib's threading backend: one batch per task
                return 1
            return int(super().compute_batch_size())

        def terminate(self) -> None:
            self.joblite_backend.terminate()
            self.reset_batch_stats()

        def abort_everything(self, ensure_ready: bool = True) -> None:
            self.joblite_backend.abort_everything(ensure_ready=ensure_ready)
            parallel = self.parallel
            if ensure_ready and parallel is not None:
                self.configure(
                    n_jobs=parallel.n_jobs, parallel=parallel, **parallel._backend_kwargs
                )

    JobliteBackend.__module__ = __name__
    return JobliteBackend


def _rebuild(backend: Any, nesting_level: Optional[int], inner: Optional[int]) -> Any:
    return joblib_backend(backend, nesting_level=nesting_level, inner_max_num_threads=inner)


def register_in_joblib() -> list[str]:
    """Put joblite's backends in joblib's registry: ``"joblite-threading"``, ... .

    Then code written for joblib picks them by name, e.g.
    ``joblib.parallel_config(backend="joblite-threading")``. Imports joblib.

    Returns
    -------
    list of str
        The names registered.
    """
    from joblib.parallel import BACKENDS, register_parallel_backend

    names = []
    for name in _REGISTERED:
        key = _PREFIX + name
        if key not in BACKENDS:
            register_parallel_backend(key, _Factory(name))
        names.append(key)
    return names


class _Factory:
    """What joblib's registry calls to build the adapter of one joblite backend."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, **kwargs: Any) -> Any:
        return joblib_backend(self.name, **kwargs)

    @property
    def supports_inner_max_num_threads(self) -> bool:
        return self.name in ("loky", "multiprocessing")


def _joblib_arrived() -> None:
    """Right after joblib's import: mirror the configurations active in this thread."""
    waiting = getattr(_pending, "mirrors", None) or []
    _pending.mirrors = []
    for mirror in waiting:  # outermost first, so that each restores the one before it
        mirror.apply()


class _JoblibImportWatcher:
    """A ``sys.meta_path`` finder that finds nothing itself: it hooks the end of joblib's
    import, then removes itself. (Not an ``importlib.abc.MetaPathFinder`` subclass: that
    module costs ~20 ms to import; the import system only needs ``find_spec``.)"""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "joblib":
            return None
        spec = None
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            if finder is self or find is None:
                continue
            spec = find(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        exec_module = getattr(loader, "exec_module", None)
        if exec_module is None:
            return spec

        def exec_and_notify(module: Any) -> None:
            exec_module(module)
            _uninstall()
            if not _is_real_joblib(module):
                _pending.mirrors = []
                return
            try:
                _joblib_arrived()
            except Exception as error:  # never break the import of joblib itself
                warnings.warn(
                    f"joblite could not apply its configuration to joblib: {error!r}",
                    RuntimeWarning,
                    stacklevel=2,
                )

        loader.exec_module = exec_and_notify  # type: ignore[union-attr]
        return spec


def install() -> None:
    """Watch for joblib's import (idempotent, cheap; never imports joblib)."""
    global _watcher
    if _joblib_ready():
        return
    with _lock:
        if _watcher is None:
            _watcher = _JoblibImportWatcher()
            sys.meta_path.insert(0, _watcher)


def _uninstall() -> None:
    global _watcher
    with _lock:
        if _watcher is not None:
            try:
                sys.meta_path.remove(_watcher)
            except ValueError:
                pass
            _watcher = None
