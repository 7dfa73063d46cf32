"""Packings of disks/spheres in a periodic cell: the .npz file format, generation, consolidation,
and the periodic cells built from them.

The file format is documented in ``docs/packing.md``. In short: ``cell`` (dim x dim, columns are
the cell vectors, m), ``pos`` (N x dim, m), ``radius`` (N, m), ``dim``, YADE's material constants
``young`` (Pa), ``poisson`` (ks/kn, as YADE's FrictMat.poisson), ``friction`` (radians),
``density`` (kg/m3), ``damping`` (NewtonIntegrator.damping), optionally ``thickness`` (2D, m),
``stress`` (dim x dim, Pa, tension positive) and the contact state ``c_ids`` (M x 2), ``c_fn``
(M, magnitude; or YADE's normalForce, M x dim), ``c_fs`` (M x dim, YADE's shearForce: force on the
second body), ``c_normal`` (M x dim, from the first body to the second). :func:`load_packing`
checks every key (docs/packing.md, "Checks at load") and refuses a bad file in one line.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from kernels import runtime
from kernels.dem_neighbors import list_capacity
from kernels.periodic_cell import PeriodicCells

log = logging.getLogger(__name__)

# defaults: the paper's Tables 4 and 9 (E = 600 MPa, rho = 2650, mu = 0.5, damping 0.1);
# ks/kn is YADE's FrictMat default (poisson = 0.25) since the paper does not state it.
DEFAULTS = dict(young=600e6, poisson=0.25, friction=math.atan(0.5), density=2650.0, damping=0.1,
                thickness=0.1)


class PackingError(ValueError):
    """A packing file or request is invalid."""


@dataclass
class Packing:
    """One periodic packing (SI units)."""

    dim: int
    cell: np.ndarray            # (dim, dim), columns are cell vectors
    pos: np.ndarray             # (N, dim)
    radius: np.ndarray          # (N,)
    young: float = DEFAULTS["young"]
    poisson: float = DEFAULTS["poisson"]
    friction: float = DEFAULTS["friction"]
    density: float = DEFAULTS["density"]
    damping: float = DEFAULTS["damping"]
    thickness: float = DEFAULTS["thickness"]
    stress: np.ndarray | None = None          # (dim, dim) tension positive, Pa
    contacts: dict | None = field(default=None, repr=False)  # c_ids, c_fn, c_fs, c_normal

    @property
    def n(self) -> int:
        return len(self.radius)

    @property
    def volume(self) -> float:
        """Cell volume (m3); in 2D area times thickness."""
        v = abs(float(np.linalg.det(self.cell)))
        return v * self.thickness if self.dim == 2 else v

    def solid_fraction(self) -> float:
        if self.dim == 2:
            return float(np.pi * np.sum(self.radius**2) / abs(np.linalg.det(self.cell)))
        return float(4.0 / 3.0 * np.pi * np.sum(self.radius**3) / abs(np.linalg.det(self.cell)))

    def mean_stress(self) -> float | None:
        """Mean stress (Pa, tension positive) of the recorded ``stress``, or None."""
        if self.stress is None:
            return None
        return float(np.trace(self.stress) / self.dim)

    def save(self, path) -> None:
        d = dict(dim=np.int64(self.dim), cell=self.cell, pos=self.pos, radius=self.radius,
                 young=self.young, poisson=self.poisson, friction=self.friction,
                 density=self.density, damping=self.damping, thickness=self.thickness)
        if self.stress is not None:
            d["stress"] = self.stress
        if self.contacts is not None:
            d.update(self.contacts)
        np.savez(path, **d)


# Largest overlap r_i + r_j - d allowed between two particles of a loaded packing, as a fraction of
# the smaller radius (nearest periodic images). The shipped packings reach 0.052 (disks1000, 2D at
# 100 kPa: the 2D contact forces act over the thickness, 0.1 m) and 0.0051 (spheres900); overlaps
# grow about linearly with the consolidation stress, so 0.25 admits disks to about 450 kPa and
# spheres to about 5 MPa (E = 600 MPa), while a radius given as a diameter or in other units than
# the positions (overlaps of 1 and more) or particles placed on top of each other are refused.
OVERLAP_TOL = 0.25
UNIT_TOL = 1e-3            # |c_normal| = 1 and a c_fn vector along c_normal, to this relative error
CONTACT_KEYS = ("c_ids", "c_fn", "c_fs", "c_normal")
SCALAR_RANGES = {   # key: (check, what is allowed)
    "young": (lambda v: v > 0, "> 0 Pa"),
    "poisson": (lambda v: v >= 0, ">= 0 (the ks/kn ratio)"),
    "friction": (lambda v: 0 <= v < math.pi / 2, "0 <= friction < pi/2 (an angle in radians)"),
    "density": (lambda v: v > 0, "> 0 kg/m3"),
    "damping": (lambda v: 0 <= v < 1, "0 <= damping < 1"),
    "thickness": (lambda v: v > 0, "> 0 m"),
}


def load_packing(path, overlap_tol: float = OVERLAP_TOL) -> Packing:
    """Read a packing .npz (ours or YADE-written with the documented keys) and check it.

    Every key is checked against the particle count and ``dim`` (docs/packing.md, "Checks at
    load"): radii > 0 and finite, positions finite, a non-singular cell, no two particles
    overlapping by more than ``overlap_tol`` of the smaller radius, contact arrays of one length M
    with pair indices in range. A :class:`PackingError` of one line names the file and the key.
    A ``c_fn`` of shape (M, dim) (YADE's ``normalForce`` vector) is read as its magnitude.
    """
    path = Path(path)
    if not path.exists():
        raise PackingError(f"packing file not found: {path}")
    try:
        z = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise PackingError(f"cannot read packing {path}: {exc}") from None
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise PackingError(f"{path}: not an .npz archive of named arrays (a packing is written by np.savez)")
    with z:
        missing = [k for k in ("cell", "pos", "radius") if k not in z.files]
        if missing:
            raise PackingError(f"packing {path} lacks keys {missing}")
        raw = {}
        for k in ("dim", "cell", "pos", "radius", "stress", *DEFAULTS, *CONTACT_KEYS):
            if k in z.files:
                try:
                    raw[k] = np.asarray(z[k])
                except Exception as exc:
                    raise PackingError(f"{path}: key '{k}': cannot be read ({exc}); arrays must be numeric") from None
    return _checked(raw, path, overlap_tol)


class _Keys:
    """The arrays of a packing file and one-line errors naming the file and key."""

    def __init__(self, raw: dict, path: Path):
        self.raw, self.path = raw, path

    def bad(self, key, msg):
        raise PackingError(f"{self.path}: key '{key}': {msg}")

    def numeric(self, key) -> np.ndarray:
        a = self.raw[key]
        if a.dtype.kind not in "biuf":
            self.bad(key, f"dtype {a.dtype} is not numeric")
        return a.astype(np.float64)

    def finite(self, key, a, what):
        ok = np.isfinite(a).all(axis=tuple(range(1, a.ndim)))      # per row
        if not np.all(ok):
            idx = np.flatnonzero(~np.atleast_1d(ok))
            self.bad(key, f"{len(idx)} {what} NaN or inf (first at {'row' if a.ndim else 'value'} {idx[0]}); must be finite")


def _checked(raw: dict, path: Path, overlap_tol: float) -> Packing:
    """The Packing of the arrays ``raw`` read from ``path``, every key checked (see load_packing)."""
    r = _Keys(raw, path)
    dim, pos, radius = _checked_particles(r)
    cell = _checked_cell(r, dim, radius)
    kw = _checked_scalars(r)
    stress = _checked_stress(r, dim)
    n = len(radius)
    contacts = _checked_contacts(raw, r.numeric, r.finite, r.bad, n, dim)
    ratio, i, j, count = max_overlap(cell, pos, radius, overlap_tol)
    if ratio > overlap_tol:
        who = f"particle {i} overlaps its own periodic image" if i == j else f"particles {i} and {j} overlap"
        raise PackingError(
            f"{r.path}: keys 'pos', 'radius': {count} overlap(s) over the tolerance, worst {who} by {ratio:.3g} of the "
            f"smaller radius; at most {overlap_tol:g} is allowed (is 'radius' a diameter, or in other units "
            f"than 'pos' and 'cell'?)")
    return Packing(dim=dim, cell=cell, pos=pos, radius=radius, stress=stress, contacts=contacts, **kw)


def _checked_particles(r: _Keys) -> tuple:
    """dim, positions (N, dim) and radii (N,) of a packing file."""
    pos = r.numeric("pos")
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        r.bad("pos", f"shape {pos.shape}; must be (N, dim) with dim 2 or 3")
    if "dim" in r.raw:
        d = r.numeric("dim")
        if d.size != 1 or float(d.reshape(-1)[0]) not in (2.0, 3.0):
            r.bad("dim", f"{r.raw['dim'].reshape(-1)[:3].tolist()}; must be 2 or 3")
        dim = int(d.reshape(-1)[0])
    else:
        dim = pos.shape[1]
    radius = r.numeric("radius")
    if radius.ndim == 2 and radius.shape[1] == 1:
        radius = radius[:, 0]
    if radius.ndim != 1 or len(radius) == 0:
        r.bad("radius", f"shape {radius.shape}; must be (N,) with N >= 1 particles")
    n = len(radius)
    r.finite("radius", radius, "radii are")
    if np.any(radius <= 0):
        idx = np.flatnonzero(radius <= 0)
        r.bad("radius", f"{len(idx)} radii <= 0 (first at particle {idx[0]}: {radius[idx[0]]:g}); radii must be > 0")
    allowed = f"({n}, {dim})" + (f" or ({n}, 3)" if dim == 2 else "")
    if pos.shape[1] != dim and not (dim == 2 and pos.shape[1] == 3):   # YADE writes 3-vectors in 2D
        r.bad("pos", f"shape {pos.shape} for dim {dim}; must be {allowed}")
    if len(pos) != n:
        r.bad("pos", f"{len(pos)} rows for {n} radii; must be {allowed}")
    pos = np.ascontiguousarray(pos[:, :dim])
    r.finite("pos", pos, "positions are")

    return dim, pos, radius


def _checked_cell(r: _Keys, dim: int, radius: np.ndarray) -> np.ndarray:
    """The (dim, dim) cell matrix: finite, not singular, wider than the largest particle."""
    cell = r.numeric("cell")
    if dim == 2 and cell.shape == (3, 3):                 # YADE's 3x3 cell: the in-plane block
        cell = cell[:2, :2]
    if cell.shape != (dim, dim):
        r.bad("cell", f"shape {cell.shape}; must be ({dim}, {dim})" + (" or (3, 3)" if dim == 2 else ""))
    if not np.all(np.isfinite(cell)):
        r.bad("cell", "contains NaN or inf; must be finite")
    lengths = np.linalg.norm(cell, axis=0)
    det = float(np.linalg.det(cell))
    if not lengths.all() or abs(det) <= 1e-9 * float(np.prod(lengths)):
        r.bad("cell", f"singular (det {det:.3g}, cell vectors of lengths {lengths.tolist()}); its columns must be "
                    f"{dim} independent cell vectors")
    width = 1.0 / np.linalg.norm(np.linalg.inv(cell), axis=1)    # distance between opposite faces
    a, big = int(np.argmin(width)), int(np.argmax(radius))
    if width[a] <= 2.0 * radius[big]:
        raise PackingError(
            f"{r.path}: keys 'cell', 'radius': the cell is {width[a]:.4g} m between its faces across axis {a}, not more "
            f"than the largest diameter {2 * radius[big]:.4g} m (particle {big}), which would touch its own periodic "
            f"image; the cell must be wider than 2 r_max (is 'radius' in other units than 'cell'?)")

    return cell


def _checked_scalars(r: _Keys) -> dict:
    """The material scalars present, each within its range (SCALAR_RANGES)."""
    kw = {}
    for k, (ok, text) in SCALAR_RANGES.items():
        if k in r.raw:
            a = r.numeric(k)
            if a.size != 1:
                r.bad(k, f"shape {a.shape}; must be a scalar")
            v = float(a.reshape(-1)[0])
            if not (math.isfinite(v) and ok(v)):
                r.bad(k, f"{v:g}; must be {text}")
            kw[k] = v

    return kw


def _checked_stress(r: _Keys, dim: int):
    """The recorded (dim, dim) stress, or None."""
    stress = None
    if "stress" in r.raw:
        stress = r.numeric("stress")
        if dim == 2 and stress.shape == (3, 3):
            stress = stress[:2, :2]
        if stress.shape != (dim, dim):
            r.bad("stress", f"shape {stress.shape}; must be ({dim}, {dim})" + (" or (3, 3)" if dim == 2 else ""))
        if not np.all(np.isfinite(stress)):
            r.bad("stress", "contains NaN or inf; must be finite")

    return stress


def _checked_contacts(raw, numeric, finite, bad, n: int, dim: int) -> dict | None:
    """The contact arrays of ``raw`` (None without ``c_ids``), checked: one length M, ids in range,
    forces finite, unit normals; a ``c_fn`` vector becomes its magnitude."""
    if "c_ids" not in raw:
        extra = [k for k in CONTACT_KEYS if k in raw]
        if extra:
            bad(extra[0], "given without 'c_ids' (the contact pairs); give all of c_ids, c_fn, c_fs, c_normal "
                          "or none")
        return None
    for k in CONTACT_KEYS[1:]:
        if k not in raw:
            bad(k, "missing; 'c_ids' needs c_fn, c_fs and c_normal of the same length")
    ids = raw["c_ids"]
    if ids.size == 0:
        ids = ids.reshape(0, 2)
    if ids.ndim != 2 or ids.shape[1] != 2:
        bad("c_ids", f"shape {ids.shape}; must be (M, 2) contact pairs")
    m = len(ids)
    if ids.dtype.kind in "f":
        if not (np.all(np.isfinite(ids)) and np.all(ids == np.round(ids))):
            bad("c_ids", "non-integer values; must be particle indices")
    elif ids.dtype.kind not in "iu":
        bad("c_ids", f"dtype {ids.dtype}; must be integer particle indices")
    ids = ids.astype(np.int64)
    out_of_range = np.flatnonzero(((ids < 0) | (ids >= n)).any(axis=1))
    if len(out_of_range):
        r = out_of_range[0]
        bad("c_ids", f"{len(out_of_range)} pair(s) out of range (first at row {r}: {ids[r].tolist()}); indices "
                     f"must be 0 <= id < {n} (the particle count)")
    same = np.flatnonzero(ids[:, 0] == ids[:, 1])
    if len(same):
        bad("c_ids", f"{len(same)} pair(s) of a particle with itself (first at row {same[0]}); id1 != id2")
    if m:
        key = np.sort(ids, axis=1)
        _, first, counts = np.unique(key, axis=0, return_index=True, return_counts=True)
        if np.any(counts > 1):
            r = int(first[np.argmax(counts > 1)])
            bad("c_ids", f"pair {ids[r].tolist()} (row {r}) is listed {int(counts.max())} times; each pair once")

    def rows(k, *shapes) -> np.ndarray:
        a = numeric(k)
        if a.size == 0 and m == 0:
            return a.reshape(0, *shapes[0][1:])
        if a.ndim == 0 or len(a) != m:
            bad(k, f"{len(a) if a.ndim else 0} rows, but 'c_ids' has {m}; contact arrays must have one row per "
                   f"contact")
        if a.shape[1:] not in [s[1:] for s in shapes]:
            bad(k, f"shape {a.shape}; must be " + " or ".join(str(s).replace("'", "") for s in shapes))
        return a

    vec = [("M", dim)] + ([("M", 3)] if dim == 2 else [])
    fs = rows("c_fs", *vec)[:, :dim]
    finite("c_fs", fs, "shear forces are")
    normal = rows("c_normal", *vec)[:, :dim]
    finite("c_normal", normal, "normals are")
    norm = np.linalg.norm(normal, axis=1)
    off = np.flatnonzero(np.abs(norm - 1.0) > UNIT_TOL)
    if len(off):
        bad("c_normal", f"{len(off)} normals not of unit length (first at row {off[0]}: |n| = {norm[off[0]]:.6g}); "
                        f"must be unit vectors from id1 to id2")
    fn = rows("c_fn", ("M",), ("M", 1), *vec)
    finite("c_fn", fn, "normal forces are")
    if fn.ndim == 2 and fn.shape[1] > 1:      # YADE's normalForce: the force on id2, along +c_normal
        width, fvec = fn.shape[1], fn[:, :dim]
        fn = np.linalg.norm(fvec, axis=1)
        along = np.einsum("ij,ij->i", fvec, normal)
        wrong = np.flatnonzero(along < (1.0 - UNIT_TOL) * fn)
        if len(wrong):
            r = wrong[0]
            bad("c_fn", f"the (M, {width}) vector (YADE's normalForce) is not along c_normal in {len(wrong)} rows "
                        f"(first at row {r}: cosine {along[r] / fn[r]:.3g}); it must be the force on id2, pointing "
                        f"from id1 to id2 (or give the magnitude, shape (M,))")
    else:
        fn = fn.reshape(m)
        neg = np.flatnonzero(fn < 0)
        if len(neg):
            bad("c_fn", f"{len(neg)} values < 0 (first at row {neg[0]}: {fn[neg[0]]:g}); c_fn is the magnitude of "
                        f"the normal force (repulsive, >= 0)")
    return {"c_ids": ids, "c_fn": fn, "c_fs": np.ascontiguousarray(fs), "c_normal": np.ascontiguousarray(normal)}


def max_overlap(cell: np.ndarray, pos: np.ndarray, radius: np.ndarray, tol: float = OVERLAP_TOL,
                max_pairs: int = 1_000_000) -> tuple[float, int, int, int]:
    """The largest overlap ``r_i + r_j - d_ij`` over the smaller radius between two particles of a
    periodic cell (nearest periodic images; a particle and its own images too), vectorised.

    Returns ``(ratio, i, j, count)``: the largest ratio (a value <= 0 when nothing overlaps), its
    pair (``i == j``: a particle and its own image) and how many pairs exceed ``tol``. Particles are
    grouped in size classes (radii within a factor 2); for each pair of classes, candidate pairs
    come from a grid of bins in fractional coordinates at least as wide as the two classes' largest
    sum of radii (3^dim neighbour bins), so the cost is about linear in N even for wide size
    distributions; ``max_pairs`` bounds the candidate pairs held at once.
    """
    n, dim = pos.shape
    inv = np.linalg.inv(cell)
    s = pos @ inv.T
    s -= np.floor(s)
    s[s >= 1.0] = 0.0
    recip = np.linalg.norm(inv, axis=1)   # |ds_a| <= |row a of inv| |d|: a distance in fractional units
    best, bi, bj, count = -np.inf, 0, 0, 0

    # a particle and its own images: lattice vectors shorter than 2 r
    kmax = np.ceil(2.0 * radius.max() * recip).astype(int)
    ks = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in kmax], indexing="ij"), -1).reshape(-1, dim)
    shortest = float(np.linalg.norm(ks[np.any(ks != 0, axis=1)] @ cell.T, axis=1).min())
    self_ratio = (2.0 * radius - shortest) / radius
    if self_ratio.max() > best:
        i = int(np.argmax(self_ratio))
        best, bi, bj, count = float(self_ratio[i]), i, i, int((self_ratio > tol).sum())

    size_class = np.floor(np.log2(radius / radius.min())).astype(np.int64)
    classes = [np.flatnonzero(size_class == c) for c in np.unique(size_class)]
    for ca, a in enumerate(classes):
        for b in classes[ca:]:
            reach = (radius[a].max() + radius[b].max()) * recip
            # the nearest image is ds - round(ds) where the cut-off is under a third of the cell (3 or
            # more bins); along the other axes (one bin) the images within the cut-off are searched
            kimg = np.floor(np.where(reach <= 1.0 / 3.0, 0.0, reach + 0.5)).astype(int)
            images = np.stack(np.meshgrid(*[np.arange(-k, k + 1) for k in kimg], indexing="ij"), -1).reshape(-1, dim)
            for i, j in _candidate_pairs(s, a, b, reach, a is b, max_pairs):
                ds = s[j] - s[i]
                ds -= np.round(ds)
                dist = np.min([np.linalg.norm((ds + img) @ cell.T, axis=1) for img in images], axis=0)
                ratio = (radius[i] + radius[j] - dist) / np.minimum(radius[i], radius[j])
                count += int((ratio > tol).sum())
                w = int(np.argmax(ratio))
                if ratio[w] > best:
                    best, bi, bj = float(ratio[w]), int(min(i[w], j[w])), int(max(i[w], j[w]))
    return best, bi, bj, count


def _candidate_pairs(s: np.ndarray, a: np.ndarray, b: np.ndarray, reach: np.ndarray, same: bool,
                     max_pairs: int):
    """Chunks ``(i, j)`` of the pairs of particles ``a`` x ``b`` (fractional positions ``s``) in
    neighbouring bins of a grid whose bins are at least ``reach`` wide (3 or more bins along an
    axis where ``reach <= 1/3``, else one); ``same``: ``a`` is ``b``, each pair once (i < j)."""
    dim = s.shape[1]
    cap = max(3, int(np.ceil(len(b) ** (1.0 / dim))))       # about one bin per particle at most
    nb = np.where(reach <= 1.0 / 3.0, np.minimum(np.floor(1.0 / np.maximum(reach, 1e-300)), cap), 1)
    nb = nb.astype(np.int64)
    strides = np.cumprod(np.r_[1, nb[:-1]])
    bin_a = np.minimum((s[a] * nb).astype(np.int64), nb - 1)
    lin_b = np.minimum((s[b] * nb).astype(np.int64), nb - 1) @ strides
    order = b[np.argsort(lin_b, kind="stable")]
    counts = np.bincount(lin_b, minlength=int(np.prod(nb)))
    starts = np.cumsum(counts) - counts
    stencil = np.stack(np.meshgrid(*[np.arange(-1, 2)] * dim, indexing="ij"), -1).reshape(-1, dim)
    for off in np.unique(stencil % nb, axis=0):             # at most 3^dim neighbour bins
        nbin = ((bin_a + off) % nb) @ strides
        cnt, st = counts[nbin], starts[nbin]
        ends = np.cumsum(cnt)
        lo = 0
        while lo < len(a):
            base = int(ends[lo - 1]) if lo else 0
            hi = min(len(a), max(lo + 1, int(np.searchsorted(ends, base + max_pairs, side="right"))))
            c = cnt[lo:hi]
            i = np.repeat(a[lo:hi], c)
            j = order[np.arange(len(i)) - np.repeat(np.cumsum(c) - c, c) + np.repeat(st[lo:hi], c)]
            lo = hi
            if same:
                keep = i < j
                i, j = i[keep], j[keep]
            if len(i):
                yield i, j


def generate_packing(dim: int, n: int, dmin: float, dmax: float, seed: int = 0,
                     solid_fraction: float | None = None, **material) -> Packing:
    """Random non-overlapping particles (diameters uniform in [dmin, dmax]) in a cubic cell.

    Random sequential addition, largest first, at a loose ``solid_fraction`` (default 0.5 in 2D,
    0.3 in 3D). The result has no contacts and no stress: consolidate it with :func:`consolidate`.
    """
    if dim not in (2, 3):
        raise PackingError(f"dim must be 2 or 3, got {dim}")
    if not (0 < dmin <= dmax):
        raise PackingError(f"need 0 < dmin <= dmax, got {dmin}, {dmax}")
    if n < 2:
        raise PackingError("need at least 2 particles")
    rng = np.random.default_rng(seed)
    radius = np.sort(rng.uniform(dmin, dmax, n))[::-1] / 2.0
    phi = solid_fraction or (0.5 if dim == 2 else 0.3)
    vs = np.pi * radius**2 if dim == 2 else 4.0 / 3.0 * np.pi * radius**3
    side = (vs.sum() / phi) ** (1.0 / dim)
    dense = (vs.sum() / (0.8 if dim == 2 else 0.6)) ** (1.0 / dim)
    if dense < 2.0 * dmax:
        raise PackingError(f"{n} particles make a dense cell of about {dense:.4g} m, less than two "
                           f"largest diameters; use more particles")
    pos = np.zeros((n, dim))
    for i in range(n):  # set-up only: each try is one vectorised overlap test
        for _ in range(20000):
            p = rng.uniform(0.0, side, dim)
            d = pos[:i] - p
            d -= side * np.round(d / side)
            if i == 0 or np.all((d**2).sum(axis=1) >= (radius[:i] + radius[i]) ** 2):
                pos[i] = p
                break
        else:
            raise PackingError(f"could not place particle {i}; lower solid_fraction ({phi})")
    perm = rng.permutation(n)
    kw = {**DEFAULTS, **material}
    return Packing(dim=dim, cell=np.eye(dim) * side, pos=pos[perm], radius=radius[perm].copy(), **kw)


def consolidate(packing: Packing, p0: float = 100e3, friction: float | None = None,
                tol: float = 0.01, stress_tol: float = 0.01, max_steps: int = 400_000,
                gain: float = 2e-5, max_rate: float = 1e-4, check_every: int = 200,
                max_contacts: int | None = None, progress=None) -> Packing:
    """Isotropic consolidation to mean stress ``p0`` (Pa, compression positive) with a servo.

    Each axis of the cell is strain-rate controlled (``PeriodicCells.servo``) towards
    ``sigma = -p0 I`` (shear stresses to zero), with contact friction ``friction`` (radians; default the packing's)
    during consolidation. It ends when every ``|sigma_aa + p0| < stress_tol p0`` and YADE's
    unbalanced-force ratio is under ``tol``; then the packing's friction is restored. Returns a new
    packing with positions, cell, stress and contact state. Raises PackingError if ``max_steps``
    is reached.
    """
    cells = cells_from_packings([packing], 1, contacts=False, max_contacts=max_contacts)
    fr = packing.friction if friction is None else friction
    cells.tan_phi.fill(math.tan(fr))
    dim = packing.dim
    cells.target.from_numpy((-p0 * np.eye(dim))[None].astype(runtime.np_real()))
    cells.mask.from_numpy(np.ones((1, dim, dim), np.int32))  # shear stresses servoed to zero
    done = 0
    servo_every = 10
    unb = sig = None
    while done < max_steps:
        for _ in range(check_every // servo_every):
            cells.step(servo_every)
            cells.measure()
            cells.servo(gain, max_rate, p0, 0.0)
        done += check_every
        cells.check_capacity()
        sig = cells.stress.to_numpy()[0]
        unb = float(cells.unbalanced.to_numpy()[0])
        err = np.abs(0.5 * (sig + sig.T) + p0 * np.eye(dim)).max() / p0
        if progress is not None:
            progress(done, sig, unb)
        if err < stress_tol and unb < tol:
            break
    else:
        raise PackingError(f"consolidation did not converge in {max_steps} steps "
                           f"(stress {np.diag(sig)}, unbalanced {unb:.3g})")
    log.info("consolidated to p0=%.4g Pa in %d steps (unbalanced %.3g)", p0, done, unb)
    # at rest: forces consistent with the saved positions (shear forces only rotated to the
    # current normals, which the next step would do anyway)
    cells.L.fill(0.0)
    cells.w.fill(0.0)
    cells.omega.fill(0.0)
    cells.lists.update()
    cells.contacts.compute()
    out = packing_from_cells(cells, 0, packing)
    return replace(out, friction=packing.friction)


def cells_from_packings(packings: list[Packing], n_cells: int, contacts: bool = True,
                        max_contacts: int | None = None, dt_safety: float = 0.3,
                        skin_factor: float = 0.3, first_cell: int = 0) -> PeriodicCells:
    """Build ``n_cells`` cells from ``packings`` (cell ``c`` uses ``packings[(first_cell + c) % len]``).

    With ``contacts`` the packings' saved contact state (shear forces) is restored. Without
    ``max_contacts``, dense packings get a capacity from their lists (``dem_neighbors.list_capacity``).
    """
    dims = {p.dim for p in packings}
    if len(dims) != 1:
        raise PackingError(f"template packings mix dimensions {sorted(dims)}")
    dim = dims.pop()
    nt = len(packings)
    max_p = max(p.n for p in packings)
    if max_contacts is None and contacts:
        max_contacts = list_capacity(packings, skin_factor)        # None: the defaults
    cells = PeriodicCells(n_cells, max_p, dim, max_contacts=max_contacts)
    tid = (np.arange(n_cells) + first_cell) % nt
    h = np.stack([p.cell for p in packings])[tid]
    x = np.zeros((nt, max_p, dim))
    r = np.zeros((nt, max_p))
    for t, p in enumerate(packings):
        x[t, :p.n] = p.pos
        r[t, :p.n] = p.radius
    cst = {k: np.array([getattr(p, k) for p in packings])[tid]
           for k in ("density", "young", "poisson", "friction", "damping", "thickness")}
    cells.load(h, x[tid], r[tid], np.array([p.n for p in packings])[tid],
               density=cst["density"], young=cst["young"], ratio=cst["poisson"],
               tan_phi=np.tan(cst["friction"]), damping=cst["damping"],
               thickness=cst["thickness"], dt_safety=dt_safety, skin_factor=skin_factor)
    if contacts:
        parts = []
        for t, p in enumerate(packings):
            if p.contacts is None or len(p.contacts["c_ids"]) == 0:
                continue
            cs = np.nonzero(tid == t)[0]
            ids = p.contacts["c_ids"]
            m = len(ids)
            parts.append((np.repeat(cs, m), np.tile(ids[:, 0], len(cs)), np.tile(ids[:, 1], len(cs)),
                          np.tile(p.contacts["c_fs"], (len(cs), 1)),
                          np.tile(p.contacts["c_normal"], (len(cs), 1))))
        if parts:
            cc, ii, jj, fs, nn = (np.concatenate(a) for a in zip(*parts))
            k = cells.image_of(cc, ii, jj)
            miss = cells.set_contact_state(cc, ii, jj, k, fs, nn)
            if miss:
                log.warning("%d saved contacts were not found in the neighbour lists", miss)
    cells.contacts.compute()  # forces of the initial state (no motion: L = 0, velocities 0)
    return cells


def packing_from_cells(cells: PeriodicCells, c: int, template: Packing) -> Packing:
    """The state of cell ``c`` as a Packing (positions wrapped, contact state, measured stress)."""
    cells.measure()
    n = int(cells.npart.to_numpy()[c])
    h = cells.h.to_numpy()[c].astype(np.float64)
    s = cells.s.to_numpy()[c, :n].astype(np.float64)
    s -= np.floor(s)
    ca = cells.contact_arrays(c)
    return replace(template, cell=h, pos=s @ h.T, radius=cells.radius.to_numpy()[c, :n].astype(np.float64),
                   stress=cells.stress.to_numpy()[c].astype(np.float64),
                   contacts={"c_ids": ca["ids"], "c_fn": ca["fn"], "c_fs": ca["fs"],
                             "c_normal": ca["normal"]})


def prepare_templates(packings: list[Packing], p0_default: float = 100e3) -> tuple[list[Packing], list[str]]:
    """Packings ready for use: those without contact state are re-consolidated to their stress.

    Returns the packings and one line per packing saying what was done.
    """
    out, notes = [], []
    for t, p in enumerate(packings):
        if p.contacts is not None and len(p.contacts["c_ids"]) > 0:
            out.append(p)
            notes.append(f"template {t}: contact state restored ({len(p.contacts['c_ids'])} contacts)")
        else:
            ms = p.mean_stress()
            p0 = -ms if ms is not None and ms < 0 else p0_default
            out.append(consolidate(p, p0=p0))
            notes.append(f"template {t}: no contact state, re-consolidated to p0 = {p0:.6g} Pa")
        log.info(notes[-1])
    return out, notes
