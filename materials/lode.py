"""Lode-angle treatment of CSUH (spec §4.1, §6): host-side shape constants and Taichi scalings.

All three options are radial scalings ``q~ = alpha(omega) q`` with ``omega = sin 3 theta``
(compression positive, +1 at triaxial compression, -1 at extension):

* ``exp`` (Eq. 33, default): ``alpha = [((1+rho) + (1-rho) omega) / 2]^k``, ``rho = r^(1/k)``;
* ``two-anchor`` (Eq. 27): ``alpha = ((1+r) + (1-r) omega) / 2``;
* ``ts`` (Eq. 19): ``alpha = q_c / q`` of the SMP transformed stress;
* ``none``: ``alpha = 1``.

``r = 1 + M/3`` and ``k(M)`` (anchor ``M_theta(0) = M_ts(0)``) are per-parameter-set scalars computed
here in float64; kernels receive ``(M0, k0, dk/dM)`` and use ``k = k0 + dk/dM (M - M0)``, exact in
value and first derivative at the current M (so Taichi autodiff sees dk/dM).
"""
from __future__ import annotations

import math

import numpy as np
import taichi as ti

# --------------------------------------------------------------------------- host (float64)


def ratio_r(M: float) -> float:
    """Compression/extension ratio M_com/M_e of the SMP cone, r = 1 + M/3 (spec §6.2)."""
    return 1.0 + M / 3.0


def cone_C(M):
    """C = I1 I2 / I3 on the SMP (Matsuoka-Nakai) cone through M (spec §6.2)."""
    return (9.0 - M * M) / (1.0 - M * M / 3.0 + 2.0 * M ** 3 / 27.0)


def m_ts0(M):
    """Closed-form M_ts(theta = 0) of the SMP cone."""
    C = cone_C(M)
    return np.sqrt(3.0 * (C - 9.0) / (C - 3.0))


def _h(k, M):
    r = 1.0 + M / 3.0
    return k * np.log(2.0 / (1.0 + r ** (1.0 / k))) - np.log(m_ts0(M) / M)


def k_of_M(M: float) -> float:
    """Exponent k of Eq. 33 from the theta = 0 anchor (bisection on [0.02, 5], 60 iterations)."""
    lo, hi = 0.02, 5.0
    if not (_h(lo, M) < 0.0 < _h(hi, M)):
        raise ValueError(f"k(M): no bracket for M = {M} (valid for 0.3 <= M <= 2.9)")
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _h(mid, M) < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def dk_dM(M: float, k: float | None = None) -> float:
    """dk/dM by the implicit-function theorem, partials of h by complex step (exact to round-off)."""
    k = k_of_M(M) if k is None else k
    h = 1e-30
    h_k = _h(complex(k, h), M).imag / h
    h_M = _h(k, complex(M, h)).imag / h
    return -h_M / h_k


def shape_constants(M: float) -> tuple[float, float, float]:
    """(M0, k0, dk/dM) passed to the kernels for the ``exp`` form."""
    if not 0.3 <= M <= 2.9:
        k = k_of_M(min(max(M, 0.3), 2.9))
        return M, k, 0.0
    k = k_of_M(M)
    return M, k, dk_dM(M, k)


def m_theta(M: float, omega, form: str = "exp", k: float | None = None):
    """M_approx(theta) of Eq. 33 (``exp``) or Eq. 27 (``two-anchor``), numpy."""
    r = ratio_r(M)
    omega = np.asarray(omega, dtype=float)
    if form == "two-anchor":
        return 2.0 * M / ((1.0 + r) + (1.0 - r) * omega)
    if form == "exp":
        k = k_of_M(M) if k is None else k
        rho = r ** (1.0 / k)
        return M * (2.0 / ((1.0 + rho) + (1.0 - rho) * omega)) ** k
    raise ValueError(f"form must be exp or two-anchor, got {form!r}")


def principal_from_pq_theta(p, q, theta):
    """Principal compression-positive stresses from (p, q, theta) (spec §1)."""
    a = np.array([0.0, 2.0 * np.pi / 3.0, -2.0 * np.pi / 3.0])
    return p + 2.0 / 3.0 * q * np.cos(theta - np.pi / 6.0 - a)


def q_c_invariants(sig_c: np.ndarray) -> float:
    """q_c of Eq. 19 from the invariants of a compression-positive 3x3 stress (spec §6.1 formula)."""
    I1 = np.trace(sig_c)
    I2 = 0.5 * (I1 ** 2 - np.sum(sig_c * sig_c))
    I3 = np.linalg.det(sig_c)
    return 2.0 * I1 / (3.0 * math.sqrt((I1 * I2 - I3) / (I1 * I2 - 9.0 * I3)) - 1.0)


def m_ts_bisect(M: float, theta: float, p: float = 100.0) -> float:
    """M_ts(theta) by the paper's recipe (Eqs. 28-29): bisection on q for q_c(p, q, theta) = M p."""
    def F(q):
        return q_c_invariants(np.diag(principal_from_pq_theta(p, q, theta))) - M * p
    lo, hi = 0.0, 0.01 * p
    while F(hi) < 0.0:
        lo, hi = hi, hi * 1.5
        if hi > 100.0 * p:
            raise ValueError("m_ts_bisect: no bracket")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if F(mid) < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi) / p


def m_ts_closed(M: float, omega: float) -> float:
    """M_ts as the smallest positive root of -2C/27 w x^3 + (C/3 - 1) x^2 + (9 - C) = 0 (spec §6.2)."""
    C = cone_C(M)
    roots = np.roots([-2.0 * C / 27.0 * omega, C / 3.0 - 1.0, 0.0, 9.0 - C])
    pos = [z.real for z in roots if abs(z.imag) < 1e-9 and z.real > 0]
    return min(pos)


# --------------------------------------------------------------------------- Taichi scalings


@ti.func
def alpha_exp(omega, r, k):
    """(alpha, d alpha / d omega) of the exponential form, Eq. 33 as a TS factor M/M_theta."""
    rho = r ** (1.0 / k)
    base = 0.5 * ((1.0 + rho) + (1.0 - rho) * omega)
    a = base ** k
    return a, a * k * (1.0 - rho) / (2.0 * base)


@ti.func
def alpha_two_anchor(omega, r):
    """(alpha, d alpha / d omega) of the two-anchor form, Eq. 27."""
    return 0.5 * ((1.0 + r) + (1.0 - r) * omega), 0.5 * (1.0 - r)


@ti.func
def alpha_ts(p, q, omega):
    """alpha = q_c / q of Eq. 19, written in (p, q, omega) (regular at q = 0, where it is 1).

    With J2 = q^2/3, J3 = 2 q^3 omega / 27: I1 I2 - 9 I3 = q^2 (2p - 2 q omega / 3) and
    I1 I2 - I3 = 8p^3 - 2 p q^2 / 3 - 2 q^3 omega / 27, so
    alpha = 6p / (3 sqrt(num/den) - q). Invalid states (p <= 0, den <= 0, tensile) give 1 (spec §6.1).
    """
    num = 8.0 * p * p * p - 2.0 / 3.0 * p * q * q - 2.0 / 27.0 * q * q * q * omega
    den = 2.0 * p - 2.0 / 3.0 * q * omega
    valid = (p > 0.0) & (den > 1e-14 * ti.abs(p) + 1e-300) & (num > 0.0) \
        & (q * q * den > 27e-14 * p * p * p)
    ratio = ti.select(valid, num / ti.select(valid, den, 1.0), 1.0)
    root = ti.sqrt(ti.max(ratio, 1e-300))
    dd = 3.0 * root - q
    valid = valid & (dd > 0.0)
    return ti.select(valid, 6.0 * p / ti.select(valid, dd, 1.0), 1.0), 0.0
