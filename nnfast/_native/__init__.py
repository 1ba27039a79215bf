"""The compiled extension, or None when it cannot be imported.

``core`` is ``nnfast._native._core`` (C kernels) and ``IMPORT_ERROR`` says why it is missing.
Setting ``NNFAST_DISABLE_NATIVE=1`` skips it on purpose, so every product goes through SciPy.
"""

import os

core = None
IMPORT_ERROR = None

if os.environ.get("NNFAST_DISABLE_NATIVE", "") not in ("", "0"):
    IMPORT_ERROR = "disabled by NNFAST_DISABLE_NATIVE"
else:
    try:
        from . import _core as core  # noqa: F401  (re-exported)
    except ImportError as err:  # not built, or built for another Python
        IMPORT_ERROR = str(err)
