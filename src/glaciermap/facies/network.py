"""The lightweight point CNN of the glacier facies paper (Maslov et al., seed 002), also applicable densely.

The paper classifies the centre pixel of a 33 x 33 patch with a small VGG-like CNN whose classifier sees the
centre-pixel activations "sliced from the feature maps before the pooling layers", concatenated with a globally
max-pooled feature vector. :class:`FaciesNet` follows that layout but does its pooling "a trous" (max pool with
kernel 2 and stride 1, then dilated convolutions), so that every feature map keeps the input's pixel grid. Hence
the network is translation-equivariant up to its padding, and the same weights can be run over a whole image at
once (:meth:`FaciesNet.dense_logits`, :func:`predict_dense`) instead of cutting one patch per pixel:

- scale 1: three 3 x 3 convolutions (padding 1, ``padding_mode``), each + BatchNorm + activation; the centre
  activation after each of the three is kept (3 F features);
- a-trous pooling: replicate-pad one row / column at the end, max pool 2 x 2 with stride 1;
- scale 2: three 3 x 3 convolutions with dilation 2 (padding 2), each + BatchNorm + activation; the centre
  activation of the last one is kept (F features);
- global max pooling of the last feature map over the patch (F features);
- [5 F features] -> dropout -> Linear(dense_units) -> ReLU -> dropout -> Linear(dense_units) -> ReLU -> Linear(K).

Dense application: the feature maps are computed once over the image; "the centre activation" of a pixel is then
the feature map itself at that pixel, the global max over its patch becomes ``max_pool2d(kernel=window, stride=1,
padding=window // 2)`` (torch pads max pooling with -inf, so near the image edges only real pixels count) and the
linear layers become 1 x 1 convolutions with the same weights. For a pixel whose whole ``window`` patch lies inside
the image, the only difference from :meth:`FaciesNet.forward` on that patch is what the convolutions see at the
patch border (padding there, the real neighbours in the dense map), which enters only through the global max.

Departures from the paper's figure, deliberate: ReLU by default (the figure says ELU: ``activation="elu"``), the
same number of filters at both scales, and the a-trous pooling (the paper pools with stride 2, which is what makes
a point CNN expensive to apply densely).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

#: input pixels on each side of a pixel that its scale-2 features depend on: 3 convolutions of radius 1, the
#: 2 x 2 pooling (one more pixel towards the end of each axis) and 3 convolutions of radius 2 (dilation 2)
RECEPTIVE_RADIUS = 3 * 1 + 1 + 3 * 2


def _act(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "elu":
        return nn.ELU(inplace=True)
    raise ValueError(f"activation must be 'relu' or 'elu', not {name!r}")


class _ConvBN(nn.Sequential):
    def __init__(self, cin: int, cout: int, dilation: int, padding_mode: str, activation: str):
        super().__init__(
            nn.Conv2d(cin, cout, 3, padding=dilation, dilation=dilation, padding_mode=padding_mode, bias=False),
            nn.BatchNorm2d(cout),
            _act(activation),
        )


def _atrous_pool(x: torch.Tensor) -> torch.Tensor:
    """2 x 2 max pooling with stride 1 that keeps the grid: output (i, j) = max of input (i..i+1, j..j+1)."""
    return F.max_pool2d(F.pad(x, (0, 1, 0, 1), mode="replicate"), kernel_size=2, stride=1)


class FaciesNet(nn.Module):
    """Point classifier of the centre pixel of odd-sized patches ``(B, C, P, P)`` -> logits ``(B, K)``."""

    def __init__(self, in_channels: int, n_classes: int = 8, filters: int = 64, dense_units: int = 32,
                 dropout: float = 0.5, padding_mode: str = "replicate", activation: str = "relu"):
        super().__init__()
        if in_channels < 1 or n_classes < 2 or filters < 1 or dense_units < 1:
            raise ValueError(f"FaciesNet: need in_channels >= 1, n_classes >= 2, filters >= 1, dense_units >= 1 "
                             f"(got {in_channels}, {n_classes}, {filters}, {dense_units})")
        self.in_channels, self.n_classes = int(in_channels), int(n_classes)
        self.filters, self.dense_units = int(filters), int(dense_units)
        f = self.filters
        self.scale1 = nn.ModuleList([_ConvBN(in_channels if i == 0 else f, f, 1, padding_mode, activation)
                                     for i in range(3)])
        self.scale2 = nn.ModuleList([_ConvBN(f, f, 2, padding_mode, activation) for _ in range(3)])
        self.n_features = 5 * f          # 3 centre activations of scale 1, 1 of scale 2, the global max
        self.drop1 = nn.Dropout(dropout)
        self.fc1 = nn.Linear(self.n_features, dense_units)
        self.drop2 = nn.Dropout(dropout)
        self.fc2 = nn.Linear(dense_units, dense_units)
        self.head = nn.Linear(dense_units, n_classes)

    receptive_radius = RECEPTIVE_RADIUS

    def _maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four feature maps the classifier reads: scale 1 after each convolution, scale 2 after the last."""
        maps = []
        for layer in self.scale1:
            x = layer(x)
            maps.append(x)
        x = _atrous_pool(x)
        for layer in self.scale2:
            x = layer(x)
        maps.append(x)
        return maps

    def _classifier(self, z: torch.Tensor) -> torch.Tensor:
        z = F.relu(self.fc1(self.drop1(z)))
        z = F.relu(self.fc2(self.drop2(z)))
        return self.head(z)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[-1] != x.shape[-2] or x.shape[-1] % 2 != 1:
            raise ValueError(f"FaciesNet expects (B, C, P, P) patches with P odd, got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"FaciesNet built for {self.in_channels} channels, got {x.shape[1]}")
        c = x.shape[-1] // 2
        maps = self._maps(x)
        feats = [m[:, :, c, c] for m in maps] + [maps[-1].amax(dim=(2, 3))]
        return self._classifier(torch.cat(feats, dim=1))

    def dense_logits(self, x: torch.Tensor, window: int) -> torch.Tensor:
        """Logits ``(K, H, W)`` of every pixel of ``x`` (``(1, C, H, W)`` or ``(C, H, W)``) as the centre of a
        ``window`` x ``window`` patch, with one pass of the convolutions over the whole image.

        Call it in eval mode (BatchNorm statistics, no dropout), as :func:`predict_dense` does.
        """
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != self.in_channels:
            raise ValueError(f"dense_logits expects (1, {self.in_channels}, H, W) or ({self.in_channels}, H, W), "
                             f"got shape {tuple(x.shape)}")
        window = int(window)
        if window < 1 or window % 2 != 1:
            raise ValueError(f"window must be a positive odd number of pixels, got {window}")
        maps = self._maps(x)
        gmax = F.max_pool2d(maps[-1], kernel_size=window, stride=1, padding=window // 2) if window > 1 else maps[-1]
        feats = maps + [gmax]
        # fc1 as a 1 x 1 convolution, block by block over the concatenated features (no 5F-channel copy)
        w1, f = self.fc1.weight, self.filters
        h = self.fc1.bias.view(1, -1, 1, 1)
        for j, m in enumerate(feats):
            h = h + F.conv2d(m, w1[:, j * f:(j + 1) * f, None, None])
        del feats, maps, gmax
        h = F.relu(h)
        h = F.relu(F.conv2d(h, self.fc2.weight[:, :, None, None], self.fc2.bias))
        return F.conv2d(h, self.head.weight[:, :, None, None], self.head.bias)[0]


def n_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``model`` (all of them, or only those that require gradients)."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only))


def default_halo(window: int, radius: int = RECEPTIVE_RADIUS) -> int:
    """Tile overlap for :func:`predict_dense` that makes its output independent of the tile size."""
    return int(window) // 2 + int(radius) + 1


@torch.no_grad()
def predict_dense(model: FaciesNet, image: np.ndarray, window: int, tile: int = 512, halo: int | None = None,
                  softmax: bool = False, threads: int | None = None) -> np.ndarray:
    """Logits (class probabilities with ``softmax=True``) ``(K, H, W)`` float32 numpy array of every pixel of
    ``image`` ``(C, H, W)``, each as the centre of a ``window`` x ``window`` patch.

    The image is processed in ``tile`` x ``tile`` blocks, each read with ``halo`` extra pixels on every side
    (clipped at the image edges, where the padding is then the same as for the whole image). With ``halo >=
    window // 2 + model.receptive_radius`` (the default, :func:`default_halo`) no pixel of a block sees the
    block's own border, so the result does not depend on ``tile``. NaN inputs are read as 0, as in training.
    The model is put in eval mode and left in the mode it had.
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"predict_dense expects an image (C, H, W), got shape {image.shape}")
    window = int(window)
    halo = default_halo(window, getattr(model, "receptive_radius", RECEPTIVE_RADIUS)) if halo is None else int(halo)
    if halo < 0 or tile < 1:
        raise ValueError(f"predict_dense: tile must be >= 1 and halo >= 0 (got tile={tile}, halo={halo})")
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(max(int(threads), 1))
    was_training = model.training
    model.eval()
    try:
        _, h, w = image.shape
        param = next(model.parameters())
        out = np.empty((model.n_classes, h, w), dtype=np.float32)
        for r0 in range(0, h, tile):
            r1 = min(r0 + tile, h)
            a0, a1 = max(r0 - halo, 0), min(r1 + halo, h)
            for c0 in range(0, w, tile):
                c1 = min(c0 + tile, w)
                b0, b1 = max(c0 - halo, 0), min(c1 + halo, w)
                block = np.nan_to_num(np.asarray(image[:, a0:a1, b0:b1], dtype=np.float32), nan=0.0,
                                      posinf=0.0, neginf=0.0)
                z = model.dense_logits(torch.from_numpy(block).to(param.device, param.dtype), window)
                z = z[:, r0 - a0:r1 - a0, c0 - b0:c1 - b0]
                if softmax:
                    z = torch.softmax(z, dim=0)
                out[:, r0:r1, c0:c1] = z.float().cpu().numpy()
        return out
    finally:
        model.train(was_training)
        torch.set_num_threads(old_threads)


def macs_per_patch(in_channels: int, patch: int, filters: int = 64, dense_units: int = 32, n_classes: int = 8) -> int:
    """Multiply-accumulates of one forward pass on a ``patch`` x ``patch`` input (convolutions + dense layers)."""
    f, px = filters, patch * patch
    conv = px * 9 * (in_channels * f + 2 * f * f) + px * 9 * 3 * f * f
    dense = 5 * f * dense_units + dense_units * dense_units + dense_units * n_classes
    return int(conv + dense)


__all__ = ["FaciesNet", "RECEPTIVE_RADIUS", "default_halo", "macs_per_patch", "n_parameters", "predict_dense"]
