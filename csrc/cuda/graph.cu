// GPU path of knn_graph, written on Thrust over DALCORE_HD functors (see dalcore/detail/backend.h):
// compiled by nvcc into _core and by the host compiler into _core_omp. Contract: dalcore/graph.h.
//
// count: validate (a reduction into device memory) -> each row's list sorted by column in place
//        (a segmented sort: one row of k entries per work item, int32 columns; a missing or
//        invalid j becomes the row itself) with a_ij and its repeated-neighbour count ->
//        transposed lists (the j listing i, ascending) by stable_sort_by_key on the int32
//        column + lower_bound offsets -> per-row merge counts (detail::merge_row: union or
//        common entries) -> exclusive_scan -> indptr. The count pass also sums each row's
//        degree -> d^-1/2 (kept in the workspace).
// fill:  per row, the same merge writes indices and S_ij = w_ij d_i^-1/2 d_j^-1/2 (never past
//        the outputs' length).
//
// Host synchronisations per call (CUDA): count: exactly one, the copy of (bad entries, repeated
// neighbours, nnz) that sizes the output and reports invalid lists; fill: none. Thrust's
// temporaries (sorts, scans, reductions) come from the stream-ordered pool (backend::policy).
//
// Ordering (issue 14): the reductions here are integer counts (exact in any order); each row's
// weights and degree are computed by one work item in a fixed order, so the twin gives the same
// bits on any number of OpenMP threads (test_gpu_twin_order.py). The twin's launch-order setting
// (backend.h) reorders tile launches only, none of which this file uses.
#include <thrust/binary_search.h>
#include <thrust/copy.h>
#include <thrust/count.h>
#include <thrust/functional.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/zip_iterator.h>
#include <thrust/scan.h>
#include <thrust/sort.h>
#include <thrust/tuple.h>

#include <cstddef>
#include <cstdint>
#include <limits>

#include "dalcore/detail/backend.h"
#include "dalcore/detail/graph_ops.h"
#include "dalcore/graph.h"

namespace dalcore::gpu {
namespace {

using i64 = std::int64_t;
using i32 = std::int32_t;  // columns and sources: n < 2^31 (check_sizes)

// Byte offsets of the workspace arrays (each 256-byte aligned).
struct Layout {
  std::size_t col = 0, w = 0, tcol = 0, tsrc = 0, tw = 0, toff = 0, dinv = 0, total = 0;
};

Layout layout(i64 n, i64 k, GraphMode) {
  const auto m = static_cast<std::size_t>(n) * static_cast<std::size_t>(k);
  Layout l;
  std::size_t at = 0;
  auto take = [&at](std::size_t bytes) {
    const std::size_t here = at;
    at += (bytes + 255) / 256 * 256;
    return here;
  };
  l.col = take(m * sizeof(i32));
  l.w = take(m * sizeof(float));
  l.tcol = take(m * sizeof(i32));
  l.tsrc = take(m * sizeof(i32));
  l.tw = take(m * sizeof(float));
  l.toff = take((static_cast<std::size_t>(n) + 1) * sizeof(i64));
  l.dinv = take(static_cast<std::size_t>(n) * sizeof(double));
  l.total = at;
  return l;
}

template <class T>
T* at(void* base, std::size_t offset) {
  return reinterpret_cast<T*>(static_cast<unsigned char*>(base) + offset);
}

struct BadEntry {  // 1 for an entry that is neither valid nor missing
  const float* sims;
  const i64* idx;
  i64 n;
  DALCORE_HD i64 operator()(i64 e) const {
    const i64 j = idx[e];
    if (j == detail::kMissingNeighbour) return 0;  // its similarity is not read
    return (!detail::finite_value(sims[e]) || j < 0 || j >= n) ? 1 : 0;
  }
};

// Row i's list, sorted by column in place: a segmented sort, one row (k entries) per work item,
// by insertion (k <= 128 in practice: the row stays in registers / L1), with int32 columns; no
// global sort of all n k entries. A missing (-1) or invalid neighbour becomes the row itself
// (skipped by the merges; the validation reports invalid ones). reps[i] = the row's repeated
// neighbours (adjacent equal columns, self entries excepted).
struct SortRow {
  const float* sims;
  const i64* idx;
  i64 n, k;
  double gamma;
  i32* col;
  float* w;
  i64* reps;
  DALCORE_HD void operator()(i64 i) const {
    i32* c = col + i * k;
    float* v = w + i * k;
    for (i64 t = 0; t < k; ++t) {
      const i64 j = idx[i * k + t];
      const bool missing = j < 0 || j >= n;
      const i32 cj = static_cast<i32>(missing ? i : j);
      const float wt = missing ? 0.0f : detail::edge_weight(sims[i * k + t], gamma);
      i64 s = t;
      for (; s > 0 && c[s - 1] > cj; --s) {
        c[s] = c[s - 1];
        v[s] = v[s - 1];
      }
      c[s] = cj;
      v[s] = wt;
    }
    i64 r = 0;
    for (i64 t = 1; t < k; ++t) r += (c[t] == c[t - 1] && c[t] != static_cast<i32>(i)) ? 1 : 0;
    reps[i] = r;
  }
};

struct CopyForTranspose {  // (column, row, w) of every entry, for the transposition
  const i32* col;
  const float* w;
  i64 k;
  i32* tcol;
  i32* tsrc;
  float* tw;
  DALCORE_HD void operator()(i64 e) const {
    tcol[e] = col[e];
    tsrc[e] = static_cast<i32>(e / k);
    tw[e] = w[e];
  }
};

// Row i: own list col/w[i k, i k + k) (sorted, may hold i itself) merged with the transposed
// list tsrc/tw[toff[i], toff[i + 1]).
struct RowLists {
  bool mutual;
  const i32* col;
  const float* w;
  const i32* tsrc;
  const float* tw;
  const i64* toff;
  i64 k;
  template <class Emit>
  DALCORE_HD void row(i64 i, Emit& emit) const {
    detail::merge_row(i, mutual, detail::SplitList<i32>{col, w}, i * k, i * k + k,
                      detail::SplitList<i32>{tsrc, tw}, toff[i], toff[i + 1], emit);
  }
};

struct CountRow {
  RowLists lists;
  i64* counts;
  double* dinv;
  DALCORE_HD void operator()(i64 i) const {
    detail::CountEmit c;
    lists.row(i, c);
    counts[i] = c.n;
    dinv[i] = detail::inv_sqrt_degree(c.degree);
  }
};

struct FillRow {
  RowLists lists;
  const i64* indptr;
  std::int32_t* indices;
  float* data;
  const double* dinv;
  i64 capacity;
  DALCORE_HD void operator()(i64 i) const {
    detail::FillEmit out{indices, data, indptr[i], dinv, dinv[i], capacity};
    lists.row(i, out);
  }
};

RowLists row_lists(void* workspace, const Layout& l, i64 k, GraphMode mode) {
  return RowLists{mode == GraphMode::reciprocal, at<const i32>(workspace, l.col),
                  at<const float>(workspace, l.w),   at<const i32>(workspace, l.tsrc),
                  at<const float>(workspace, l.tw),  at<const i64>(workspace, l.toff),
                  k};
}

void check_sizes(i64 n, i64 k, GraphMode mode, std::size_t workspace_size) {
  require(n >= 1 && k >= 1, "knn_result: expected at least one row and one column");
  require(n < std::numeric_limits<std::int32_t>::max(),
          "knn_result: at most 2^31 - 2 points are supported, got ", n);
  require(workspace_size >= layout(n, k, mode).total, "workspace: expected at least ",
          layout(n, k, mode).total, " bytes, got ", workspace_size);
}

}  // namespace

std::size_t workspace_bytes(i64 n, i64 k, GraphMode mode) { return layout(n, k, mode).total; }

i64 knn_graph_count(const KnnLists& lists, double gamma, GraphMode mode, void* workspace,
                    std::size_t workspace_size, i64* indptr, std::uintptr_t stream) {
  const i64 n = lists.n, k = lists.k, m = n * k;
  check_sizes(n, k, mode, workspace_size);
  require(gamma > 0.0 && gamma <= std::numeric_limits<double>::max(),
          "gamma: expected a finite number > 0, got ", gamma);
  const Layout l = layout(n, k, mode);
  const auto s = backend::to_stream(stream);
  const auto pol = backend::policy(s);
  const thrust::counting_iterator<i64> first(0);

  // Validation results stay on the device ([0] bad entries, [1] repeated neighbours, [2] nnz)
  // and come back with nnz in the one host synchronisation of the call.
  backend::buffer<i64> checks(3, s);
  backend::buffer<unsigned char> scratch;
  backend::reduce_into(s, scratch,
                       thrust::make_transform_iterator(first, BadEntry{lists.sims, lists.idx, n}),
                       m, checks.data(), thrust::plus<i64>(), i64(0));

  i32* col = at<i32>(workspace, l.col);
  float* w = at<float>(workspace, l.w);
  i32* tcol = at<i32>(workspace, l.tcol);
  i32* tsrc = at<i32>(workspace, l.tsrc);
  float* tw = at<float>(workspace, l.tw);
  i64* toff = at<i64>(workspace, l.toff);
  // toff holds the per-row repeat counts until the transposition's offsets overwrite it
  thrust::for_each_n(pol, first, n, SortRow{lists.sims, lists.idx, n, k, gamma, col, w, toff});
  backend::check_launch("knn_graph: sort rows");
  backend::reduce_into(s, scratch, toff, n, checks.data() + 1, thrust::plus<i64>(), i64(0));
  thrust::for_each_n(pol, first, m, CopyForTranspose{col, w, k, tcol, tsrc, tw});
  backend::check_launch("knn_graph: copy");
  // Stable: every bucket keeps its sources in increasing row order (int32 keys).
  thrust::stable_sort_by_key(pol, tcol, tcol + m,
                             thrust::make_zip_iterator(thrust::make_tuple(tsrc, tw)));
  backend::check_launch("knn_graph: transpose");
  thrust::lower_bound(pol, tcol, tcol + m, first, first + (n + 1), toff);
  backend::check_launch("knn_graph: transpose offsets");
  thrust::for_each_n(pol, first, n,
                     CountRow{row_lists(workspace, l, k, mode), indptr, at<double>(workspace, l.dinv)});
  backend::check_launch("knn_graph: count");
  thrust::fill_n(pol, indptr + n, 1, i64(0));
  thrust::exclusive_scan(pol, indptr, indptr + (n + 1), indptr);
  backend::check_launch("knn_graph: scan");
  thrust::copy_n(pol, indptr + n, 1, checks.data() + 2);
  i64 host[3] = {0, 0, 0};
  backend::copy_to_host(host, checks.data(), sizeof(host), s);  // the one synchronisation
  require(host[0] == 0, "knn_result: ", host[0],
          " entries hold a NaN/inf similarity or a neighbour index outside [0, ", n,
          ") and not -1 (no neighbour)");
  require(host[1] == 0, "knn_result: ", host[1],
          " neighbour(s) listed more than once in the same row");
  return host[2];
}

void knn_graph_fill(i64 n, i64 k, GraphMode mode, void* workspace, std::size_t workspace_size,
                    const i64* indptr, i64 capacity, std::int32_t* indices, float* data,
                    std::uintptr_t stream) {
  check_sizes(n, k, mode, workspace_size);
  const Layout l = layout(n, k, mode);
  const auto pol = backend::policy(backend::to_stream(stream));
  const thrust::counting_iterator<i64> first(0);
  thrust::for_each_n(pol, first, n,
                     FillRow{row_lists(workspace, l, k, mode), indptr, indices, data,
                             at<const double>(workspace, l.dinv), capacity});
  backend::check_launch("knn_graph: fill");
}

}  // namespace dalcore::gpu
