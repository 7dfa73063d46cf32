"""The one bridge between PyTorch and the Taichi constitutive integrator.

:class:`Surrogate` maps a parameter vector (torch, float64, order ``param_names``) to the stresses of
every point along its strain history; :class:`SurrogateStress` is the ``torch.autograd.Function``
whose backward is a vector-Jacobian product computed by Taichi reverse-mode autodiff through the
same integrator the FEM uses (``kernels.stress_point.StressPathBatch``).

Sub-steps: the integrator divides a step into T sub-increments (Eq. 16). Unrolling T inside one
differentiable kernel makes Taichi's compile time explode, so the bridge refines the strain path on
the host instead: step t is cut into k_t equal pieces, k_t being the largest T any point asks for at
that step, and each piece is integrated with one sub-increment. The point that sets k_t is integrated
exactly as the FEM would; the others with finer sub-increments. Only the stresses at the ends of the
data's steps are returned.

Memory: points are processed in chunks of ``chunk_points``; only one chunk's history (its stresses
and states at every step, with their adjoints) lives in Taichi fields at a time, so memory is
bounded by ``chunk_points x n_steps`` whatever the number of points. Cost: the forward pass runs
every chunk once; the backward pass runs each chunk's kernels' adjoints in reverse order from its
stored history, chunks from the last to the first, re-running a chunk forward first unless its
history is still in the fields (the last chunk of the forward pass). Measured in BENCHMARKS.md.
"""
from __future__ import annotations

import numpy as np
import torch

from kernels import registry
from kernels.stress_point import StressPathBatch


class Surrogate:
    """Stresses of a constitutive model along fixed strain histories, differentiable in its parameters.

    Parameters
    ----------
    model : ``csuh``, ``mcc`` or ``ime``.
    strain : (n_points, n_steps, 3, 3) total strain after each step, tension positive.
    p0 : initial mean pressure, Pa, compression positive (initial stress -p0 I).
    options : integrator options (``lode``, ``delta_r``, ``eps_ref`` ...), see docs/materials.md.
    chunk_points : points per Taichi batch (bounds memory; one batch is compiled once and reused).
    """

    def __init__(self, model: str, strain: np.ndarray, p0: float, options: dict | None = None,
                 chunk_points: int = 256, params: dict | None = None):
        self.model = model
        data = np.asarray(strain, dtype=float)
        n, T = data.shape[:2]
        self.n_points, self.n_steps = n, T
        opts = registry.get(model).schema.check_options(options or {}, where="surrogate options")
        pieces = substep_counts(data, opts)
        self.ends = np.cumsum(pieces) - 1                # refined index of each data step's end
        self.strain = refine(data, pieces)
        self.chunk = min(chunk_points, n)
        self.path = StressPathBatch(model, self.chunk, self.strain.shape[1], p0, params, needs_grad=True,
                                    **{**opts, "n_sub": 1})
        self.param_names = tuple(self.path.param_names)
        self.loaded = None
        self.fresh = None        # (block key, parameter bytes) whose history the Taichi fields hold

    def _blocks(self, points):
        points = np.arange(self.n_points) if points is None else np.asarray(points)
        return [points[a:a + self.chunk] for a in range(0, len(points), self.chunk)], points

    def _load(self, idx: np.ndarray) -> None:
        key = (int(idx[0]), len(idx), int(idx[-1]), hash(idx.tobytes()))
        if self.loaded != key:
            block = np.zeros((self.chunk, self.strain.shape[1], 3, 3))
            block[: len(idx)] = self.strain[idx]      # a short last block is padded with zero strain
            self.path.load_strain(block)
            self.loaded = key

    def set_params(self, values: np.ndarray) -> None:
        self.path.set_params(np.asarray(values, dtype=float))

    def stresses(self, values: np.ndarray, points=None) -> np.ndarray:
        """Forward only: (len(points), n_steps, 3, 3) stresses, Pa, tension positive."""
        self.set_params(values)
        blocks, points = self._blocks(points)
        out = np.empty((len(points), self.n_steps, 3, 3))
        a = 0
        for idx in blocks:
            self._load(idx)
            self.path.forward()
            self.fresh = (self.loaded, np.asarray(values, dtype=float).tobytes())
            out[a:a + len(idx)] = self.path.stresses()[: len(idx)][:, self.ends]
            a += len(idx)
        return out

    def vjp(self, values: np.ndarray, grad_stress: np.ndarray, points=None) -> np.ndarray:
        """sum(grad_stress * d stress / d params) per parameter (``param_names`` order)."""
        self.set_params(values)
        blocks, _ = self._blocks(points)
        starts = np.cumsum([0] + [len(idx) for idx in blocks])
        total = np.zeros(len(self.param_names))
        tag = np.asarray(values, dtype=float).tobytes()
        for k in reversed(range(len(blocks))):        # the last block of the forward first: still in the fields
            idx = blocks[k]
            w = np.zeros((self.chunk, self.strain.shape[1], 3, 3))
            w[: len(idx), self.ends] = grad_stress[starts[k]:starts[k + 1]]
            if not np.any(w):
                continue
            self._load(idx)
            fresh = self.fresh == (self.loaded, tag)
            total += self.path.gradient(w, recompute=not fresh)[1]
            self.fresh = (self.loaded, tag)           # the fields now hold this block's history
        return total

    def __call__(self, params: torch.Tensor, points=None) -> torch.Tensor:
        """Differentiable stresses of ``points`` (all by default) for ``params``."""
        return SurrogateStress.apply(params, self, points)


def substep_counts(strain: np.ndarray, options: dict) -> np.ndarray:
    """Per data step, the largest sub-increment count of Eq. 16 over the points (host copy of
    ``materials.csuh_integrator.substep_count``): (n_steps,) integers >= 1."""
    if options.get("n_sub", 0) > 0:
        return np.full(strain.shape[1], int(options["n_sub"]))
    prev = np.concatenate([np.zeros_like(strain[:, :1]), strain[:, :-1]], axis=1)
    de = 0.5 * (strain + np.swapaxes(strain, 2, 3)) - 0.5 * (prev + np.swapaxes(prev, 2, 3))
    nrm2 = np.einsum("ntij,ntij->nt", de, de)
    eps = options["eps_ref"]
    x = np.sqrt(nrm2) / eps if options["substep_rule"] == "linear" else nrm2 / eps**2
    T = np.clip(np.ceil(np.minimum(x, 1e9)), 1, options["t_max"]).astype(int)
    return T.max(axis=0)


def refine(strain: np.ndarray, pieces: np.ndarray) -> np.ndarray:
    """Strain path with step t cut into ``pieces[t]`` equal increments (ends kept exactly)."""
    prev = np.concatenate([np.zeros_like(strain[:, :1]), strain[:, :-1]], axis=1)
    out = []
    for t, k in enumerate(pieces):
        for j in range(1, k):
            out.append(prev[:, t] + (j / k) * (strain[:, t] - prev[:, t]))
        out.append(strain[:, t])
    return np.stack(out, axis=1)


class SurrogateStress(torch.autograd.Function):
    """params (n_par,) -> stresses (n_points, n_steps, 3, 3); gradients by Taichi autodiff."""

    @staticmethod
    def forward(ctx, params: torch.Tensor, surrogate: Surrogate, points=None) -> torch.Tensor:
        values = params.detach().cpu().numpy().astype(float)
        ctx.surrogate, ctx.values, ctx.points = surrogate, values, points
        ctx.device, ctx.dtype = params.device, params.dtype
        out = surrogate.stresses(values, points)
        return torch.from_numpy(out).to(device=params.device, dtype=params.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        g = ctx.surrogate.vjp(ctx.values, grad_out.detach().cpu().numpy().astype(float), ctx.points)
        return torch.from_numpy(g).to(device=ctx.device, dtype=ctx.dtype), None, None
