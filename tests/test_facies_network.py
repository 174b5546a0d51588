"""The facies point CNN (glaciermap.facies.network): shapes, patch-wise vs dense application, tiling."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from glaciermap.facies.network import (RECEPTIVE_RADIUS, FaciesNet, default_halo, macs_per_patch, n_parameters,
                                       predict_dense)


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # tests/conftest.py


def smooth_image(seed, c=6, h=96, w=96, sigma=2.0, scale=5.0):
    rng = np.random.default_rng(seed)
    return (ndimage.gaussian_filter(rng.normal(size=(c, h, w)), (0, sigma, sigma)) * scale).astype(np.float32)


def randomised(model, seed, gmax_gain=10.0):
    """Eval-mode model with non-trivial BatchNorm statistics and a classifier that leans on the global max."""
    g = torch.Generator().manual_seed(seed)
    f = model.filters
    with torch.no_grad():
        for block in list(model.scale1) + list(model.scale2):
            bn = block[1]
            bn.running_mean.copy_(torch.randn(bn.running_mean.shape, generator=g) * 0.2)
            bn.running_var.copy_(torch.rand(bn.running_var.shape, generator=g) * 1.5 + 0.5)
        model.fc1.weight[:, 4 * f:] *= gmax_gain
    return model.eval()


def cut(img, pts, half):
    return torch.stack([torch.from_numpy(img[:, i - half:i + half + 1, j - half:j + half + 1]) for i, j in pts])


@pytest.mark.parametrize("p", [1, 3, 9, 33])
def test_forward_shapes_odd_patches(p):
    torch.manual_seed(0)
    m = FaciesNet(7, n_classes=8, filters=8, dense_units=16)
    out = m(torch.randn(4, 7, p, p))
    assert out.shape == (4, 8)
    assert torch.isfinite(out).all()
    out.sum().backward()                       # trainable end to end
    assert all(q.grad is not None for q in m.parameters())


def test_forward_rejects_even_or_wrong_channels():
    m = FaciesNet(3, filters=4)
    with pytest.raises(ValueError, match="P odd"):
        m(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match="channels"):
        m(torch.randn(2, 4, 9, 9))
    with pytest.raises(ValueError, match="odd"):
        m.dense_logits(torch.randn(3, 20, 20), 8)


def test_parameter_count_and_macs():
    # conv: 3x3 without bias; BN: 2 per channel; linear: weights + bias
    c, f, d, k = 10, 64, 32, 8
    expect = (9 * c * f + 2 * 9 * f * f + 3 * 9 * f * f) + 6 * 2 * f + (5 * f * d + d) + (d * d + d) + (d * k + k)
    assert n_parameters(FaciesNet(c, k, f, d)) == expect == 202440
    assert n_parameters(FaciesNet(c, k, 16, d)) < expect / 10
    assert macs_per_patch(10, 33, 64) > 100 * macs_per_patch(10, 33, 4)


def test_centre_activation_matters():
    """The centre shortcut breaks translation invariance: shifting the patch content changes the output,
    although the global max of a constant border-free pattern would not."""
    torch.manual_seed(1)
    m = FaciesNet(2, filters=8).eval()
    x = torch.zeros(1, 2, 15, 15)
    x[0, :, 7, 7] = 5.0                        # a spot at the centre ...
    y = torch.zeros(1, 2, 15, 15)
    y[0, :, 7, 3] = 5.0                        # ... or off centre (same global max)
    with torch.no_grad():
        assert (m(x) - m(y)).abs().max() > 1e-3


def test_dense_equals_forward_when_window_is_the_image():
    torch.manual_seed(2)
    m = randomised(FaciesNet(6, filters=8, dense_units=16), 2)
    img = smooth_image(2, h=33, w=33)
    with torch.no_grad():
        patch = m(torch.from_numpy(img)[None])[0]
        dense = m.dense_logits(torch.from_numpy(img), 33)[:, 16, 16]
    torch.testing.assert_close(dense, patch, atol=1e-5, rtol=1e-5)


def test_dense_equals_forward_on_interior_without_global_max():
    """The centre activations of an interior patch are exact in the dense maps (receptive radius 10 < 16)."""
    torch.manual_seed(3)
    m = randomised(FaciesNet(6, filters=8, dense_units=16), 3)
    with torch.no_grad():
        m.fc1.weight[:, 4 * m.filters:] = 0    # drop the global max: only the patch border effect remains there
    img = smooth_image(3, h=70, w=80)
    pts = [(i, j) for i in range(16, 54, 5) for j in range(16, 64, 5)]
    with torch.no_grad():
        d = m.dense_logits(torch.from_numpy(img), 33)
        patch = m(cut(img, pts, 16))
    dense = torch.stack([d[:, i, j] for i, j in pts])
    torch.testing.assert_close(dense, patch, atol=1e-5, rtol=1e-5)
    assert RECEPTIVE_RADIUS == 10


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_agrees_with_patchwise_argmax(seed):
    """With the global max weighted up 10x, the patch border still changes the class of <= 1 % of the pixels
    (measured: 99.4-100 % agreement over seeds 0-2, max |logit difference| ~3e-3 vs logit spread ~0.1)."""
    torch.manual_seed(seed)
    m = randomised(FaciesNet(6, filters=16, dense_units=32), seed)
    img = smooth_image(10 + seed, h=90, w=90)
    pts = [(i, j) for i in range(16, 74, 2) for j in range(16, 74, 2)]
    with torch.no_grad():
        d = m.dense_logits(torch.from_numpy(img), 33)
        patch = m(cut(img, pts, 16))
    dense = torch.stack([d[:, i, j] for i, j in pts])
    agree = (dense.argmax(1) == patch.argmax(1)).float().mean().item()
    assert agree >= 0.95
    assert (dense - patch).abs().max() < 0.1 * patch.std()
    assert not torch.allclose(dense, patch, atol=1e-7)   # the global max does see the padding: not exact


def test_dense_window_one_and_edges_finite():
    torch.manual_seed(4)
    m = FaciesNet(6, filters=4, dense_units=8).eval()
    img = smooth_image(4, h=20, w=25)
    with torch.no_grad():
        d1 = m.dense_logits(torch.from_numpy(img), 1)          # global max over the pixel itself
        d = m.dense_logits(torch.from_numpy(img)[None], 33)    # window larger than the image: -inf padding
    assert d1.shape == d.shape == (8, 20, 25)
    assert torch.isfinite(d1).all() and torch.isfinite(d).all()
    assert (d1 - d).abs().max() > 1e-4                         # the window does change the global-max feature


def test_predict_dense_independent_of_tile():
    torch.manual_seed(5)
    m = randomised(FaciesNet(6, filters=8, dense_units=16), 5)
    img = smooth_image(5, h=150, w=170)
    img[2, 40:45, 60:66] = np.nan              # NaN read as 0, like training
    small = predict_dense(m, img, 33, tile=64, softmax=True)
    whole = predict_dense(m, img, 33, tile=4096, softmax=True)
    assert small.shape == whole.shape == (8, 150, 170) and small.dtype == np.float32
    np.testing.assert_allclose(small, whole, atol=1e-6, rtol=0)
    assert (small.argmax(0) == whole.argmax(0)).all()
    np.testing.assert_allclose(small.sum(0), 1.0, atol=1e-5)
    assert np.isfinite(small).all()
    # the halo matters: without one, the tile borders show
    no_halo = predict_dense(m, img, 33, tile=64, halo=0, softmax=True)
    assert np.abs(no_halo - whole).max() > 1e-4
    assert default_halo(33) >= 33 // 2 + RECEPTIVE_RADIUS
    # logits by default (tiled the same way), and the model's mode is restored
    m.train()
    z = predict_dense(m, img[:, :40, :50], 9, tile=16)
    assert m.training and isinstance(z, np.ndarray) and z.shape == (8, 40, 50)
    np.testing.assert_allclose(torch.softmax(torch.from_numpy(z), 0).numpy(),
                               predict_dense(m, img[:, :40, :50], 9, tile=4096, softmax=True), atol=1e-6)
    with torch.no_grad():
        np.testing.assert_allclose(z, m.eval().dense_logits(torch.from_numpy(img[:, :40, :50]), 9).numpy(), atol=1e-5)
