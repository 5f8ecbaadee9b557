"""torta.determinism: OpenBLAS's kernels pinned so that a replay's bytes do not depend on the CPU."""

import platform

import pytest

from torta.determinism import BLAS_CORETYPE, pin_blas_kernels


def _cpuinfo(tmp_path, flags: str):
    p = tmp_path / "cpuinfo"
    p.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    return str(p)


X86 = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"), reason="x86-64 only")


@X86
def test_avx2_machine_gets_the_haswell_kernels(tmp_path):
    env = {}
    assert pin_blas_kernels(env, _cpuinfo(tmp_path, "fpu sse4_2 avx avx2 fma avx512f")) == BLAS_CORETYPE
    assert env == {"OPENBLAS_CORETYPE": "Haswell"}


def test_the_users_choice_wins_and_a_cpu_without_avx2_is_left_alone(tmp_path):
    env = {"OPENBLAS_CORETYPE": "SkylakeX"}
    assert pin_blas_kernels(env, _cpuinfo(tmp_path, "avx2")) == "SkylakeX" and env["OPENBLAS_CORETYPE"] == "SkylakeX"
    env = {}
    assert pin_blas_kernels(env, _cpuinfo(tmp_path, "fpu sse4_2 avx")) is None and env == {}
    assert pin_blas_kernels(env, str(tmp_path / "missing")) is None and env == {}


@X86
def test_this_process_runs_the_pinned_kernels():
    from benchmarks.parity import blas_kernels
    from torta.determinism import _has_avx2

    if not _has_avx2():
        pytest.skip("this CPU has no AVX2: OpenBLAS chooses")
    assert blas_kernels() == BLAS_CORETYPE  # conftest imports torta before numpy loads OpenBLAS
