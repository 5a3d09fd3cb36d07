// GPU path of propagate, written on Thrust over DALCORE_HD functors (see dalcore/detail/backend.h):
// compiled by nvcc into _core and by the host compiler into _core_omp.
//
// Same algorithm as csrc/cpu/propagate.cpp (block CG, one SpMM per iteration for all columns,
// per-column scalars from detail/propagate_ops.h). Layout: n x C row-major vectors. Work items:
//   (row block b, column c): kRows consecutive rows of one column. Consecutive items are
//     consecutive columns of the same rows, so on CUDA a warp's gathers p[j * C + c] of one
//     neighbour j are coalesced; each item also produces one partial dot product
//     part[b * C + c] (double), so no atomics are needed and the sums are deterministic.
//   column sums: a fixed two-stage tree (groups of kGroup partials, then one item per column)
//     whose last stage also runs the per-column CG scalar update, on the device.
// The CG scalars never leave the device. Converged columns are frozen (step 0, beta 1,
// gamma 0) by the scalar update itself, so the host does not need to look at them; it checks
// the number of still-active columns only every kCheckEvery iterations (one small device-to-
// host copy) to stop early once all columns have converged.
//
// Host synchronisations per call (CUDA): one for the symmetry test before the solve (its result
// decides whether to solve), none per CG iteration except the convergence check every
// kCheckEvery iterations, and one at the end (the breakdown count). With the default
// max_iter = 20: at most four. Temporaries: backend::buffer (cudaMallocAsync on the caller's
// stream).
//
// Ordering (issue 14): every floating-point sum of the solve runs over the fixed partitions above
// (row blocks, groups), so the twin gives the same bits on any number of OpenMP threads
// (test_gpu_twin_order.py); the symmetry test's sum is a tile_reduce (backend.h: a fixed tile,
// block and combine order), whose blocks the twin's launch-order setting can reverse or shuffle.
#include <thrust/for_each.h>
#include <thrust/functional.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>

#include <cstdint>
#include <type_traits>

#include "dalcore/detail/backend.h"
#include "dalcore/detail/hd.h"
#include "dalcore/detail/propagate_ops.h"
#include "dalcore/propagate.h"
#include "dalcore/status.h"

namespace dalcore::gpu {
namespace {

using namespace detail::prop;
using i64 = std::int64_t;

constexpr i64 kRows = 16;       // rows per (block, column) work item / partial dot product
constexpr i64 kGroup = 64;      // partials summed by one item in the first reduction stage
constexpr i64 kCheckEvery = 8;  // iterations between host checks for "all columns converged"

struct Csr {
  const i64* indptr;
  const std::int32_t* indices;
  const float* data;
};

DALCORE_HD i64 min_i64(i64 a, i64 b) { return a < b ? a : b; }

// The row-block walk shared by the per-(block, column) passes: work item t is block b = t / C
// (rows [b kRows, (b + 1) kRows) clipped to n) of column c = t mod C; row(i, c) updates row i and
// returns its term of the column's partial dot product, summed in row order into part[b, c].
template <class Row>
DALCORE_HD void row_block(i64 t, i64 n, i64 C, double* part, const Row& row) {
  const i64 b = t / C, c = t - b * C;
  const i64 i1 = min_i64(n, (b + 1) * kRows);
  double dot = 0.0;
  for (i64 i = b * kRows; i < i1; ++i) dot += row(i, c);
  part[b * C + c] = dot;
}

// q = p - alpha S p on the rows of block b, column c; part[b, c] = sum p q.
template <class V>
struct SpmmDot {
  Csr g;
  const V* p;
  V* q;
  double* part;
  i64 n, C;
  V alpha;
  DALCORE_HD double operator()(i64 i, i64 c) const {
    V acc = V(0);
    for (i64 k = g.indptr[i]; k < g.indptr[i + 1]; ++k)
      acc += static_cast<V>(g.data[k]) * p[static_cast<i64>(g.indices[k]) * C + c];
    const V pi = p[i * C + c];
    const V qv = apply_a(pi, acc, alpha);
    q[i * C + c] = qv;
    return static_cast<double>(pi) * static_cast<double>(qv);
  }
  DALCORE_HD void operator()(i64 t) const { row_block(t, n, C, part, *this); }
};

// Start: x = x0 (or 0), r = b - A x0 (q holds A x0 when has_x0), p = r; part = sum r^2.
template <class V>
struct Start {
  const i64* labels;
  const i64* count;
  const V* q;
  V* r;
  V* p;
  double* part;
  i64 n, C;
  bool has_x0;
  DALCORE_HD double operator()(i64 i, i64 c) const {
    V rv = static_cast<V>(rhs(labels[i], c, count[c]));
    if (has_x0) rv -= q[i * C + c];
    r[i * C + c] = rv;
    p[i * C + c] = rv;
    return static_cast<double>(rv) * static_cast<double>(rv);
  }
  DALCORE_HD void operator()(i64 t) const { row_block(t, n, C, part, *this); }
};

// r -= step q on the rows of block b, column c; part[b, c] = sum r^2.
template <class V>
struct Residual {
  const V* q;
  const double* step;
  V* r;
  double* part;
  i64 n, C;
  DALCORE_HD double operator()(i64 i, i64 c) const {
    const V rv = residual_update(r[i * C + c], q[i * C + c], static_cast<V>(step[c]));
    r[i * C + c] = rv;
    return static_cast<double>(rv) * static_cast<double>(rv);
  }
  DALCORE_HD void operator()(i64 t) const { row_block(t, n, C, part, *this); }
};

// x += step p ; p = gamma r + beta p, element-wise.
template <class V>
struct Update {
  V* x;
  V* p;
  const V* r;
  const double* step;
  const double* beta;
  const double* gamma;
  i64 C;
  DALCORE_HD void operator()(i64 t) const {
    const i64 c = t - (t / C) * C;
    solution_direction_update(&x[t], &p[t], r[t], static_cast<V>(step[c]),
                              static_cast<V>(beta[c]), static_cast<V>(gamma[c]));
  }
};

// First reduction stage: part2[g, c] = sum of part[b, c] for b in group g (in order).
struct GroupSum {
  const double* part;
  double* part2;
  i64 nb, C;
  DALCORE_HD void operator()(i64 t) const {
    const i64 gi = t / C, c = t - (t / C) * C;
    const i64 b1 = min_i64(nb, (gi + 1) * kGroup);
    double s = 0.0;
    for (i64 b = gi * kGroup; b < b1; ++b) s += part[b * C + c];
    part2[t] = s;
  }
};

DALCORE_HD double column_total(const double* part2, i64 ng, i64 C, i64 c) {
  double s = 0.0;
  for (i64 gi = 0; gi < ng; ++gi) s += part2[gi * C + c];
  return s;
}

struct ColumnScalars {
  const i64* count;
  double* bb;
  double* rho;
  double* step;
  double* beta;
  double* gamma;
  std::uint8_t* state;
  i64* iterations;
  double* relres;
  double tol;
};

struct StartScalars {
  ColumnScalars s;
  const double* part2;
  i64 ng, C;
  DALCORE_HD void operator()(i64 c) const {
    const double rr = column_total(part2, ng, C, c);
    s.bb[c] = rhs_norm2(s.count[c]);
    s.iterations[c] = 0;
    s.state[c] = cg_start(rr, s.bb[c], s.tol, &s.rho[c], &s.relres[c]);
  }
};

struct StepScalars {
  ColumnScalars s;
  const double* part2;
  i64 ng, C;
  DALCORE_HD void operator()(i64 c) const {
    const double pq = column_total(part2, ng, C, c);
    s.step[c] = cg_step(&s.state[c], s.rho[c], pq);
  }
};

struct DirectionScalars {
  ColumnScalars s;
  const double* part2;
  i64 ng, C;
  DALCORE_HD void operator()(i64 c) const {
    const double rr = column_total(part2, ng, C, c);
    cg_direction(&s.state[c], s.step[c], rr, s.bb[c], s.tol, &s.rho[c], &s.relres[c],
                 &s.iterations[c], &s.beta[c], &s.gamma[c]);
  }
};

struct IsState {
  std::uint8_t which;
  DALCORE_HD i64 operator()(std::uint8_t s) const { return s == which ? 1 : 0; }
};

template <class V>
struct ToFloat {
  const V* x;
  float* z;
  DALCORE_HD void operator()(i64 t) const { z[t] = static_cast<float>(x[t]); }
};

template <class V>
struct Fill {
  V* x;
  V value;
  DALCORE_HD void operator()(i64 t) const { x[t] = value; }
};

template <class V>
struct FromFloat {
  const float* z;
  V* x;
  DALCORE_HD void operator()(i64 t) const { x[t] = static_cast<V>(z[t]); }
};

// The symmetry test of both paths (detail/propagate_ops.h), u and v hashed on the fly.
struct SymmetryRow {
  Csr g;
  DALCORE_HD SymmetryTerms operator()(i64 i) const {
    return symmetry_row(i, g.indptr, g.indices, g.data, HashedVector{0}, HashedVector{1});
  }
};

struct AddTerms {
  DALCORE_HD SymmetryTerms operator()(const SymmetryTerms& a, const SymmetryTerms& b) const {
    return a + b;
  }
};

// Tile t: rows [t W, (t + 1) W), one per lane, their terms added by the tile's butterfly.
struct SymmetryTile {
  SymmetryRow row;
  i64 n;
  template <class Tile>
  DALCORE_HD SymmetryTerms operator()(const Tile& tl, i64 t) const {
    auto acc = Tile::fill(SymmetryTerms{});
    tl.for_lanes([&](int l) {
      const i64 i = t * Tile::kWidth + l;
      if (i < n) acc[l] = row(i);
    });
    return tl.fold(acc, AddTerms{});
  }
};

// One host synchronisation (the reduction's result decides whether to run at all). The sum runs
// in tile_reduce's fixed order: the same bits on every device, in the twin, on any threads.
void check_symmetric(const CsrView& graph, backend::stream_t s) {
  if (graph.nnz == 0) return;
  const i64 tiles = (graph.n + tile::kTileWidth - 1) / tile::kTileWidth;
  backend::ReduceScratch<SymmetryTerms> scratch(tiles, s);
  backend::buffer<SymmetryTerms> sum(1, s);
  backend::tile_reduce(s, tiles,
                       SymmetryTile{SymmetryRow{Csr{graph.indptr, graph.indices, graph.data}},
                                    graph.n},
                       AddTerms{}, SymmetryTerms{}, scratch, sum.data(), "propagate: symmetry test");
  SymmetryTerms t;
  backend::copy_to_host(&t, sum.data(), sizeof(t), s);
  double diff = 0.0;
  require(symmetric_enough(t, &diff),
          "graph: expected a symmetric affinity S (S == S.T); a randomised test found "
          "|u'Sv - v'Su| = ", diff, " > ", kSymmetryRtol, " * ", t.scale);
}

template <class F>
void for_n(backend::stream_t s, i64 n, const F& f, const char* what) {
  if (n <= 0) return;
  thrust::for_each(backend::policy(s), thrust::counting_iterator<i64>(0),
                   thrust::counting_iterator<i64>(n), f);
  backend::check_launch(what);
}

template <class V>
std::int64_t run(const CsrView& graph, const i64* labels, const i64* class_count, i64 C,
                 const float* x0, const PropagateParams& prm, const PropagateOut& out,
                 backend::stream_t s) {
  const i64 n = graph.n;
  const i64 size = n * C;
  const i64 nb = (n + kRows - 1) / kRows;
  const i64 ng = (nb + kGroup - 1) / kGroup;
  const Csr g{graph.indptr, graph.indices, graph.data};

  backend::buffer<V> x_own;
  V* x;
  if constexpr (std::is_same_v<V, float>) {
    x = out.z;
  } else {
    x_own = backend::buffer<V>(static_cast<std::size_t>(size), s);
    x = x_own.data();
  }
  backend::buffer<V> r(static_cast<std::size_t>(size), s), p(static_cast<std::size_t>(size), s),
      q(static_cast<std::size_t>(size), s);
  backend::buffer<double> part(static_cast<std::size_t>(nb * C), s),
      part2(static_cast<std::size_t>(ng * C), s), scalars(static_cast<std::size_t>(5 * C), s);
  backend::buffer<std::uint8_t> state(static_cast<std::size_t>(C), s);
  backend::buffer<i64> counter(1, s);
  backend::buffer<unsigned char> scratch;

  ColumnScalars cs{class_count,         scalars.data(),     scalars.data() + C,
                 scalars.data() + 2 * C, scalars.data() + 3 * C, scalars.data() + 4 * C,
                 state.data(),        out.iterations,     out.relres,
                 prm.tol};
  const V alpha = static_cast<V>(prm.alpha);
  const auto sum_columns = [&]() {
    for_n(s, ng * C, GroupSum{part.data(), part2.data(), nb, C}, "propagate: column sums");
  };
  const auto count_state = [&](std::uint8_t which) {
    auto it = thrust::make_transform_iterator(state.data(), IsState{which});
    backend::reduce_into(s, scratch, it, C, counter.data(), thrust::plus<i64>(), i64(0));
    i64 h = 0;
    backend::copy_to_host(&h, counter.data(), sizeof(i64), s);
    return h;
  };

  // ---- start: x = x0 or 0; r = b - A x; p = r
  if (x0 != nullptr) {
    for_n(s, size, FromFloat<V>{x0, x}, "propagate: x0");
    for_n(s, nb * C, SpmmDot<V>{g, x, q.data(), part.data(), n, C, alpha}, "propagate: A x0");
  } else {
    for_n(s, size, Fill<V>{x, V(0)}, "propagate: x = 0");
  }
  for_n(s, nb * C, Start<V>{labels, class_count, q.data(), r.data(), p.data(), part.data(), n, C,
                            x0 != nullptr},
        "propagate: start");
  sum_columns();
  for_n(s, C, StartScalars{cs, part2.data(), ng, C}, "propagate: start scalars");

  // ---- iterations (converged columns frozen on the device)
  for (i64 it = 0; it < prm.max_iter; ++it) {
    if (it > 0 && it % kCheckEvery == 0 && count_state(kActive) == 0) break;
    for_n(s, nb * C, SpmmDot<V>{g, p.data(), q.data(), part.data(), n, C, alpha},
          "propagate: spmm");
    sum_columns();
    for_n(s, C, StepScalars{cs, part2.data(), ng, C}, "propagate: step");
    for_n(s, nb * C, Residual<V>{q.data(), cs.step, r.data(), part.data(), n, C},
          "propagate: residual");
    sum_columns();
    for_n(s, C, DirectionScalars{cs, part2.data(), ng, C}, "propagate: direction");
    for_n(s, size, Update<V>{x, p.data(), r.data(), cs.step, cs.beta, cs.gamma, C},
          "propagate: update");
  }

  if constexpr (!std::is_same_v<V, float>) for_n(s, size, ToFloat<V>{x, out.z}, "propagate: z");
  return count_state(kBreakdown);  // synchronises the stream
}

}  // namespace

std::int64_t propagate(const CsrView& graph, const std::int64_t* labels,
                       const std::int64_t* class_count, std::int64_t num_classes,
                       const float* x0, const PropagateParams& params, const PropagateOut& out,
                       std::uintptr_t stream) {
  require(graph.n >= 1, "graph: expected at least one row, got ", graph.n);
  require(graph.nnz >= 0, "graph: nnz must be >= 0, got ", graph.nnz);
  require(num_classes >= 1, "num_classes: expected >= 1, got ", num_classes);
  check_propagate_params(params);
  require(graph.indptr && (graph.nnz == 0 || (graph.indices && graph.data)) && labels &&
              class_count && out.z && out.iterations && out.relres,
          "propagate: null buffer pointer");
  const backend::stream_t s = backend::to_stream(stream);
  check_symmetric(graph, s);
  if (params.double_vectors)
    return run<double>(graph, labels, class_count, num_classes, x0, params, out, s);
  return run<float>(graph, labels, class_count, num_classes, x0, params, out, s);
}

}  // namespace dalcore::gpu
