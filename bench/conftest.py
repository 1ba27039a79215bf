import os
import sys

# bench/ modules import their shared helpers (gemm_cases) directly
sys.path.insert(0, os.path.dirname(__file__))
