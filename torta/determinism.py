"""Same inputs and seed, same bytes, on every x86-64 machine: pin OpenBLAS's kernels.

OpenBLAS (inside numpy and scipy wheels) picks its kernels by the CPU it finds: `SkylakeX` on an
AVX-512 machine, `Haswell` on an AVX2 one, and the kernels round differently in the last bits. A
replay's fitted latency model and the planners' linear algebra then differ, a planner's choice can
flip, and a replay on one machine no longer equals the same replay on another (found when the parity
reference, recorded on an AVX2 machine, failed on an AVX-512 one with the same wheels; with
`OPENBLAS_CORETYPE=Haswell` it matched). `pin_blas_kernels` sets `OPENBLAS_CORETYPE=Haswell` (the
AVX2 kernels, which every x86-64 CPU since 2013 runs) unless the user set it; OpenBLAS reads it when
it loads, so `import torta` must come before numpy does (the CLI, the Dagster code location and the
tests import torta first). benchmarks/parity.py records the kernels in use with each reference.
"""

from __future__ import annotations

import os
import platform
from collections.abc import MutableMapping

BLAS_CORETYPE = "Haswell"


def _has_avx2(cpuinfo: str = "/proc/cpuinfo") -> bool:
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return "avx2" in line.split()
    except OSError:
        pass
    return False


def pin_blas_kernels(environ: MutableMapping[str, str] = os.environ, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The OpenBLAS core type in force after the call: the user's `OPENBLAS_CORETYPE`, else `Haswell` on
    an x86-64 CPU with AVX2 (set in `environ`), else None (OpenBLAS chooses)."""
    if environ.get("OPENBLAS_CORETYPE"):
        return environ["OPENBLAS_CORETYPE"]
    if platform.machine().lower() not in ("x86_64", "amd64") or not _has_avx2(cpuinfo):
        return None
    environ["OPENBLAS_CORETYPE"] = BLAS_CORETYPE
    return BLAS_CORETYPE
