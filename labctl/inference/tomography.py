"""Phantoms, a parallel-beam projector and filtered back-projection, in numpy.

The sparse-view CT workload of the neural-field paper (Yu et al., Nature 2026, arXiv
2404.09613) needs a ground truth, a "previous scan" prior and a forward projector whose
adjoint is exact (the neural field is fine-tuned *through* it). The phantom is the modified
Shepp–Logan head (Shepp & Logan, IEEE Trans. Nucl. Sci. 1974; Toft's modified contrasts);
the projector sums bilinear samples along each ray as one sparse matrix, so its transpose
is the exact back-projector; FBP uses the Ram-Lak filter built in the spatial domain (Kak &
Slaney, "Principles of Computerized Tomographic Imaging", ch. 3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from labctl.inference.layers import Array

__all__ = [
    "SHEPP_LOGAN", "ParallelProjector", "analytic_sinogram", "area_phantom", "breathing_phantom",
    "deformed_phantom", "fbp", "noisy_sinogram", "psnr", "shepp_logan",
]

# (intensity, semi-axis a, semi-axis b, centre x, centre y, angle in degrees), modified
# Shepp–Logan (Toft 1996) contrasts.
SHEPP_LOGAN = np.array([
    [1.0, 0.69, 0.92, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.8740, 0.0, -0.0184, 0.0],
    [-0.2, 0.1100, 0.3100, 0.22, 0.0, -18.0],
    [-0.2, 0.1600, 0.4100, -0.22, 0.0, 18.0],
    [0.1, 0.2100, 0.2500, 0.0, 0.35, 0.0],
    [0.1, 0.0460, 0.0460, 0.0, 0.1, 0.0],
    [0.1, 0.0460, 0.0460, 0.0, -0.1, 0.0],
    [0.1, 0.0460, 0.0230, -0.08, -0.605, 0.0],
    [0.1, 0.0230, 0.0230, 0.0, -0.606, 0.0],
    [0.1, 0.0230, 0.0460, 0.06, -0.605, 0.0],
])


def _render(ellipses: Array, n: int) -> Array:
    c = (np.arange(n) - (n - 1) / 2) / (n / 2)
    x, y = np.meshgrid(c, -c)  # y up, row 0 at the top
    img = np.zeros((n, n))
    for val, a, b, x0, y0, deg in ellipses:
        t = np.deg2rad(deg)
        xr = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
        yr = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
        img += val * ((xr / a) ** 2 + (yr / b) ** 2 <= 1.0)
    return img


def area_phantom(ellipses: Array, n: int, supersample: int = 4) -> Array:
    """The ellipse phantom *area-sampled* on an ``n × n`` grid: each pixel is the mean of
    ``supersample²`` point samples inside it, so edges carry partial-volume values as a
    detector pixel would, instead of the aliased staircase of centre sampling."""
    big = _render(ellipses, n * supersample)
    return np.clip(big.reshape(n, supersample, n, supersample).mean(axis=(1, 3)), 0.0, 1.0)


def breathing_ellipses(rng: np.random.Generator, *, shift: float = 0.08,
                       stretch: float = 0.06, outer_stretch: float = 0.015) -> Array:
    """Another breathing phase of the modified Shepp–Logan head (the 4-D CT use of Yu et al.,
    where the prior is one phase and the target another): the outer contour stays, the
    inner structures move along y by up to ``shift`` (of the half field of view, more the
    lower they sit, like organs above a diaphragm) and stretch along y by up to
    ``stretch``, both drawn uniformly in [½, 1] × their maximum with a random sign; the
    outer contour stretches along y by ``outer_stretch`` (same sign)."""
    e = SHEPP_LOGAN.copy()
    amp = rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
    y0 = e[2:, 4]
    e[2:, 4] = y0 + amp * shift * (1.0 - y0) / 2.0
    e[2:, 2] *= 1.0 + amp * stretch * rng.uniform(0.5, 1.0)
    e[:2, 2] *= 1.0 + amp * outer_stretch  # the contour expands a little (chest wall)
    return e


def breathing_phantom(n: int, rng: np.random.Generator, **kw: float) -> Array:
    """:func:`breathing_ellipses`, area-sampled."""
    return area_phantom(breathing_ellipses(rng, **kw), n)


def analytic_sinogram(ellipses: Array, n: int, angles: Array, sub: int = 4) -> Array:
    """Exact line integrals of the ellipse phantom (no pixel grid: no inverse crime), in
    pixel units, for the :class:`ParallelProjector` geometry (``n`` bins one pixel apart),
    each bin the mean of ``sub`` rays across its width. Ellipse projection: Kak & Slaney,
    ch. 3, eq. (3.17)."""
    px = 2.0 / n
    s_pix = (np.arange(n) - (n - 1) / 2)[:, None] + (np.arange(sub) + 0.5) / sub - 0.5
    s = (s_pix * px)[None, :, :]
    th = np.asarray(angles, dtype=np.float64)[:, None, None]
    out = np.zeros((len(angles), n, sub))
    for rho, a, b, x0, y0, deg in ellipses:
        tp = th - np.deg2rad(deg)
        a2 = (a * np.cos(tp)) ** 2 + (b * np.sin(tp)) ** 2
        sp = s - (x0 * np.cos(th) + y0 * np.sin(th))
        inside = np.maximum(a2 - sp * sp, 0.0)
        out += 2.0 * rho * a * b * np.sqrt(inside) / a2
    return out.mean(axis=2) / px


def noisy_sinogram(sino: Array, rng: np.random.Generator, photons: float,
                   mu_per_unit_per_pixel: float) -> Array:
    """Poisson transmission noise at ``photons`` incident quanta per detector bin:
    counts ~ Poisson(I0·exp(−μ·p)), then p̂ = −ln(counts/I0)/μ (Beer–Lambert; a count of 0
    is read as 1, as a log step must). ``mu_per_unit_per_pixel`` converts one image unit
    over one pixel of path into attenuation."""
    line = np.maximum(sino, 0.0) * mu_per_unit_per_pixel
    counts = rng.poisson(photons * np.exp(-line))
    return -np.log(np.maximum(counts, 1) / photons) / mu_per_unit_per_pixel


def shepp_logan(n: int) -> Array:
    """The modified Shepp–Logan phantom on an ``n × n`` grid, values in [0, 1]."""
    return np.clip(_render(SHEPP_LOGAN, n), 0.0, 1.0)


def deformed_phantom(n: int, rng: np.random.Generator, *, shift: float = 0.06,
                     scale: float = 0.1, global_shift: float = 0.015,
                     lesion: bool = True) -> Array:
    """A "previous scan": the head moved by up to ``global_shift``, each inner ellipse moved
    and resized a little, and (``lesion``) one small feature of the current scan absent."""
    e = SHEPP_LOGAN.copy()
    e[:, 3:5] += rng.uniform(-global_shift, global_shift, 2)
    k = e.shape[0] - 2
    e[2:, 3:5] += rng.uniform(-shift, shift, (k, 2))
    e[2:, 1:3] *= 1.0 + rng.uniform(-scale, scale, (k, 2))
    e[2:, 5] += rng.uniform(-5.0, 5.0, k)
    if lesion:
        e = np.delete(e, 5, axis=0)  # the prior misses the small central blob
    return np.clip(_render(e, n), 0.0, 1.0)


def psnr(img: Array, ref: Array, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB against ``ref`` (peak 1 for the phantom)."""
    mse = float(np.mean((np.asarray(img) - np.asarray(ref)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(peak**2 / mse)


@dataclass
class ParallelProjector:
    """Parallel-beam ray sums of an ``n × n`` image at ``angles`` (radians), ``n``
    detector bins one pixel apart; ``A`` is ``(n_angles·n, n²)`` sparse."""

    n: int
    angles: Array

    def __post_init__(self) -> None:
        self.angles = np.asarray(self.angles, dtype=np.float64)
        n = self.n
        c = (n - 1) / 2
        dt = 0.5
        t = np.arange(-n / np.sqrt(2), n / np.sqrt(2) + dt, dt)
        s = np.arange(n) - c
        th = self.angles[:, None, None]
        ss = s[None, :, None]
        tt = t[None, None, :]
        # x to the right, y up; pixel (row, col) = (c − y, x + c)
        x = ss * np.cos(th) - tt * np.sin(th)
        y = ss * np.sin(th) + tt * np.cos(th)
        col, row = x + c, c - y
        shape = np.broadcast_shapes(col.shape, row.shape)
        ray = np.broadcast_to(np.arange(len(self.angles) * n).reshape(len(self.angles), n, 1),
                              shape)
        c0, r0 = np.floor(col), np.floor(row)
        fc, fr = col - c0, row - r0
        rows_l, cols_l, vals_l = [], [], []
        for dr, dc, w in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                          (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
            rr, cc = r0 + dr, c0 + dc
            ok = (rr >= 0) & (rr < n) & (cc >= 0) & (cc < n) & (w > 0)
            rows_l.append(ray[ok])
            cols_l.append((rr[ok] * n + cc[ok]).astype(np.int64))
            vals_l.append(w[ok] * dt)
        self.A = sp.csr_matrix(
            (np.concatenate(vals_l), (np.concatenate(rows_l), np.concatenate(cols_l))),
            shape=(len(self.angles) * n, n * n))

    @property
    def n_angles(self) -> int:
        return int(self.angles.size)

    def project(self, img: Array) -> Array:
        """Sinogram ``(n_angles, n)``."""
        return np.asarray(self.A @ np.asarray(img).reshape(-1)).reshape(self.n_angles, self.n)

    def adjoint(self, sino: Array) -> Array:
        """Exact transpose of :meth:`project`, image ``(n, n)``."""
        return np.asarray(self.A.T @ np.asarray(sino).reshape(-1)).reshape(self.n, self.n)


def _ramlak(n_det: int) -> Array:
    size = int(2 ** np.ceil(np.log2(2 * n_det)))
    k = np.concatenate([np.arange(0, size // 2 + 1), np.arange(size // 2 - 1, 0, -1)])
    h = np.zeros(size)
    h[0] = 0.25
    odd = k % 2 == 1
    h[odd] = -1.0 / (np.pi * k[odd]) ** 2
    return np.real(np.fft.fft(h)) * 2.0  # ×2: the kernel is for the half-angle sum below


def fbp(sino: Array, proj: ParallelProjector) -> Array:
    """Filtered back-projection over angles spanning [0, π)."""
    n_ang, n_det = sino.shape
    filt = _ramlak(n_det)
    size = filt.size
    q = np.real(np.fft.ifft(np.fft.fft(sino, size, axis=1) * filt, axis=1))[:, :n_det]
    c = (proj.n - 1) / 2
    x = np.arange(proj.n) - c
    xx, yy = np.meshgrid(x, -x)
    img = np.zeros((proj.n, proj.n))
    s_axis = np.arange(n_det) - (n_det - 1) / 2
    for th, qa in zip(proj.angles, q):
        s = xx * np.cos(th) + yy * np.sin(th)
        img += np.interp(s, s_axis, qa, left=0.0, right=0.0)
    return img * np.pi / (2 * n_ang)
