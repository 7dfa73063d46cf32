"""The one bridge between PyTorch and the Taichi constitutive integrator.

:class:`Surrogate` maps a parameter vector (torch, float64, order ``param_names``) to the stresses of
every point along its strain history (Pa, tension positive, after each data step); :class:`SurrogateStress`
is the ``torch.autograd.Function`` whose backward is a vector-Jacobian product computed by Taichi
reverse-mode autodiff through the same integrator the FEM uses (``kernels.stress_point.StressPathBatch``).

Sub-steps, per point: the integrator divides a step into T sub-increments (Eq. 16, T from the norm of
the step's strain increment and ``eps_ref``). Unrolling T inside one differentiable kernel makes
Taichi's compile time explode, so the bridge refines the strain path instead: step t of point i is cut
into its own count k_it equal pieces (:func:`substep_counts`), each integrated with one
sub-increment, so every point is integrated exactly as the FEM integrates it (T = k_it, never fewer
and never more sub-increments; equal up to round-off, the pieces' ends being interpolated strains).
Point i's refined history has L_i = sum_t k_it steps; only the stresses at the ends of its data steps
(``ends[i, t] = sum_{s<=t} k_is - 1``) are returned.

Why per point and not per step: the step loop is on the host (one kernel launch per refined step,
each over a chunk of points; Taichi 1.7.4's reverse mode gives wrong adjoints for matrices carried
through loops inside a kernel, see docs/materials.md) and the history fields are (points, steps), so a
point's refined steps need not line up with another's: the path batch gives each point its own
number of steps (``live``) and report steps (``ends``), and leaves a point alone past its own history.
A global refinement (every data step cut as finely as its most demanding point needs, as before)
made a few points with large strain increments (under a footing edge) multiply every point's steps.
Points are ordered by L_i, longest first, before they are cut into chunks of ``chunk_points``, so
that long histories share chunks: a chunk launches as many steps as its longest point has, and the
others idle past their own end (a masked thread, no work). Each point's stresses depend on its own
path only, so they do not depend on the ordering or the chunking at all; the parameter gradient is
a sum over chunks whose order changes with them (round-off). Stresses come back in the caller's
point order.

Memory: every point's refined path is built once, by torch, and kept (sum_i L_i symmetric 3x3
strains of the runtime's real type, one point after the other, ``flat``); points are processed in
chunks, and only one chunk's history (its stresses and states at every refined step, with their
adjoints) lives in Taichi fields at a time, so the fields are bounded by ``chunk_points x max_i L_i``
whatever the number of points. Cost: the forward pass runs every chunk once; the backward pass runs
each chunk's kernels' adjoints in reverse order from its stored history, chunks from the last to the
first, re-running a chunk forward first unless its history is still in the fields (the last chunk of
the forward pass). :meth:`Surrogate.plan` counts the launches and point-steps; measured in
BENCHMARKS.md.

Device: the data (refined paths, lengths, report steps) are torch tensors on the device whose memory
the Taichi backend reads and writes (:func:`torch_device`): the host on the CPU backend, the CUDA
device on Taichi's CUDA backend (with a CUDA build of torch). A chunk's block is gathered there by
torch and handed to the kernels as an external array, the kernels write the reported stresses into a
torch tensor there and read the backward's weights (the stresses' gradient) from one, and the misfit
is computed there (``calibrate.train`` moves its targets to ``device``): no host round trip on the CPU
or on CUDA. On Vulkan (and Taichi's other graphics backends) Taichi and torch cannot share memory:
the tensors live on the host and Taichi copies each array argument between the host and the GPU
inside the launch (:func:`direct_exchange` says which case holds). The parameters (a few numbers)
and their gradient go through the host on every backend. The numpy interface
(:meth:`Surrogate.stresses`, :meth:`Surrogate.vjp`) is kept for existing callers.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from kernels import registry, runtime
from kernels.stress_point import StressPathBatch

log = logging.getLogger(__name__)

# Taichi backends (``kernels.runtime.arch_name``) whose kernels address host memory
HOST_ARCHS = ("x64", "arm64", "cpu")


def torch_device(arch: str | None = None) -> torch.device:
    """The torch device whose memory Taichi's ``arch`` (default: the running backend) reads and writes
    directly: ``cuda:0`` on Taichi's CUDA backend when torch has CUDA (Taichi runs on the first
    visible GPU), the host otherwise (CPU backends; Vulkan, whose memory torch cannot address; CUDA
    with a CPU-only torch, with a warning)."""
    arch = runtime.arch_name() if arch is None else arch
    if arch == "cuda":
        if torch.cuda.is_available():
            return torch.device("cuda", 0)
        log.warning("Taichi runs on CUDA but torch has no CUDA: the calibration data stays on the host")
    return torch.device("cpu")


def direct_exchange(arch: str | None = None) -> bool:
    """Whether the kernels of ``arch`` (default: the running backend) read and write the tensors of
    :func:`torch_device` in place (CPU backends; CUDA with a CUDA torch), rather than through a host
    copy made by Taichi at each launch (Vulkan and the other graphics backends)."""
    arch = runtime.arch_name() if arch is None else arch
    return arch in HOST_ARCHS or (arch == "cuda" and torch_device(arch).type == "cuda")


def _torch_real():
    """The torch dtype of the runtime's real type (raises before ``kernels.runtime.init``)."""
    runtime.real()
    return torch.float64 if runtime.precision() == "f64" else torch.float32


class Surrogate:
    """Stresses of a constitutive model along fixed strain histories, differentiable in its parameters.

    Parameters
    ----------
    model : ``csuh``, ``mcc`` or ``ime``.
    strain : (n_points, n_steps, 3, 3) total strain after each step, tension positive.
    p0 : initial mean pressure, Pa, compression positive (initial stress -p0 I).
    options : integrator options (``lode``, ``delta_r``, ``eps_ref`` ...), see docs/materials.md.
    chunk_points : points per Taichi batch (bounds memory; one batch is compiled once and reused).
    device : torch device of the data and of the returned stresses (default :func:`torch_device`).
    """

    def __init__(self, model: str, strain: np.ndarray, p0: float, options: dict | None = None,
                 chunk_points: int = 256, params: dict | None = None, device=None):
        self.model = model
        data = np.asarray(strain, dtype=float)
        n, T = data.shape[:2]
        self.n_points, self.n_steps = n, T
        opts = registry.get(model).schema.check_options(options or {}, where="surrogate options")
        counts = substep_counts(data, opts)                   # (n, T): each point's own count
        self.lengths = counts.sum(axis=1)                     # refined steps of each point
        self.device = torch_device() if device is None else torch.device(device)
        self.real = _torch_real()
        dev = self.device
        self.ends = torch.as_tensor(np.cumsum(counts, axis=1) - 1, dtype=torch.int32, device=dev)
        self.lengths_t = torch.as_tensor(self.lengths, dtype=torch.int64, device=dev)
        self.offsets = torch.cumsum(self.lengths_t, 0) - self.lengths_t
        self.flat = self._refine_all(data, counts)
        self.chunk = min(chunk_points, n)
        self.path = StressPathBatch(model, self.chunk, int(self.lengths.max()), p0, params, needs_grad=True,
                                    n_out=T, **{**opts, "n_sub": 1})
        self.param_names = tuple(self.path.param_names)
        self.loaded = None
        self.fresh = None        # (block key, parameter bytes) whose history the Taichi fields hold

    def _blocks(self, points):
        """[(positions in the caller's order, point indices)] per chunk, longest histories first."""
        points = np.arange(self.n_points) if points is None else np.asarray(points)
        order = np.argsort(-self.lengths[points], kind="stable")
        return [(order[a:a + self.chunk], points[order[a:a + self.chunk]])
                for a in range(0, len(points), self.chunk)], points

    def plan(self, points=None) -> dict:
        """Where the cost goes for ``points`` (default all): chunks, step launches (each chunk
        launches as many steps as its longest point has) and point-steps integrated."""
        blocks, points = self._blocks(points)
        launches = [int(self.lengths[idx].max()) for _, idx in blocks]
        return {"chunks": len(blocks), "launches": int(sum(launches)),
                "point_steps": int(self.lengths[points].sum()), "data_steps": self.n_steps,
                "refined_steps_max": int(self.lengths[points].max()),
                "refined_steps_mean": float(self.lengths[points].mean())}

    def _refine_all(self, strain: np.ndarray, counts: np.ndarray, pieces: int = 1 << 20) -> torch.Tensor:
        """Every point's refined path, one after the other ((sum_i L_i, 3, 3) symmetric strains of the
        runtime's real type on the device; point i's from ``offsets[i]``), built on the device by
        groups of points of about ``pieces`` refined steps (bounded temporaries)."""
        flat = torch.empty((int(self.lengths.sum()), 3, 3), dtype=self.real, device=self.device)
        ends = np.cumsum(self.lengths)
        a = 0
        while a < self.n_points:
            b = max(a + 1, int(np.searchsorted(ends, ends[a] - self.lengths[a] + pieces, side="right")))
            b = min(b, self.n_points)
            lo, hi = int(ends[a] - self.lengths[a]), int(ends[b - 1])
            eps = torch.as_tensor(strain[a:b], device=self.device)
            k = torch.as_tensor(counts[a:b], dtype=torch.int64, device=self.device)
            flat[lo:hi] = self._refine(eps, k).to(self.real)
            a = b
        return flat

    @staticmethod
    def _refine(eps: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Refined paths of points with strains ``eps`` (c, T, 3, 3) and counts ``k`` (c, T), one after
        the other: step t of a point cut into k_t pieces, prev + (j / k_t) (end - prev) for j < k_t and
        the step's end itself for j = k_t (as the former host refinement did), then symmetrised."""
        c, T = k.shape
        flat = k.reshape(-1)
        cell = torch.repeat_interleave(torch.arange(c * T, device=k.device), flat)   # (i, t) of each piece
        val = eps.reshape(c * T, 3, 3)[cell]                                       # a step's last piece: its end
        j = torch.arange(cell.numel(), device=k.device) - (torch.cumsum(flat, 0) - flat)[cell] + 1
        kk = flat[cell]
        inner = torch.nonzero(j < kk).squeeze(1)
        if inner.numel():
            ci = cell[inner]
            prev = torch.cat([torch.zeros_like(eps[:, :1]), eps[:, :-1]], dim=1).reshape(c * T, 3, 3)[ci]
            f = (j[inner].to(torch.float64) / kk[inner].to(torch.float64))[:, None, None]
            val[inner] = prev + f * (val[inner] - prev)
        return 0.5 * (val + val.transpose(1, 2))

    def _refined(self, idx: np.ndarray) -> tuple:
        """The refined paths of points ``idx`` on the device: (c, max L, 3, 3) symmetric strains (a
        point's last strain repeated past its end, where it is not read), lengths (c,), report steps
        (c, n_steps)."""
        it = torch.as_tensor(idx, device=self.device)
        L = self.lengths_t[it]
        m = int(self.lengths[idx].max())
        s = torch.arange(m, device=self.device)
        rows = self.offsets[it][:, None] + torch.minimum(s[None, :], (L - 1)[:, None])
        return self.flat[rows], L, self.ends[it]

    def _handoff(self, to_taichi: bool) -> None:
        """On CUDA, torch and Taichi may queue work on different streams: wait for the side that
        wrote a tensor before the other reads it (once per chunk; nothing to do on the host)."""
        if self.device.type == "cuda":
            if to_taichi:
                torch.cuda.synchronize(self.device)
            else:
                import taichi as ti

                ti.sync()

    def _load(self, idx: np.ndarray) -> None:
        key = (int(idx[0]), len(idx), int(idx[-1]), hash(idx.tobytes()))
        if self.loaded != key:
            block = self._refined(idx)
            self._handoff(to_taichi=True)
            self.path.load_paths(*block)
            self.loaded = key

    def set_params(self, values: np.ndarray) -> None:
        self.path.set_params(np.asarray(values, dtype=float))

    def stresses_t(self, values: np.ndarray, points=None) -> torch.Tensor:
        """Forward only: (len(points), n_steps, 3, 3) stresses, Pa, tension positive, a tensor of the
        runtime's real type on ``device``, in the order of ``points``."""
        self.set_params(values)
        blocks, points = self._blocks(points)
        out = torch.empty((len(points), self.n_steps, 3, 3), dtype=self.real, device=self.device)
        tag = np.asarray(values, dtype=float).tobytes()
        for pos, idx in blocks:
            self._load(idx)
            self.path.forward()
            self.fresh = (self.loaded, tag)
            part = torch.empty((len(idx), self.n_steps, 3, 3), dtype=self.real, device=self.device)
            self._handoff(to_taichi=True)
            self.path.reported(len(idx), part)
            self._handoff(to_taichi=False)
            out[torch.as_tensor(pos, device=self.device)] = part
        return out

    def stresses(self, values: np.ndarray, points=None) -> np.ndarray:
        """Forward only: (len(points), n_steps, 3, 3) stresses, Pa, tension positive (numpy, float64)."""
        return self.stresses_t(values, points).cpu().numpy().astype(float)

    def vjp_t(self, values: np.ndarray, grad_stress: torch.Tensor, points=None) -> np.ndarray:
        """sum(grad_stress * d stress / d params) per parameter (``param_names`` order);
        ``grad_stress`` (len(points), n_steps, 3, 3), a tensor on ``device``."""
        self.set_params(values)
        blocks, _ = self._blocks(points)
        total = np.zeros(len(self.param_names))
        tag = np.asarray(values, dtype=float).tobytes()
        grad_stress = grad_stress.to(device=self.device)
        for pos, idx in reversed(blocks):             # the last block of the forward first: still in the fields
            w = grad_stress[torch.as_tensor(pos, device=self.device)]
            if not bool(torch.any(w != 0)):
                continue
            self._load(idx)
            fresh = self.fresh == (self.loaded, tag)
            self._handoff(to_taichi=True)
            total += self.path.gradient(w, recompute=not fresh)[1]
            self.fresh = (self.loaded, tag)           # the fields now hold this block's history
        return total

    def vjp(self, values: np.ndarray, grad_stress: np.ndarray, points=None) -> np.ndarray:
        """:meth:`vjp_t` of a numpy ``grad_stress``."""
        return self.vjp_t(values, torch.as_tensor(np.asarray(grad_stress, dtype=float)), points)

    def __call__(self, params: torch.Tensor, points=None) -> torch.Tensor:
        """Differentiable stresses of ``points`` (all by default) for ``params``, on ``device``."""
        return SurrogateStress.apply(params, self, points)


def substep_counts(strain: np.ndarray, options: dict) -> np.ndarray:
    """Each point's sub-increment count of Eq. 16 at each data step (host copy of
    ``materials.csuh_integrator.substep_count``): (n_points, n_steps) integers >= 1."""
    if options.get("n_sub", 0) > 0:
        return np.full(strain.shape[:2], int(options["n_sub"]))
    prev = np.concatenate([np.zeros_like(strain[:, :1]), strain[:, :-1]], axis=1)
    de = 0.5 * (strain + np.swapaxes(strain, 2, 3)) - 0.5 * (prev + np.swapaxes(prev, 2, 3))
    nrm2 = np.einsum("ntij,ntij->nt", de, de)
    eps = options["eps_ref"]
    x = np.sqrt(nrm2) / eps if options["substep_rule"] == "linear" else nrm2 / eps**2
    return np.clip(np.ceil(np.minimum(x, 1e9)), 1, options["t_max"]).astype(int)


class SurrogateStress(torch.autograd.Function):
    """params (n_par,) -> stresses (n_points, n_steps, 3, 3) on the surrogate's device, in the
    parameters' dtype; gradients by Taichi autodiff, returned on the parameters' device."""

    @staticmethod
    def forward(ctx, params: torch.Tensor, surrogate: Surrogate, points=None) -> torch.Tensor:
        values = params.detach().cpu().numpy().astype(float)
        ctx.surrogate, ctx.values, ctx.points = surrogate, values, points
        ctx.device, ctx.dtype = params.device, params.dtype
        return surrogate.stresses_t(values, points).to(dtype=params.dtype)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        g = ctx.surrogate.vjp_t(ctx.values, grad_out.detach(), ctx.points)
        return torch.from_numpy(g).to(device=ctx.device, dtype=ctx.dtype), None, None
