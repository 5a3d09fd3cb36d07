// CPU kernel of knn_graph (OpenMP): see dalcore/graph.h for the contract.
//
// One parallel region, no comparison sort in the usual case (k <= 64):
// 1. rows:      each input row is validated, weighted (a_ij = max(0, s)^gamma) and sorted by index
//               in registers by a rank sort (an entry's place is the number of smaller indices in
//               its row, counted with vector compares, on 16-bit keys where the row's indices
//               span less than 2^16; a repeated index shows as a short rank sum); the self entry
//               is dropped. Row i of L sits at i * k. Each thread counts its entries per
//               partition of 2^kPartShift target rows.
// 2. stage:     T = L^T by a stable two-level counting sort. Rather than scattering into n buckets
//               (a cache miss per entry), each thread appends its entries, in row order, to their
//               partition;
// 3. per partition (cache-resident): its entries are distributed into their rows of T (each row
//               receives its sources in increasing order: deterministic, no atomics), then each
//               row's L_i and T_i are merged branch-free (union: every j; reciprocal: the j in
//               both) into scratch rows holding w_ij, written one after the other, with the row
//               length and the degree d_i (summed in double) -> d_i^-1/2. The merge of a row is
//               cut in two at a column and the two halves run interleaved: a single branch-free
//               merge waits on load -> compare -> cursor at every step. A scan gives indptr.
// 4. fill:      (after the caller has allocated nnz entries) the scratch rows are copied out,
//               partition by partition as one stream, with S_ij = w_ij d_i^-1/2 d_j^-1/2.
// The arithmetic (edge weight, the sums, the normalisation) is that of detail/graph_ops.h, which
// the GPU path (csrc/cuda/graph.cu) uses too.
#include "dalcore/graph.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "dalcore/detail/graph_ops.h"
#include "dalcore/detail/multiversion.h"
#include "dalcore/detail/omp_guard.h"
#include "dalcore/status.h"


namespace dalcore::cpu {
namespace {

using i64 = std::int64_t;
using i32 = std::int32_t;

// A list entry: column (or source row) and directed weight, one 8-byte word.
struct Entry {
  i32 col;
  float w;
};

constexpr i32 kNoColumn = std::numeric_limits<i32>::max();
constexpr i64 kMissing = detail::kMissingNeighbour;

// std::vector storage that is not zero-filled on resize (every element is written before use).
// Blocks of kHugeFrom bytes or more are 2 MiB-aligned and, on Linux, asked to be backed by
// transparent huge pages: the passes stream through ~100 MB of scratch, and 4 KiB pages would
// cost a TLB miss every 512 entries.
constexpr std::size_t kHugePage = std::size_t(1) << 21;
constexpr std::size_t kHugeFrom = std::size_t(4) << 20;
template <class T>
struct default_init_allocator : std::allocator<T> {
  template <class U>
  struct rebind {
    using other = default_init_allocator<U>;
  };
  default_init_allocator() noexcept = default;
  template <class U>
  default_init_allocator(const default_init_allocator<U>&) noexcept {}
  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T) - kHugePage)
      throw std::bad_alloc();
    const std::size_t bytes = n * sizeof(T);
    if (bytes < kHugeFrom) return std::allocator<T>::allocate(n);
    const std::size_t rounded = (bytes + kHugePage - 1) / kHugePage * kHugePage;
    void* p = std::aligned_alloc(kHugePage, rounded);
    if (p == nullptr) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    madvise(p, rounded, MADV_HUGEPAGE);  // advice only: without THP it is a no-op
#endif
    return static_cast<T*>(p);
  }
  void deallocate(T* p, std::size_t n) noexcept {
    if (n * sizeof(T) < kHugeFrom) {
      std::allocator<T>::deallocate(p, n);
    } else {
      std::free(p);
    }
  }
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


// Target rows per partition of the transposition: 2^8 rows of ~k entries (~100 KB at k = 50) stay
// in cache while their partition is distributed.
constexpr int kPartShift = 8;

// ------------------------------------------------------------------------------ pass 1: rows
#if defined(__GNUC__)
// Rows of up to kRankMax neighbours are sorted in registers (kRankMax / 16 vectors of 16 keys).
constexpr int kRankMax = 64;
typedef i32 v16i __attribute__((vector_size(64)));

// The 16-bit keys, for rows whose indices span less than 2^16 - 1 (every row when n <= 2^16, as
// for the pools of MNIST, CIFAR-10/100): 256-bit vectors of sixteen 16-bit lanes take half the
// vector work of 512-bit ones of 32-bit lanes, and need only AVX2. The keys are offset to signed
// (index - min - 2^15) and padded with 0x7FFF.
typedef std::int16_t v16s __attribute__((vector_size(32)));

// rank[t] = -#{u < k : key[u] < key[t]} for t < 16 * NV (key[] padded with a key above all
// others), V a vector of 16 keys of type S.
template <class V, int NV, class S>
inline void neg_ranks(const S* key, i64 k, S* rank) {
  V kv[NV], acc[NV];
  for (int v = 0; v < NV; ++v) {
    std::memcpy(&kv[v], key + 16 * v, sizeof(V));
    acc[v] = V{};
  }
  for (i64 u = 0; u < k; ++u) {
    const V b = V{} + key[u];
    for (int v = 0; v < NV; ++v) {
      if constexpr (sizeof(S) == 4) {
        acc[v] = b < kv[v] ? acc[v] - 1 : acc[v];  // one masked subtract with AVX-512
      } else {
        acc[v] += (b < kv[v]);  // -1 where key[u] < key[t] (no 16-bit masks without AVX-512BW)
      }
    }
  }
  for (int v = 0; v < NV; ++v) std::memcpy(rank + 16 * v, &acc[v], sizeof(V));
}

// neg_ranks with the vector count for k keys (k <= kRankMax).
template <class V, class S>
inline void neg_ranks_k(const S* key, i64 k, S* rank) {
  switch ((k + 15) / 16) {
    case 1: neg_ranks<V, 1>(key, k, rank); break;
    case 2: neg_ranks<V, 2>(key, k, rank); break;
    case 3: neg_ranks<V, 3>(key, k, rank); break;
    default: neg_ranks<V, 4>(key, k, rank); break;
  }
}
#else
constexpr int kRankMax = 0;
#endif

// a = max(0, s)^3 exactly as detail::edge_weight(s, 3.0) computes it (x * (x * x) in double).
inline float cube_weight(float s) {
  const double x = static_cast<double>(s > 0.0f ? s : 0.0f);
  return static_cast<float>(x * (x * x));
}

// Pass 1 for rows [lo, hi): L row i (at l + i * k) = the row's entries without the self entry,
// sorted by index, len[i] of them; pcnt[j >> kPartShift] += 1 for each. Returns the first invalid
// row (a non-finite similarity, an index out of [0, n), an index listed twice), or hi.
DALCORE_MULTIVERSION
i64 sort_rows(const KnnLists& in, double gamma, i64 lo, i64 hi, Entry* l, i32* len, i64* pcnt) {
  const i64 n = in.n, k = in.k;
  const bool cube = gamma == 3.0;
  std::vector<i32> key_buf(static_cast<std::size_t>(std::max<i64>(k, kRankMax) + 16));
  std::vector<i32> rank_buf(key_buf.size());
  std::vector<float> w_buf(static_cast<std::size_t>(k));
  std::vector<std::pair<i32, float>> sorted;  // rows longer than kRankMax
  std::vector<std::int16_t> key16_buf(static_cast<std::size_t>(kRankMax));
  std::vector<std::int16_t> rank16_buf(static_cast<std::size_t>(kRankMax));
  i32* key = key_buf.data();
  i32* rank = rank_buf.data();
  float* w = w_buf.data();
  for (i64 i = lo; i < hi; ++i) {
    const std::int64_t* idx = in.idx + i * k;
    const float* s = in.sims + i * k;
    int bad = 0;
    i32 m = 0;
    i64 jmin = n, jmax = -1;  // the span of the row's indices (with the self entry, if listed)
    for (i64 t = 0; t < k; ++t) {
      const i64 j = idx[t];
      const bool none = j == i || j == kMissing;  // self, or faiss's "no neighbour"
      bad |= (j < kMissing) | (j >= n);
      key[t] = none ? kNoColumn : static_cast<i32>(j);
      m += !none;
      jmin = std::min(jmin, j);
      jmax = std::max(jmax, j);
    }
    // A missing entry's similarity is not looked at (faiss leaves -inf or -FLT_MAX there).
    for (i64 t = 0; t < k; ++t) bad |= !detail::finite_value(s[t]) & (idx[t] != kMissing);
    if (cube) {
      for (i64 t = 0; t < k; ++t) w[t] = cube_weight(s[t]);
    } else {
      for (i64 t = 0; t < k; ++t) w[t] = detail::edge_weight(s[t], gamma);
    }
    if (bad) return i;
    Entry* row = l + i * k;
#if defined(__GNUC__)
    if (k <= kRankMax) {
      const int nv = static_cast<int>((k + 15) / 16);
      if (jmax - jmin < 0xFFFF) {
        std::int16_t* key16 = key16_buf.data();
        std::int16_t* rank16 = rank16_buf.data();
        for (i64 t = 0; t < k; ++t)
          key16[t] = static_cast<std::int16_t>(
              key[t] == kNoColumn ? 0x7FFF : key[t] - jmin - 0x8000);
        for (i64 t = k; t < 16 * nv; ++t) key16[t] = 0x7FFF;
        neg_ranks_k<v16s>(key16, k, rank16);
        for (i64 t = 0; t < k; ++t) rank[t] = rank16[t];
      } else {
        for (i64 t = k; t < 16 * nv; ++t) key[t] = kNoColumn;
        neg_ranks_k<v16i>(key, k, rank);
      }
      // The ranks of m distinct indices are 0 .. m - 1; a repeated index lowers their sum (it is
      // the number of ordered pairs: m (m - 1) / 2 less the pairs of equal indices).
      i64 sum = 0;
      for (i64 t = 0; t < k; ++t) sum += key[t] != kNoColumn ? rank[t] : 0;
      if (-sum != i64(m) * (m - 1) / 2) return i;
      for (i64 t = 0; t < k; ++t)
        if (key[t] != kNoColumn) row[-rank[t]] = Entry{key[t], w[t]};
      // counted from key[], not from the row just scattered: loads from `row` would wait on
      // (or be replayed after) the scattered stores
      for (i64 t = 0; t < k; ++t)
        if (key[t] != kNoColumn) ++pcnt[key[t] >> kPartShift];
    } else
#endif
    {
      sorted.clear();
      for (i64 t = 0; t < k; ++t)
        if (key[t] != kNoColumn) sorted.emplace_back(key[t], w[t]);
      std::sort(sorted.begin(), sorted.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      for (i32 t = 1; t < m; ++t)
        if (sorted[t - 1].first == sorted[t].first) return i;
      for (i32 t = 0; t < m; ++t) row[t] = Entry{sorted[t].first, sorted[t].second};
      for (i32 t = 0; t < m; ++t) ++pcnt[row[t].col >> kPartShift];
    }
    len[i] = m;
  }
  return hi;
}

// ------------------------------------------------------------------------------ pass 3: merge
// Bits of a float (weights are finite and >= 0: bits != 0 <=> w > 0).
inline std::uint32_t fbits(float w) {
  std::uint32_t u;
  std::memcpy(&u, &w, sizeof u);
  return u;
}
inline float bits_f(std::uint32_t u) {
  float w;
  std::memcpy(&w, &u, sizeof w);
  return w;
}

// One merge of two index-sorted lists [a, a_end) and [b, b_end) into out, as a cursor that
// advances one output candidate per step without branches, so that two independent merges can be
// interleaved (a single merge is bound by the latency of load -> compare -> cursor).
// Union:      every j of a or b, w = a_j + b_j (a missing side counts 0; the float sum of two
//             weights >= 0 is > 0 iff one of them is), weight-0 entries dropped.
// Reciprocal: the j in both, w = (a_j + b_j) / 2, weight-0 entries dropped.
// d sums the kept weights in double, in column order.
template <bool Mutual>
struct MergeCursor {
  const Entry* a;  // next entry of a, ..., the end of a
  const Entry* a_end;
  const Entry* b;
  const Entry* b_end;
  Entry* out;      // next output slot
  double d;

  bool both() const { return a < a_end && b < b_end; }
  void step() {
    const Entry ea = *a, eb = *b;
    const std::uint32_t ta = ea.col <= eb.col, tb = eb.col <= ea.col;
    if constexpr (Mutual) {
      const float v = static_cast<float>(
          0.5 * (static_cast<double>(ea.w) + static_cast<double>(eb.w)));
      *out = Entry{ea.col, v};
      // v, not the two weights: their mean may underflow to 0 (not stored, as merge_row does)
      const std::uint32_t keep = ta & tb & (fbits(v) != 0);
      out += keep;
      d += static_cast<double>(bits_f(fbits(v) & (0u - keep)));
    } else {
      const float wa = bits_f(fbits(ea.w) & (0u - ta)), wb = bits_f(fbits(eb.w) & (0u - tb));
      const float v = wa + wb;  // = float(double(wa) + double(wb)): rounded once either way
      *out = Entry{ta ? ea.col : eb.col, v};
      out += fbits(v) != 0;
      d += static_cast<double>(v);
    }
    a += ta;
    b += tb;
  }
  // Runs to the end: the rest of the merge, then (union) the tail of the longer list.
  void finish() {
    while (both()) step();
    if constexpr (!Mutual) {
      for (; a < a_end; ++a) tail(*a);
      for (; b < b_end; ++b) tail(*b);
    }
  }
  void tail(const Entry e) {
    *out = e;
    out += fbits(e.w) != 0;
    d += static_cast<double>(e.w);
  }
};

// Number of entries of b[0, nb) with a column < c (branch-free binary search).
inline i64 count_below(const Entry* b, i64 nb, i32 c) {
  i64 lo = 0;
  while (nb > 1) {
    const i64 half = nb / 2;
    lo = b[lo + half - 1].col < c ? lo + half : lo;
    nb -= half;
  }
  return lo + (nb == 1 && b[lo].col < c);
}

// Row i of W from L_i (a, na) and T_i (b, nb) into out; returns its length, adds its weights to
// deg. The row is cut at the column c = a[na / 2]: a[0, h) with the b below c, and a[h, na) with
// the rest, are two independent merges run in step; the second one writes after the longest the
// first can be (union: h + qs entries; reciprocal: h, as each kept entry uses one of a[0, h)) and
// is then moved down. Every store stays within out[0, na + nb) (union) or out[0, na)
// (reciprocal), the room the caller leaves for the row.
template <bool Mutual>
inline i64 merge_in_halves(const Entry* a, i64 na, const Entry* b, i64 nb, Entry* out,
                           double& deg) {
  const i64 h = na / 2;
  if (h < 4 || nb < 8) {
    MergeCursor<Mutual> m{a, a + na, b, b + nb, out, 0.0};
    m.finish();
    deg += m.d;
    return m.out - out;
  }
  const i64 qs = count_below(b, nb, a[h].col);
  Entry* const out2 = out + (Mutual ? h : h + qs);
  MergeCursor<Mutual> m1{a, a + h, b, b + qs, out, 0.0};
  MergeCursor<Mutual> m2{a + h, a + na, b + qs, b + nb, out2, 0.0};
  while (m1.both() && m2.both()) {
    m1.step();
    m2.step();
  }
  m1.finish();
  m2.finish();
  const i64 o2 = m2.out - out2;
  if (m1.out < out2) std::memmove(m1.out, out2, sizeof(Entry) * o2);
  deg += m1.d + m2.d;
  return (m1.out - out) + o2;
}

// Explains why row i of the input is invalid (called once, after a parallel pass found it).
[[noreturn]] void throw_bad_row(const KnnLists& in, i64 i) {
  const i64 k = in.k;
  std::vector<i64> seen;
  for (i64 t = 0; t < k; ++t) {
    const float s = in.sims[i * k + t];
    const i64 j = in.idx[i * k + t];
    if (j == kMissing) continue;
    if (!detail::finite_value(s))
      throw InvalidArgument(detail::concat("knn_result: similarities contain NaN or inf (row ", i,
                                           ", column ", t, ")"));
    if (j < 0 || j >= in.n)
      throw InvalidArgument(detail::concat("knn_result: neighbour indices must be in [0, ", in.n,
                                           ") or -1 (no neighbour), row ", i, " holds ", j));
    if (j != i) seen.push_back(j);
  }
  std::sort(seen.begin(), seen.end());
  const auto dup = std::adjacent_find(seen.begin(), seen.end());
  throw InvalidArgument(detail::concat("knn_result: row ", i, " lists neighbour ",
                                       dup != seen.end() ? *dup : -1, " more than once"));
}

// Exclusive prefix sum of a[0, n) in place (serial: n is the number of points, small next to
// the n * k entries); returns the total.
i64 exclusive_scan(i64* a, i64 n) {
  i64 run = 0;
  for (i64 i = 0; i < n; ++i) {
    const i64 v = a[i];
    a[i] = run;
    run += v;
  }
  return run;
}

}  // namespace

struct KnnGraphBuilder::State {
  i64 n = 0, k = 0, nnz = 0;
  bool mutual = true;
  int threads = 1;
  raw_vector<Entry> l;       // n * k: row i at i * k, len[i] entries sorted by index
  raw_vector<i32> len;       // n
  raw_vector<i64> part;      // threads * (partitions + 1): entry counts, then cursors
  raw_vector<Entry> stage;   // the entries (source, a_ji) of T = L^T grouped by partition ...
  raw_vector<std::uint8_t> stage_to;  // ... and their target rows (j mod 2^kPartShift)
  raw_vector<i64> toff;      // n + 1: row offsets of T
  raw_vector<Entry> merged;  // the rows of W, partition by partition (see merged_at)
  raw_vector<i64> rowptr;    // n + 1: row lengths, then their exclusive scan
  raw_vector<double> dinv;   // n: d_i^-1/2 (0 for isolated rows)

  // Room before row i in `merged` for rows 0 .. i - 1 at their longest: reciprocal rows have at
  // most |L_i| <= k entries, union rows at most |L_i| + |T_i| <= k + |T_i|. A partition's rows
  // are written one after the other from merged_at(first row), without gaps, so the fill reads
  // them as one stream.
  i64 merged_at(i64 i) const { return mutual ? i * k : i * k + toff[i]; }

  // Partitions of 2^kPartShift target rows, and the rows [j0, j1) of partition p.
  i64 partitions() const { return ((n - 1) >> kPartShift) + 1; }
  i64 part_end(i64 p) const { return std::min(n, (p + 1) << kPartShift); }

  std::size_t bytes() const {
    auto b = [](const auto& v) { return v.capacity() * sizeof(v[0]); };
    return b(l) + b(len) + b(part) + b(stage) + b(stage_to) + b(toff) + b(merged) + b(rowptr) +
           b(dinv);
  }

  // Passes 1-3 (see the top of the file); returns the first invalid row, or n.
  i64 build(const KnnLists& in, double gamma);
  // Pass 2a for the rows [lo, hi) of one slice: their entries appended to the stage at the
  // slice's cursors cur[partition].
  void stage_slice(i64 lo, i64 hi, i64* cur);
  // Passes 2b and 3 for the target rows [j0, j1) of one partition, whose entries are
  // stage[s0, s1): T rows into `t` (cache-resident), then the merge of L_i and T_i.
  void distribute_and_merge(i64 j0, i64 j1, i64 s0, i64 s1, raw_vector<Entry>& t);
};

void KnnGraphBuilder::State::distribute_and_merge(i64 j0, i64 j1, i64 s0, i64 s1,
                                                  raw_vector<Entry>& t) {
  constexpr i64 kPartRows = i64(1) << kPartShift;
  i64 pos[kPartRows + 1];
  std::fill(pos, pos + (j1 - j0) + 1, 0);
  const std::uint8_t* to = stage_to.data();
  for (i64 e = s0; e < s1; ++e) ++pos[to[e] + 1];
  for (i64 j = j0; j < j1; ++j) {
    pos[j - j0 + 1] += pos[j - j0];
    toff[j] = s0 + pos[j - j0];
  }
  t.resize(static_cast<std::size_t>(s1 - s0));  // within the reserved capacity: no allocation
  for (i64 e = s0; e < s1; ++e) {  // stable: the stage holds each bucket's sources in order
    t[pos[to[e]]++] = stage[e];
  }
  Entry* out = merged.data() + merged_at(j0);  // the partition's rows, one after the other
  for (i64 i = j0; i < j1; ++i) {
    const Entry* a = l.data() + i * k;
    const i64 nb = (i + 1 < j1 ? toff[i + 1] : s1) - toff[i];
    const Entry* b = t.data() + (toff[i] - s0);
    double deg = 0.0;
    const i64 m = mutual ? merge_in_halves<true>(a, len[i], b, nb, out, deg)
                         : merge_in_halves<false>(a, len[i], b, nb, out, deg);
    rowptr[i] = m;
    out += m;
    dinv[i] = detail::inv_sqrt_degree(deg);
  }
}

i64 KnnGraphBuilder::State::build(const KnnLists& in, double gamma) {
  // Every allocation happens outside the parallel regions (an exception must not leave one);
  // the one that cannot (sort_rows' row buffers) runs through an OmpGuard. The rows are cut into
  // `threads` fixed slices, so passes 1 and 2a agree on them whatever threads a region gets.
  const i64 parts = partitions();
  const auto N = static_cast<std::size_t>(n);
  const auto P = static_cast<std::size_t>(parts) + 1;
  const int T = threads;
  l.resize(N * static_cast<std::size_t>(k));
  len.resize(N);
  part.resize(static_cast<std::size_t>(T) * P);
  toff.resize(N + 1);
  rowptr.resize(N + 1);
  dinv.resize(N);
  const auto slice_lo = [this, T](int u) { return n * u / T; };
  std::vector<i64> first_bad(static_cast<std::size_t>(T), n);
  detail::OmpGuard guard;
  // ---- pass 1: rows (validated, weighted, sorted), entries counted per partition and slice
#pragma omp parallel for num_threads(T) schedule(static, 1)
  for (int u = 0; u < T; ++u) {
    guard.run([&] {
      const i64 lo = slice_lo(u), hi = slice_lo(u + 1);
      i64* cur = part.data() + static_cast<std::size_t>(u) * P;
      std::fill(cur, cur + P, 0);
      const i64 r = sort_rows(in, gamma, lo, hi, l.data(), len.data(), cur);
      first_bad[static_cast<std::size_t>(u)] = r < hi ? r : n;
    });
  }
  guard.rethrow();
  const i64 bad = *std::min_element(first_bad.begin(), first_bad.end());
  if (bad < n) return bad;
  // ---- pass 2a set-up: partition p holds the entries of slice 0's rows, of slice 1's, ...;
  // part[u, p] becomes where slice u's go.
  i64 run = 0;
  for (i64 p = 0; p < parts; ++p)
    for (int u = 0; u < T; ++u) {
      i64& v = part[static_cast<std::size_t>(u) * P + static_cast<std::size_t>(p)];
      const i64 here = v;
      v = run;
      run += here;
    }
  for (int u = 0; u < T; ++u) part[static_cast<std::size_t>(u) * P + parts] = run;
  toff[n] = run;
  stage.resize(static_cast<std::size_t>(run));
  stage_to.resize(static_cast<std::size_t>(run));
  merged.resize(static_cast<std::size_t>(mutual ? n * k : n * k + run));
  // partition starts (slice 0's cursors) before they move; per-thread T-row buffers as wide as
  // the widest partition
  const std::vector<i64> pstart(part.begin(), part.begin() + static_cast<std::ptrdiff_t>(P));
  i64 widest = 0;
  for (i64 p = 0; p < parts; ++p) widest = std::max(widest, pstart[p + 1] - pstart[p]);
  std::vector<raw_vector<Entry>> tbuf(static_cast<std::size_t>(T));
  for (auto& t : tbuf) t.reserve(static_cast<std::size_t>(widest));
  // ---- pass 2a: stage T's entries by partition
#pragma omp parallel for num_threads(T) schedule(static, 1)
  for (int u = 0; u < T; ++u) stage_slice(slice_lo(u), slice_lo(u + 1),
                                          part.data() + static_cast<std::size_t>(u) * P);
  // ---- passes 2b and 3, partition by partition
#pragma omp parallel num_threads(T)
  {
    raw_vector<Entry>& t = tbuf[static_cast<std::size_t>(omp_get_thread_num())];
#pragma omp for schedule(static)
    for (i64 p = 0; p < parts; ++p)
      distribute_and_merge(p << kPartShift, part_end(p), pstart[p], pstart[p + 1], t);
  }
  rowptr[n] = 0;
  nnz = exclusive_scan(rowptr.data(), n + 1);
  return n;
}

void KnnGraphBuilder::State::stage_slice(i64 lo, i64 hi, i64* cur) {
  Entry* st = stage.data();
  std::uint8_t* st_to = stage_to.data();
  constexpr i32 kPartMask = (i32(1) << kPartShift) - 1;
  const Entry* lrows = l.data();
  const i32* lens = len.data();
  for (i64 i = lo; i < hi; ++i) {
    const Entry* row = lrows + i * k;
    const i32 m = lens[i];
    // Even places, then odd ones: neighbours in one partition sit side by side in the sorted
    // row, and back-to-back increments of one cursor would wait on each other. (The order
    // within a row is free: a target row gets at most one entry from each source.)
    for (i32 e0 = 0; e0 < 2; ++e0) {
      for (i32 e = e0; e < m; e += 2) {
        const Entry r = row[e];
        const i64 at = cur[r.col >> kPartShift]++;
        st[at] = Entry{static_cast<i32>(i), r.w};
        st_to[at] = static_cast<std::uint8_t>(r.col & kPartMask);
      }
    }
  }
}

namespace {
// The scratch of the last finished build, reused by the next one (a graph is rebuilt every epoch):
// fresh allocations of this size cost page faults that take as long as the kernel itself.
// Holds at most kMaxCachedBytes (512 MiB: a k = 50 graph of ~400k points); release_graph_scratch()
// frees it.
std::mutex g_scratch_mutex;
std::unique_ptr<KnnGraphBuilder::State> g_scratch;
constexpr std::size_t kMaxCachedBytes = std::size_t(512) << 20;
}  // namespace

void release_graph_scratch() {
  std::unique_ptr<KnnGraphBuilder::State> old;
  {
    std::lock_guard<std::mutex> lock(g_scratch_mutex);
    old = std::move(g_scratch);
  }
}  // freed here, outside the lock

std::unique_ptr<KnnGraphBuilder::State> KnnGraphBuilder::take_scratch() {
  std::lock_guard<std::mutex> lock(g_scratch_mutex);
  if (g_scratch) return std::move(g_scratch);
  return std::make_unique<State>();
}

KnnGraphBuilder::~KnnGraphBuilder() {
  if (!st_ || st_->bytes() > kMaxCachedBytes) return;
  std::lock_guard<std::mutex> lock(g_scratch_mutex);
  g_scratch = std::move(st_);
}

KnnGraphBuilder::KnnGraphBuilder(const KnnLists& lists, double gamma, GraphMode mode)
    : st_(take_scratch()) {
  require(lists.n >= 1 && lists.k >= 1, "knn_result: expected at least one row and one column");
  require(lists.n < std::numeric_limits<i32>::max(),
          "knn_result: at most 2^31 - 2 points are supported, got ", lists.n);
  require(lists.sims != nullptr && lists.idx != nullptr, "knn_result: null buffers");
  require(gamma > 0.0 && gamma <= std::numeric_limits<double>::max(),
          "gamma: expected a finite number > 0, got ", gamma);
  State& s = *st_;
  s.n = lists.n;
  s.k = lists.k;
  s.mutual = mode == GraphMode::reciprocal;
  // At least kEntriesPerThread list entries (about 1 ms of work) per thread: below that,
  // fork/join and barriers cost more than they save.
  constexpr i64 kEntriesPerThread = i64(1) << 16;
  s.threads = static_cast<int>(std::max<i64>(
      1, std::min<i64>(omp_get_max_threads(), lists.n * lists.k / kEntriesPerThread)));
  const i64 bad = s.build(lists, gamma);
  if (bad < s.n) throw_bad_row(lists, bad);
}

i64 KnnGraphBuilder::n() const noexcept { return st_->n; }
i64 KnnGraphBuilder::nnz() const noexcept { return st_->nnz; }

void KnnGraphBuilder::fill(i64* indptr, i32* indices, float* data) const {
  const State& s = *st_;
  const i64 n = s.n;
  const double* dinv = s.dinv.data();
#pragma omp parallel num_threads(s.threads)
  {
#pragma omp for schedule(static) nowait
    for (i64 i = 0; i < n + 1; ++i) indptr[i] = s.rowptr[i];
    const i64 parts = s.partitions();
#pragma omp for schedule(static) nowait
    for (i64 p = 0; p < parts; ++p) {
      const i64 j0 = p << kPartShift, j1 = s.part_end(p);
      // The partition's rows lie one after the other from merged_at(j0), as in the output.
      const Entry* src = s.merged.data() + s.merged_at(j0);
      const i64 o0 = s.rowptr[j0];
      for (i64 i = j0; i < j1; ++i) {
        const i64 o1 = s.rowptr[i + 1];
        const double di = dinv[i];
        for (i64 o = s.rowptr[i]; o < o1; ++o) {
          const Entry e = src[o - o0];
          indices[o] = e.col;
          data[o] = detail::normalised(e.w, di, dinv[e.col]);
        }
      }
    }
  }
}

}  // namespace dalcore::cpu
