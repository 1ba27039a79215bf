import os
import sys

# bench/ modules import their shared helpers (gemm_cases) directly
sys.path.insert(0, os.path.dirname(__file__))


import time

import pytest


@pytest.fixture(autouse=True)
def _settle():
    """Let the previous benchmark's thread pool go idle (OpenBLAS workers spin ~0.1 s after a
    call), so it does not steal cores from the next one."""
    time.sleep(0.25)
