"""3-D cone-beam CT in numpy: an ellipsoid head phantom, exact cone-beam line integrals of
it, and a ray-marching projector whose transpose is its exact adjoint.

The neural-field paper's CT case (Yu et al., Nature 2026) is 3-D cone-beam reconstruction
from 20 projections. Geometry: circular source orbit of radius ``source_dist`` (in units of
the half field of view), flat detector at ``detector_dist`` from the source, ``n_det²``
pixels covering the magnified volume. Phantom: the 3-D modified Shepp–Logan head of Kak &
Slaney ("Principles of Computerized Tomographic Imaging", ch. 3; the same ten ellipsoids
with Toft's contrasts), rotations about the z axis only. Measurements are exact chord
lengths through the ellipsoids (no voxel grid: no inverse crime), each detector pixel the
mean of ``sub²`` rays; the reconstruction's projector samples the voxel grid trilinearly
every ``step`` voxels along each ray (one sparse matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from labctl.inference.layers import Array

__all__ = ["SHEPP_LOGAN_3D", "ConeBeamProjector", "analytic_cone_sinogram",
           "breathing_ellipsoids", "volume_phantom"]

# value, semi-axes a b c, centre x0 y0 z0, rotation about z (degrees)
SHEPP_LOGAN_3D = np.array([
    [1.0, 0.69, 0.92, 0.81, 0.0, 0.0, 0.0, 0.0],
    [-0.8, 0.6624, 0.874, 0.78, 0.0, -0.0184, 0.0, 0.0],
    [-0.2, 0.11, 0.31, 0.22, 0.22, 0.0, 0.0, -18.0],
    [-0.2, 0.16, 0.41, 0.28, -0.22, 0.0, 0.0, 18.0],
    [0.1, 0.21, 0.25, 0.41, 0.0, 0.35, -0.15, 0.0],
    [0.1, 0.046, 0.046, 0.05, 0.0, 0.1, 0.25, 0.0],
    [0.1, 0.046, 0.046, 0.05, 0.0, -0.1, 0.25, 0.0],
    [0.1, 0.046, 0.023, 0.05, -0.08, -0.605, 0.0, 0.0],
    [0.1, 0.023, 0.023, 0.02, 0.0, -0.606, 0.0, 0.0],
    [0.1, 0.023, 0.046, 0.02, 0.06, -0.605, 0.0, 0.0],
])


def _axes(n: int) -> Array:
    return np.asarray((np.arange(n) - (n - 1) / 2) / (n / 2), dtype=np.float64)


def volume_phantom(ellipsoids: Array, n: int, supersample: int = 2) -> Array:
    """The phantom volume-averaged on an ``n³`` grid (``supersample³`` points per voxel),
    indexed ``[z, y, x]``, values in [0, 1]."""
    m = n * supersample
    c = _axes(m)
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    vol = np.zeros((m, m, m))
    for val, a, b, cc, x0, y0, z0, deg in ellipsoids:
        t = np.deg2rad(deg)
        xr = (x - x0) * np.cos(t) + (y - y0) * np.sin(t)
        yr = -(x - x0) * np.sin(t) + (y - y0) * np.cos(t)
        vol += val * ((xr / a) ** 2 + (yr / b) ** 2 + ((z - z0) / cc) ** 2 <= 1.0)
    s = supersample
    return np.clip(vol.reshape(n, s, n, s, n, s).mean(axis=(1, 3, 5)), 0.0, 1.0)


def breathing_ellipsoids(rng: np.random.Generator, *, shift: float = 0.08,
                         stretch: float = 0.06, outer_stretch: float = 0.015) -> Array:
    """Another breathing phase: the inner ellipsoids move along z (cranio-caudal, more the
    lower they sit) and stretch along z; the outer contour stretches a little along y
    (the 3-D counterpart of :func:`labctl.inference.tomography.breathing_ellipses`)."""
    e = SHEPP_LOGAN_3D.copy()
    amp = rng.uniform(0.5, 1.0) * rng.choice([-1.0, 1.0])
    z0 = e[2:, 6]
    e[2:, 6] = z0 + amp * shift * (1.0 - z0) / 2.0
    e[2:, 3] *= 1.0 + amp * stretch * rng.uniform(0.5, 1.0)
    e[:2, 2] *= 1.0 + amp * outer_stretch
    return e


@dataclass
class ConeBeamProjector:
    """Circular-orbit cone beam onto a flat ``n_det × n_det`` detector, for an ``n³``
    volume; ``A`` is ``(n_views·n_det², n³)`` sparse, line integrals in voxel units."""

    n: int
    n_views: int = 20
    n_det: int = 0
    source_dist: float = 3.0
    detector_dist: float = 6.0
    step: float = 1.0
    """Ray sample spacing, voxels."""

    def __post_init__(self) -> None:
        self.n_det = self.n_det or self.n
        self.angles = np.linspace(0.0, 2 * np.pi, self.n_views, endpoint=False)
        self.A = self._matrix()

    def rays(self, sub: int = 1) -> tuple[Array, Array]:
        """Source points and unit directions ``(n_views, n_det, n_det, sub², 3)`` (x, y, z),
        ``sub × sub`` rays spread over each detector pixel."""
        mag = self.detector_dist / self.source_dist
        half = 1.15 * mag * np.sqrt(2.0)  # covers the volume's corners, magnified
        px = 2 * half / self.n_det
        u = -half + px * (np.arange(self.n_det) + 0.5)
        o = (np.arange(sub) + 0.5) / sub - 0.5
        uu = (u[:, None] + px * o[None, :]).reshape(-1)  # n_det·sub
        du, dv = np.meshgrid(uu, uu, indexing="ij")  # u along the in-plane axis, v along z
        du = du.reshape(self.n_det, sub, self.n_det, sub).transpose(0, 2, 1, 3)
        dv = dv.reshape(self.n_det, sub, self.n_det, sub).transpose(0, 2, 1, 3)
        du = du.reshape(self.n_det, self.n_det, sub * sub)
        dv = dv.reshape(self.n_det, self.n_det, sub * sub)
        srcs, dirs = [], []
        for th in self.angles:
            src = np.array([self.source_dist * np.cos(th), self.source_dist * np.sin(th), 0.0])
            centre = src - self.detector_dist * np.array([np.cos(th), np.sin(th), 0.0])
            e_u = np.array([-np.sin(th), np.cos(th), 0.0])
            pts = (centre[None, None, None, :] + du[..., None] * e_u
                   + dv[..., None] * np.array([0.0, 0.0, 1.0]))
            d = pts - src
            srcs.append(np.broadcast_to(src, d.shape))
            dirs.append(d / np.linalg.norm(d, axis=-1, keepdims=True))
        return np.stack(srcs), np.stack(dirs)

    def _matrix(self) -> sp.csr_matrix:
        n = self.n
        src, d = self.rays(1)
        src, d = src.reshape(-1, 3), d.reshape(-1, 3)
        h = self.step * 2.0 / n
        r = np.sqrt(3.0)
        t = self.source_dist - r + h * (np.arange(int(2 * r / h) + 1) + 0.5)
        rows_l, cols_l, vals_l = [], [], []
        for i0 in range(0, len(src), 2048):  # rays in batches: bounded memory
            s, dd = src[i0:i0 + 2048], d[i0:i0 + 2048]
            p = s[:, None, :] + t[None, :, None] * dd[:, None, :]
            g = p * (n / 2) + (n - 1) / 2  # voxel coordinates (x, y, z)
            g0 = np.floor(g)
            f = g - g0
            ray = np.broadcast_to(np.arange(i0, i0 + len(s))[:, None], g.shape[:2])
            for cx in (0, 1):
                for cy in (0, 1):
                    for cz in (0, 1):
                        ix, iy, iz = g0[..., 0] + cx, g0[..., 1] + cy, g0[..., 2] + cz
                        w = ((f[..., 0] if cx else 1 - f[..., 0])
                             * (f[..., 1] if cy else 1 - f[..., 1])
                             * (f[..., 2] if cz else 1 - f[..., 2]))
                        ok = ((ix >= 0) & (ix < n) & (iy >= 0) & (iy < n) & (iz >= 0)
                              & (iz < n) & (w > 0))
                        rows_l.append(ray[ok])
                        cols_l.append(((iz[ok] * n + iy[ok]) * n + ix[ok]).astype(np.int64))
                        vals_l.append((w[ok] * self.step).astype(np.float32))
        return sp.csr_matrix((np.concatenate(vals_l), (np.concatenate(rows_l),
                                                       np.concatenate(cols_l))),
                             shape=(len(src), n**3))

    def project(self, vol: Array) -> Array:
        """Projections ``(n_views, n_det, n_det)``."""
        return np.asarray(self.A @ np.asarray(vol, np.float64).reshape(-1)).reshape(
            self.n_views, self.n_det, self.n_det)

    def adjoint(self, sino: Array) -> Array:
        """Exact transpose of :meth:`project`, volume ``(n, n, n)``."""
        return np.asarray(self.A.T @ np.asarray(sino, np.float64).reshape(-1)).reshape(
            self.n, self.n, self.n)


def analytic_cone_sinogram(ellipsoids: Array, proj: ConeBeamProjector, sub: int = 2) -> Array:
    """Exact line integrals (chord length × value, in voxel units) of the ellipsoid phantom
    along the projector's rays, each detector pixel the mean of ``sub²`` rays."""
    src, d = proj.rays(sub)
    out = np.zeros(src.shape[:-1])
    for val, a, b, c, x0, y0, z0, deg in ellipsoids:
        t = np.deg2rad(deg)
        rot = np.array([[np.cos(t), np.sin(t), 0.0], [-np.sin(t), np.cos(t), 0.0],
                        [0.0, 0.0, 1.0]])
        ax = np.array([a, b, c])
        q = ((src - np.array([x0, y0, z0])) @ rot.T) / ax
        e = (d @ rot.T) / ax
        ee = np.sum(e * e, axis=-1)
        qe = np.sum(q * e, axis=-1)
        disc = qe * qe - ee * (np.sum(q * q, axis=-1) - 1.0)
        out += val * 2.0 * np.sqrt(np.maximum(disc, 0.0)) / ee
    return out.mean(axis=-1) * (proj.n / 2)
