import subprocess
import sys

import dalcore


def test_build_info_fields():
    info = dalcore.build_info()
    assert set(info) >= {"version", "compiler", "simd", "threads", "cuda_built", "cuda_devices"}
    assert info["version"] == dalcore.__version__
    assert info["simd"] in {"avx512f", "avx2", "sse4.2", "baseline"}
    assert info["threads"] >= 1


def test_cuda_available_tells_the_truth():
    info = dalcore.build_info()
    expected = bool(info["cuda_built"]) and info["cuda_devices"] > 0
    assert dalcore.cuda_available() is expected


def test_info_command_runs():
    out = subprocess.run(
        [sys.executable, "-m", "dalcore", "info"], capture_output=True, text=True, check=True
    ).stdout
    assert "CUDA built" in out and "GPU present" in out and dalcore.__version__ in out
