"""The persistent compilation cache: compiled programs kept on disk between processes.

probprop compiles one XLA program per learner, network shape and row bucket; compiling costs
seconds, loading a compiled program from disk a fraction of that. So, unless told otherwise,
probprop points JAX's persistent compilation cache at a folder in the user's cache directory
the first time it computes anything (not on import):

- ``$PROBPROP_JAX_CACHE``: the folder (default ``$XDG_CACHE_HOME/probprop/jax``, else
  ``~/.cache/probprop/jax``); ``off`` (or ``0``, ``none``, ``false``, empty) disables it;
- a cache folder the process has already chosen (``JAX_COMPILATION_CACHE_DIR``, or
  ``jax.config.update("jax_compilation_cache_dir", ...)`` before probprop's first call) is
  left as it is, and so are the cache's other settings then.

JAX's cache is process-wide: once probprop turns it on, other JAX code in the process caches its
compilations there too. JAX writes each entry to a temporary file and renames it into place, so
several processes may share the folder (the benchmark's workers do). Programs that compile in
less than :data:`MIN_COMPILE_SECONDS` are not stored (their compilation is cheaper than the
disk). :func:`cache_dir` says which folder is in use.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "MIN_COMPILE_SECONDS", "cache_dir", "default_cache_dir", "enable"]

#: The variable naming the cache folder (``off`` disables the cache).
CACHE_ENV = "PROBPROP_JAX_CACHE"

#: Programs compiling faster than this are not written to the cache (0: every program; a first
#: PBP fit and prediction compile five, the smallest ~0.02 s, which loads faster than that).
MIN_COMPILE_SECONDS = 0.0

_OFF = ("", "off", "0", "none", "false", "no")

#: True once :func:`enable` has run in this process.
enabled = False


def default_cache_dir(environ=None) -> str | None:
    """The folder ``$PROBPROP_JAX_CACHE`` names (or the default one), None when it says off."""
    environ = os.environ if environ is None else environ
    cache = environ.get(CACHE_ENV)
    if cache is None:
        xdg = environ.get("XDG_CACHE_HOME")
        root = Path(xdg) if xdg else Path.home() / ".cache"
        return str(root / "probprop" / "jax")
    return None if cache.strip().lower() in _OFF else cache


def enable() -> None:
    """Turn the persistent cache on as the module docstring says (once per process; cheap after)."""
    global enabled
    if enabled:
        return
    enabled = True
    import jax

    if jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return  # the process chose its own cache
    folder = default_cache_dir()
    if folder is None:
        return
    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError:
        return  # a read-only home: compile every time, as without the cache
    jax.config.update("jax_compilation_cache_dir", folder)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    _recheck()


def _recheck() -> None:
    """JAX decides once per process, at its first compilation, whether a cache is in use; if
    other JAX code compiled before probprop's first call, ask it to decide again."""
    try:
        from jax._src import compilation_cache
    except ImportError:  # pragma: no cover - a JAX without that module: the setting may wait
        return
    if getattr(compilation_cache, "_cache_checked", False) and not getattr(compilation_cache, "_cache_used", True):
        compilation_cache.reset_cache()


def cache_dir() -> str | None:
    """The persistent cache folder JAX uses in this process now (None: no cache)."""
    import jax

    return jax.config.jax_compilation_cache_dir or os.environ.get("JAX_COMPILATION_CACHE_DIR") or None
