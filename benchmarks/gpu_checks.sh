#!/usr/bin/env bash
# The GPU checks the issues ask for (DEM batch throughput and memory, FEM-DEM at paper scale, calibration
# on the device, the suite on CUDA with its named skips), as one prepared run for a session that is lent a
# GPU machine (see BENCHMARKS.md; prepared without a GPU, not yet run). The machine has Python 3.12
# with numpy, click, h5py, matplotlib, tqdm, pytest and torch, but not taichi, dill or meshio: carry
# them as wheels in .whl (taichi==1.7.4 cp312, dill, meshio; see the device tool's README), then run
#   python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl && \
#   export PYTHONPATH=/tmp/site:$PWD && bash benchmarks/gpu_checks.sh
set -u
export PYTHONUNBUFFERED=1
out=${OUT:-gpu-out}
mkdir -p "$out"
run() { echo "== $*" | tee -a "$out/log.txt"; "$@" 2>&1 | tee -a "$out/log.txt"; }
nvidia-smi --query-gpu=name,memory.total --format=csv | tee -a "$out/log.txt"
# batched cells on the GPU = one cell; FEM patch tests; calibration bridge on CUDA
# (-o addopts="": the device may lack pytest-xdist, which setup.cfg's -n 2 needs)
run python3 -m pytest -o addopts="" -q -m "not slow" -p no:cacheprovider --arch cuda --fp f64 tests/unit/test_dem_rve.py tests/unit/test_periodic_cell.py \
    tests/verification/test_patch.py tests/unit/test_calibrate.py
run python3 benchmarks/fem_elastic.py --arch cuda --fp f32 --steps 500
run python3 benchmarks/fem_elastic.py --arch cuda --fp f64 --steps 500
run python3 benchmarks/dem_rve.py --arch cuda --fp f32 --dim 2 --cells 484 --steps 200
run python3 benchmarks/dem_rve.py --arch cuda --fp f32 --dim 3 --cells 8192 --steps 50
# calibration on the device (issue 16): the data stays on the GPU (torch CUDA tensors exchanged with
# Taichi in place); a few Adam epochs with --arch cuda against the CPU, f64 and f32 (exit 1 when they
# differ beyond 1e-8 / 1e-3), and one epoch at the footing dataset's size (552 points x 7500 steps)
run python3 benchmarks/calibration_device.py --arch cuda --fp f64 --epochs 5
run python3 benchmarks/calibration_device.py --arch cuda --fp f32 --epochs 5
run python3 benchmarks/calibration.py --epoch --arch cuda --fp f64 --points 552 --steps 7500 --extreme 12 --chunk-points 552
run python3 benchmarks/calibration.py --epoch --arch cuda --fp f32 --points 552 --steps 7500 --extreme 12 --chunk-points 552
# FEM-DEM at paper scale, a few macro steps to extrapolate the wall time of the full runs
run python3 -m engine.cli run cases/strip_footing.toml --set "material.model='dem'" --set run.steps=10 \
    --arch cuda --fp f32 --no-progress --out /tmp/footing_dem_gpu
run python3 -m engine.cli run cases/biaxial.toml --set "material.model='dem'" --set run.steps=20 \
    --arch cuda --fp f32 --no-progress --out /tmp/biaxial_dem_gpu
run python3 -m engine.cli run cases/ctc.toml --set "material.model='dem'" --set run.steps=3 \
    --arch cuda --fp f32 --no-progress --out /tmp/ctc_dem_gpu
cp /tmp/footing_dem_gpu/run.json "$out/footing_dem_run.json" 2>/dev/null
cp /tmp/ctc_dem_gpu/run.json "$out/ctc_dem_run.json" 2>/dev/null
cp /tmp/biaxial_dem_gpu/run.json "$out/biaxial_dem_run.json" 2>/dev/null
# the suite on CUDA in f32, the tests that cannot run there skipped by name (tests/backend_skips.py)
run timeout 300 python3 -m pytest -o addopts="" -q -m "not slow" -p no:cacheprovider -rs --arch cuda --fp f32 \
    tests/unit tests/verification
