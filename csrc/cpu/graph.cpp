// CPU kernel of knn_graph (OpenMP): see dalcore/graph.h for the contract.
//
// No comparison sort: two stable parallel counting sorts (transpositions) put every list in order.
// 1. T = transpose(lists): per row i, the j that list i (ascending) with a_ji; validates the input
//    and computes a_ij = max(0, s)^gamma on the way; self entries are dropped.
// 2. L = transpose(T): per row i, its own list sorted by index, with a_ij.
// 3. count: per row, merge L_i and T_i (union: all; reciprocal: the common j): row length and
//    degree d_i -> d_i^-1/2; scan -> indptr.
// 4. fill: the same merge writes indices and S_ij = w_ij d_i^-1/2 d_j^-1/2 (one output pass).
// A transposition: each thread counts the targets of its block of rows, bucket offsets are
// prefix sums over (target, thread); then, in two streaming passes rather than one scatter into
// n buckets (a cache miss per entry), each thread appends its rows' entries in order to their
// partition (2^kPartShift consecutive buckets), and each partition is distributed into its
// buckets, so every bucket receives its sources in increasing order (deterministic, no atomics).
#include "dalcore/graph.h"

#include <omp.h>

#include <algorithm>
#include <limits>
#include <memory>
#include <new>
#include <utility>
#include <mutex>
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

// Lists in CSR form: row i is e[off[i], off[i + 1]), (column, weight) pairs.
struct Lists {
  raw_vector<std::int64_t> off;
  raw_vector<detail::Entry> e;
};

// Exclusive prefix sum of a[0, n) in place (serial: n is the number of points, small next to
// the n * k entries); returns the total.
std::int64_t exclusive_scan(std::int64_t* a, std::int64_t n) {
  std::int64_t run = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t v = a[i];
    a[i] = run;
    run += v;
  }
  return run;
}

// The input k-NN lists seen as rows: validates entries and computes weights on the fly.
struct InputRows {
  const KnnLists& in;
  double gamma;
  std::int64_t begin(std::int64_t i) const { return i * in.k; }
  std::int64_t end(std::int64_t i) const { return i * in.k + in.k; }
  std::int64_t col(std::int64_t e) const { return in.idx[e]; }
  float weight(std::int64_t e) const { return detail::edge_weight(in.sims[e], gamma); }
  bool valid(std::int64_t e) const {
    const std::int64_t j = in.idx[e];
    return detail::finite_value(in.sims[e]) && j >= 0 && j < in.n;
  }
};

struct CsrRows {
  const Lists& l;
  std::int64_t begin(std::int64_t i) const { return l.off[i]; }
  std::int64_t end(std::int64_t i) const { return l.off[i + 1]; }
  std::int64_t col(std::int64_t e) const { return l.e[e].col; }
  float weight(std::int64_t e) const { return l.e[e].w; }
  bool valid(std::int64_t) const { return true; }
};

// Stable parallel counting transpose of n rows (entries with col == row are dropped). Returns
// the first row holding an invalid entry (n when none; then `out` is not filled).
// An entry on its way to bucket `to` (see transpose).
struct Staged {
  std::int32_t to, from;
  float w;
};
// Target rows per partition of a transposition: 2^8 rows of ~k entries (~100 KB at k = 50) stay
// in cache while their partition is distributed.
constexpr int kPartShift = 8;

// Transposition buffers: counts, partition cursors, staged entries.
struct TransposeScratch {
  raw_vector<std::int32_t> cnt;   // threads * n: per-thread bucket counts
  raw_vector<std::int64_t> part;  // threads * partitions: per-thread cursor in each partition
  raw_vector<Staged> stage;       // the entries grouped by partition
};

template <class Rows>
std::int64_t transpose(std::int64_t n, const Rows& rows, Lists& out, TransposeScratch& ts,
                       int threads) {
  raw_vector<std::int32_t>& cnt = ts.cnt;
  const std::int64_t parts = ((n - 1) >> kPartShift) + 1;
  ts.part.clear();
  ts.part.resize(static_cast<std::size_t>(threads) * static_cast<std::size_t>(parts));
  cnt.clear();
  cnt.resize(static_cast<std::size_t>(threads) * static_cast<std::size_t>(n));
  out.off.clear();
  out.off.resize(static_cast<std::size_t>(n) + 1);
  std::int64_t bad = n;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num();
    const int T = omp_get_num_threads();
    const std::int64_t lo = n * t / T, hi = n * (t + 1) / T;
    std::int32_t* c = cnt.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(n);
    std::fill(c, c + n, 0);
    std::int64_t my_bad = n;
    for (std::int64_t i = lo; i < hi && my_bad == n; ++i)
      for (std::int64_t e = rows.begin(i); e < rows.end(i); ++e) {
        if (!rows.valid(e)) {
          my_bad = i;
          break;
        }
        const std::int64_t j = rows.col(e);
        if (j != i) ++c[j];
      }
    if (my_bad < n) {
#pragma omp critical(dalcore_graph_bad)
      bad = std::min(bad, my_bad);
    }
#pragma omp barrier
    if (bad == n) {
      // bucket j: sources of lower threads (lower rows) first
#pragma omp for schedule(static)
      for (std::int64_t j = 0; j < n; ++j) {
        std::int64_t run = 0;
        for (int u = 0; u < T; ++u) {
          std::int32_t& v = cnt[static_cast<std::size_t>(u) * static_cast<std::size_t>(n) + j];
          const std::int32_t here = v;
          v = static_cast<std::int32_t>(run);
          run += here;
        }
        out.off[j] = run;
      }
#pragma omp single
      {
        out.off[n] = 0;
        const std::int64_t total = exclusive_scan(out.off.data(), n + 1);
        out.e.clear();  // keeps the capacity of a reused buffer, copies nothing
        out.e.resize(static_cast<std::size_t>(total));
        ts.stage.clear();
        ts.stage.resize(static_cast<std::size_t>(total));
      }
      // Two streaming passes instead of one scatter into n buckets (a cache miss per entry):
      // (a) each thread appends its entries, in row order, to their partition of 2^kPartShift
      //     buckets (partition p occupies the range of its buckets; thread t's part of it
      //     starts after the entries of the lower threads);
      // (b) each partition is distributed into its buckets, in order: every bucket receives
      //     its sources in increasing order.
      const std::int64_t* off = out.off.data();
      constexpr std::int64_t kPartRows = std::int64_t(1) << kPartShift;
      std::int64_t* cur =
          ts.part.data() + static_cast<std::size_t>(t) * static_cast<std::size_t>(parts);
      for (std::int64_t p = 0; p < parts; ++p) {
        const std::int64_t j0 = p << kPartShift, j1 = std::min(n, j0 + kPartRows);
        std::int64_t at = off[j0];
        for (std::int64_t j = j0; j < j1; ++j) at += c[j];  // entries of lower threads
        cur[p] = at;
      }
      Staged* st = ts.stage.data();
      for (std::int64_t i = lo; i < hi; ++i)
        for (std::int64_t e = rows.begin(i); e < rows.end(i); ++e) {
          const std::int64_t j = rows.col(e);
          if (j == i) continue;
          st[cur[j >> kPartShift]++] =
              Staged{static_cast<std::int32_t>(j), static_cast<std::int32_t>(i), rows.weight(e)};
        }
#pragma omp barrier
      std::vector<std::int64_t> pos(static_cast<std::size_t>(kPartRows));
      detail::Entry* dst = out.e.data();
#pragma omp for schedule(static)
      for (std::int64_t p = 0; p < parts; ++p) {
        const std::int64_t j0 = p << kPartShift, j1 = std::min(n, j0 + kPartRows);
        for (std::int64_t j = j0; j < j1; ++j) pos[j - j0] = off[j];
        for (std::int64_t e = off[j0]; e < off[j1]; ++e) {
          const Staged x = st[e];
          dst[pos[x.to - j0]++] = detail::Entry{x.from, x.w};
        }
      }
    }
  }
  return bad;
}

// Explains why row i of the input is invalid (called once, after a parallel pass found it).
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

struct KnnGraphBuilder::State {
  std::int64_t n = 0, nnz = 0;
  bool mutual = true;
  int threads = 1;
  Lists t;  // per row i: the j listing i, ascending, with a_ji
  Lists l;  // per row i: its own list, ascending, with a_ij
  raw_vector<std::int64_t> rowptr;  // n + 1: exclusive scan of the output row lengths
  raw_vector<double> dinv;          // n: d_i^-1/2 (0 for isolated rows)
  TransposeScratch tr;              // buffers of the transpositions

  template <class Emit>
  void row(std::int64_t i, Emit& emit) const {
    detail::merge_row(i, mutual, detail::PairList{l.e.data()}, l.off[i], l.off[i + 1],
                      detail::PairList{t.e.data()}, t.off[i], t.off[i + 1], emit);
  }
};

namespace {
// The scratch of the last finished build, reused by the next one (a graph is rebuilt every epoch):
// fresh allocations of this size cost page faults that take as long as the kernel itself.
// Holds at most kMaxCachedBytes.
std::mutex g_scratch_mutex;
std::unique_ptr<KnnGraphBuilder::State> g_scratch;
constexpr std::size_t kMaxCachedBytes = std::size_t(1) << 30;

template <class V>
std::size_t bytes_of(const V& v) {
  return v.capacity() * sizeof(typename V::value_type);
}
}  // namespace

std::unique_ptr<KnnGraphBuilder::State> KnnGraphBuilder::take_scratch() {
  std::lock_guard<std::mutex> lock(g_scratch_mutex);
  if (g_scratch) return std::move(g_scratch);
  return std::make_unique<State>();
}

KnnGraphBuilder::~KnnGraphBuilder() {
  if (!st_) return;
  const State& s = *st_;
  const std::size_t bytes = bytes_of(s.t.off) + bytes_of(s.t.e) + bytes_of(s.l.off) +
                            bytes_of(s.l.e) + bytes_of(s.rowptr) + bytes_of(s.dinv) +
                            bytes_of(s.tr.cnt) + bytes_of(s.tr.part) + bytes_of(s.tr.stage);
  if (bytes > kMaxCachedBytes) return;
  std::lock_guard<std::mutex> lock(g_scratch_mutex);
  g_scratch = std::move(st_);
}

KnnGraphBuilder::KnnGraphBuilder(const KnnLists& lists, double gamma, GraphMode mode)
    : st_(take_scratch()) {
  require(lists.n >= 1 && lists.k >= 1, "knn_result: expected at least one row and one column");
  require(lists.n < std::numeric_limits<std::int32_t>::max(),
          "knn_result: at most 2^31 - 2 points are supported, got ", lists.n);
  require(lists.sims != nullptr && lists.idx != nullptr, "knn_result: null buffers");
  require(gamma > 0.0 && gamma <= std::numeric_limits<double>::max(),
          "gamma: expected a finite number > 0, got ", gamma);
  State& s = *st_;
  const std::int64_t n = lists.n;
  s.n = n;
  s.mutual = mode == GraphMode::reciprocal;
  // At least kEntriesPerThread list entries per thread: below that, fork/join and barriers
  // cost more than they save.
  constexpr std::int64_t kEntriesPerThread = std::int64_t(1) << 18;
  s.threads = static_cast<int>(std::max<std::int64_t>(
      1, std::min<std::int64_t>(omp_get_max_threads(), n * lists.k / kEntriesPerThread)));
  const std::int64_t bad = transpose(n, InputRows{lists, gamma}, s.t, s.tr, s.threads);
  if (bad < n) throw_bad_row(lists, bad);
  transpose(n, CsrRows{s.t}, s.l, s.tr, s.threads);

  s.rowptr.clear();
  s.rowptr.resize(static_cast<std::size_t>(n) + 1);
  s.dinv.clear();
  s.dinv.resize(static_cast<std::size_t>(n));
  std::int64_t repeated = n;
#pragma omp parallel for num_threads(s.threads) schedule(static) reduction(min : repeated)
  for (std::int64_t i = 0; i < n; ++i) {
    for (std::int64_t e = s.l.off[i] + 1; e < s.l.off[i + 1]; ++e)
      if (s.l.e[e].col == s.l.e[e - 1].col) repeated = std::min(repeated, i);
    detail::CountEmit c;
    s.row(i, c);
    s.rowptr[i] = c.n;
    s.dinv[i] = detail::inv_sqrt_degree(c.degree);
  }
  if (repeated < n) throw_bad_row(lists, repeated);
  s.rowptr[n] = 0;
  s.nnz = exclusive_scan(s.rowptr.data(), n + 1);
}

std::int64_t KnnGraphBuilder::n() const noexcept { return st_->n; }
std::int64_t KnnGraphBuilder::nnz() const noexcept { return st_->nnz; }

void KnnGraphBuilder::fill(std::int64_t* indptr, std::int32_t* indices, float* data) const {
  const State& s = *st_;
  const std::int64_t n = s.n;
#pragma omp parallel num_threads(s.threads)
  {
#pragma omp for schedule(static) nowait
    for (std::int64_t i = 0; i < n + 1; ++i) indptr[i] = s.rowptr[i];
#pragma omp for schedule(static) nowait
    for (std::int64_t i = 0; i < n; ++i) {
      detail::FillEmit out{indices, data, s.rowptr[i], s.dinv.data(), s.dinv[i]};
      s.row(i, out);
    }
  }
}

}  // namespace dalcore::cpu
