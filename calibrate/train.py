"""Gradient-based calibration of a constitutive surrogate on Gauss-point histories (paper Section 2.3.2).

Trainable weights W (initialised to 1) scale the initial parameters, phi = phi0 * W; Adam minimises
the misfit of Eq. 17 plus the bound penalty weighted by the gamma schedule of Eq. 18 (see
``calibrate.loss``). Points are split into train / validation / test sets by a seeded shuffle; the
parameters of the epoch with the lowest validation misfit are kept (no early stopping). The same
loss can be minimised by L-BFGS with the same gradients (``optimizer="lbfgs"``, full batch, fixed
gamma = gamma_max, one history row per loss evaluation) or by CMA-ES (``optimizer="cmaes"``) as a
derivative-free baseline.
"""
from __future__ import annotations

import csv
import json
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from calibrate.bridge import Surrogate
from kernels import registry
from calibrate.loss import bound_penalty, component_mask, gamma_schedule, misfit

log = logging.getLogger(__name__)

SCHEMES = {1: {"lode": "ts", "delta_r": 0.0}, 2: {"lode": "ts", "delta_r": 0.03}, 3: {"lode": "exp", "delta_r": 0.03}}


class _BudgetSpent(Exception):
    """Raised inside the L-BFGS closure when ``epochs`` evaluations are spent."""


@dataclass
class Settings:
    model: str = "csuh"
    epochs: int = 100
    lr: float = 0.01
    lr_final: float | None = None      # learning rate at the last epoch (exponential decay); None: constant
    gamma_max: float = 0.1
    gamma_min: float = 0.01
    split: tuple = (0.8, 0.1, 0.1)
    seed: int = 0
    optimizer: str = "adam"
    penalty: str = "linear"
    batch_points: int | None = None
    chunk_points: int = 256
    stride: int = 1
    options: dict = field(default_factory=lambda: {"lode": "exp", "delta_r": 0.03})


@dataclass
class Data:
    """Training data: strain after each step (no initial row), target stresses, mask, p0."""
    strain: np.ndarray
    stress: np.ndarray
    mask: np.ndarray          # (n_steps, 3, 3): retained steps x independent components
    p0: float
    kinematics: str


def prepare_data(raw: dict, stride: int = 1) -> Data:
    """Drop the initial (zero-strain) row, keep every ``stride``-th step in the loss and set the
    component mask of the data's kinematics (in-plane for 2D)."""
    strain, stress = np.asarray(raw["strain"], float), np.asarray(raw["stress"], float)
    steps = np.asarray(raw.get("step", np.arange(strain.shape[1])))
    first = 1 if steps[0] == 0 or not np.any(strain[:, 0]) else 0
    strain, stress = strain[:, first:], stress[:, first:]
    if strain.shape[1] == 0:
        raise ValueError("the dataset has no steps after the initial state")
    comp = component_mask(raw["kinematics"])
    keep = np.zeros(strain.shape[1])
    keep[stride - 1::stride] = 1.0
    mask = keep[:, None, None] * comp[None]
    used = np.broadcast_to(mask, stress.shape) > 0
    if not np.isfinite(stress[used]).all() or not np.isfinite(strain).all():
        raise ValueError("the dataset has non-finite values in the components the loss uses")
    stress = np.where(used, stress, 0.0)
    return Data(strain, stress, mask, float(raw["p0"]), raw["kinematics"])


def split_points(n: int, fractions, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seeded shuffle of point indices into train / validation / test (each sorted)."""
    f = np.asarray(fractions, float)
    if len(f) != 3 or np.any(f < 0) or not np.isclose(f.sum(), 1.0) or f[0] <= 0:
        raise ValueError(f"split must be three fractions summing to 1 with a train share > 0, got {fractions}")
    perm = np.random.default_rng(seed).permutation(n)
    n_val = int(round(f[1] * n)) if f[1] > 0 else 0
    n_test = int(round(f[2] * n)) if f[2] > 0 else 0
    if f[1] > 0 and n >= 3:
        n_val = max(n_val, 1)
    if f[2] > 0 and n >= 3:
        n_test = max(n_test, 1)
    n_train = n - n_val - n_test
    if n_train < 1:
        raise ValueError(f"too few points ({n}) for the split {fractions}")
    return tuple(np.sort(p) for p in (perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]))


class Calibration:
    """One calibration run: data, surrogate, optimiser state, history and the best parameters."""

    def __init__(self, data: Data, init: dict, settings: Settings):
        self.data, self.s = data, settings
        self.surrogate = Surrogate(settings.model, data.strain, data.p0, settings.options,
                                   chunk_points=settings.chunk_points)
        names = self.surrogate.param_names
        self.names = names
        schema = registry.get(settings.model).schema
        full = schema.check_params(init, warn=False)
        self.phi0 = torch.tensor([full[k] for k in names], dtype=torch.float64)
        bounds = schema.bounds
        self.lower = torch.tensor([bounds[k][0] for k in names], dtype=torch.float64)
        self.upper = torch.tensor([bounds[k][1] for k in names], dtype=torch.float64)
        self.train, self.val, self.test = split_points(data.strain.shape[0], settings.split, settings.seed)
        self.target = torch.from_numpy(data.stress)
        self.mask = torch.from_numpy(data.mask)
        self.history: list[dict] = []
        self.best = {"val": np.inf, "epoch": -1, "phi": self.phi0.numpy().copy()}
        self.interrupted = False
        self.wall = 0.0

    # -- losses --------------------------------------------------------------------------------
    def misfit_of(self, phi: torch.Tensor, points: np.ndarray) -> torch.Tensor:
        """Eq. 17 misfit of ``points`` at parameters ``phi`` (differentiable)."""
        pred = self.surrogate(phi, points)
        return misfit(pred, self.target[points], self.mask)

    def eval_misfit(self, phi, points: np.ndarray) -> float:
        if len(points) == 0:
            return float("nan")
        with torch.no_grad():
            return float(self.misfit_of(torch.as_tensor(phi, dtype=torch.float64), points))

    def total_loss(self, phi: torch.Tensor, points: np.ndarray, gamma: float) -> tuple:
        m = self.misfit_of(phi, points)
        pen = bound_penalty(phi, self.lower, self.upper, self.s.penalty)
        return m + gamma * pen, m, pen

    def loss_and_val(self, phi: torch.Tensor, gamma: float) -> tuple:
        """``total_loss`` over all training points plus the validation misfit (a float), from one
        surrogate call over both sets (one batch of kernel launches instead of two)."""
        pts = np.concatenate([self.train, self.val])
        pred = self.surrogate(phi, pts)
        n = len(self.train)
        m = misfit(pred[:n], self.target[self.train], self.mask)
        pen = bound_penalty(phi, self.lower, self.upper, self.s.penalty)
        val = float(misfit(pred[n:].detach(), self.target[self.val], self.mask)) if len(self.val) else None
        return m + gamma * pen, m, pen, val

    # -- bookkeeping ---------------------------------------------------------------------------
    def _record(self, epoch: int, phi: np.ndarray, train: float, gamma: float, penalty: float,
                val: float | None = None) -> float:
        if val is None:
            val = self.eval_misfit(phi, self.val) if len(self.val) else train
        row = {"epoch": epoch, "train_loss": train, "val_loss": val, "penalty": penalty, "gamma": gamma,
               "wall_s": time.perf_counter() - self._t0}
        row.update({k: float(v) for k, v in zip(self.names, phi)})
        self.history.append(row)
        if val < self.best["val"]:
            self.best = {"val": val, "epoch": epoch, "phi": np.array(phi, dtype=float)}
        return val

    # -- optimisers ----------------------------------------------------------------------------
    def run(self, progress: bool = True) -> dict:
        from tqdm import tqdm

        self._t0 = time.perf_counter()
        bar = tqdm(total=self.s.epochs, unit="epoch", disable=not progress, desc=f"calibrate {self.s.model}")
        try:
            if self.s.optimizer == "adam":
                self._adam(bar)
            elif self.s.optimizer == "lbfgs":
                self._lbfgs(bar)
            elif self.s.optimizer == "cmaes":
                self._cmaes(bar)
            else:
                raise ValueError(f"optimizer must be adam, lbfgs or cmaes, got {self.s.optimizer!r}")
        except KeyboardInterrupt:
            self.interrupted = True
            log.warning("interrupted: keeping the best parameters so far (epoch %d)", self.best["epoch"])
        finally:
            bar.close()
            self.wall = time.perf_counter() - self._t0
        return self.result()

    def _batches(self, rng) -> list:
        if not self.s.batch_points or self.s.batch_points >= len(self.train):
            return [self.train]
        perm = rng.permutation(self.train)
        return [np.sort(perm[a:a + self.s.batch_points]) for a in range(0, len(perm), self.s.batch_points)]

    def _adam(self, bar) -> None:
        W = torch.ones(len(self.names), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([W], lr=self.s.lr)
        final = self.s.lr_final or self.s.lr
        decay = torch.optim.lr_scheduler.ExponentialLR(opt, (final / self.s.lr) ** (1.0 / max(self.s.epochs - 1, 1)))
        rng = np.random.default_rng(self.s.seed + 1)
        for epoch in range(self.s.epochs):
            gamma = gamma_schedule(epoch, self.s.epochs, self.s.gamma_max, self.s.gamma_min)
            phi_epoch = (self.phi0 * W).detach().numpy().copy()
            losses, pens, val = [], [], None
            batches = self._batches(rng)
            for points in batches:
                opt.zero_grad()
                if len(batches) == 1:
                    loss, m, pen, val = self.loss_and_val(self.phi0 * W, gamma)
                else:
                    loss, m, pen = self.total_loss(self.phi0 * W, points, gamma)
                loss.backward()
                opt.step()
                losses.append(m.item() * len(points))
                pens.append(pen.item())
            decay.step()
            train = sum(losses) / len(self.train)
            val = self._record(epoch, phi_epoch, train, gamma, pens[0], val)
            bar.set_postfix(train=f"{train:.4g}", val=f"{val:.4g}")
            bar.update(1)

    def _lbfgs(self, bar) -> None:
        """L-BFGS (strong Wolfe line search) on W over all training points; ``epochs`` caps the
        number of loss-and-gradient evaluations, each recorded as one history row. The penalty
        weight is fixed at ``gamma_max`` so that the line search sees one objective."""
        W = torch.ones(len(self.names), dtype=torch.float64, requires_grad=True)
        n = self.s.epochs
        opt = torch.optim.LBFGS([W], lr=1.0, max_iter=n, max_eval=n, history_size=20,
                                line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)
        gamma = self.s.gamma_max
        worst = [None]

        def closure():
            if len(self.history) >= n:
                raise _BudgetSpent
            opt.zero_grad()
            phi = self.phi0 * W
            loss, m, pen, val = self.loss_and_val(phi, gamma)
            if not torch.isfinite(loss):  # a trial step left the model's domain: reject it
                W.grad = torch.zeros_like(W)
                return torch.tensor(worst[0] if worst[0] is not None else 1e30, dtype=torch.float64)
            loss.backward()
            worst[0] = max(worst[0] or 0.0, 1e3 * loss.item())
            val = self._record(len(self.history), phi.detach().numpy().copy(), m.item(), gamma, pen.item(), val)
            bar.set_postfix(train=f"{m.item():.4g}", val=f"{val:.4g}")
            bar.update(1)
            return loss

        try:
            opt.step(closure)
        except _BudgetSpent:
            pass

    def _cmaes(self, bar) -> None:
        import cma

        lo = (self.lower / self.phi0).numpy()
        hi = (self.upper / self.phi0).numpy()
        es = cma.CMAEvolutionStrategy(np.ones(len(self.names)), 0.1,
                                      {"bounds": [lo.tolist(), hi.tolist()], "seed": self.s.seed + 1,
                                       "verbose": -9})
        for epoch in range(self.s.epochs):
            xs = es.ask()
            fs = [self.eval_misfit(self.phi0.numpy() * np.asarray(x), self.train) for x in xs]
            es.tell(xs, fs)
            k = int(np.argmin(fs))
            phi = self.phi0.numpy() * np.asarray(xs[k])
            val = self._record(epoch, phi, float(fs[k]), 0.0, 0.0)
            bar.set_postfix(train=f"{fs[k]:.4g}", val=f"{val:.4g}")
            bar.update(1)

    # -- results -------------------------------------------------------------------------------
    def result(self) -> dict:
        phi = self.best["phi"]
        return {
            "model": self.s.model, "params": dict(zip(self.names, map(float, phi))),
            "initial": dict(zip(self.names, map(float, self.phi0.numpy()))),
            "best_epoch": self.best["epoch"], "best_val_loss": float(self.best["val"]),
            "train_loss": self.eval_misfit(phi, self.train), "test_loss": self.eval_misfit(phi, self.test),
            "epochs_run": len(self.history), "interrupted": self.interrupted, "wall_s": self.wall,
            "points": {"train": len(self.train), "val": len(self.val), "test": len(self.test)},
            "settings": {**asdict(self.s), "split": list(self.s.split)},
        }

    def write(self, out: Path, result: dict) -> list[Path]:
        """``params.toml``, ``history.csv``, ``summary.json`` and the plots into ``out``."""
        out.mkdir(parents=True, exist_ok=True)
        registry.get(self.s.model).schema.write_file(out / "params.toml", result["params"])
        with open(out / "history.csv", "w", newline="") as f:
            cols = ["epoch", "train_loss", "val_loss", "penalty", "gamma", "wall_s", *self.names]
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(self.history)
        (out / "summary.json").write_text(json.dumps(result, indent=2))
        files = [out / "params.toml", out / "history.csv", out / "summary.json"]
        if self.history:
            files += plot_history(self.history, self.names, self.lower.numpy(), self.upper.numpy(),
                                  result["best_epoch"], out)
        return files


def plot_history(history: list, names, lower, upper, best_epoch: int, out: Path) -> list[Path]:
    """Loss curves (like the paper's Fig. 13) and parameter evolution against the bounds (Fig. 14)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = np.array([h["epoch"] for h in history])
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.semilogy(ep, [h["train_loss"] for h in history], label="train")
    ax.semilogy(ep, [h["val_loss"] for h in history], label="validation")
    ax.axvline(best_epoch, color="k", ls=":", lw=1, label=f"best validation (epoch {best_epoch})")
    ax.set_xlabel("epoch")
    ax.set_ylabel("stress misfit (Eq. 17)")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=120)
    plt.close(fig)
    n = len(names)
    cols = 4
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.5 * rows), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols][k % cols]
        ax.plot(ep, [h[name] for h in history], lw=1.2)
        ax.axhline(lower[k], color="r", ls="--", lw=0.8)
        ax.axhline(upper[k], color="r", ls="--", lw=0.8)
        ax.set_title(name)
        ax.set_xlabel("epoch")
    for k in range(n, rows * cols):
        axes[k // cols][k % cols].axis("off")
    fig.tight_layout()
    fig.savefig(out / "params.png", dpi=120)
    plt.close(fig)
    return [out / "loss.png", out / "params.png"]
