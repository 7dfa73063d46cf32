"""Enhanced IME (spec §8; paper Eq. 53, Tables 12, 14) as Taichi functions.

Inside: compression positive, Pa. State ``st = (eps_s^p, eps_v^p)`` ([A13]: eps_v^p compression
positive; [A14]: eps_s^p accumulated). Yield ``f = C_p p + q - H - sigma_y0`` with
``H = A (eps0 + eps_s)^B + C (eps0p + eps_v)^D``; potential slope ``dg/dp = C_d + C_p``;
``E = E0 (1 + eps_v)^nE`` frozen within a sub-increment. Bases of powers floored at 1e-12 [A15].
"""
import taichi as ti

from materials.csuh import A_DELTA, A_P0, A_PMIN, A_QTOL
from materials.csuh_integrator import I_QTOL, eye3, invariants, unit_nq
from materials.params import INTEGRATOR_OPTIONS, Param, ParamSchema, poisson_rule

# Original set (Table 13); bounds spec §10 [A19]: nu in [0.1, 0.5], the signed exponents in [-5, 5],
# the others within a factor 100 of the Original value.
_ORIGINAL = dict(E0=2e7, nu=0.2, A=3e5, B=0.2, eps0=0.02, sigma_y0=1e4, Cd=0.1, Cp=-0.1, C=3e5, D=0.2,
                 eps0p=0.02, nE=0.1)
_UNITS = dict(E0="Pa", A="Pa", sigma_y0="Pa", C="Pa")


def _bounds(k: str, v: float) -> tuple[float, float]:
    if k == "nu":
        return (0.1, 0.5)
    return (-5.0, 5.0) if k in ("Cp", "Cd", "B", "D", "nE") else (v / 100.0, v * 100.0)


def _rules(p: dict) -> list:
    return ([("E0", "must be > 0")] if p["E0"] <= 0 else []) + poisson_rule(p)


SCHEMA = ParamSchema(
    "ime", params=tuple(Param(k, _UNITS.get(k, "-"), v, _bounds(k, v)) for k, v in _ORIGINAL.items()),
    options=INTEGRATOR_OPTIONS,
    presets={"original": dict(_ORIGINAL),
             "optimised": dict(E0=4.81e8, nu=0.216, A=34.5, B=-2.23, eps0=2.79e-2, sigma_y0=5.17e-6, Cd=0.155,
                               Cp=-0.512, C=8.35e-5, D=0.424, eps0p=8.83e-4, nE=-3.54)},      # Table 14
    rules=_rules)

_E, _NU, _A, _B, _EPS0, _SY0, _CD, _CPP, _CC, _DD, _EPS0P, _NE = range(4, 16)
N_CONST = 16
BASE_FLOOR = 1e-12


@ti.data_oriented
class IME:
    """Enhanced IME physics (no static options)."""

    name = "ime"
    param_names = SCHEMA.names
    state_names = ("eps_s", "eps_v")
    stress_scale = 1.0
    n_const = N_CONST

    def lode_constants(self, params: dict) -> tuple[float, float, float]:
        """(M0, k0, dk/dM) of the exponential Lode form (host side); zeros where unused."""
        return 0.0, 0.0, 0.0

    def __init__(self, **_):
        pass

    @ti.func
    def constants(self, P, A):
        return ti.Vector([A[A_DELTA], A[A_PMIN], A[A_QTOL], A[A_P0],
                          P[0], P[1], P[2], P[3], P[4], P[5], P[6], P[7], P[8], P[9], P[10], P[11]])

    @ti.func
    def initial_state(self, C):
        return ti.Vector([0.0, 0.0])

    @ti.func
    def elastic(self, sig, st, C):
        E = C[_E] * ti.max(1.0 + st[1], BASE_FLOOR) ** C[_NE]
        nu = C[_NU]
        return E / (3.0 * (1.0 - 2.0 * nu)), E / (2.0 * (1.0 + nu))

    @ti.func
    def wave(self, sig, st, C):
        K, G = self.elastic(sig, st, C)
        return K + 4.0 * G / 3.0

    @ti.func
    def hardening(self, st, C):
        bs = ti.max(C[_EPS0] + st[0], BASE_FLOOR)
        bv = ti.max(C[_EPS0P] + st[1], BASE_FLOOR)
        return C[_A] * bs ** C[_B] + C[_CC] * bv ** C[_DD]

    @ti.func
    def yield_value(self, sig, st, C):
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        return C[_CPP] * p + q - self.hardening(st, C) - C[_SY0]

    @ti.func
    def volume_update(self, st, dev, frac):
        return st

    @ti.func
    def flow(self, sig, st, C):
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        nq = unit_nq(sh, hq)
        nf = C[_CPP] / 3.0 * eye3() + nq
        cg = C[_CD] + C[_CPP]
        ng = cg / 3.0 * eye3() + nq
        bs = ti.max(C[_EPS0] + st[0], BASE_FLOOR)
        raw_v = C[_EPS0P] + st[1]
        bv = ti.max(raw_v, BASE_FLOOR)
        hs = C[_A] * C[_B] * bs ** (C[_B] - 1.0)
        hv = ti.select(raw_v > BASE_FLOOR, C[_CC] * C[_DD] * bv ** (C[_DD] - 1.0), 0.0)
        qpos = ti.select(hq, 1.0, 0.0)
        return nf, ng, hs * qpos + hv * cg, ti.Vector([qpos, cg])

    @ti.func
    def diagnostics(self, sig, st, C):
        """(p, q, f, H, E)."""
        p, q, s, sh, om, hq = invariants(sig, C[I_QTOL])
        K, G = self.elastic(sig, st, C)
        return ti.Vector([p, q, self.yield_value(sig, st, C), self.hardening(st, C),
                          9.0 * K * G / (3.0 * K + G)])


DIAGNOSTICS = ("p", "q", "f", "H", "E")
