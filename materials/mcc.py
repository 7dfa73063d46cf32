"""Modified Cam-Clay (spec §7; paper Eq. 54, Tables 13, 15) as Taichi functions.

Inside: compression positive, kPa; associated flow, constant M (no Lode dependence),
state ``st = (e, H)`` with ``dH = d eps_v^p``. Initial size ``p_x0``: option ``mcc_init``
``nc`` (p_x0 = p0, default) or ``ncl`` (kappa-line through (p0, e0) meets e = N - lambda ln p) [A12].
"""
import taichi as ti

from materials.csuh import A_DELTA, A_P0, A_PMIN, A_QTOL
from materials.csuh_integrator import I_P0, I_PMIN, I_QTOL, camclay_moduli, eye3, invariants, unit_nq
from materials.params import CAMCLAY, INTEGRATOR_OPTIONS, P_MIN, Option, ParamSchema, camclay_rules

SCHEMA = ParamSchema(
    "mcc", params=tuple(CAMCLAY[k] for k in ("kappa", "lambda", "N", "nu", "e0", "M")),
    options=(Option("mcc_init", "choice", ("nc", "ncl"), "nc", static=True), P_MIN) + INTEGRATOR_OPTIONS,
    presets={"original": {k: CAMCLAY[k].default for k in ("kappa", "lambda", "N", "nu", "e0", "M")}},
    rules=camclay_rules, accepts_phi=True)

_K, _L, _N, _NU, _E0, _M, _CP, _PX0 = range(4, 12)
N_CONST = 12


@ti.data_oriented
class MCC:
    """Modified Cam-Clay physics; ``mcc_init`` is ``nc`` or ``ncl``."""

    name = "mcc"
    param_names = SCHEMA.names
    state_names = ("e", "H")
    stress_scale = 1e-3
    n_const = N_CONST

    def lode_constants(self, params: dict) -> tuple[float, float, float]:
        """(M0, k0, dk/dM) of the exponential Lode form (host side); zeros where unused."""
        return 0.0, 0.0, 0.0

    def __init__(self, mcc_init: str = "nc", **_):
        if mcc_init not in ("nc", "ncl"):
            raise ValueError(f"mcc_init must be nc or ncl, got {mcc_init!r}")
        self.ncl = mcc_init == "ncl"

    @ti.func
    def constants(self, P, A):
        kap, lam, N, nu, e0, M = P[0], P[1], P[2], P[3], P[4], P[5]
        cp = (lam - kap) / (1.0 + e0)
        p0 = A[A_P0]
        px0 = p0
        if ti.static(self.ncl):
            px0 = ti.max(ti.exp((N - e0 - kap * ti.log(p0)) / (lam - kap)), p0)
        return ti.Vector([A[A_DELTA], A[A_PMIN], A[A_QTOL], p0, kap, lam, N, nu, e0, M, cp, px0])

    @ti.func
    def initial_state(self, C):
        return ti.Vector([C[_E0], 0.0])

    @ti.func
    def elastic(self, sig, st, C):
        return camclay_moduli(sig, st[0], C[_K], C[_NU], C[I_PMIN])

    @ti.func
    def wave(self, sig, st, C):
        K, G = self.elastic(sig, st, C)
        return K + 4.0 * G / 3.0

    @ti.func
    def yield_value(self, sig, st, C):
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        ph = ti.max(p, C[I_PMIN])
        eta = q / ph
        return ti.log(ph / C[_PX0]) + ti.log(1.0 + eta * eta / (C[_M] * C[_M])) - st[1] / C[_CP]

    @ti.func
    def volume_update(self, st, dev, frac):
        return ti.Vector([st[0] - (1.0 + st[0]) * frac * dev, st[1]])

    @ti.func
    def flow(self, sig, st, C):
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        ph = ti.max(p, C[I_PMIN])
        eta = q / ph
        m2, e2 = C[_M] * C[_M], eta * eta
        fp = (m2 - e2) / (ph * (m2 + e2))
        fq = 2.0 * eta / (ph * (m2 + e2))
        n = fp / 3.0 * eye3() + fq * unit_nq(sh, hq)
        return n, n, fp / C[_CP], ti.Vector([0.0, fp])

    @ti.func
    def diagnostics(self, sig, st, C):
        """(p, q, f, p_x0, p_c) with p_c the current isotropic yield pressure."""
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        return ti.Vector([p, q, self.yield_value(sig, st, C), C[_PX0], C[_PX0] * ti.exp(st[1] / C[_CP])])


DIAGNOSTICS = ("p", "q", "f", "px0", "pc")
