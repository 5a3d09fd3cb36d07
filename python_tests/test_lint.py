"""The Python sources stay ruff-clean (ruff comes with the `test` extra)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_clean():
    targets = [str(ROOT / p) for p in ("dalcore", "python_tests", "benches") if (ROOT / p).exists()]
    proc = subprocess.run(["ruff", "check", *targets], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
