// Binding of the GPU path of kcenter: arrays checked in C++ (device_array.h: CUDA arrays in _core,
// host arrays in the OpenMP twin _core_omp), the arrays' device made current, the GIL released.
#include <cstdint>

#include "dalcore/kcenter.h"
#include "device_array.h"
#include "registry.h"

namespace dalcore::bind {

void register_gpu_kcenter(py::module_& gpu) {
  gpu.def(
      "kcenter",
      [](const py::object& features, const py::object& labeled, const py::object& out,
         const py::object& radius, std::uintptr_t stream) {
        const ArrayRef x = array_ref(features, "features", Dtype::f32, {-1, -1}, false, stream);
        const ArrayRef lab = array_ref(labeled, "labeled", Dtype::i64, {-1}, false, stream);
        const ArrayRef o = array_ref(out, "out", Dtype::i64, {-1}, true, stream);
        const ArrayRef r = optional_array_ref(radius, "radius", Dtype::f64, {}, true, stream);
        check_kcenter_sizes(x.dim(0), x.dim(1), lab.dim(0), o.dim(0));
        DeviceGuard guard({&x, &lab, &o, &r});
        py::gil_scoped_release release;
        gpu::kcenter(x.as<const float>(), x.dim(0), x.dim(1), lab.as<const std::int64_t>(),
                     lab.dim(0), o.dim(0), o.as<std::int64_t>(), r.as<double>(), stream);
      },
      py::arg("features"), py::arg("labeled"), py::arg("out"), py::arg("radius"),
      py::arg("stream"),
      "Greedy k-center, GPU path: features (n, d) float32, labeled (n_labeled,) int64 (distinct, "
      "in range: checked by the caller), out (budget,) int64, radius 0-d float64 or None; "
      "stream: cudaStream_t as an integer. Asynchronous on CUDA (stream-ordered).");
}

}  // namespace dalcore::bind
