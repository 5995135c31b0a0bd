"""Benchmark settings: full-size shapes only when ALPHANET_FAST_FULL_BENCH=1.

Every benchmark session starts by naming the machine (CPU model, vector
extensions, the kernels' SIMD path, the BLAS loaded, the load), and the same
goes into pytest-benchmark's saved JSON under ``machine_info["alphanet_fast_cpu"]``.
"""

import os

import pytest
from cpu_info import describe_cpu, format_cpu

FULL = os.environ.get("ALPHANET_FAST_FULL_BENCH") == "1"


def pytest_report_header(config):
    return format_cpu(describe_cpu())


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config, machine_info):
    machine_info["alphanet_fast_cpu"] = describe_cpu()
