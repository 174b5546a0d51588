import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Subprocesses (snakemake jobs) must find the venv's python and tools first.
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")


@pytest.fixture(scope="session")
def tiny_region(tmp_path_factory):
    """The tiny demo preset, generated once per test session (read-only for tests)."""
    from glaciermap.demo import generate

    out = tmp_path_factory.mktemp("tiny") / "demo"
    generate(out, seed=0, preset="tiny")
    return out
