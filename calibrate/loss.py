"""Calibration loss (paper Eqs. 17-18, spec/constitutive.md section 10).

    L_tot = sum_R (s_hat - s_rve)^2 / sum_R s_rve^2  +  gamma * sum_i [max(0, l_i - phi_i) + max(0, phi_i - u_i)] / (u_i - l_i)

R = (points) x (retained steps) x (components): in-plane {11, 22, 12} for 2D data, the six
independent components {11, 22, 33, 23, 13, 12} for 3D data, each once. Stresses in Pa; the loss
is dimensionless. gamma(t) = gamma_max (gamma_min / gamma_max)^(t / t_tot).
"""
from __future__ import annotations

import numpy as np
import torch

COMPONENTS_2D = ((0, 0), (1, 1), (0, 1))
COMPONENTS_3D = ((0, 0), (1, 1), (2, 2), (1, 2), (0, 2), (0, 1))


def components(kinematics: str) -> tuple:
    """Independent stress components of the misfit for a dataset's kinematics."""
    return COMPONENTS_3D if kinematics == "3d" else COMPONENTS_2D


def component_mask(kinematics: str) -> np.ndarray:
    """(3, 3) 0/1 mask selecting each independent component once."""
    m = np.zeros((3, 3))
    for i, j in components(kinematics):
        m[i, j] = 1.0
    return m


def misfit(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
           weights: torch.Tensor | None = None) -> torch.Tensor:
    """Normalised stress misfit (Eq. 17): sum(mask (pred - target)^2) / sum(mask target^2).

    ``mask`` broadcasts against (n_points, n_steps, 3, 3): components (with their weights) x retained
    steps; ``weights`` (n_points,) weighs each point in both sums (None: all 1, the paper's Eq. 17).
    """
    if weights is None:
        return (mask * (pred - target) ** 2).sum() / (mask * target**2).sum()
    w = weights[:, None, None, None] * mask
    return (w * (pred - target) ** 2).sum() / (w * target**2).sum()


def bound_penalty(phi: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor, kind: str = "linear") -> torch.Tensor:
    """Range-normalised bound violation summed over parameters (linear hinge, or squared)."""
    v = (torch.relu(lower - phi) + torch.relu(phi - upper)) / (upper - lower)
    return (v**2).sum() if kind == "squared" else v.sum()


def gamma_schedule(epoch: int, epochs: int, gamma_max: float, gamma_min: float) -> float:
    """Exponential decay of the penalty weight from gamma_max (epoch 0) to gamma_min (last epoch)."""
    t = epoch / max(epochs - 1, 1)
    return gamma_max * (gamma_min / gamma_max) ** t
