// Binding of the GPU-path propagate (CUDA in _core.gpu, Thrust/OpenMP twin in _core_omp.gpu):
// arrays checked in C++ (device_array.h), the arrays' device made current, the GIL released.
// Labels are validated by dalcore/_propagate.py (on the device); the kernel re-checks sizes,
// parameters and the graph's symmetry.
#include <cstdint>

#include "dalcore/propagate.h"
#include "device_array.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

struct Graph {
  ArrayRef indptr, indices, data;
};

Graph graph_refs(const py::object& indptr, const py::object& indices, const py::object& data,
                 std::uintptr_t stream) {
  Graph g;
  g.indptr = array_ref(indptr, "indptr", Dtype::i64, {-1}, false, stream);
  require(g.indptr.dim(0) >= 2, "graph: indptr must have n + 1 >= 2 entries");
  g.indices = array_ref(indices, "indices", Dtype::i32, {-1}, false, stream);
  g.data = array_ref(data, "data", Dtype::f32, {g.indices.dim(0)}, false, stream);
  return g;
}

std::int64_t propagate_gpu(const py::object& indptr, const py::object& indices,
                           const py::object& data, const py::object& labels,
                           const py::object& class_count, const py::object& x0, double alpha,
                           double tol, std::int64_t max_iter, bool double_vectors,
                           const py::object& z, const py::object& iterations,
                           const py::object& relres, std::uintptr_t stream) {
  const Graph g = graph_refs(indptr, indices, data, stream);
  const std::int64_t n = g.indptr.dim(0) - 1;
  const ArrayRef cc = array_ref(class_count, "class_count", Dtype::i64, {-1}, false, stream);
  const std::int64_t C = cc.dim(0);
  const ArrayRef lab = array_ref(labels, "labels", Dtype::i64, {n}, false, stream);
  const ArrayRef x = optional_array_ref(x0, "x0", Dtype::f32, {n, C}, false, stream);
  const ArrayRef zr = array_ref(z, "z", Dtype::f32, {n, C}, true, stream);
  const ArrayRef it = array_ref(iterations, "iterations", Dtype::i64, {C}, true, stream);
  const ArrayRef rr = array_ref(relres, "relres", Dtype::f64, {C}, true, stream);
  DeviceGuard guard({&g.indptr, &g.indices, &g.data, &cc, &lab, &x, &zr, &it, &rr});
  CsrView view;
  view.indptr = g.indptr.as<const std::int64_t>();
  view.indices = g.indices.as<const std::int32_t>();
  view.data = g.data.as<const float>();
  view.n = n;
  view.nnz = g.indices.dim(0);
  PropagateParams prm;
  prm.alpha = alpha;
  prm.tol = tol;
  prm.max_iter = max_iter;
  prm.double_vectors = double_vectors;
  PropagateOut out;
  out.z = zr.as<float>();
  out.iterations = it.as<std::int64_t>();
  out.relres = rr.as<double>();
  py::gil_scoped_release release;
  return gpu::propagate(view, lab.as<const std::int64_t>(), cc.as<const std::int64_t>(), C,
                        x.as<const float>(), prm, out, stream);
}

}  // namespace

void register_gpu_propagate(py::module_& gpu) {
  gpu.def("propagate", &propagate_gpu, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("labels"), py::arg("class_count"), py::arg("x0"), py::arg("alpha"),
          py::arg("tol"), py::arg("max_iter"), py::arg("double_vectors"), py::arg("z"),
          py::arg("iterations"), py::arg("relres"), py::arg("stream"),
          "Block-CG label propagation, GPU path: CSR (indptr int64, indices int32, data "
          "float32), labels int64 (n,), class_count int64 (C,), x0 float32 (n, C) or None; "
          "outputs z float32 (n, C), iterations int64 (C,), relres float64 (C,). Returns the "
          "number of columns that broke down.");
}

}  // namespace dalcore::bind
