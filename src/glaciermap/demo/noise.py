"""Noise and resampling helpers: fractal (power-law) Gaussian fields, bilinear/nearest upsampling, block means."""

from __future__ import annotations

import numpy as np

# --------------------------------------------------------------------------------------------------
# noise and resampling helpers
# --------------------------------------------------------------------------------------------------


def fractal_noise(rng: np.random.Generator, shape, beta: float, stretch=(1.0, 1.0), pad: float = 1.25,
                  largest: float | None = None) -> np.ndarray:
    """Gaussian random field with power spectrum ~ k^-beta (spectral synthesis), zero mean, unit std.

    ``stretch`` = (sy, sx) scales the frequencies per axis: sx < 1 elongates features along x.
    The field is synthesised on a padded periodic grid and cropped, so opposite edges are not correlated.
    ``largest`` (cells): the spectrum is flat below the frequency 1 / (pad x largest), so a field on a grid larger
    than ``largest`` has the scales of one ``largest``-sized field repeated, not larger ones (for beta > 2 the
    variance of a power law sits in the lowest frequencies, and normalising it over a large grid would flatten
    every smaller scale). None (default): the grid's own size, the plain power law.
    """
    from scipy.fft import next_fast_len

    h, w = int(shape[0]), int(shape[1])
    hh, ww = next_fast_len(int(h * pad) + 2), next_fast_len(int(w * pad) + 2, real=True)
    ky = (np.fft.fftfreq(hh) * stretch[0]).astype(np.float32)[:, None]
    kx = (np.fft.rfftfreq(ww) * stretch[1]).astype(np.float32)[None, :]
    k2 = kx * kx + ky * ky
    if largest is not None:
        np.maximum(k2, np.float32(1.0 / (pad * float(largest))) ** 2, out=k2)
    k2[0, 0] = 1.0
    amp = np.power(k2, np.float32(-beta / 4.0))
    amp[0, 0] = 0.0
    spec = np.empty((hh, ww // 2 + 1), np.complex64)
    spec.real = rng.standard_normal((hh, ww // 2 + 1), dtype=np.float32)
    spec.imag = rng.standard_normal((hh, ww // 2 + 1), dtype=np.float32)
    spec *= amp
    f = _irfft2(spec, s=(hh, ww))[:h, :w].astype(np.float64)
    f -= f.mean()
    sd = f.std()
    return (f / (sd if sd > 0 else 1.0)).astype(np.float32)


def _irfft2(a, s):
    from scipy import fft

    return fft.irfft2(a, s=s, workers=-1)


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def _lin_axis(arr: np.ndarray, factor: int, axis: int) -> np.ndarray:
    """Linear interpolation by an integer factor along one axis, cell centres aligned, edges clamped."""
    n = arr.shape[axis]
    pos = (np.arange(n * factor) + 0.5) / factor - 0.5
    i0 = np.clip(np.floor(pos).astype(np.int64), 0, n - 1)
    i1 = np.clip(i0 + 1, 0, n - 1)
    w = np.clip(pos - i0, 0.0, 1.0).astype(np.float32)
    a0 = np.take(arr, i0, axis=axis)
    a1 = np.take(arr, i1, axis=axis)
    shp = [1] * arr.ndim
    shp[axis] = -1
    w = w.reshape(shp)
    return a0 + (a1 - a0) * w


def upsample(arr: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling by an integer factor (pixel-centre aligned)."""
    if factor == 1:
        return arr.astype(np.float32, copy=True)
    a = np.asarray(arr, np.float32)
    return _lin_axis(_lin_axis(a, factor, 0), factor, 1)


def upsample_nearest(arr: np.ndarray, factor: int) -> np.ndarray:
    return np.repeat(np.repeat(arr, factor, axis=0), factor, axis=1)


def block_mean(arr: np.ndarray, factor: int) -> np.ndarray:
    """Mean over factor x factor blocks of the last two axes (sums of strided views: fast)."""
    if factor == 1:
        return arr
    out = None
    for dy in range(factor):
        for dx in range(factor):
            v = arr[..., dy::factor, dx::factor]
            out = v.astype(np.float32, copy=True) if out is None else np.add(out, v, out=out, casting="unsafe")
    out *= np.float32(1.0 / (factor * factor))
    return out
