"""`snakemake --report` on a copy of the tiny workflow run: one self-contained HTML naming every figure."""

import shutil

from conftest import run_snakemake


def test_snakemake_report_names_every_figure(model_run, tmp_path):
    work, proc = model_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    copy = tmp_path / "wf"
    # checkpoints (*.pt, undeclared, ~0.9 GB) are not needed for the report
    shutil.copytree(work, copy, symlinks=True, ignore=shutil.ignore_patterns("*.pt"))
    figs = sorted((copy / "results/tiny/area_change/dl4gam/figures").rglob("*.png"))
    assert len(figs) >= 4
    out = copy / "results/tiny/report.html"
    rep = run_snakemake(copy, "--report", str(out), timeout=600)
    assert rep.returncode == 0, rep.stdout[-3000:] + rep.stderr[-3000:]
    html = out.read_text(errors="replace")
    assert html.lstrip().lower().startswith("<!doctype html")
    for f in figs:
        assert f.name in html, f.name
    for table in ("segmentation_by_fold.csv", "area_by_size_class.csv", "coverage.csv"):
        assert table in html, table
    for category in ("Glacier panels", "Calibration", "Change rates", "Tables"):
        assert category in html, category
    # captions are rendered into the report
    assert "temperature scaling" in html and "size class" in html
