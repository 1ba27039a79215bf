import os
import sys

# bench/ modules import their shared helpers (gemm_cases, timing) directly
sys.path.insert(0, os.path.dirname(__file__))


import pytest
from timing import settle


@pytest.fixture(autouse=True)
def _settle():
    """Let the previous benchmark's thread pool go idle (bench/timing.py), so it does not steal
    cores from the next one."""
    settle()
