"""The compiled extension, or None when it cannot be imported.

``core`` is ``nnfast._native._core`` (C kernels) and ``IMPORT_ERROR`` says why it is missing.
Setting ``NNFAST_DISABLE_NATIVE=1`` skips it on purpose, so every product goes through SciPy.
"""

import importlib
import os

core = None
IMPORT_ERROR = None

if os.environ.get("NNFAST_DISABLE_NATIVE", "") not in ("", "0"):
    IMPORT_ERROR = "disabled by NNFAST_DISABLE_NATIVE"
else:
    try:
        core = importlib.import_module(f"{__name__}._core")
    except ModuleNotFoundError as err:  # not built ("from . import _core" blamed a cycle)
        IMPORT_ERROR = str(err)
        if err.name == f"{__name__}._core":
            IMPORT_ERROR = f"{err.name} is not built (pip install . compiles it)"
    except ImportError as err:  # built for another Python, or a missing symbol
        IMPORT_ERROR = str(err)
