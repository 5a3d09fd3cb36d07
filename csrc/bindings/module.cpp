#include "registry.h"

PYBIND11_MODULE(_core, m) {
  using namespace dalcore::bind;
  m.doc() = "dalcore native core: greedy k-center, k-NN graphs, label propagation";
  register_exceptions(m);
  register_info(m);
  register_kcenter(m);
  register_graph(m);
  register_propagate(m);
#ifdef DALCORE_WITH_CUDA
  auto gpu = m.def_submodule("gpu", "CUDA kernels (device pointers, caller's stream)");
  gpu.attr("backend") = "cuda";
  register_gpu_kcenter(gpu);
  register_gpu_graph(gpu);
  register_gpu_propagate(gpu);
#endif
}
