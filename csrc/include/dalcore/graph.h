// Public C++ API of knn_graph: k-NN lists -> symmetric normalised affinity S = D^-1/2 W D^-1/2 (CSR).
//
// Input: n rows of k neighbours, idx[n * k] (int64, in [0, n), or -1) and sims[n * k] (float32,
// finite where idx != -1), row-major. Entries with idx == row (self, any number of times) and
// idx == -1 (faiss's "no neighbour") are ignored; a row listing a neighbour twice is an error.
// The CPU and GPU paths accept and refuse the same inputs and build the same graph (the
// reciprocal weight (a_ij + a_ji) / 2 is computed once in float and dropped when it rounds to 0).
// Scale: the caller (dalcore/_graph.py) divides the similarities by a power of two when
// max(s)^gamma would leave float32's comfortable range (S does not depend on the scale of W).
// Directed weight a_ij = max(0, s_ij)^gamma (computed in double, stored as float32).
//   reciprocal: i ~ j only when j is in list(i) and i is in list(j); w_ij = (a_ij + a_ji) / 2.
//   union     : W + W^T, w_ij = a_ij + a_ji (a missing direction counts 0): LP-DeepSSL's graph.
// Both are exactly symmetric (the two terms are added in the same order for (i, j) and (j, i)).
// Edges whose weight is 0 (s <= 0) are not stored. d_i = sum_j w_ij (double); S_ij =
// w_ij * (d_i^-1/2 * d_j^-1/2); isolated rows (d_i = 0) stay empty. Columns sorted within rows.
// Output CSR: indptr[n + 1] (int64), indices[nnz] (int32, so n < 2^31), data[nnz] (float32).
//
// Two implementations; both sort every list by index, build the transposed lists (the j that list
// i) and merge the two per row, with the arithmetic of detail/graph_ops.h:
//   dalcore::cpu (csrc/cpu/graph.cpp): OpenMP, host pointers; in-register rank sort of each row,
//                one stable two-level counting transposition, branch-free merges.
//   dalcore::gpu (csrc/cuda/graph.cu): Thrust sorts (CUDA, or OpenMP in the test twin _core_omp)
//                and detail::merge_row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "dalcore/status.h"

namespace dalcore {

enum class GraphMode { reciprocal, union_ };

// "reciprocal" | "union"; anything else throws InvalidArgument naming `mode`.
inline GraphMode parse_graph_mode(const std::string& mode) {
  if (mode == "reciprocal") return GraphMode::reciprocal;
  if (mode == "union") return GraphMode::union_;
  throw InvalidArgument(detail::concat("mode: expected 'reciprocal' or 'union', got '", mode, "'"));
}

struct KnnLists {
  const float* sims = nullptr;        // n * k
  const std::int64_t* idx = nullptr;  // n * k
  std::int64_t n = 0;
  std::int64_t k = 0;
};

namespace cpu {

// Frees the scratch kept from the last build (see KnnGraphBuilder); thread-safe.
void release_graph_scratch();

// Two phases so that the caller can allocate the outputs once nnz is known (the scratch of a
// finished build, up to 512 MiB, is kept for the next one: graphs are rebuilt every epoch;
// release_graph_scratch() frees it):
//   KnnGraphBuilder b(lists, gamma, mode);   // validates, sorts rows, counts (throws on bad input)
//   b.fill(indptr, indices, data);           // indptr[n + 1], indices/data[b.nnz()]
class KnnGraphBuilder {
 public:
  KnnGraphBuilder(const KnnLists& lists, double gamma, GraphMode mode);
  ~KnnGraphBuilder();
  KnnGraphBuilder(const KnnGraphBuilder&) = delete;
  KnnGraphBuilder& operator=(const KnnGraphBuilder&) = delete;
  std::int64_t n() const noexcept;
  std::int64_t nnz() const noexcept;
  void fill(std::int64_t* indptr, std::int32_t* indices, float* data) const;

  struct State;  // sorted and transposed lists, row offsets, degrees: see graph.cpp

 private:
  // The scratch buffers of the previous build when free (reused: no page faults), else new ones.
  static std::unique_ptr<State> take_scratch();
  std::unique_ptr<State> st_;
};

}  // namespace cpu

namespace gpu {

// Device (or, in the OpenMP twin, host) pointers; `stream` is a cudaStream_t as an integer.
// The workspace (workspace_bytes(n, k, mode) bytes, caller-allocated) carries the sorted lists
// from count to fill; both calls must see the same lists, n, k and mode.
std::size_t workspace_bytes(std::int64_t n, std::int64_t k, GraphMode mode);

// Validates (throws InvalidArgument on non-finite sims, out-of-range or repeated indices), sorts
// the lists, writes indptr[n + 1] and returns nnz = indptr[n] (synchronises the stream).
std::int64_t knn_graph_count(const KnnLists& lists, double gamma, GraphMode mode,
                             void* workspace, std::size_t workspace_size, std::int64_t* indptr,
                             std::uintptr_t stream);

// Writes indices[nnz] and data[nnz]; stream-ordered, does not synchronise. `capacity` is the
// length of indices and data: nothing is written past it, whatever indptr holds.
void knn_graph_fill(std::int64_t n, std::int64_t k, GraphMode mode, void* workspace,
                    std::size_t workspace_size, const std::int64_t* indptr,
                    std::int64_t capacity, std::int32_t* indices, float* data,
                    std::uintptr_t stream);

}  // namespace gpu
}  // namespace dalcore
