// Binding of the CPU knn_graph kernel: numpy buffers in, (indptr, indices, data) numpy arrays out.
// The Python border (dalcore/_graph.py) converts dtypes; shapes are checked again here.
#include <pybind11/numpy.h>

#include <memory>
#include <string>

#include "dalcore/graph.h"
#include "dalcore/status.h"
#include "registry.h"

namespace dalcore::bind {

namespace {

using f32_array = py::array_t<float, py::array::c_style>;
using i64_array = py::array_t<std::int64_t, py::array::c_style>;

py::tuple knn_graph_cpu(const f32_array& sims, const i64_array& idx, double gamma,
                        const std::string& mode) {
  const GraphMode md = parse_graph_mode(mode);
  require(sims.ndim() == 2 && idx.ndim() == 2, "knn_result: expected two 2-D arrays (N, k)");
  require(sims.shape(0) == idx.shape(0) && sims.shape(1) == idx.shape(1),
          "knn_result: similarities and indices must have the same shape, got (", sims.shape(0),
          ", ", sims.shape(1), ") and (", idx.shape(0), ", ", idx.shape(1), ")");
  KnnLists lists{sims.data(), idx.data(), sims.shape(0), sims.shape(1)};
  std::unique_ptr<cpu::KnnGraphBuilder> builder;
  {
    py::gil_scoped_release nogil;
    builder = std::make_unique<cpu::KnnGraphBuilder>(lists, gamma, md);
  }
  py::array_t<std::int64_t> indptr(builder->n() + 1);
  py::array_t<std::int32_t> indices(builder->nnz());
  py::array_t<float> data(builder->nnz());
  {
    std::int64_t* p = indptr.mutable_data();
    std::int32_t* c = indices.mutable_data();
    float* d = data.mutable_data();
    py::gil_scoped_release nogil;
    builder->fill(p, c, d);
  }
  return py::make_tuple(indptr, indices, data);
}

}  // namespace

void register_graph(py::module_& m) {
  m.def("knn_graph", &knn_graph_cpu, py::arg("sims"), py::arg("indices"), py::arg("gamma"),
        py::arg("mode"),
        "k-NN lists (N, k) -> symmetric normalised affinity D^-1/2 W D^-1/2 as CSR\n"
        "(indptr int64, indices int32, data float32). mode: 'reciprocal' | 'union'.");
  m.def("knn_graph_release_scratch", &cpu::release_graph_scratch,
        "Free the scratch buffers knn_graph keeps from its last build (up to 512 MiB).");
}

}  // namespace dalcore::bind
