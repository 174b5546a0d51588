import subprocess
import sys

PLAIN = "import torchvision"
SHIMMED = """
from glaciermap import compat
smp = compat.import_smp()
import torch
m = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=16, classes=1)
y = m(torch.zeros(1, 16, 64, 64))
print(compat.shim_applied, tuple(y.shape))
"""


def _run(code):
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_shim_applies_exactly_when_plain_import_fails():
    plain = _run(PLAIN)
    shimmed = _run(SHIMMED)
    assert shimmed.returncode == 0, shimmed.stderr
    applied, shape = shimmed.stdout.split(" ", 1)
    # Narrow: the shim is used if and only if torchvision cannot be imported on its own.
    assert (applied == "True") == (plain.returncode != 0)
    if plain.returncode != 0:
        assert "torchvision::nms" in plain.stderr
    assert shape.strip() == "(1, 1, 64, 64)"


def test_other_import_errors_are_not_swallowed(monkeypatch):
    import builtins

    from glaciermap import compat

    real_import = builtins.__import__

    def failing(name, *a, **k):
        if name == "torchvision":
            raise RuntimeError("something unrelated broke")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", failing)
    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    try:
        compat.import_torchvision()
    except RuntimeError as e:
        assert "unrelated" in str(e)
    else:
        raise AssertionError("an unrelated RuntimeError must propagate")
