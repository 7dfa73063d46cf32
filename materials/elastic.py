"""Linear isotropic elasticity (tension positive, Pa).

Pure Taichi functions; no fields, no state.
"""
import taichi as ti

from materials.params import Param, ParamSchema


def _rules(p: dict) -> list:
    bad = [] if p["E"] > 0 else [("E", "is out of range (allowed: > 0 Pa)")]
    return bad + ([] if -1.0 < p["nu"] < 0.5 else [("nu", "is out of range (allowed: -1 < nu < 0.5)")])


SCHEMA = ParamSchema("elastic", params=(Param("E", "Pa", 2e7, (1e3, 1e12)), Param("nu", "-", 0.2, (-0.99, 0.499))),
                     presets={"original": {"E": 2e7, "nu": 0.2}}, rules=_rules)


def lame(E: float, nu: float) -> tuple[float, float]:
    """Lame constants (lambda, mu) in Pa from Young's modulus E (Pa) and Poisson's ratio nu."""
    return E * nu / ((1.0 + nu) * (1.0 - 2.0 * nu)), E / (2.0 * (1.0 + nu))


def constrained_modulus(E: float, nu: float, plane_stress: bool = False) -> float:
    """P-wave modulus (Pa) governing the explicit stable time step."""
    if plane_stress:
        return E / (1.0 - nu * nu)
    return E * (1.0 - nu) / ((1.0 + nu) * (1.0 - 2.0 * nu))


@ti.func
def plane_stress_strain(deps, lam, mu):
    """``deps`` with its zz component set so that the zz stress increment vanishes."""
    d = deps
    d[2, 2] = -lam / (lam + 2.0 * mu) * (d[0, 0] + d[1, 1])
    return d


@ti.func
def stress_increment(deps, lam, mu):
    """Stress increment (3x3, Pa) for a strain increment ``deps`` (3x3, tension positive)."""
    tr = deps[0, 0] + deps[1, 1] + deps[2, 2]
    ds = 2.0 * mu * deps
    for k in ti.static(range(3)):
        ds[k, k] += lam * tr
    return ds
