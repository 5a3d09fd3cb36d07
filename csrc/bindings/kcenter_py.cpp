// Binding of the CPU kernel: numpy buffers in, indices (and the covering radius) out.
// dalcore/_kcenter.py converts and validates first; the checks here keep direct callers safe.
#include <pybind11/numpy.h>

#include <cstdint>

#include "dalcore/kcenter.h"
#include "dalcore/status.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

py::tuple kcenter_cpu(const py::array& features, std::int64_t budget, const py::array& labeled,
                      bool prune, bool return_radius) {
  if (!py::dtype::of<float>().is(features.dtype()))
    throw TypeMismatch("features: expected float32, got " +
                       std::string(py::str(features.dtype())));
  require(features.ndim() == 2, "features: expected a 2-D array (N, d), got ", features.ndim(),
          " dimension(s)");
  require((features.flags() & py::array::c_style) != 0, "features: expected a C-contiguous array");
  if (!py::dtype::of<std::int64_t>().is(labeled.dtype()))
    throw TypeMismatch("labeled: expected int64 indices, got " +
                       std::string(py::str(labeled.dtype())));
  require(labeled.ndim() == 1, "labeled: expected a 1-D vector of indices");
  require((labeled.flags() & py::array::c_style) != 0, "labeled: expected a contiguous vector");

  const std::int64_t n = features.shape(0), d = features.shape(1);
  const std::int64_t n_labeled = labeled.shape(0);
  check_kcenter_sizes(n, d, n_labeled, budget);

  py::array_t<std::int64_t> out(budget);
  const auto* x = static_cast<const float*>(features.data());
  const auto* lab = static_cast<const std::int64_t*>(labeled.data());
  auto* o = out.mutable_data();
  cpu::KCenterOptions opts;
  opts.prune = prune;
  double radius = -1.0;
  {
    py::gil_scoped_release release;
    cpu::kcenter(x, n, d, lab, n_labeled, budget, o, return_radius ? &radius : nullptr, opts);
  }
  return py::make_tuple(out, radius);
}

}  // namespace

void register_kcenter(py::module_& m) {
  m.def("kcenter", &kcenter_cpu, py::arg("features"), py::arg("budget"), py::arg("labeled"),
        py::arg("prune") = true, py::arg("return_radius") = false,
        "Greedy k-center on the CPU. features: (N, d) float32 C-contiguous; labeled: int64 "
        "indices. Returns (indices int64 (budget,), covering radius or -1).");
}

}  // namespace dalcore::bind
