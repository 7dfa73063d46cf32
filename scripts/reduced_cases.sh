#!/usr/bin/env bash
# The paper's six boundary value problems at a scale this CPU runs in about an hour: FEM-DEM with
# 64-particle cells on the coarse meshes, and the Original CSUH on the same meshes, then
# `engine compare` of each pair (docs/cases.md, "The paper's cases at reduced scale").
#
# FEM-DEM runs keep the cases' loading (velocity, total displacement, confinement) in fewer,
# larger steps, as many as `engine run --dry-run` needs to call the run quasi-static (loading time
# >= 10 periods of the mass-scaled mesh), and enough DEM steps per increment for an inertia number
# near 1e-3. CSUH runs keep the cases' own steps.
#
# usage: bash scripts/reduced_cases.sh [OUT]     (default OUT: runs/reduced)
set -euo pipefail
out=${1:-runs/reduced}
mkdir -p "$out"
dem() {   # name case mesh packing steps dt steps_per_increment [extra --set ...]
  local name=$1 case=$2 mesh=$3 pack=$4 steps=$5 dt=$6 spi=$7; shift 7
  [ -f "$out/$name/run.json" ] && grep -q '"completed"' "$out/$name/run.json" && return 0
  rm -rf "${out:?}/$name"
  engine run "cases/$case.toml" --set material.model="'dem'" --set mesh.file="'assets/meshes/$mesh'" \
    --set material.dem.packing="'assets/packings/$pack'" --set run.steps="$steps" --set run.dt="$dt" \
    --set material.dem.steps_per_increment="$spi" --set output.dataset=true "$@" --out "$out/$name" --no-progress
}
csuh() {  # name case mesh
  rm -rf "${out:?}/$1"
  engine run "cases/$2.toml" --set mesh.file="'assets/meshes/$3'" --set output.dataset=true --out "$out/$1" --no-progress
}
dem footing-dem strip_footing strip_footing_coarse.msh disks64_100kPa.npz 4875 3.0769e-4 40
dem biaxial-dem biaxial biaxial_coarse.msh disks64_100kPa.npz 2000 5e-4 80
dem wall-dem retaining_wall retaining_wall_coarse.msh disks64_100kPa.npz 2700 4.4444e-4 70
dem ctc-dem ctc ctc_coarse.msh spheres64_100kPa.npz 710 2e-3 110
dem ptc-dem ptc ctc_coarse.msh spheres64_100kPa.npz 710 2e-3 110 --set material.dem.on_cap="'warn'"
dem cavity-dem cavity cavity_coarse.msh disks64_100kPa.npz 2840 5e-4 100 --set run.dt_safety=0.9
csuh footing-csuh strip_footing strip_footing_coarse.msh
csuh biaxial-csuh biaxial biaxial_coarse.msh
csuh wall-csuh retaining_wall retaining_wall_coarse.msh
csuh ctc-csuh ctc ctc_coarse.msh
csuh ptc-csuh ptc ctc_coarse.msh
csuh cavity-csuh cavity cavity_coarse.msh
for c in footing biaxial wall ctc ptc cavity; do
  engine compare "$out/$c-dem" "$out/$c-csuh" --out "$out/compare-$c"
done
