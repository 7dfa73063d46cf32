"""kernels.placement.plan: the Ray options of each slice's actor and the one-line refusals, for CPU
and GPU clusters described by the resources Ray would report (no Ray, no device needed)."""
import pytest

from kernels.placement import GPU_CONTEXT_BYTES, PROCESS_BYTES, PlacementError, plan, split

GB = 10**9


def test_split_is_contiguous_and_even():
    assert split(10, 3) == ((0, 3), (3, 6), (6, 10))
    with pytest.raises(PlacementError, match="material.workers = 11 exceeds the 10 Gauss points"):
        split(10, 11)


def test_gpu_slices_share_devices_in_fractions():
    slices = split(8192, 4)
    p = plan(slices, per_cell=2_000_000, per_batch=1000, gpu=True, available={"GPU": 2.0, "memory": 500 * GB},
             node_memory=[500 * GB], device_memory=80 * GB)
    assert [o["num_gpus"] for o in p.options] == [0.5] * 4 and p.threads == 1
    assert p.slice_bytes == (1000 + 2_000_000 * 2048,) * 4
    assert all(o["memory"] == PROCESS_BYTES + n for o, n in zip(p.options, p.slice_bytes))   # one host copy
    p8 = plan(split(8192, 2), 2_000_000, 1000, True, {"GPU": 8.0, "memory": 500 * GB}, [500 * GB], 80 * GB)
    assert [o["num_gpus"] for o in p8.options] == [4.0, 4.0]          # whole devices when there are enough


def test_gpu_slice_larger_than_its_share_is_refused():
    per_cell = 10 * GB // 1000
    with pytest.raises(PlacementError) as e:         # 4000 cells of 10 MB = 40 GB on half of an 80 GB GPU
        plan(split(8000, 2), per_cell, 0, True, {"GPU": 1.0, "memory": 10**13}, [10**13], 80 * GB)
    line = str(e.value)
    assert "\n" not in line and line.startswith("material.workers = 2: slice 0 (Gauss points 0-3999)")
    assert "GB of GPU memory, more than its share (0.5 of a 80 GB GPU)" in line
    fits = plan(split(8000, 2), per_cell, 0, True, {"GPU": 2.0, "memory": 10**13}, [10**13],
                40 * GB + GPU_CONTEXT_BYTES)
    assert fits.options[0]["num_gpus"] == 1.0


def test_cpu_threads_and_refusals():
    p = plan(split(24, 2), 1_000_000, 0, False, {"CPU": 8.0, "memory": 100 * GB}, [100 * GB], None)
    assert [o["num_cpus"] for o in p.options] == [4.0, 4.0] and p.threads == 4
    assert p.options[0]["memory"] == PROCESS_BYTES + 2 * 12_000_000          # state and its snapshot
    with pytest.raises(PlacementError, match="Ray reports no available GPU"):
        plan(split(24, 2), 1, 0, True, {"CPU": 8.0, "memory": 100 * GB}, [100 * GB], None)
    with pytest.raises(PlacementError, match="more than the largest node has for Ray"):
        plan(split(24, 2), 10 * GB, 0, False, {"CPU": 8.0, "memory": 10**13}, [100 * GB], None)
    with pytest.raises(PlacementError, match="more than Ray reports available"):
        plan(split(24, 2), GB, 0, False, {"CPU": 8.0, "memory": 20 * GB}, [100 * GB], None)
