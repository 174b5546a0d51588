"""The layout a newcomer relies on: a step is found by its rule name, its code in the module of that name in the
same group (data, segmentation, area_change), and the demo generator stays out of the runtime's imports."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GROUPS = ("data", "segmentation", "area_change", "debris", "facies", "timeseries")
# rules whose code is a function of a sibling module (README "What the workflow does")
MODULE_OF = {"train_fold": "train", "label_set": "labels", "debris_summary": "summary", "facies_train": "train",
             "facies_calibrate": "calibrate", "facies_maps": "maps", "facies_summary": "summary",
             "ts_acquisitions": "acquisitions", "ts_train": "train", "ts_calibrate": "calibrate", "ts_maps": "maps",
             "ts_series": "series", "ts_trends": "trends", "ts_summary": "summary"}


def _rules():
    """(group, rule name, script path) of every rule in workflow/rules/<group>/*.smk."""
    out = []
    for g in GROUPS:
        for smk in sorted((REPO / "workflow/rules" / g).glob("*.smk")):
            for block in re.split(r"\n(?=rule \w+:)", smk.read_text()):
                m = re.match(r"rule (\w+):", block.strip())
                if m:
                    s = re.search(r'script:\s*\n\s*"([^"]+)"', block)
                    out.append((g, m.group(1), s.group(1) if s else None, smk))
    return out


def test_every_rule_is_in_a_group_with_its_script_and_module():
    rules = _rules()
    assert len(rules) >= 24
    top = [p.name for p in (REPO / "workflow/rules").glob("*.smk")]
    assert top == ["common.smk"]                     # every rule file is in a group folder
    for g, rule, script, smk in rules:
        assert script == f"../../scripts/{g}/{rule}.py", (smk, rule, script)
        assert (smk.parent / script).resolve().exists(), (rule, script)
        module = f"glaciermap.{g}.{MODULE_OF.get(rule, rule)}"
        assert importlib.util.find_spec(module) is not None, (rule, module)
        text = (smk.parent / script).read_text()
        # directly, or through the per-glacier job worker (glaciermap.worker.call)
        assert f"from {module} import" in text or f'call("{module}", ' in text, (rule, "the script calls the module of its rule")
    included = re.findall(r'include: "workflow/rules/(\w+)/(\w+)\.smk"', (REPO / "Snakefile").read_text())
    assert sorted(included) == sorted({(g, smk.stem) for g, _, _, smk in rules})


def test_runtime_modules_do_not_import_the_demo_generator():
    names = sorted(".".join(p.relative_to(REPO / "src").with_suffix("").parts).removesuffix(".__init__")
                   for p in (REPO / "src/glaciermap").rglob("*.py") if "demo" not in p.parts)
    assert len(names) > 40
    code = ("import importlib, sys\n"
            f"for n in {names!r}:\n    importlib.import_module(n)\n"
            "print(sorted(m for m in sys.modules if m.startswith('glaciermap.demo')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "[]"
