// Public C++ API of propagate: label propagation by block conjugate gradient.
//
// Solves (I - alpha S) Z = Y for all C columns at once, where S is a symmetric sparse affinity in
// CSR form (normalised, so that I - alpha S is positive definite for 0 < alpha < 1) and
// Y[i, c] = 1 / |L_c| for the labeled rows i of class c. Each column runs its own conjugate
// gradient (its own step, direction and residual scalars) but all columns share one CSR
// sparse-times-dense product per iteration, so the graph is read once for every class.
// A column stops updating once its relative residual ||r_c|| / ||b_c|| <= tol.
//
// Two implementations with the same signature and algorithm:
//   dalcore::cpu  (csrc/cpu/propagate.cpp): OpenMP over row blocks, host pointers.
//   dalcore::gpu  (csrc/cuda/propagate.cu): Thrust (CUDA; or OpenMP in the test twin),
//                 device pointers on `stream`, CG scalars kept on the device.
#pragma once

#include <cstdint>

#include "dalcore/status.h"

namespace dalcore {

struct PropagateParams {
  double alpha = 0.99;     // in (0, 1)
  double tol = 1e-6;       // >= 0: per-column relative residual target; 0 = exactly max_iter
                           // iterations (the paper's fixed 20), unless a residual reaches 0
  std::int64_t max_iter = 20;  // >= 0; 0 returns the start vector (x0, or zeros)
  bool double_vectors = false;  // CG vectors (x, r, p, Ap) in float64 instead of float32
  // CPU only: renumber the nodes in breadth-first order for cache locality of the SpMM
  // (-1: when an n x C vector exceeds 1 MiB; 0: never; 1: always). Z is returned in the
  // caller's order either way.
  int reorder = -1;
};

// The graph: n x n CSR, indptr[n + 1] (int64, indptr[0] == 0), indices[nnz] (int32, < n),
// data[nnz] (float32, finite). Duplicated entries are summed; column order within a row is free.
struct CsrView {
  const std::int64_t* indptr = nullptr;
  const std::int32_t* indices = nullptr;
  const float* data = nullptr;
  std::int64_t n = 0;
  std::int64_t nnz = 0;
};

// Outputs: z[n * C] (row-major float32), iterations[C] (CG iterations each column ran),
// relres[C] (final relative residual of the recursively updated residual, per column).
struct PropagateOut {
  float* z = nullptr;
  std::int64_t* iterations = nullptr;
  double* relres = nullptr;
};

// The parameter checks of both paths (throw InvalidArgument naming the parameter).
inline void check_propagate_params(const PropagateParams& p) {
  require(p.alpha > 0.0 && p.alpha < 1.0, "alpha: expected 0 < alpha < 1, got ", p.alpha);
  require(p.tol >= 0.0 && p.tol <= 1.7976931348623157e308, "tol: expected a finite number >= 0, got ",
          p.tol);
  require(p.max_iter >= 0, "max_iter: expected an integer >= 0, got ", p.max_iter);
}

namespace cpu {
// labels[n]: -1 (unlabeled) or a class in [0, num_classes); every class must have a label.
// x0: nullptr, or an n x C row-major float32 warm start.
// Throws InvalidArgument on bad sizes / labels / indices, and when a column meets p.Ap <= 0
// (I - alpha S not positive definite: S not a normalised symmetric affinity).
void propagate(const CsrView& graph, const std::int64_t* labels, std::int64_t num_classes,
               const float* x0, const PropagateParams& params, const PropagateOut& out);
}  // namespace cpu

namespace gpu {
// Same contract on device pointers; class_count[C] (int64, device) holds |L_c| (> 0), computed
// by the caller (the Python border validates labels on the device). `stream` is a cudaStream_t
// as an integer (ignored by the OpenMP twin). Returns the number of columns that broke down
// (p.Ap <= 0); 0 on success. Synchronises the stream once at the end (and once every few
// iterations to stop early when every column has converged).
std::int64_t propagate(const CsrView& graph, const std::int64_t* labels,
                       const std::int64_t* class_count, std::int64_t num_classes,
                       const float* x0, const PropagateParams& params, const PropagateOut& out,
                       std::uintptr_t stream);
}  // namespace gpu

}  // namespace dalcore
