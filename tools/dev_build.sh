#!/usr/bin/env bash
# In-place development build: compiles _core (and _core_omp) into build/dev and copies them into
# dalcore/ so that `PYTHONPATH=. python -m pytest` runs against the working tree.
#   DALCORE_CUDA=OFF tools/dev_build.sh   # skip nvcc for a fast edit-compile-test loop
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
BUILD=${BUILD_DIR:-build/dev}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DDALCORE_CUDA="${DALCORE_CUDA:-AUTO}" -DDALCORE_OMP_TWIN="${DALCORE_OMP_TWIN:-AUTO}" \
  -Dpybind11_DIR="$($PY -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$(command -v $PY)" >/dev/null
cmake --build "$BUILD" -j"${JOBS:-2}"
cp -f "$BUILD"/_core*.so dalcore/
