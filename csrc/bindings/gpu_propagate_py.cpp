// Binding of the GPU-path propagate (CUDA in _core.gpu, Thrust/OpenMP twin in _core_omp.gpu):
// raw pointers (device pointers under CUDA, host pointers under the twin) and a stream handle.
// Arguments are validated by dalcore/_propagate.py; the kernel re-checks sizes and parameters.
#include <cstdint>

#include "dalcore/propagate.h"
#include "registry.h"

namespace dalcore::bind {
namespace {

template <class T>
T* ptr(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

std::int64_t propagate_gpu(std::uintptr_t indptr, std::uintptr_t indices, std::uintptr_t data,
                           std::int64_t n, std::int64_t nnz, std::uintptr_t labels,
                           std::uintptr_t class_count, std::int64_t num_classes,
                           std::uintptr_t x0, double alpha, double tol, std::int64_t max_iter,
                           bool double_vectors, std::uintptr_t z, std::uintptr_t iterations,
                           std::uintptr_t relres, std::uintptr_t stream) {
  CsrView g;
  g.indptr = ptr<const std::int64_t>(indptr);
  g.indices = ptr<const std::int32_t>(indices);
  g.data = ptr<const float>(data);
  g.n = n;
  g.nnz = nnz;
  PropagateParams prm;
  prm.alpha = alpha;
  prm.tol = tol;
  prm.max_iter = max_iter;
  prm.double_vectors = double_vectors;
  PropagateOut out;
  out.z = ptr<float>(z);
  out.iterations = ptr<std::int64_t>(iterations);
  out.relres = ptr<double>(relres);
  py::gil_scoped_release release;
  return gpu::propagate(g, ptr<const std::int64_t>(labels), ptr<const std::int64_t>(class_count),
                        num_classes, ptr<const float>(x0), prm, out, stream);
}

}  // namespace

void register_gpu_propagate(py::module_& gpu) {
  gpu.def("propagate", &propagate_gpu, py::arg("indptr"), py::arg("indices"), py::arg("data"),
          py::arg("n"), py::arg("nnz"), py::arg("labels"), py::arg("class_count"),
          py::arg("num_classes"), py::arg("x0"), py::arg("alpha"), py::arg("tol"),
          py::arg("max_iter"), py::arg("double_vectors"), py::arg("z"), py::arg("iterations"),
          py::arg("relres"), py::arg("stream"),
          "Block-CG label propagation on device pointers (CSR int64/int32/float32, labels "
          "int64, class_count int64, x0 float32 or 0, outputs z float32 (n, C), iterations "
          "int64 (C), relres float64 (C)); returns the number of columns that broke down.");
}

}  // namespace dalcore::bind
