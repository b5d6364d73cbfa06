"""The machine a benchmark run measured: date, CPU, cores, vector extensions, numpy/BLAS and the float32
matmul peak. `make bench` prints it first, so every table in docs/ can say when and on what it was measured.

    flock /tmp/charlm-bench.lock .venv/bin/python bench/machine.py [--json]
"""

import argparse
import datetime
import json
import os
import platform
import time
from pathlib import Path


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def vector_extensions() -> list[str]:
    """The widest SIMD families the CPU reports (AVX-512 machines run numpy's kernels wider)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return []
    return [name for name in ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "amx_tile") if name in flags]


def matmul_peak(size: int = 2048, repeats: int = 20) -> float:
    """Best float32 GFLOP/s of a (size, size) @ (size, size) product."""
    import numpy as np

    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * size ** 3 / best / 1e9


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: VmHWM where /proc has it, since getrusage's ru_maxrss keeps the parent's
    RSS at fork time across the exec (a large parent would hide what the child itself used)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def describe() -> dict:
    import numpy as np

    return {"date": datetime.date.today().isoformat(), "cpu": cpu_model(), "cores": os.cpu_count(),
            "vector": vector_extensions(), "python": platform.python_version(), "numpy": np.__version__,
            "matmul_peak_gflops": round(matmul_peak(), 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the description as JSON")
    args = parser.parse_args()
    info = describe()
    if args.json:
        print(json.dumps(info))
        return
    print(f"{info['date']}, {info['cpu']}, {info['cores']} cores, {' '.join(info['vector']) or 'no AVX2'}, "
          f"Python {info['python']}, numpy {info['numpy']}, float32 matmul peak {info['matmul_peak_gflops']} GFLOP/s")


if __name__ == "__main__":
    main()
