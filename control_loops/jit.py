"""Lazy numba access with a writable on-disk cache.

numba reads ``NUMBA_CACHE_DIR`` once, when it is first imported, and silently falls back
to ``__pycache__`` next to the source when that is not writable (a read-only install on the
controller). So the cache dir is set here, before the first ``import numba``, and numba is
imported only when a kernel is first needed: importing ``control_loops`` stays cheap.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

ENV_VAR = "EDGE_AGENT_NUMBA_CACHE"
DEFAULT_CACHE = Path("~/.cache/edge-agent/numba")


def cache_dir() -> Path:
    """The numba cache dir: ``$EDGE_AGENT_NUMBA_CACHE`` or ``~/.cache/edge-agent/numba``."""
    return Path(os.environ.get(ENV_VAR) or DEFAULT_CACHE).expanduser()


def numba() -> ModuleType:
    """Import numba with its cache dir set; safe to call many times."""
    # An explicit NUMBA_CACHE_DIR from the operator wins over ours.
    if "NUMBA_CACHE_DIR" not in os.environ:
        path = cache_dir()
        path.mkdir(parents=True, exist_ok=True)
        os.environ["NUMBA_CACHE_DIR"] = str(path)
        if "numba" in sys.modules:
            # Someone imported numba first: it has read its config already. Kernels
            # decorated from now on take the cache dir from the reloaded config.
            from numba.core import config

            config.reload_config()
    import numba as nb

    return nb
