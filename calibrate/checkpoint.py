"""The checkpoint of a calibration: one file, ``checkpoint.pt`` in its out folder, replaced atomically.

It holds the optimiser's state (``calibrate.optimisers``), the epochs done, the history, the best
parameters so far and the wall time spent (s). Written with ``torch.save`` (pickle): read only
checkpoints you wrote.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

NAME = "checkpoint.pt"


def save(path: Path, state: dict) -> None:
    """Write ``state`` to ``path`` through a temporary file (an interrupted write leaves the old one)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load(path: Path) -> dict:
    """The state written by :func:`save`; FileNotFoundError naming the file when there is none."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint (the calibration wrote none yet)")
    return torch.load(path, weights_only=False)
