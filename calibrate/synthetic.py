"""Synthetic Gauss-point data made by the integrator itself from known parameters (for checks)."""
from __future__ import annotations

import numpy as np

from kernels.stress_point import replay


def strain_paths(n_points: int, n_steps: int, amplitude: float = 2e-4, seed: int = 0) -> np.ndarray:
    """Total-strain histories (n_points, n_steps, 3, 3), tension positive: each point is loaded along
    its own random deviatoric direction (so compression, extension and intermediate Lode angles all
    occur) with a random volumetric part, unloaded from half-way and reloaded from three quarters.
    ``amplitude`` is the strain increment per step."""
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n_points, 3, 3))
    D = 0.5 * (A + np.swapaxes(A, 1, 2))
    D -= np.trace(D, axis1=1, axis2=2)[:, None, None] / 3.0 * np.eye(3)
    D /= np.linalg.norm(D, axis=(1, 2))[:, None, None]
    vol = rng.uniform(-0.4, 0.1, n_points)[:, None, None] * np.eye(3)      # mostly compressive
    direction = amplitude * (D + vol)
    k = np.arange(n_steps)
    sign = np.where(k < n_steps // 2, 1.0, np.where(k < 3 * n_steps // 4, -1.0, 1.0))
    return np.cumsum(sign[None, :, None, None] * direction[:, None], axis=1)


def synthetic_dataset(model: str, params: dict, n_points: int = 32, n_steps: int = 60, p0: float = 100e3,
                      amplitude: float = 2e-4, seed: int = 0, options: dict | None = None) -> dict:
    """Strain paths and the stresses the integrator gives for ``params`` (a dataset dict, 3D)."""
    strain = strain_paths(n_points, n_steps, amplitude, seed)
    stress = replay(strain, p0, model, params, options)
    return {"strain": strain, "stress": stress, "p0": p0, "kinematics": "3d", "step": np.arange(1, n_steps + 1)}
