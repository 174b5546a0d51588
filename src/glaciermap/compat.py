"""The one place that works around the torchvision extension problem on CPU-only torch.

``torchvision==0.28.0`` is the release matching ``torch==2.13.0``, but its compiled ops cannot load
beside a CPU build of torch. torchvision then still registers fake kernels for ``torchvision::nms`` and
``torchvision::qnms`` unconditionally, and ``import torchvision`` (which timm and
segmentation-models-pytorch do) fails with "operator torchvision::nms does not exist". Only in that
case do we define the two missing op schemas (no kernels: calling them would still fail, and nothing
in glaciermap does) and import again. When the extension loads, nothing is touched.
"""

from __future__ import annotations

import sys

_MISSING_OP_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # keeps the schema definitions alive for the process
shim_applied = False


def import_torchvision():
    """Import torchvision, defining the missing op schemas only if its extension failed to load."""
    global _library, shim_applied
    try:
        import torchvision

        return torchvision
    except RuntimeError as e:
        if not ("torchvision::" in str(e) and "does not exist" in str(e)):
            raise
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    import torch

    _library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _MISSING_OP_SCHEMAS:
        _library.define(schema)
    shim_applied = True
    import torchvision

    return torchvision


def import_smp():
    """Import segmentation_models_pytorch (which imports timm and torchvision) safely."""
    import_torchvision()
    import segmentation_models_pytorch as smp

    return smp
