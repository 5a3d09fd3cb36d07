// Binding of the GPU-path knn_graph: arrays checked in C++ (device_array.h). The output size is
// known only after counting, so the work is split in two calls sharing a caller-allocated
// workspace: count -> indptr (returns nnz), then fill -> indices, data.
#include <cstdint>
#include <string>

#include "dalcore/graph.h"
#include "device_array.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

std::int64_t count(const py::object& sims, const py::object& indices, double gamma,
                   const std::string& mode, const py::object& workspace,
                   const py::object& indptr, std::uintptr_t stream) {
  const GraphMode md = parse_graph_mode(mode);
  const ArrayRef s = array_ref(sims, "sims", Dtype::f32, {-1, -1}, false, stream);
  const ArrayRef i = array_ref(indices, "indices", Dtype::i64, {s.dim(0), s.dim(1)}, false,
                               stream);
  const ArrayRef ws = array_ref(workspace, "workspace", Dtype::u8, {-1}, true, stream);
  const ArrayRef p = array_ref(indptr, "indptr", Dtype::i64, {s.dim(0) + 1}, true, stream);
  const KnnLists lists{s.as<const float>(), i.as<const std::int64_t>(), s.dim(0), s.dim(1)};
  DeviceGuard guard({&s, &i, &ws, &p});
  py::gil_scoped_release nogil;
  return gpu::knn_graph_count(lists, gamma, md, ws.data, static_cast<std::size_t>(ws.dim(0)),
                              p.as<std::int64_t>(), stream);
}

void fill(std::int64_t k, const std::string& mode, const py::object& workspace,
          const py::object& indptr, const py::object& indices, const py::object& data,
          std::uintptr_t stream) {
  const GraphMode md = parse_graph_mode(mode);
  // read here: count's sorted lists and degrees (not an output, so never poisoned)
  const ArrayRef ws = array_ref(workspace, "workspace", Dtype::u8, {-1}, false, stream);
  const ArrayRef p = array_ref(indptr, "indptr", Dtype::i64, {-1}, false, stream);
  require(p.dim(0) >= 2, "indptr: expected n + 1 >= 2 entries, got ", p.dim(0));
  const ArrayRef c = array_ref(indices, "indices", Dtype::i32, {-1}, true, stream);
  const ArrayRef v = array_ref(data, "data", Dtype::f32, {c.dim(0)}, true, stream);
  DeviceGuard guard({&ws, &p, &c, &v});
  py::gil_scoped_release nogil;
  gpu::knn_graph_fill(p.dim(0) - 1, k, md, ws.data, static_cast<std::size_t>(ws.dim(0)),
                      p.as<const std::int64_t>(), c.dim(0), c.as<std::int32_t>(),
                      v.as<float>(), stream);
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
  gpu.def("knn_graph_count", &count, py::arg("sims"), py::arg("indices"), py::arg("gamma"),
          py::arg("mode"), py::arg("workspace"), py::arg("indptr"), py::arg("stream"),
          "Validates and sorts the k-NN lists (sims (n, k) float32, indices (n, k) int64) into "
          "the workspace (uint8), writes indptr (n + 1,) int64, returns nnz (one host "
          "synchronisation).");
  gpu.def("knn_graph_fill", &fill, py::arg("k"), py::arg("mode"), py::arg("workspace"),
          py::arg("indptr"), py::arg("indices"), py::arg("data"), py::arg("stream"),
          "Writes indices (nnz,) int32 and data (nnz,) float32 after knn_graph_count; never "
          "past their length. Stream-ordered, no synchronisation.");
}

}  // namespace dalcore::bind
