"""Where the optimisers move: the map from optimisation variables x to a model's parameters phi.

``paper`` (Section 2.3.2, Eq. 18): phi = phi0 * W with W from 1; the bound penalty keeps phi near the
Table 1 box but does not forbid leaving it, and a step can reach impossible values (e0 < 0).

``bounded`` (the default): each parameter is a sigmoid of its variable between its Table 1 bounds,
phi_i = lo_i + (hi_i - lo_i) s(z_i) (on a log scale when the box spans a decade or more of positive
values), so every x is inside the box, the penalty is zero and no optimiser step can leave the
physical set. Couplings that the box alone does not enforce (``lambda > kappa`` of the Cam-clay
family) move the lower bound of the dependent parameter: lo_lambda = max(lo, kappa (1 + 1e-6)).
"""
from __future__ import annotations

import logging

import numpy as np
import torch

log = logging.getLogger(__name__)

PARAMETRISATIONS = ("bounded", "paper")
ABOVE = {"lambda": "kappa"}     # parameter -> the parameter it must exceed (materials.params.camclay_rules)
EDGE = 1e-3                     # a start on or outside a bound is moved this share of the range inside


class Paper:
    """phi = phi0 * W (the paper's method); ``penalised``: the bound penalty applies."""
    penalised = True

    def __init__(self, names, phi0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor):
        self.names, self.phi0, self.lower, self.upper = tuple(names), phi0, lower, upper

    def initial(self) -> torch.Tensor:
        return torch.ones_like(self.phi0)

    def to_phi(self, x: torch.Tensor) -> torch.Tensor:
        return self.phi0 * x

    def box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Bounds of x for CMA-ES (the Table 1 box in W), or None for an unbounded x."""
        return (self.lower / self.phi0).numpy(), (self.upper / self.phi0).numpy()


class Bounded:
    """phi_i = lo_i + (hi_i - lo_i) sigmoid(z_i), linear or logarithmic in phi; never outside the box."""
    penalised = False

    def __init__(self, names, phi0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor):
        self.names, self.lower, self.upper = tuple(names), lower, upper
        self.log = ((lower > 0) & (upper >= 10 * lower)).tolist()
        self.above = {self.names.index(a): self.names.index(b) for a, b in ABOVE.items()
                      if a in self.names and b in self.names}
        self.phi0 = self._inside(phi0)

    def _inside(self, phi0: torch.Tensor) -> torch.Tensor:
        lo, hi = self.lower, self.upper
        span = hi - lo
        inside = torch.minimum(torch.maximum(phi0, lo + EDGE * span), hi - EDGE * span)
        for i in np.flatnonzero((inside != phi0).numpy()):
            log.warning("bounded parametrisation: start %s = %g moved inside its bounds [%g, %g] to %g",
                        self.names[i], float(phi0[i]), float(lo[i]), float(hi[i]), float(inside[i]))
        return inside

    def _range(self, i: int, phi: list) -> tuple:
        lo, hi = self.lower[i], self.upper[i]
        if i in self.above:
            lo = torch.maximum(lo, phi[self.above[i]] * (1 + 1e-6))
        return (torch.log(lo), torch.log(hi)) if self.log[i] else (lo, hi)

    def _order(self) -> list[int]:
        return sorted(range(len(self.names)), key=lambda i: i in self.above)

    def _value(self, i: int, z: torch.Tensor, phi: list) -> torch.Tensor:
        a, b = self._range(i, phi)
        v = a + (b - a) * torch.sigmoid(z)
        return torch.exp(v) if self.log[i] else v

    def to_phi(self, x: torch.Tensor) -> torch.Tensor:
        phi = [None] * len(self.names)
        for i in self._order():
            phi[i] = self._value(i, x[i], phi)
        return torch.stack(phi)

    def initial(self) -> torch.Tensor:
        """z of the start phi0 (moved inside the box first)."""
        z = torch.zeros_like(self.phi0)
        phi = [None] * len(self.names)
        for i in self._order():
            a, b = self._range(i, phi)
            v = torch.log(self.phi0[i]) if self.log[i] else self.phi0[i]
            s = torch.clamp((v - a) / (b - a), EDGE, 1 - EDGE)
            z[i] = torch.log(s / (1 - s))
            phi[i] = self._value(i, z[i], phi)
        return z

    def box(self) -> None:
        return None


def make(kind: str, names, phi0: torch.Tensor, lower: torch.Tensor, upper: torch.Tensor):
    """The parametrisation ``kind`` (``bounded`` or ``paper``) of a start ``phi0`` and its box."""
    if kind not in PARAMETRISATIONS:
        raise ValueError(f"parametrisation must be one of {', '.join(PARAMETRISATIONS)}, got {kind!r}")
    return (Bounded if kind == "bounded" else Paper)(names, phi0, lower, upper)
