"""Every benchmark script answers --help with its usage and exits 0, without running anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def test_there_are_benchmarks():
    assert len(BENCH) >= 6


@pytest.mark.parametrize("script", BENCH, ids=lambda p: p.stem)
def test_benchmark_answers_help(script, tmp_path):
    p = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.lstrip().startswith("usage:") and script.name in p.stdout.split("\n")[0]
    assert list(tmp_path.iterdir()) == []   # --help ran nothing and wrote nothing
