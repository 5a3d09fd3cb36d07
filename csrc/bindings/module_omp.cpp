// Test-only module: the CUDA-path sources compiled on Thrust's OpenMP backend.
#include "registry.h"

namespace dalcore::bind {
void register_poison_probe(py::module_& gpu);  // csrc/omp/poison_probe.cpp
void register_launch_order(py::module_& gpu);  // csrc/omp/launch_order.cpp
}


PYBIND11_MODULE(_core_omp, m) {
  using namespace dalcore::bind;
  m.doc() = "dalcore GPU-path kernels on Thrust's OpenMP backend (tests only)";
  register_exceptions(m);
  auto gpu = m.def_submodule("gpu", "GPU-path kernels on the OpenMP backend (host pointers)");
  gpu.attr("backend") = "omp";
  register_gpu_kcenter(gpu);
  register_gpu_graph(gpu);
  register_gpu_propagate(gpu);
  register_poison_probe(gpu);
  register_launch_order(gpu);
}
