"""CSUH with chi = 0 (spec §2-§4; paper Eqs. 6-14, 19-33) as Taichi functions.

Inside: compression positive, kPa. State per point ``st = (e, H)``. Parameters in the order of
``SCHEMA.names``; the constants vector ``C`` (see :meth:`CSUH.constants`) carries the derived
quantities ``p_s``, ``c_p``, ``k_f``, ``r``, ``k``, ``rho`` and the run constants.
"""
import taichi as ti

from materials import lode as _lode
from materials.csuh_integrator import (I_P0, I_PMIN, I_QTOL, camclay_moduli, eye3, invariants, q_domega,
                                      unit_nq)
from materials.params import CAMCLAY, INTEGRATOR_OPTIONS, P_MIN, Option, ParamSchema, camclay_rules

LODE_FORMS = ("exp", "two-anchor", "ts", "none")


def _rules(p: dict) -> list:
    return camclay_rules(p) + ([("m", "must be >= 0")] if p["m"] < 0 else [])


SCHEMA = ParamSchema(
    "csuh", params=tuple(CAMCLAY[k] for k in ("kappa", "lambda", "N", "Z", "m", "nu", "e0", "M")),
    options=(Option("lode", "choice", LODE_FORMS, "exp", static=True),
             Option("lode_grad", "choice", ("full", "frozen"), "full", static=True), P_MIN) + INTEGRATOR_OPTIONS,
    presets={"original": {k: CAMCLAY[k].default for k in ("kappa", "lambda", "N", "Z", "m", "nu", "e0", "M")},
             "optimised-2d": dict(kappa=0.162, **{"lambda": 0.223}, N=2.253, Z=0.516, m=0.635, nu=0.236, e0=0.276,
                                  M=0.792),                                             # Table 5
             "optimised-3d": dict(kappa=0.119, **{"lambda": 0.167}, N=2.653, Z=0.628, m=0.596, nu=0.249, e0=0.366,
                                  M=0.895)},                                            # Table 10
    rules=_rules, accepts_phi=True)

# constants vector layout (after the common header 0..3)
_K, _L, _N, _Z, _MM, _NU, _E0, _M, _PS, _CP, _KF, _R, _KE, _RHO, _PX0 = range(4, 19)
N_CONST = 19
# aux (host) layout shared by all models: see kernels/stress_point.py
A_DELTA, A_PMIN, A_QTOL, A_P0, A_EPSREF, A_LINEAR, A_NSUB, A_TMAX, A_M0, A_K0, A_DKDM = range(11)
N_AUX = 11


def host_aux(params: dict) -> tuple[float, float, float]:
    """(M0, k0, dk/dM) of the exponential Lode form for this parameter set."""
    return _lode.shape_constants(float(params["M"]))


@ti.data_oriented
class CSUH:
    """CSUH (chi = 0) physics with its static options bound at construction.

    Parameters
    ----------
    lode : ``exp`` | ``two-anchor`` | ``ts`` | ``none`` (spec §4.1).
    lode_grad : ``full`` | ``frozen`` yield gradient (spec §4.4 [A5]); ``ts`` always uses ``frozen``.
    """

    name = "csuh"
    param_names = SCHEMA.names
    state_names = ("e", "H")
    stress_scale = 1e-3          # Pa -> kPa
    n_const = N_CONST

    def lode_constants(self, params: dict) -> tuple[float, float, float]:
        """(M0, k0, dk/dM) of the exponential Lode form (host side); zeros where unused."""
        return host_aux(params)

    def __init__(self, lode: str = "exp", lode_grad: str = "full", **_):
        if lode not in LODE_FORMS:
            raise ValueError(f"lode must be one of {', '.join(LODE_FORMS)}, got {lode!r}")
        self.lode = lode
        self.full_grad = lode_grad == "full" and lode in ("exp", "two-anchor")

    # ------------------------------------------------------------------ constants
    @ti.func
    def constants(self, P, A):
        kap, lam, N, Z, m, nu, e0, M = P[0], P[1], P[2], P[3], P[4], P[5], P[6], P[7]
        ps = ti.exp((N - Z) / lam) - 1.0
        cp = (lam - kap) / (1.0 + e0)
        kf = M * M / (12.0 * (3.0 - M))
        r = 1.0 + M / 3.0
        k = A[A_K0] + A[A_DKDM] * (M - A[A_M0])
        rho = r ** (1.0 / k)
        return ti.Vector([A[A_DELTA], A[A_PMIN], A[A_QTOL], A[A_P0],
                          kap, lam, N, Z, m, nu, e0, M, ps, cp, kf, r, k, rho, A[A_P0]])

    @ti.func
    def initial_state(self, C):
        return ti.Vector([C[_E0], 0.0])

    # ------------------------------------------------------------------ pieces
    @ti.func
    def alpha(self, p, q, om, C):
        """TS factor alpha = q~/q and d alpha / d omega for the bound Lode option."""
        a, da = 1.0, 0.0
        if ti.static(self.lode == "exp"):
            a, da = _lode.alpha_exp(om, C[_R], C[_KE])
        elif ti.static(self.lode == "two-anchor"):
            a, da = _lode.alpha_two_anchor(om, C[_R])
        elif ti.static(self.lode == "ts"):
            a, da = _lode.alpha_ts(p, q, om)
        return a, da

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
        a, da = self.alpha(p, q, om, C)
        qt = a * q
        ps = C[_PS]
        B = qt * qt / (C[_M] * C[_M] * ph * (ph + ps))
        return ti.log((ph + ps) / (C[_PX0] + ps)) + ti.log(1.0 + B) - st[1] / C[_CP]

    @ti.func
    def volume_update(self, st, dev, frac):
        return ti.Vector([st[0] - (1.0 + st[0]) * frac * dev, st[1]])

    @ti.func
    def state_variables(self, ph, eta, e, C):
        """xi, R, M_f, M_c at (p^, eta~, e) (spec §4.3)."""
        lam, kap, M, ps = C[_L], C[_K], C[_M], C[_PS]
        e_eta = C[_Z] - lam * ti.log((ph + ps) / (1.0 + ps)) \
            - (lam - kap) * ti.log(((1.0 + eta * eta / (M * M)) * ph + ps) / (ph + ps))
        xi = e_eta - e
        R = ti.exp(ti.min(ti.max(-xi / (lam - kap), -80.0), 80.0))
        Mc = M * ti.exp(ti.min(ti.max(-C[_MM] * xi, -80.0), 80.0))
        x = C[_KF] / R
        Mf = 6.0 * x / (ti.sqrt(x * (1.0 + x)) + x)
        return xi, R, Mf, Mc

    @ti.func
    def flow(self, sig, st, C):
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        ph = ti.max(p, C[I_PMIN])
        a, da = self.alpha(p, q, om, C)
        qt = a * q
        eta = qt / ph
        M, ps = C[_M], C[_PS]
        xi, R, Mf, Mc = self.state_variables(ph, eta, st[0], C)
        B = qt * qt / (M * M * ph * (ph + ps))
        fp = 1.0 / (ph + ps) - B * (2.0 * ph + ps) / (ph * (ph + ps) * (1.0 + B))
        fq = 2.0 * qt / (M * M * ph * (ph + ps) * (1.0 + B))
        nq = unit_nq(sh, hq)
        tq = nq
        if ti.static(self.full_grad):
            tq = a * nq + da * q_domega(sh, om, hq)
        nf = fp / 3.0 * eye3() + fq * tq
        mc2, e2 = Mc * Mc, eta * eta
        gp = (mc2 - e2) / (ph * (mc2 + e2))
        gq = 2.0 * eta / (ph * (mc2 + e2))
        ng = gp / 3.0 * eye3() + gq * nq
        ogp = (Mf * Mf * Mf * Mf - e2 * e2) / (ph * (mc2 + e2) * (mc2 + e2))
        return nf, ng, ogp / C[_CP], ti.Vector([0.0, ogp])

    @ti.func
    def diagnostics(self, sig, st, C):
        """(p, q, f, xi, R, M_f, M_c, M_theta, q~) at the given state (internal units)."""
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        ph = ti.max(p, C[I_PMIN])
        a, da = self.alpha(p, q, om, C)
        xi, R, Mf, Mc = self.state_variables(ph, a * q / ph, st[0], C)
        return ti.Vector([p, q, self.yield_value(sig, st, C), xi, R, Mf, Mc, C[_M] / a, a * q])


DIAGNOSTICS = ("p", "q", "f", "xi", "R", "Mf", "Mc", "Mtheta", "q_tilde")
