"""Stress and strain invariants of tension-positive tensors (numpy), in one place.

Inputs are tension positive (the engine's convention across modules); the invariants returned are
geotechnical, compression positive: ``p`` mean stress (Pa), ``q`` deviator stress (Pa), ``eps_v``
volumetric strain, ``eps_s`` deviatoric strain.
"""
from __future__ import annotations

import numpy as np


def p_q_3d(stress: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(p, q) of stresses (..., 3, 3): p = -tr(sigma)/3, q = sqrt(3/2 s:s) (Pa, compression +)."""
    sc = -np.asarray(stress)
    p = np.trace(sc, axis1=-2, axis2=-1) / 3.0
    s = sc - p[..., None, None] * np.eye(3)
    q = np.sqrt(1.5 * np.sum(s * s, axis=(-2, -1)))
    return p, q


def stress_strain(stress: np.ndarray, strain: np.ndarray) -> dict[str, np.ndarray]:
    """``p``, ``q`` (Pa), ``eps_v = -tr(eps)`` and ``eps_s = sqrt(2/3 e:e)`` of tensors (..., 3, 3)."""
    p, q = p_q_3d(stress)
    ev = np.trace(strain, axis1=-2, axis2=-1)
    e = strain - ev[..., None, None] / 3.0 * np.eye(3)
    es = np.sqrt(2.0 / 3.0 * np.einsum("...ij,...ij->...", e, e))
    return {"p": p, "q": q, "eps_v": -ev, "eps_s": es}


def p_q_cell(stress: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean stress ``p`` and deviator ``q`` (Pa, compression positive) of cell stresses (..., dim, dim).

    The symmetric part is used. ``p = -tr(sigma) / dim`` (2D: the in-plane mean). ``q``: 3D
    ``sqrt(3 J2)`` (= sigma_a - sigma_r in a triaxial test); 2D the difference of the in-plane
    principal stresses, ``sqrt((s11 - s22)^2 + 4 s12^2)``.
    """
    s = 0.5 * (stress + np.swapaxes(stress, -1, -2))
    if dim == 3:
        return p_q_3d(s)
    p = -np.trace(s, axis1=-2, axis2=-1) / 2.0
    q = np.sqrt((s[..., 0, 0] - s[..., 1, 1]) ** 2 + 4.0 * s[..., 0, 1] ** 2)
    return p, q
