// CPU kernel of propagate: block conjugate gradient, OpenMP over fixed row blocks.
//
// Memory traffic per iteration (n x C vectors x, r, p, q; V = float or double):
//   pass 1  q = A p, pq_c = p_c.q_c      reads the graph once + p (gathered), writes q
//   pass 2  r -= step q, rr_c = r_c.r_c  reads r, q, writes r
//   pass 3  x += step p, p = r + beta p  reads x, p, r, writes x, p
// Dot products accumulate in double, per fixed block of kRows rows, and the block partials are
// summed in block order: the result does not depend on the thread count or on timing.
// The three passes are compiled twice (baseline x86-64 and AVX2+FMA) and chosen at run time.
// The SpMM keeps up to 32 columns of a row's accumulator in SIMD registers across the row's
// nonzeros and prefetches the gathered rows of p; for large n x C the nodes are first
// renumbered in breadth-first order so that gathered rows stay in cache (see `reorder`).
// Vectors are float32 by default (half the traffic; accuracy about kappa * 6e-8, i.e. ~1e-6
// at alpha = 0.99) or float64 (PropagateParams::double_vectors).
#include "dalcore/propagate.h"

#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <vector>

#include "dalcore/detail/propagate_ops.h"
#include "dalcore/status.h"

namespace dalcore::cpu {
namespace {

using namespace detail::prop;
using i64 = std::int64_t;

constexpr i64 kRows = 256;                    // rows per reduction block (the fixed partition)
constexpr i64 kParallelWork = i64(1) << 18;   // nnz * C below which one thread runs
constexpr i64 kPrefetch = 8;                  // nonzeros ahead whose row of p is prefetched
constexpr i64 kReorderBytes = i64(1) << 20;   // auto-reorder above this many bytes per vector

// ---------------------------------------------------------------- the three passes (per block)
// 32-byte SIMD vectors (GCC vector extensions: AVX registers in the AVX2 clone, pairs of SSE
// registers in the baseline one). Explicit vectors keep the row accumulators in registers;
// plain arrays let the compiler interchange the loops and accumulate in memory.
template <class V>
struct Simd;
template <>
struct Simd<float> {
  typedef float vec __attribute__((vector_size(32)));
  static constexpr int kLanes = 8;
};
template <>
struct Simd<double> {
  typedef double vec __attribute__((vector_size(32)));
  static constexpr int kLanes = 4;
};

template <class V>
[[gnu::always_inline]] inline void prefetch_row(const CsrView& g, i64 k, i64 kend, const V* p,
                                                i64 C, i64 row_bytes) {
  if (k + kPrefetch < kend) {
    const char* ahead =
        reinterpret_cast<const char*>(p + static_cast<i64>(g.indices[k + kPrefetch]) * C);
    for (i64 off = 0; off < row_bytes; off += 64) __builtin_prefetch(ahead + off, 0, 3);
    __builtin_prefetch(ahead + row_bytes - 1, 0, 3);  // a row may straddle one more line
  }
}

// (S p)_i restricted to columns [c0, c0 + NV * lanes): NV vector accumulators in registers
// across the row's nonzeros [k0, k1). With Pf, the row of p needed kPrefetch nonzeros ahead
// (all C columns) is prefetched, up to nonzero kend.
template <class V, int NV, bool Pf>
[[gnu::always_inline]] inline void row_chunk(const CsrView& g, i64 k0, i64 k1, i64 kend,
                                             const V* p, i64 C, i64 c0, i64 row_bytes, V* out) {
  using vec = typename Simd<V>::vec;
  constexpr int L = Simd<V>::kLanes;
  vec acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = vec{};
  for (i64 k = k0; k < k1; ++k) {
    if constexpr (Pf) prefetch_row(g, k, kend, p, C, row_bytes);
    const vec s = vec{} + static_cast<V>(g.data[k]);
    const V* pj = p + static_cast<i64>(g.indices[k]) * C + c0;
    for (int v = 0; v < NV; ++v) {
      vec x;
      std::memcpy(&x, pj + v * L, sizeof(vec));
      acc[v] += s * x;
    }
  }
  for (int v = 0; v < NV; ++v) std::memcpy(out + c0 + v * L, &acc[v], sizeof(vec));
}

// One pass over the row's nonzeros for up to 4 vectors of columns. The last chunk may cover
// columns past C: it reads into the next row of p (the gathered buffers carry kLanes elements
// of padding at the end) and its extra lanes land in the padding of `out`, never used.
template <class V, bool Pf>
[[gnu::always_inline]] inline i64 chunk_step(const CsrView& g, i64 k0, i64 k1, i64 kend,
                                             const V* p, i64 C, i64 c0, i64 row_bytes, V* out) {
  constexpr int L = Simd<V>::kLanes;
  const i64 nvec = (C - c0 + L - 1) / L;
  switch (nvec >= 4 ? 4 : nvec) {
    case 4:
      row_chunk<V, 4, Pf>(g, k0, k1, kend, p, C, c0, row_bytes, out);
      return 4 * L;
    case 3:
      row_chunk<V, 3, Pf>(g, k0, k1, kend, p, C, c0, row_bytes, out);
      return 3 * L;
    case 2:
      row_chunk<V, 2, Pf>(g, k0, k1, kend, p, C, c0, row_bytes, out);
      return 2 * L;
    default:
      row_chunk<V, 1, Pf>(g, k0, k1, kend, p, C, c0, row_bytes, out);
      return L;
  }
}

// Pass 1: q = p - alpha S p on rows [i0, i1); part[c] = sum_i p_ic q_ic.
template <class V>
[[gnu::always_inline]] inline void spmm_block(const CsrView& g, V alpha, const V* p, V* q, i64 C,
                                              i64 i0, i64 i1, V* acc, double* part) {
  for (i64 c = 0; c < C; ++c) part[c] = 0.0;
  // The gathered rows of p are the bottleneck (random rows, C * sizeof(V) bytes each): the
  // first column chunk prefetches the row kPrefetch nonzeros ahead, within this block.
  const i64 kend = g.indptr[i1];
  const i64 row_bytes = C * static_cast<i64>(sizeof(V));
  for (i64 i = i0; i < i1; ++i) {
    const i64 k0 = g.indptr[i], k1 = g.indptr[i + 1];
    i64 c0 = chunk_step<V, true>(g, k0, k1, kend, p, C, 0, row_bytes, acc);
    while (c0 < C) c0 += chunk_step<V, false>(g, k0, k1, kend, p, C, c0, row_bytes, acc);
    const V* pi = p + i * C;
    V* qi = q + i * C;
    for (i64 c = 0; c < C; ++c) {
      const V qv = apply_a(pi[c], acc[c], alpha);
      qi[c] = qv;
      part[c] += static_cast<double>(pi[c]) * static_cast<double>(qv);
    }
  }
}

// Pass 2: r -= step q; part[c] = sum_i r_ic^2.
template <class V>
[[gnu::always_inline]] inline void residual_block(const V* q, const V* step, V* r, i64 C, i64 i0,
                                                  i64 i1, double* part) {
  for (i64 c = 0; c < C; ++c) part[c] = 0.0;
  for (i64 i = i0; i < i1; ++i) {
    const V* qi = q + i * C;
    V* ri = r + i * C;
    for (i64 c = 0; c < C; ++c) {
      const V rv = residual_update(ri[c], qi[c], step[c]);
      ri[c] = rv;
      part[c] += static_cast<double>(rv) * static_cast<double>(rv);
    }
  }
}

// Pass 3: x += step p; p = gamma r + beta p.
template <class V>
[[gnu::always_inline]] inline void update_block(V* x, V* p, const V* r, const V* step,
                                                const V* beta, const V* gamma, i64 C, i64 i0,
                                                i64 i1) {
  for (i64 i = i0; i < i1; ++i) {
    V* xi = x + i * C;
    V* pi = p + i * C;
    const V* ri = r + i * C;
    for (i64 c = 0; c < C; ++c)
      solution_direction_update(&xi[c], &pi[c], ri[c], step[c], beta[c], gamma[c]);
  }
}

template <class V>
struct Passes {
  void (*spmm)(const CsrView&, V, const V*, V*, i64, i64, i64, V*, double*);
  void (*residual)(const V*, const V*, V*, i64, i64, i64, double*);
  void (*update)(V*, V*, const V*, const V*, const V*, const V*, i64, i64, i64);
};

#define DALCORE_PROPAGATE_PASSES(V, NAME, ATTR)                                                   \
  ATTR void NAME##_spmm(const CsrView& g, V alpha, const V* p, V* q, i64 C, i64 i0, i64 i1,     \
                        V* acc, double* part) {                                                  \
    spmm_block<V>(g, alpha, p, q, C, i0, i1, acc, part);                                         \
  }                                                                                              \
  ATTR void NAME##_residual(const V* q, const V* step, V* r, i64 C, i64 i0, i64 i1,             \
                            double* part) {                                                      \
    residual_block<V>(q, step, r, C, i0, i1, part);                                              \
  }                                                                                              \
  ATTR void NAME##_update(V* x, V* p, const V* r, const V* step, const V* beta, const V* gamma, \
                          i64 C, i64 i0, i64 i1) {                                               \
    update_block<V>(x, p, r, step, beta, gamma, C, i0, i1);                                      \
  }

DALCORE_PROPAGATE_PASSES(float, f32_base, )
DALCORE_PROPAGATE_PASSES(double, f64_base, )
#if defined(__x86_64__) && defined(__GNUC__)
#define DALCORE_PROPAGATE_AVX2 1
DALCORE_PROPAGATE_PASSES(float, f32_avx2, __attribute__((target("avx2,fma"))))
DALCORE_PROPAGATE_PASSES(double, f64_avx2, __attribute__((target("avx2,fma"))))
#endif
#undef DALCORE_PROPAGATE_PASSES

bool has_avx2() {
#ifdef DALCORE_PROPAGATE_AVX2
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

template <class V>
Passes<V> select_passes() {
  const bool avx2 = has_avx2();
  if constexpr (std::is_same_v<V, float>) {
#ifdef DALCORE_PROPAGATE_AVX2
    if (avx2) return {f32_avx2_spmm, f32_avx2_residual, f32_avx2_update};
#endif
    (void)avx2;
    return {f32_base_spmm, f32_base_residual, f32_base_update};
  } else {
#ifdef DALCORE_PROPAGATE_AVX2
    if (avx2) return {f64_avx2_spmm, f64_avx2_residual, f64_avx2_update};
#endif
    (void)avx2;
    return {f64_base_spmm, f64_base_residual, f64_base_update};
  }
}

// Sums the block partials of each column in block order (deterministic).
void column_sums(const std::vector<double>& part, i64 nb, i64 C, std::vector<double>& out) {
  for (i64 c = 0; c < C; ++c) out[c] = 0.0;
  for (i64 b = 0; b < nb; ++b)
    for (i64 c = 0; c < C; ++c) out[c] += part[b * C + c];
}

// CG needs a symmetric S: the one test of both paths (detail/propagate_ops.h), with u and v
// looked up from vectors of the same hashed values.
void check_symmetric(const CsrView& g) {
  const i64 n = g.n;
  std::vector<double> u(static_cast<std::size_t>(n)), v(static_cast<std::size_t>(n));
  for (i64 i = 0; i < n; ++i) {
    u[i] = hash_unit(static_cast<std::uint64_t>(i), 0);
    v[i] = hash_unit(static_cast<std::uint64_t>(i), 1);
  }
  const auto uf = [&u](i64 j) { return u[j]; };
  const auto vf = [&v](i64 j) { return v[j]; };
  double uv = 0.0, vu = 0.0, scale = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : uv, vu, scale) if (g.nnz >= kParallelWork)
  for (i64 i = 0; i < n; ++i) {
    const SymmetryTerms t = symmetry_row(i, g.indptr, g.indices, g.data, uf, vf);
    uv += t.uv;
    vu += t.vu;
    scale += t.scale;
  }
  SymmetryTerms total;
  total.uv = uv;
  total.vu = vu;
  total.scale = scale;
  double diff = 0.0;
  require(symmetric_enough(total, &diff),
          "graph: expected a symmetric affinity S (S == S.T); a randomised test found "
          "|u'Sv - v'Su| = ", diff, " > ", kSymmetryRtol, " * ", scale);
}

void validate(const CsrView& g, const std::int64_t* labels, i64 C, std::vector<i64>& count) {
  require(g.n >= 1, "graph: expected at least one row, got ", g.n);
  require(C >= 1, "num_classes: expected >= 1, got ", C);
  require(g.indptr[0] == 0 && g.indptr[g.n] == g.nnz, "graph: indptr must start at 0 and end at nnz (",
          g.nnz, "), got ", g.indptr[0], " ... ", g.indptr[g.n]);
  i64 bad_ptr = 0, bad_idx = 0;
#pragma omp parallel for schedule(static) reduction(+ : bad_ptr, bad_idx) if (g.nnz >= kParallelWork)
  for (i64 i = 0; i < g.n; ++i) {
    const i64 a = g.indptr[i], e = g.indptr[i + 1];
    if (e < a || a < 0 || e > g.nnz) {
      ++bad_ptr;
      continue;
    }
    for (i64 k = a; k < e; ++k)
      if (g.indices[k] < 0 || g.indices[k] >= g.n) ++bad_idx;
  }
  require(bad_ptr == 0, "graph: indptr must be non-decreasing within [0, nnz]");
  require(bad_idx == 0, "graph: ", bad_idx, " column indices outside [0, ", g.n, ")");
  check_symmetric(g);
  count.assign(C, 0);
  for (i64 i = 0; i < g.n; ++i) {
    const i64 l = labels[i];
    require(l >= -1 && l < C, "labels: expected -1 (unlabeled) or a class in [0, ", C,
            "), got ", l, " at index ", i);
    if (l >= 0) ++count[l];
  }
  for (i64 c = 0; c < C; ++c)
    require(count[c] > 0, "labels: class ", c, " has no labeled example");
}

// This thread's accumulator of `width` entries in the per-thread block `accs`.
template <class V>
V* thread_acc(std::vector<V>& accs, std::size_t width) {
  return accs.data() + static_cast<std::size_t>(omp_get_thread_num()) * width;
}

template <class V>
void run(const CsrView& g, const std::int64_t* labels, i64 C, const std::vector<i64>& count,
         const float* x0, const PropagateParams& prm, const PropagateOut& out) {
  const i64 n = g.n;
  const i64 nb = (n + kRows - 1) / kRows;
  const std::size_t size = static_cast<std::size_t>(n) * static_cast<std::size_t>(C);
  const Passes<V> pass = select_passes<V>();
  const V alpha = static_cast<V>(prm.alpha);
  // Small problems run on one thread: a parallel region costs more than their work.
  const bool parallel = g.nnz * C >= kParallelWork;

  // x and p are gathered by the SpMM, whose last column chunk may read kLanes elements past
  // the end: they carry that padding (zeros).
  constexpr std::size_t pad = Simd<V>::kLanes;
  std::vector<V> x_own(size + pad, V(0)), p(size + pad, V(0)), r(size), q(size);
  V* x = x_own.data();
  std::vector<double> part(static_cast<std::size_t>(nb * C));
  std::vector<double> bb(C), rho(C), relres(C), dot(C), beta(C), gamma(C);
  std::vector<V> step_v(C), beta_v(C), gamma_v(C);
  std::vector<std::uint8_t> state(C);
  std::vector<i64> iters(C, 0);
  std::vector<double> step(C);
  // The SpMM's per-thread row accumulators, allocated here: nothing inside a parallel region
  // allocates (an exception must not escape one).
  std::vector<V> accs(static_cast<std::size_t>(omp_get_max_threads()) * (C + pad));
  for (i64 c = 0; c < C; ++c) bb[c] = rhs_norm2(count[c]);

  // ---- start: x = x0 (or 0), r = b - A x, p = r, rr = r.r
  if (x0 != nullptr) {
#pragma omp parallel for schedule(static) if (parallel)
    for (i64 i = 0; i < n; ++i)
      for (i64 c = 0; c < C; ++c) x[i * C + c] = static_cast<V>(x0[i * C + c]);
#pragma omp parallel if (parallel)
    {
      V* acc = thread_acc(accs, C + pad);
#pragma omp for schedule(dynamic, 1)
      for (i64 b = 0; b < nb; ++b)
        pass.spmm(g, alpha, x, q.data(), C, b * kRows, std::min(n, (b + 1) * kRows), acc,
                  part.data() + b * C);
    }
  } else {
    std::fill(x, x + size, V(0));
  }
#pragma omp parallel for schedule(static) if (parallel)
  for (i64 b = 0; b < nb; ++b) {
    double* pb = part.data() + b * C;
    for (i64 c = 0; c < C; ++c) pb[c] = 0.0;
    for (i64 i = b * kRows; i < std::min(n, (b + 1) * kRows); ++i) {
      for (i64 c = 0; c < C; ++c) {
        const std::size_t e = static_cast<std::size_t>(i * C + c);
        V rv = static_cast<V>(rhs(labels[i], c, count[c]));
        if (x0 != nullptr) rv -= q[e];
        r[e] = rv;
        p[e] = rv;
        pb[c] += static_cast<double>(rv) * static_cast<double>(rv);
      }
    }
  }
  column_sums(part, nb, C, dot);
  i64 active = 0;
  for (i64 c = 0; c < C; ++c) {
    state[c] = cg_start(dot[c], bb[c], prm.tol, &rho[c], &relres[c]);
    active += state[c] == kActive;
  }

  // ---- iterations
  for (i64 it = 0; it < prm.max_iter && active > 0; ++it) {
#pragma omp parallel if (parallel)
    {
      V* acc = thread_acc(accs, C + pad);
#pragma omp for schedule(dynamic, 1)
      for (i64 b = 0; b < nb; ++b)
        pass.spmm(g, alpha, p.data(), q.data(), C, b * kRows, std::min(n, (b + 1) * kRows),
                  acc, part.data() + b * C);
    }
    column_sums(part, nb, C, dot);
    for (i64 c = 0; c < C; ++c) {
      step[c] = cg_step(&state[c], rho[c], dot[c]);
      step_v[c] = static_cast<V>(step[c]);
    }
#pragma omp parallel for schedule(static) if (parallel)
    for (i64 b = 0; b < nb; ++b)
      pass.residual(q.data(), step_v.data(), r.data(), C, b * kRows, std::min(n, (b + 1) * kRows),
                    part.data() + b * C);
    column_sums(part, nb, C, dot);
    active = 0;
    for (i64 c = 0; c < C; ++c) {
      cg_direction(&state[c], step[c], dot[c], bb[c], prm.tol, &rho[c], &relres[c], &iters[c],
                   &beta[c], &gamma[c]);
      beta_v[c] = static_cast<V>(beta[c]);
      gamma_v[c] = static_cast<V>(gamma[c]);
      active += state[c] == kActive;
    }
#pragma omp parallel for schedule(static) if (parallel)
    for (i64 b = 0; b < nb; ++b)
      pass.update(x, p.data(), r.data(), step_v.data(), beta_v.data(), gamma_v.data(), C,
                  b * kRows, std::min(n, (b + 1) * kRows));
  }

  i64 broken = 0, first_broken = -1;
  for (i64 c = 0; c < C; ++c)
    if (state[c] == kBreakdown) {
      if (first_broken < 0) first_broken = c;
      ++broken;
    }
  require(broken == 0, "graph: conjugate gradient broke down (p.Ap <= 0) in ", broken,
          " column(s), first class ", first_broken,
          ": I - alpha*S is not positive definite; pass a symmetric, normalised affinity "
          "(D^-1/2 W D^-1/2)");

#pragma omp parallel for schedule(static) if (parallel)
  for (i64 i = 0; i < n; ++i)
    for (i64 c = 0; c < C; ++c) out.z[i * C + c] = static_cast<float>(x[i * C + c]);
  for (i64 c = 0; c < C; ++c) {
    if (out.iterations) out.iterations[c] = iters[c];
    if (out.relres) out.relres[c] = relres[c];
  }
}

// ---------------------------------------------------------------- locality reordering
// A k-NN graph in dataset order gathers its neighbours' rows of p from all over the n x C
// block, which does not fit in cache once C is large. Renumbering the nodes in breadth-first
// order (Cuthill-McKee without the degree sort) puts neighbours close together, so the rows a
// block of rows gathers stay in cache. The solve then runs on the permuted graph (the order of
// the entries within a row is kept, so each row sums in the same order) and Z is permuted back.
struct Reordered {
  std::vector<i64> order;  // order[new] = old
  std::vector<i64> indptr;
  std::vector<std::int32_t> indices;
  std::vector<float> data;
  std::vector<i64> labels;
  std::vector<float> x0;
  CsrView view() const {
    return CsrView{indptr.data(), indices.data(), data.data(), static_cast<i64>(order.size()),
                   static_cast<i64>(indices.size())};
  }
};

std::vector<i64> bfs_order(const CsrView& g) {
  const i64 n = g.n;
  std::vector<i64> order;
  order.reserve(static_cast<std::size_t>(n));
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(n), 0);
  for (i64 root = 0; root < n; ++root) {
    if (seen[root]) continue;
    seen[root] = 1;
    std::size_t head = order.size();
    order.push_back(root);
    while (head < order.size()) {
      const i64 i = order[head++];
      for (i64 k = g.indptr[i]; k < g.indptr[i + 1]; ++k) {
        const i64 j = g.indices[k];
        if (!seen[j]) {
          seen[j] = 1;
          order.push_back(j);
        }
      }
    }
  }
  return order;
}

Reordered reorder(const CsrView& g, const std::int64_t* labels, const float* x0, i64 C,
                  bool parallel) {
  Reordered r;
  const i64 n = g.n;
  r.order = bfs_order(g);
  std::vector<std::int32_t> inv(static_cast<std::size_t>(n));
  for (i64 k = 0; k < n; ++k) inv[r.order[k]] = static_cast<std::int32_t>(k);
  r.indptr.resize(static_cast<std::size_t>(n + 1));
  r.indptr[0] = 0;
  for (i64 k = 0; k < n; ++k) {
    const i64 o = r.order[k];
    r.indptr[k + 1] = r.indptr[k] + (g.indptr[o + 1] - g.indptr[o]);
  }
  r.indices.resize(static_cast<std::size_t>(g.nnz));
  r.data.resize(static_cast<std::size_t>(g.nnz));
  r.labels.resize(static_cast<std::size_t>(n));
  if (x0 != nullptr) r.x0.resize(static_cast<std::size_t>(n * C));
#pragma omp parallel for schedule(static) if (parallel)
  for (i64 k = 0; k < n; ++k) {
    const i64 o = r.order[k];
    i64 dst = r.indptr[k];
    for (i64 e = g.indptr[o]; e < g.indptr[o + 1]; ++e, ++dst) {
      r.indices[dst] = inv[g.indices[e]];
      r.data[dst] = g.data[e];
    }
    r.labels[k] = labels[o];
    if (x0 != nullptr) std::memcpy(&r.x0[k * C], x0 + o * C, sizeof(float) * C);
  }
  return r;
}

bool want_reorder(const CsrView& g, i64 C, const PropagateParams& prm) {
  if (prm.reorder >= 0) return prm.reorder > 0;
  const i64 vbytes = prm.double_vectors ? 8 : 4;
  // auto: when one n x C vector no longer fits in a core's L2, and there is work to amortise
  // the O(nnz) renumbering
  return g.n * C * vbytes > kReorderBytes && g.nnz >= 4 * g.n && prm.max_iter >= 3;
}

template <class V>
void solve(const CsrView& g, const std::int64_t* labels, i64 C, const std::vector<i64>& count,
           const float* x0, const PropagateParams& prm, const PropagateOut& out) {
  if (!want_reorder(g, C, prm)) {
    run<V>(g, labels, C, count, x0, prm, out);
    return;
  }
  const bool parallel = g.nnz * C >= kParallelWork;
  const Reordered r = reorder(g, labels, x0, C, parallel);
  std::vector<float> z(static_cast<std::size_t>(g.n * C));
  PropagateOut tmp = out;
  tmp.z = z.data();
  run<V>(r.view(), r.labels.data(), C, count, x0 ? r.x0.data() : nullptr, prm, tmp);
#pragma omp parallel for schedule(static) if (parallel)
  for (i64 k = 0; k < g.n; ++k)
    std::memcpy(out.z + r.order[k] * C, &z[k * C], sizeof(float) * C);
}

}  // namespace

void propagate(const CsrView& graph, const std::int64_t* labels, std::int64_t num_classes,
               const float* x0, const PropagateParams& params, const PropagateOut& out) {
  check_propagate_params(params);
  std::vector<i64> count;
  validate(graph, labels, num_classes, count);
  if (params.double_vectors)
    solve<double>(graph, labels, num_classes, count, x0, params, out);
  else
    solve<float>(graph, labels, num_classes, count, x0, params, out);
}

}  // namespace dalcore::cpu
