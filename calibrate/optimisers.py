"""The three optimiser loops of a :class:`calibrate.train.Calibration`, each resumable from a state.

Each loop takes the calibration, a progress bar, the optimiser state of a checkpoint (None: a fresh
start) and ``stop_after`` (epochs in total after which to stop, leaving a checkpoint); it returns True
when it stopped early. A state holds everything the next epoch depends on (variables, optimiser
moments or curvature pairs, schedules, random generator states), so that a resumed run repeats the
uninterrupted one.

- ``adam``: one full-batch step per epoch (or mini-batches of ``batch_points``); lr decays
  exponentially from ``lr`` to ``lr_final`` over ``epochs``; gamma follows Eq. 18 over ``epochs``.
- ``lbfgs``: torch L-BFGS (strong Wolfe, history 20) stepped one iteration at a time; ``epochs`` caps
  the loss-and-gradient evaluations, each one a history row; a trial point whose loss is not finite
  (or, in the paper parametrisation, whose parameters are impossible) is rejected by the line search.
- ``cmaes``: one CMA-ES generation per epoch (the ``cma`` package) over x.
"""
from __future__ import annotations

import pickle

import numpy as np
import torch

from calibrate.loss import gamma_schedule


class _BudgetSpent(Exception):
    """Raised inside the L-BFGS closure when ``epochs`` evaluations are spent."""


def _stop(done: int, stop_after: int | None) -> bool:
    return stop_after is not None and done >= stop_after


def _batches(cal, rng) -> list:
    if not cal.s.batch_points or cal.s.batch_points >= len(cal.train):
        return [cal.train]
    perm = rng.permutation(cal.train)
    return [np.sort(perm[a:a + cal.s.batch_points]) for a in range(0, len(perm), cal.s.batch_points)]


def _adam_epoch(cal, x, opt, rng, epoch: int) -> tuple:
    gamma = gamma_schedule(epoch, cal.s.epochs, cal.s.gamma_max, cal.s.gamma_min)
    phi_epoch = cal.param.to_phi(x).detach().numpy().copy()
    cal.now = {"epoch": epoch, "phi": phi_epoch}
    losses, pens, val = [], [], None
    batches = _batches(cal, rng)
    for points in batches:
        opt.zero_grad()
        if len(batches) == 1:
            loss, m, pen, val = cal.loss_and_val(cal.param.to_phi(x), gamma)
        else:
            loss, m, pen = cal.total_loss(cal.param.to_phi(x), points, gamma)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"the misfit is {loss.item()} (the model's stresses are not finite)")
        loss.backward()
        opt.step()
        losses.append(m.item() * len(points))
        pens.append(pen.item())
    return phi_epoch, sum(losses) / len(cal.train), gamma, pens[0], val


def adam(cal, bar, state: dict | None, stop_after: int | None) -> bool:
    """Adam on x (the paper's optimiser); a checkpoint after every ``checkpoint_every`` epochs."""
    x = cal.param.initial().clone().requires_grad_(True)
    opt = torch.optim.Adam([x], lr=cal.s.lr)
    final = cal.s.lr_final or cal.s.lr
    decay = torch.optim.lr_scheduler.ExponentialLR(opt, (final / cal.s.lr) ** (1.0 / max(cal.s.epochs - 1, 1)))
    rng = np.random.default_rng(cal.s.seed + 1)
    start = 0
    if state is not None:
        with torch.no_grad():
            x.copy_(state["x"])
        opt.load_state_dict(state["opt"])
        decay.load_state_dict(state["sched"])
        rng.bit_generator.state = state["rng"]
        start = state["epoch"]
    for epoch in range(start, cal.s.epochs):
        if _stop(epoch, stop_after):
            return True
        phi, train, gamma, pen, val = _adam_epoch(cal, x, opt, rng, epoch)
        decay.step()
        val = cal.record(epoch, phi, train, gamma, pen, val)
        cal.save_checkpoint(epoch + 1, {"x": x.detach().clone(), "opt": opt.state_dict(),
                                        "sched": decay.state_dict(), "rng": rng.bit_generator.state,
                                        "epoch": epoch + 1}, force=epoch + 1 == cal.s.epochs)
        bar.set_postfix(train=f"{train:.4g}", val=f"{val:.4g}")
        bar.update(1)
    return False


def _lbfgs_closure(cal, x, opt, bar, cache: dict, worst: list):
    """The L-BFGS objective: cached by x (a point the line search already evaluated is not run
    again), each new evaluation a history row."""
    n, gamma = cal.s.epochs, cal.s.gamma_max

    def closure():
        key = x.detach().numpy().tobytes()
        if key in cache:
            loss, grad = cache[key]
            x.grad = grad.clone()
            return loss.clone()
        if len(cal.history) >= n:
            raise _BudgetSpent
        opt.zero_grad()
        phi = cal.param.to_phi(x)
        cal.now = {"epoch": len(cal.history), "phi": phi.detach().numpy().copy()}
        try:
            loss, m, pen, val = cal.loss_and_val(phi, gamma)
        except ValueError:            # impossible parameters (paper parametrisation): reject the trial
            loss = torch.tensor(float("nan"), dtype=torch.float64)
        if not torch.isfinite(loss):  # a trial step left the model's domain: reject it
            x.grad = torch.zeros_like(x)
            return torch.tensor(worst[0] if worst[0] is not None else 1e30, dtype=torch.float64)
        loss.backward()
        worst[0] = max(worst[0] or 0.0, 1e3 * loss.item())
        val = cal.record(len(cal.history), phi.detach().numpy().copy(), m.item(), gamma, pen.item(), val)
        if len(cache) > 64:
            cache.clear()
        cache[key] = (loss.detach().clone(), x.grad.detach().clone())
        bar.set_postfix(train=f"{m.item():.4g}", val=f"{val:.4g}")
        bar.update(1)
        return loss

    return closure


def lbfgs(cal, bar, state: dict | None, stop_after: int | None) -> bool:
    """L-BFGS on x over all training points, one iteration per ``step`` call so that the state between
    iterations can be checkpointed; the penalty weight is fixed at ``gamma_max`` (one objective)."""
    x = cal.param.initial().clone().requires_grad_(True)
    n = cal.s.epochs
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=1, max_eval=n, history_size=20,
                            line_search_fn="strong_wolfe", tolerance_grad=1e-12, tolerance_change=1e-15)
    cache, worst = {}, [None]
    if state is not None:
        with torch.no_grad():
            x.copy_(state["x"])
        opt.load_state_dict(state["opt"])
        cache, worst = dict(state["cache"]), list(state["worst"])
    closure = _lbfgs_closure(cal, x, opt, bar, cache, worst)
    while len(cal.history) < n:
        if _stop(len(cal.history), stop_after):
            return True
        before = x.detach().clone()
        try:
            opt.step(closure)
        except _BudgetSpent:
            break
        key = x.detach().numpy().tobytes()
        cal.save_checkpoint(len(cal.history), {"x": x.detach().clone(), "opt": opt.state_dict(), "worst": worst,
                                               "cache": {key: cache[key]} if key in cache else {}}, force=True)
        if torch.equal(before, x.detach()):       # no progress possible (converged or stuck)
            break
    return False


def cmaes(cal, bar, state: dict | None, stop_after: int | None) -> bool:
    """CMA-ES over x: the W box of Table 1 (paper) or unbounded z (bounded), misfit only."""
    import cma

    box = cal.param.box()
    x0 = cal.param.initial().numpy()
    opts = {"seed": cal.s.seed + 1, "verbose": -9}
    if box is not None:
        opts["bounds"] = [box[0].tolist(), box[1].tolist()]
    es = cma.CMAEvolutionStrategy(x0, 0.1 if box is not None else 0.2, opts)
    start = 0
    if state is not None:
        es = pickle.loads(state["es"])
        np.random.set_state(state["np_random"])
        start = state["epoch"]
    for epoch in range(start, cal.s.epochs):
        if _stop(epoch, stop_after):
            return True
        xs = es.ask()
        phis = [cal.param.to_phi(torch.as_tensor(np.asarray(v), dtype=torch.float64)).numpy() for v in xs]
        fs = []
        for phi in phis:
            cal.now = {"epoch": epoch, "phi": phi}
            fs.append(cal.eval_misfit(phi, cal.train))
        fs = [f if np.isfinite(f) else 1e30 for f in fs]
        es.tell(xs, fs)
        k = int(np.argmin(fs))
        val = cal.record(epoch, phis[k], float(fs[k]), 0.0, 0.0)
        cal.save_checkpoint(epoch + 1, {"es": pickle.dumps(es), "np_random": np.random.get_state(),
                                        "epoch": epoch + 1}, force=epoch + 1 == cal.s.epochs)
        bar.set_postfix(train=f"{fs[k]:.4g}", val=f"{val:.4g}")
        bar.update(1)
    return False
