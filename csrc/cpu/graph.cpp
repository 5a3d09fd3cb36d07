// CPU kernel of knn_graph (OpenMP): see dalcore/graph.h for the contract.
//
// 1. prepare (parallel over rows): validate, a_ij = max(0, s)^gamma, sort each row by index.
// 2. union only: transpose the lists by a per-thread counting sort (deterministic: every bucket
//    receives its sources in increasing row order).
// 3. count (parallel over rows) + exclusive scan -> indptr; nnz.
// 4. fill (parallel over rows): indices, unnormalised w, degree -> d^-1/2; then scale rows.
#include "dalcore/graph.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <new>
#include <utility>
#include <vector>

#include "dalcore/detail/graph_ops.h"
#include "dalcore/status.h"

namespace dalcore::cpu {
namespace {

// std::vector storage that is not zero-filled on resize (every element is written before use).
template <class T>
struct default_init_allocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = default_init_allocator<U>;
  };
  default_init_allocator() noexcept = default;
  template <class U>
  default_init_allocator(const default_init_allocator<U>&) noexcept {}
  template <class U>
  void construct(U* p) noexcept {
    ::new (static_cast<void*>(p)) U;
  }
  template <class U, class... A>
  void construct(U* p, A&&... a) {
    ::new (static_cast<void*>(p)) U(std::forward<A>(a)...);
  }
};
template <class T>
using raw_vector = std::vector<T, default_init_allocator<T>>;

// Exclusive prefix sum of a[0, n) in place, in parallel (two passes over per-thread blocks);
// returns the total.
std::int64_t exclusive_scan(std::int64_t* a, std::int64_t n) {
  const int nt = std::max(1, std::min<int>(omp_get_max_threads(), static_cast<int>(n / 65536) + 1));
  std::vector<std::int64_t> block_sum(static_cast<std::size_t>(nt) + 1, 0);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int T = omp_get_num_threads();
    const std::int64_t lo = n * t / T, hi = n * (t + 1) / T;
    std::int64_t s = 0;
    for (std::int64_t i = lo; i < hi; ++i) s += a[i];
    block_sum[t + 1] = s;
#pragma omp barrier
#pragma omp single
    for (int u = 0; u < T; ++u) block_sum[u + 1] += block_sum[u];
    std::int64_t run = block_sum[t];
    for (std::int64_t i = lo; i < hi; ++i) {
      const std::int64_t v = a[i];
      a[i] = run;
      run += v;
    }
  }
  return block_sum[static_cast<std::size_t>(nt)];
}

}  // namespace

struct KnnGraphBuilder::State {
  std::int64_t n = 0, k = 0, nnz = 0;
  GraphMode mode = GraphMode::reciprocal;
  raw_vector<std::int32_t> col;   // n * k: each row sorted by neighbour index (self kept)
  raw_vector<float> w;            // n * k: a_ij along col
  raw_vector<float> wsym;         // reciprocal: symmetric weight along col, 0 when dropped
  raw_vector<std::int64_t> toff;  // union: n + 1 offsets of the transposed lists
  raw_vector<std::int32_t> tsrc;  // union: per row i, the sources j listing i, ascending
  raw_vector<float> tw;           // union: a_ji along tsrc
  raw_vector<std::int64_t> rowptr;  // n + 1: exclusive scan of the output row lengths

  void prepare(const KnnLists& in, double gamma);
  void transpose();
  void count();
};

namespace {

// Explains why row i of the input is invalid (called once, after the parallel pass found it).
[[noreturn]] void throw_bad_row(const KnnLists& in, std::int64_t i) {
  const std::int64_t k = in.k;
  std::vector<std::int64_t> seen;
  for (std::int64_t t = 0; t < k; ++t) {
    const float s = in.sims[i * k + t];
    const std::int64_t j = in.idx[i * k + t];
    if (!detail::finite_value(s))
      throw InvalidArgument(detail::concat("knn_result: similarities contain NaN or inf (row ", i,
                                           ", column ", t, ")"));
    if (j < 0 || j >= in.n)
      throw InvalidArgument(detail::concat("knn_result: neighbour indices must be in [0, ", in.n,
                                           "), row ", i, " holds ", j));
    seen.push_back(j);
  }
  std::sort(seen.begin(), seen.end());
  const auto dup = std::adjacent_find(seen.begin(), seen.end());
  throw InvalidArgument(detail::concat("knn_result: row ", i, " lists neighbour ",
                                       dup != seen.end() ? *dup : -1, " more than once"));
}

}  // namespace

void KnnGraphBuilder::State::prepare(const KnnLists& in, double gamma) {
  const std::int64_t m = n * k;
  col.resize(static_cast<std::size_t>(m));
  w.resize(static_cast<std::size_t>(m));
  std::int64_t bad = n;
#pragma omp parallel
  {
    std::vector<std::pair<std::int32_t, float>> row(static_cast<std::size_t>(k));
#pragma omp for schedule(static) reduction(min : bad)
    for (std::int64_t i = 0; i < n; ++i) {
      const float* s = in.sims + i * k;
      const std::int64_t* id = in.idx + i * k;
      bool ok = true;
      for (std::int64_t t = 0; t < k; ++t) {
        const std::int64_t j = id[t];
        ok &= detail::finite_value(s[t]) && j >= 0 && j < n;
        row[t] = {static_cast<std::int32_t>(j), detail::edge_weight(s[t], gamma)};
      }
      if (k <= 32) {  // insertion sort: short rows, mostly small displacements
        for (std::int64_t t = 1; t < k; ++t) {
          const auto v = row[t];
          std::int64_t u = t;
          for (; u > 0 && row[u - 1].first > v.first; --u) row[u] = row[u - 1];
          row[u] = v;
        }
      } else {
        std::sort(row.begin(), row.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
      }
      for (std::int64_t t = 0; t < k; ++t) {
        ok &= t == 0 || row[t].first != row[t - 1].first;
        col[i * k + t] = row[t].first;
        w[i * k + t] = row[t].second;
      }
      if (!ok) bad = std::min(bad, i);
    }
  }
  if (bad < n) throw_bad_row(in, bad);
}

void KnnGraphBuilder::State::transpose() {
  const int nt = omp_get_max_threads();
  raw_vector<std::int32_t> cnt(static_cast<std::size_t>(nt) * static_cast<std::size_t>(n));
  toff.resize(static_cast<std::size_t>(n) + 1);
#pragma omp parallel num_threads(nt)
  {
    const int t = omp_get_thread_num();
    const int T = omp_get_num_threads();
    const std::int64_t lo = n * t / T, hi = n * (t + 1) / T;
    std::int32_t* c = cnt.data() + static_cast<std::size_t>(t) * n;
    std::fill(c, c + n, 0);
    for (std::int64_t i = lo; i < hi; ++i)
      for (std::int64_t e = i * k; e < i * k + k; ++e)
        if (col[e] != i) ++c[col[e]];
#pragma omp barrier
    // Bucket j starts, per thread, after the sources of every lower thread (lower rows).
#pragma omp for schedule(static)
    for (std::int64_t j = 0; j < n; ++j) {
      std::int64_t run = 0;
      for (int u = 0; u < T; ++u) {
        std::int32_t& v = cnt[static_cast<std::size_t>(u) * n + j];
        const std::int32_t here = v;
        v = static_cast<std::int32_t>(run);
        run += here;
      }
      toff[j] = run;
    }
#pragma omp single
    {
      toff[n] = 0;
      const std::int64_t total = exclusive_scan(toff.data(), n + 1);
      tsrc.resize(static_cast<std::size_t>(total));
      tw.resize(static_cast<std::size_t>(total));
    }
    for (std::int64_t i = lo; i < hi; ++i)
      for (std::int64_t e = i * k; e < i * k + k; ++e) {
        const std::int32_t j = col[e];
        if (j == i) continue;
        const std::int64_t pos = toff[j] + c[j]++;
        tsrc[pos] = static_cast<std::int32_t>(i);
        tw[pos] = w[e];
      }
  }
}

void KnnGraphBuilder::State::count() {
  rowptr.resize(static_cast<std::size_t>(n) + 1);
  if (mode == GraphMode::reciprocal) {
    wsym.resize(col.size());
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i)
      rowptr[i] = detail::reciprocal_row(i, k, col.data(), w.data(), wsym.data());
  } else {
#pragma omp parallel for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      detail::CountEmit c;
      detail::union_row(i, col.data(), w.data(), i * k, i * k + k, tsrc.data(), tw.data(),
                        toff[i], toff[i + 1], c);
      rowptr[i] = c.n;
    }
  }
  rowptr[n] = 0;
  nnz = exclusive_scan(rowptr.data(), n + 1);
}

KnnGraphBuilder::KnnGraphBuilder(const KnnLists& lists, double gamma, GraphMode mode)
    : st_(std::make_unique<State>()) {
  require(lists.n >= 1 && lists.k >= 1, "knn_result: expected at least one row and one column");
  require(lists.n < std::numeric_limits<std::int32_t>::max(),
          "knn_result: at most 2^31 - 2 points are supported, got ", lists.n);
  require(lists.sims != nullptr && lists.idx != nullptr, "knn_result: null buffers");
  require(gamma > 0.0 && gamma <= std::numeric_limits<double>::max(),
          "gamma: expected a finite number > 0, got ", gamma);
  st_->n = lists.n;
  st_->k = lists.k;
  st_->mode = mode;
  st_->prepare(lists, gamma);
  if (mode == GraphMode::union_) st_->transpose();
  st_->count();
}

KnnGraphBuilder::~KnnGraphBuilder() = default;
std::int64_t KnnGraphBuilder::n() const noexcept { return st_->n; }
std::int64_t KnnGraphBuilder::nnz() const noexcept { return st_->nnz; }

void KnnGraphBuilder::fill(std::int64_t* indptr, std::int32_t* indices, float* data) const {
  const State& s = *st_;
  const std::int64_t n = s.n, k = s.k;
  raw_vector<double> dinv(static_cast<std::size_t>(n));
#pragma omp parallel
  {
#pragma omp for schedule(static)
    for (std::int64_t i = 0; i < n + 1; ++i) indptr[i] = s.rowptr[i];
#pragma omp for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      detail::FillEmit out(indices, data, s.rowptr[i]);
      if (s.mode == GraphMode::reciprocal) {
        for (std::int64_t e = i * k; e < i * k + k; ++e)
          if (s.wsym[e] > 0.0f) out(static_cast<std::int64_t>(s.col[e]), s.wsym[e]);
      } else {
        detail::union_row(i, s.col.data(), s.w.data(), i * k, i * k + k, s.tsrc.data(),
                          s.tw.data(), s.toff[i], s.toff[i + 1], out);
      }
      dinv[i] = detail::inv_sqrt_degree(out.degree);
    }
#pragma omp for schedule(static)
    for (std::int64_t i = 0; i < n; ++i) {
      const double di = dinv[i];
      for (std::int64_t p = s.rowptr[i]; p < s.rowptr[i + 1]; ++p)
        data[p] = detail::normalised(data[p], di, dinv[indices[p]]);
    }
  }
}

}  // namespace dalcore::cpu
