// Binding of the GPU path of kcenter: raw pointers (device pointers under CUDA, host pointers in
// _core_omp) and a stream handle. dalcore/_kcenter.py validates the arrays behind the pointers.
#include <cstdint>

#include "dalcore/kcenter.h"
#include "registry.h"

namespace dalcore::bind {

void register_gpu_kcenter(py::module_& gpu) {
  gpu.def(
      "kcenter",
      [](std::uintptr_t features, std::int64_t n, std::int64_t d, std::uintptr_t labeled,
         std::int64_t n_labeled, std::int64_t budget, std::uintptr_t out, std::uintptr_t radius,
         std::uintptr_t stream) {
        check_kcenter_sizes(n, d, n_labeled, budget);
        require(features != 0 && out != 0, "features/out: null pointer");
        require(n_labeled == 0 || labeled != 0, "labeled: null pointer");
        py::gil_scoped_release release;
        gpu::kcenter(reinterpret_cast<const float*>(features), n, d,
                     reinterpret_cast<const std::int64_t*>(labeled), n_labeled, budget,
                     reinterpret_cast<std::int64_t*>(out), reinterpret_cast<float*>(radius),
                     stream);
      },
      py::arg("features"), py::arg("n"), py::arg("d"), py::arg("labeled"), py::arg("n_labeled"),
      py::arg("budget"), py::arg("out"), py::arg("radius"), py::arg("stream"),
      "Greedy k-center, GPU path. Pointers: features (n, d) float32 row-major, labeled int64 "
      "(n_labeled,), out int64 (budget,), radius float32 (1,) or 0; stream: cudaStream_t. "
      "Asynchronous on CUDA (stream-ordered).");
}

}  // namespace dalcore::bind
