"""Benchmark settings: full-size shapes only when ALPHANET_FAST_FULL_BENCH=1."""

import os

FULL = os.environ.get("ALPHANET_FAST_FULL_BENCH") == "1"
