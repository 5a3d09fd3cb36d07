// Binding of the CPU propagate kernel: numpy buffers in (already validated and converted by
// dalcore/_propagate.py), numpy out; the GIL is released while the kernel runs.
#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <optional>

#include "dalcore/propagate.h"
#include "dalcore/status.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

template <class T>
using carray = py::array_t<T, py::array::c_style>;

py::tuple propagate_cpu(const carray<std::int64_t>& indptr, const carray<std::int32_t>& indices,
                        const carray<float>& data, const carray<std::int64_t>& labels,
                        std::int64_t num_classes, const std::optional<carray<float>>& x0,
                        double alpha, double tol, std::int64_t max_iter, bool double_vectors,
                        int reorder) {
  require(indptr.ndim() == 1 && indptr.size() >= 2, "graph: indptr must be 1-D with n + 1 >= 2 entries");
  const std::int64_t n = indptr.size() - 1;
  require(indices.ndim() == 1 && data.ndim() == 1 && indices.size() == data.size(),
          "graph: indices and data must be 1-D of the same length, got ", indices.size(), " and ",
          data.size());
  require(labels.ndim() == 1 && labels.size() == n, "labels: expected length ", n, ", got ",
          labels.size());
  require(num_classes >= 1, "num_classes: expected >= 1, got ", num_classes);
  const float* x0p = nullptr;
  if (x0) {
    require(x0->ndim() == 2 && x0->shape(0) == n && x0->shape(1) == num_classes,
            "x0: expected shape (", n, ", ", num_classes, ")");
    x0p = x0->data();
  }
  CsrView g;
  g.indptr = indptr.data();
  g.indices = indices.data();
  g.data = data.data();
  g.n = n;
  g.nnz = indices.size();
  PropagateParams prm;
  prm.alpha = alpha;
  prm.tol = tol;
  prm.max_iter = max_iter;
  prm.double_vectors = double_vectors;
  prm.reorder = reorder;
  carray<float> z({n, num_classes});
  carray<std::int64_t> iters(num_classes);
  carray<double> relres(num_classes);
  PropagateOut out;
  out.z = z.mutable_data();
  out.iterations = iters.mutable_data();
  out.relres = relres.mutable_data();
  const std::int64_t* lab = labels.data();
  {
    py::gil_scoped_release release;
    cpu::propagate(g, lab, num_classes, x0p, prm, out);
  }
  return py::make_tuple(z, iters, relres);
}

}  // namespace

void register_propagate(py::module_& m) {
  m.def("propagate", &propagate_cpu, py::arg("indptr"), py::arg("indices"), py::arg("data"),
        py::arg("labels"), py::arg("num_classes"), py::arg("x0"), py::arg("alpha"),
        py::arg("tol"), py::arg("max_iter"), py::arg("double_vectors") = false, py::arg("reorder") = -1,
        "Block-CG label propagation on a CSR graph (int64 indptr, int32 indices, float32 data): "
        "returns (Z (n, C) float32, iterations (C,) int64, relative residuals (C,) float64).");
}

}  // namespace dalcore::bind
