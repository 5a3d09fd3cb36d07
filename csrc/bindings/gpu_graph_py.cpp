// Binding of the GPU-path knn_graph (device pointers under CUDA, host pointers under the OpenMP
// twin). Output size is known only after counting, so the work is split in two calls sharing a
// caller-allocated workspace: count -> indptr (returns nnz), then fill -> indices, data.
#include <cstdint>
#include <string>

#include "dalcore/graph.h"
#include "registry.h"

namespace dalcore::bind {

namespace {
template <class T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}
}  // namespace

void register_gpu_graph(py::module_& gpu) {
  gpu.def(
      "knn_graph_workspace_bytes",
      [](std::int64_t n, std::int64_t k, const std::string& mode) {
        require(n >= 1 && k >= 1, "knn_result: expected at least one row and one column");
        return gpu::workspace_bytes(n, k, parse_graph_mode(mode));
      },
      py::arg("n"), py::arg("k"), py::arg("mode"));
  gpu.def(
      "knn_graph_count",
      [](std::uintptr_t sims, std::uintptr_t idx, std::int64_t n, std::int64_t k, double gamma,
         const std::string& mode, std::uintptr_t workspace, std::size_t workspace_size,
         std::uintptr_t indptr, std::uintptr_t stream) {
        const GraphMode md = parse_graph_mode(mode);
        const KnnLists lists{ptr<const float>(sims), ptr<const std::int64_t>(idx), n, k};
        py::gil_scoped_release nogil;
        return gpu::knn_graph_count(lists, gamma, md, ptr<void>(workspace), workspace_size,
                                    ptr<std::int64_t>(indptr), stream);
      },
      py::arg("sims"), py::arg("indices"), py::arg("n"), py::arg("k"), py::arg("gamma"),
      py::arg("mode"), py::arg("workspace"), py::arg("workspace_size"), py::arg("indptr"),
      py::arg("stream"),
      "Validates and sorts the k-NN lists into the workspace, writes indptr[n + 1], returns nnz.");
  gpu.def(
      "knn_graph_fill",
      [](std::int64_t n, std::int64_t k, const std::string& mode, std::uintptr_t workspace,
         std::size_t workspace_size, std::uintptr_t indptr, std::uintptr_t indices,
         std::uintptr_t data, std::uintptr_t stream) {
        const GraphMode md = parse_graph_mode(mode);
        py::gil_scoped_release nogil;
        gpu::knn_graph_fill(n, k, md, ptr<void>(workspace), workspace_size,
                            ptr<const std::int64_t>(indptr), ptr<std::int32_t>(indices),
                            ptr<float>(data), stream);
      },
      py::arg("n"), py::arg("k"), py::arg("mode"), py::arg("workspace"),
      py::arg("workspace_size"), py::arg("indptr"), py::arg("indices"), py::arg("data"),
      py::arg("stream"), "Writes indices[nnz] (int32) and data[nnz] (float32) after knn_graph_count.");
}

}  // namespace dalcore::bind
