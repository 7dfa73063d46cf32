"""Gradient-based calibration of a constitutive surrogate on Gauss-point histories (paper Section 2.3.2).

The optimisers move variables x that ``calibrate.parametrisation`` maps to the parameters: by default
a sigmoid of each parameter between its Table 1 bounds (``bounded``: no step can leave the box), or
the paper's weights W (from 1) scaling the initial parameters, phi = phi0 * W (``paper``), with the
bound penalty weighted by the gamma schedule of Eq. 18. Adam minimises the misfit of Eq. 17 (see
``calibrate.loss``) plus that penalty. Points are split into train / validation / test sets by a seeded shuffle; the
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

from calibrate import checkpoint, optimisers, parametrisation
from calibrate.bridge import Surrogate
from calibrate.loss import bound_penalty, component_mask, components, misfit
from calibrate.selection import Selection, point_weights, select
from kernels import registry

log = logging.getLogger(__name__)

SCHEMES = {1: {"lode": "ts", "delta_r": 0.0}, 2: {"lode": "ts", "delta_r": 0.03}, 3: {"lode": "exp", "delta_r": 0.03}}
OPTIMIZERS = ("adam", "lbfgs", "cmaes")


@dataclass
class Settings:
    """Optimiser settings; ``epochs`` sets the lr and gamma schedules (a resumed run keeps them)."""
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
    parametrisation: str = "bounded"
    checkpoint_every: int = 1


@dataclass
class Data:
    """Training data: strain after each step (no initial row), target stresses, mask, p0; the dataset
    indices of the selected points, their weights (None: uniform) and coordinates (m, None if absent)."""
    strain: np.ndarray
    stress: np.ndarray
    mask: np.ndarray          # (n_steps, 3, 3): retained steps x independent components x their weights
    p0: float
    kinematics: str
    weights: np.ndarray | None = None
    index: np.ndarray | None = None
    coords: np.ndarray | None = None


def _component_weights(kinematics: str, weights) -> np.ndarray:
    comp = component_mask(kinematics)
    if weights is None:
        return comp
    names = components(kinematics)
    if len(weights) != len(names) or any(w < 0 for w in weights):
        labels = ",".join(f"{i + 1}{j + 1}" for i, j in names)
        raise ValueError(f"component weights: need {len(names)} values >= 0 for components {labels}, "
                         f"got {list(weights)}")
    for (i, j), w in zip(names, weights):
        comp[i, j] = w
    return comp


def prepare_data(raw: dict, stride: int = 1, selection: Selection | None = None) -> Data:
    """Select the points (``calibrate.selection``), drop the initial (zero-strain) row, keep every
    ``stride``-th step in the loss and set the component mask of the data's kinematics (in-plane for
    2D) with the component and point weights."""
    sel = selection or Selection()
    idx = select(raw, sel)
    strain, stress = np.asarray(raw["strain"], float)[idx], np.asarray(raw["stress"], float)[idx]
    steps = np.asarray(raw.get("step", np.arange(strain.shape[1])))
    first = 1 if steps[0] == 0 or not np.any(strain[:, 0]) else 0
    strain, stress = strain[:, first:], stress[:, first:]
    if strain.shape[1] == 0:
        raise ValueError("the dataset has no steps after the initial state")
    comp = _component_weights(raw["kinematics"], sel.component_weights)
    keep = np.zeros(strain.shape[1])
    keep[stride - 1::stride] = 1.0
    mask = keep[:, None, None] * comp[None]
    used = np.broadcast_to(mask, stress.shape) > 0
    if not np.isfinite(stress[used]).all() or not np.isfinite(strain).all():
        raise ValueError("the dataset has non-finite values in the components the loss uses")
    stress = np.where(used, stress, 0.0)
    coords = raw.get("coords")
    return Data(strain, stress, mask, float(raw["p0"]), raw["kinematics"],
                point_weights(raw, idx, sel, mask, stress), idx,
                None if coords is None else np.asarray(coords, float)[idx])


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
        if settings.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {settings.optimizer!r}")
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
        self.param = parametrisation.make(settings.parametrisation, names, self.phi0, self.lower, self.upper)
        self.train, self.val, self.test = split_points(data.strain.shape[0], settings.split, settings.seed)
        dev = self.surrogate.device                     # the misfit is computed where the stresses are
        self.target = torch.from_numpy(data.stress).to(dev)
        self.mask = torch.from_numpy(data.mask).to(dev)
        self.weights = None if data.weights is None else torch.from_numpy(data.weights).to(dev)
        self.history: list[dict] = []
        self.best = {"val": np.inf, "epoch": -1, "phi": self.param.to_phi(self.param.initial()).numpy().copy()}
        self.interrupted = False
        self.failure = None
        self.wall = 0.0
        self.checkpoint_path = None
        self.now = {"epoch": 0, "phi": self.best["phi"]}      # where an epoch is, for a failure message
        self._t0 = time.perf_counter()

    # -- losses --------------------------------------------------------------------------------
    def _w(self, points):
        return None if self.weights is None else self.weights[points]

    def misfit_of(self, phi: torch.Tensor, points: np.ndarray) -> torch.Tensor:
        """Eq. 17 misfit of ``points`` at parameters ``phi`` (differentiable)."""
        pred = self.surrogate(phi, points)
        return misfit(pred, self.target[points], self.mask, self._w(points))

    def eval_misfit(self, phi, points: np.ndarray) -> float:
        if len(points) == 0:
            return float("nan")
        with torch.no_grad():
            return float(self.misfit_of(torch.as_tensor(phi, dtype=torch.float64), points))

    def penalty(self, phi: torch.Tensor) -> torch.Tensor:
        """Bound penalty of Eq. 18 (zero in the bounded parametrisation, which cannot leave the box)."""
        if not self.param.penalised:
            return torch.zeros((), dtype=torch.float64)
        return bound_penalty(phi, self.lower, self.upper, self.s.penalty)

    def total_loss(self, phi: torch.Tensor, points: np.ndarray, gamma: float) -> tuple:
        m = self.misfit_of(phi, points)
        pen = self.penalty(phi)
        return m + gamma * pen.to(m.device), m, pen

    def loss_and_val(self, phi: torch.Tensor, gamma: float) -> tuple:
        """``total_loss`` over all training points plus the validation misfit (a float), from one
        surrogate call over both sets (one batch of kernel launches instead of two)."""
        pts = np.concatenate([self.train, self.val])
        pred = self.surrogate(phi, pts)
        n = len(self.train)
        m = misfit(pred[:n], self.target[self.train], self.mask, self._w(self.train))
        pen = self.penalty(phi).to(m.device)
        val = (float(misfit(pred[n:].detach(), self.target[self.val], self.mask, self._w(self.val)))
               if len(self.val) else None)
        return m + gamma * pen, m, pen, val

    # -- bookkeeping ---------------------------------------------------------------------------
    def record(self, epoch: int, phi: np.ndarray, train: float, gamma: float, penalty: float,
               val: float | None = None) -> float:
        """Append one history row; keep the parameters of the lowest validation misfit."""
        if val is None:
            val = self.eval_misfit(phi, self.val) if len(self.val) else train
        row = {"epoch": epoch, "train_loss": train, "val_loss": val, "penalty": penalty, "gamma": gamma,
               "wall_s": time.perf_counter() - self._t0}
        row.update({k: float(v) for k, v in zip(self.names, phi)})
        self.history.append(row)
        if val < self.best["val"]:
            self.best = {"val": val, "epoch": epoch, "phi": np.array(phi, dtype=float)}
        return val

    def save_checkpoint(self, epochs_done: int, state: dict, force: bool = False) -> None:
        """Write the optimiser ``state`` with the history and best parameters every
        ``checkpoint_every`` epochs (and when ``force``), if a checkpoint path is set."""
        if self.checkpoint_path is None or not (force or epochs_done % max(self.s.checkpoint_every, 1) == 0):
            return
        checkpoint.save(self.checkpoint_path, {
            "optimizer": self.s.optimizer, "epochs_done": epochs_done, "state": state,
            "history": self.history, "best": self.best, "wall_s": time.perf_counter() - self._t0})

    def _failure_line(self, exc: Exception, epoch: int, phi) -> str:
        text = " ".join(str(exc).split()) or type(exc).__name__
        values = ", ".join(f"{k}={float(v):.6g}" for k, v in zip(self.names, phi))
        return f"epoch {epoch}: {type(exc).__name__}: {text} (parameters {values})"

    # -- optimisers ----------------------------------------------------------------------------
    def run(self, progress: bool = True, resume: dict | None = None, stop_after: int | None = None) -> dict:
        """Optimise (from the checkpoint ``resume`` if given) until ``epochs``, or until ``stop_after``
        epochs in total (then ``interrupted``); a failure inside an epoch ends the run with
        ``failure`` set to one line naming the epoch and the parameters."""
        from tqdm import tqdm

        done = 0 if resume is None else resume["epochs_done"]
        if resume is not None:
            self.history, self.best = list(resume["history"]), dict(resume["best"])
        self._t0 = time.perf_counter() - (resume["wall_s"] if resume else 0.0)
        bar = tqdm(total=self.s.epochs, initial=done, unit="epoch", disable=not progress,
                   desc=f"calibrate {self.s.model}")
        loop = {"adam": optimisers.adam, "lbfgs": optimisers.lbfgs, "cmaes": optimisers.cmaes}[self.s.optimizer]
        try:
            self.interrupted = loop(self, bar, None if resume is None else resume["state"], stop_after)
        except KeyboardInterrupt:
            self.interrupted = True
            log.warning("interrupted: keeping the best parameters so far (epoch %d)", self.best["epoch"])
        except Exception as exc:      # noqa: BLE001 - any failure inside an epoch is reported in one line
            self.failure = self._failure_line(exc, self.now["epoch"], self.now["phi"])
            log.debug("calibration failed", exc_info=True)
        finally:
            bar.close()
            self.wall = time.perf_counter() - self._t0
        return self.result()

    # -- results -------------------------------------------------------------------------------
    def result(self) -> dict:
        """Summary of the run: the best parameters, their misfits, the settings."""
        phi = self.best["phi"]
        best_val = float(self.best["val"])
        try:
            train, test = self.eval_misfit(phi, self.train), self.eval_misfit(phi, self.test)
        except Exception as exc:      # noqa: BLE001 - the best set itself fails: say so, keep the rest
            train = test = float("nan")
            log.warning("misfits of the best parameters not evaluated: %s", exc)
        return {
            "model": self.s.model, "params": dict(zip(self.names, map(float, phi))),
            "initial": dict(zip(self.names, map(float, self.phi0.numpy()))),
            "best_epoch": self.best["epoch"], "best_val_loss": best_val if np.isfinite(best_val) else None,
            "train_loss": train, "test_loss": test,
            "epochs_run": len(self.history), "interrupted": self.interrupted, "failure": self.failure,
            "wall_s": self.wall,
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
