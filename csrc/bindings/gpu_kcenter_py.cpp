// Binding of the GPU path of kcenter: arrays checked in C++ (device_array.h: CUDA arrays in _core,
// host arrays in the OpenMP twin _core_omp), the arrays' device made current, the GIL released.
// `kcenter` runs the tiled kernels (csrc/cuda/kcenter.cu), `kcenter_reference` the Thrust form
// they are tested against (csrc/cuda/kcenter_reference.cu).
#include <pybind11/numpy.h>

#include <cstdint>

#include "dalcore/kcenter.h"
#include "dalcore/status.h"
#include "device_array.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

using HostF64 = py::array_t<double, py::array::c_style | py::array::forcecast>;

struct KCenterArgs {
  ArrayRef x, lab, out, radius;
};

KCenterArgs checked(const py::object& features, const py::object& labeled, const py::object& out,
                    const py::object& radius, std::uintptr_t stream) {
  KCenterArgs a{array_ref(features, "features", Dtype::f32, {-1, -1}, false, stream),
                array_ref(labeled, "labeled", Dtype::i64, {-1}, false, stream),
                array_ref(out, "out", Dtype::i64, {-1}, true, stream),
                optional_array_ref(radius, "radius", Dtype::f64, {}, true, stream)};
  check_kcenter_sizes(a.x.dim(0), a.x.dim(1), a.lab.dim(0), a.out.dim(0));
  return a;
}

// The projection's basis (m, d) and mean (d,): host float64 arrays (they are small; C++ rounds,
// validates and copies them to the device).
void host_projection(const py::object& basis, const py::object& mean, std::int64_t d,
                     HostF64& b, HostF64& mu, gpu::GpuKCenterOptions& o) {
  if (basis.is_none() && mean.is_none()) return;
  require(!basis.is_none() && !mean.is_none(),
          "projection: expected both the basis and the mean, or neither");
  b = HostF64::ensure(basis);
  mu = HostF64::ensure(mean);
  if (!b || !mu) throw TypeMismatch("projection: expected basis and mean as float64 arrays");
  require(b.ndim() == 2 && b.shape(1) == d && b.shape(0) >= 1,
          "projection: basis must be an (m, ", d, ") array with m >= 1");
  require(mu.ndim() == 1 && mu.shape(0) == d, "projection: mean must be a vector of ", d,
          " values");
  o.basis = b.data();
  o.mean = mu.data();
  o.m = b.shape(0);
}

py::object run_kcenter(const py::object& features, const py::object& labeled,
                       const py::object& out, const py::object& radius, std::uintptr_t stream,
                       const py::object& basis, const py::object& mean, int graph,
                       bool count_full_rows) {
  const KCenterArgs a = checked(features, labeled, out, radius, stream);
  require(graph >= -1 && graph <= 1, "graph: expected -1 (auto), 0 or 1, got ", graph);
  gpu::GpuKCenterOptions o;
  HostF64 b, mu;
  host_projection(basis, mean, a.x.dim(1), b, mu, o);
  o.graph = graph;
  std::int64_t full = 0;
  if (count_full_rows) o.full_rows = &full;
  {
    DeviceGuard guard({&a.x, &a.lab, &a.out, &a.radius});
    py::gil_scoped_release release;
    gpu::kcenter(a.x.as<const float>(), a.x.dim(0), a.x.dim(1), a.lab.as<const std::int64_t>(),
                 a.lab.dim(0), a.out.dim(0), a.out.as<std::int64_t>(), a.radius.as<double>(),
                 stream, o);
  }
  return count_full_rows ? py::object(py::int_(full)) : py::object(py::none());
}

void run_reference(const py::object& features, const py::object& labeled, const py::object& out,
                   const py::object& radius, std::uintptr_t stream) {
  const KCenterArgs a = checked(features, labeled, out, radius, stream);
  DeviceGuard guard({&a.x, &a.lab, &a.out, &a.radius});
  py::gil_scoped_release release;
  gpu::kcenter_reference(a.x.as<const float>(), a.x.dim(0), a.x.dim(1),
                         a.lab.as<const std::int64_t>(), a.lab.dim(0), a.out.dim(0),
                         a.out.as<std::int64_t>(), a.radius.as<double>(), stream);
}

}  // namespace

void register_gpu_kcenter(py::module_& gpu) {
  gpu.def("kcenter", &run_kcenter, py::arg("features"), py::arg("labeled"), py::arg("out"),
          py::arg("radius"), py::arg("stream"), py::kw_only(), py::arg("basis") = py::none(),
          py::arg("mean") = py::none(), py::arg("graph") = -1,
          py::arg("count_full_rows") = false,
          "Greedy k-center, GPU path (tiled kernels): features (n, d) float32, labeled "
          "(n_labeled,) int64 (distinct, in range: checked by the caller), out (budget,) int64, "
          "radius 0-d float64 or None; stream: cudaStream_t as an integer. basis (m, d) and "
          "mean (d,): host float64, the projection lower bound (same picks). graph: -1 auto, "
          "0/1: capture the pick loop into a CUDA graph. Asynchronous on CUDA (stream-ordered); "
          "count_full_rows: return the number of rows the picks read in full (synchronises).");
  gpu.def("kcenter_reference", &run_reference, py::arg("features"), py::arg("labeled"),
          py::arg("out"), py::arg("radius"), py::arg("stream"),
          "The reference (Thrust, one thread per row) form of gpu.kcenter, for the tests.");
}

}  // namespace dalcore::bind
