// Binding of the CPU kernel: numpy buffers in, indices (and the covering radius) out.
// dalcore/_kcenter.py converts and validates first; the checks here keep direct callers safe.
#include <pybind11/numpy.h>

#include <cstdint>

#include "dalcore/detail/kcenter_coarse.h"
#include "dalcore/kcenter.h"
#include "dalcore/status.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

// The optional projection (basis, mean): shapes and dtypes checked against d.
cpu::KCenterProjection projection_of(const py::object& proj, std::int64_t d) {
  cpu::KCenterProjection p;
  if (proj.is_none()) return p;
  const auto t = proj.cast<py::tuple>();
  require(t.size() == 2, "projection: expected (basis, mean)");
  const auto basis = t[0].cast<py::array>(), mean = t[1].cast<py::array>();
  if (!py::dtype::of<double>().is(basis.dtype()) || !py::dtype::of<double>().is(mean.dtype()))
    throw TypeMismatch("projection: expected basis and mean float64");
  const auto contiguous = [](const py::array& a) { return (a.flags() & py::array::c_style) != 0; };
  require(basis.ndim() == 2 && basis.shape(1) == d && contiguous(basis),
          "projection: basis must be a C-contiguous (m, ", d, ") array");
  require(mean.ndim() == 1 && mean.shape(0) == d && contiguous(mean),
          "projection: mean must be a contiguous vector of ", d, " values");
  p.m = basis.shape(0);
  p.basis = static_cast<const double*>(basis.data());
  p.mean = static_cast<const double*>(mean.data());
  return p;
}

py::tuple kcenter_cpu(const py::array& features, std::int64_t budget, const py::array& labeled,
                      bool prune, bool return_radius, const py::object& projection,
                      bool return_stats, bool prune_small) {
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
  opts.prune_small = prune_small;
  opts.projection = projection_of(projection, d);  // the arrays stay referenced by the caller
  cpu::KCenterStats stats;
  if (return_stats) opts.stats = &stats;
  double radius = -1.0;
  {
    py::gil_scoped_release release;
    cpu::kcenter(x, n, d, lab, n_labeled, budget, o, return_radius ? &radius : nullptr, opts);
  }
  if (!return_stats) return py::make_tuple(out, radius, py::none());
  py::dict st;
  st["full_rows"] = stats.full_rows;
  st["projected_rows"] = stats.projected_rows;
  st["visited"] = stats.visited;
  st["dense_picks"] = stats.dense_picks;
  st["coarse_rows"] = stats.coarse_rows;
  return py::make_tuple(out, radius, st);
}

}  // namespace

void register_kcenter(py::module_& m) {
  m.def("kcenter", &kcenter_cpu, py::arg("features"), py::arg("budget"), py::arg("labeled"),
        py::arg("prune") = true, py::arg("return_radius") = false,
        py::arg("projection") = py::none(), py::arg("return_stats") = false,
        py::arg("prune_small") = false,
        "Greedy k-center on the CPU. features: (N, d) float32 C-contiguous; labeled: int64 "
        "indices; projection: None or (basis (m, d) float64, orthonormal rows; mean (d,) "
        "float64), used by the pruned path; prune_small: the pruned path even for small pools. Returns (indices int64 (budget,), covering radius "
        "or -1, stats dict or None).");
  m.def("_kcenter_vnni",
        [](const py::object& allow) {
          const bool in_use = cpu::coarse::vnni_in_use();
          if (!allow.is_none()) cpu::coarse::allow_vnni(allow.cast<bool>());
          return in_use;
        },
        py::arg("allow") = py::none(),
        "Tests: whether the coarse passes of kcenter use AVX-512 VNNI; allow=False makes them "
        "take the portable integer loop, True lets them use VNNI where the CPU has it. Returns "
        "whether VNNI was in use before the call.");
}

}  // namespace dalcore::bind
