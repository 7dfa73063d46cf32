"""kernels.material.read_parts: a checkpoint's slices, written by any partition, read back for any
range of points."""
import numpy as np

from kernels.material import read_parts


def _write(folder, state, cuts):
    """Slice files of ``state`` cut at ``cuts``; the checkpoint index."""
    names, ranges = [], []
    for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:])):
        names.append(f"cells/s.w{i}.npz")
        ranges.append((a, b))
        np.savez(folder / names[-1], **{k: v[a:b] for k, v in state.items()})
    return {"parts_range": np.array(ranges), "parts_file": np.array(names)}


def test_any_range_from_any_partition(tmp_path):
    (tmp_path / "cells").mkdir()
    rng = np.random.default_rng(0)
    state = {"cells.x": rng.random((10, 5, 2)), "rve_stress0": rng.random((10, 3, 3)), "flag": np.arange(10) % 3 == 0}
    index = _write(tmp_path, state, [0, 4, 7, 10])                      # written by 3 workers
    whole = read_parts(index, tmp_path)
    assert all(np.array_equal(whole[k], state[k]) for k in state)
    for a, b in [(0, 5), (5, 10), (3, 8), (6, 7)]:                      # read by 2 workers, or odd slices
        got = read_parts(index, tmp_path, a, b)
        assert all(np.array_equal(got[k], state[k][a:b]) for k in state), (a, b)
