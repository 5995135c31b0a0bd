"""The machine a benchmark ran on: CPU model, vector extensions, SIMD path, BLAS, load.

Printed by ``benches/conftest.py`` at the top of every benchmark session and
stored in the JSON of ``benches/device_check.py``, so that every figure names
the CPU and kernel path that produced it.
"""

from __future__ import annotations

import os
import platform

# Extensions that decide which inner loops run (ours, BLAS's and torch's).
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16")
SIMD_ENV = "ALPHANET_FAST_SIMD"


def _cpuinfo() -> tuple[str, set[str]]:
    """Model name and flags of the first CPU in /proc/cpuinfo (empty off Linux)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name":
                    model = value.strip()
                elif key == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    return model, flags


def simd_path(flags: set[str]) -> str:
    """The kernels' inner-loop path: ``ALPHANET_FAST_SIMD`` if set, else the widest found."""
    forced = os.environ.get(SIMD_ENV, "").strip().lower()
    if forced:
        return forced
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    return "scalar"


def _blas() -> list[str]:
    """BLAS libraries loaded in this process (threadpoolctl), else numpy's build config."""
    try:
        import numpy  # noqa: F401 - load numpy's BLAS before asking who is loaded
        from threadpoolctl import threadpool_info
    except ImportError:
        return ["unknown (threadpoolctl not installed)"]
    return sorted(
        {
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
            f"{i.get('num_threads')} threads)"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        }
    )


def describe_cpu() -> dict:
    """A dict naming the CPU, its vector extensions, our SIMD path, the BLAS and the load."""
    model, flags = _cpuinfo()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = []
    return {
        "model": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "vector_extensions": [f for f in VECTOR_FLAGS if f in flags],
        "simd_path": simd_path(flags),
        "blas": _blas(),
        "loadavg_1_5_15": load,
    }


def format_cpu(info: dict) -> str:
    """One line for a benchmark header."""
    return (
        f"CPU: {info['model']} ({info['usable_cpus']} usable of {info['logical_cpus']}); "
        f"vector extensions: {' '.join(info['vector_extensions']) or 'none'}; "
        f"alphanet_fast SIMD path: {info['simd_path']}; BLAS: {'; '.join(info['blas'])}; "
        f"load: {info['loadavg_1_5_15']}"
    )
