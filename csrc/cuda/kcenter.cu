// GPU path of kcenter: tiled kernels (a warp per row, dalcore/detail/tile.h; bodies in
// kcenter_steps.cuh) launched through dalcore/detail/backend.h. nvcc compiles them into _core;
// the host compiler compiles the same source into _core_omp, where each tile's lanes are
// emulated in the GPU's order, so distances, min-distances and picks are bit-identical between
// the two, and identical for any number of OpenMP threads.
//
// Launches per call:
//   - the projection (with a basis): one launch, one tile per row: z = P (x - mu), eps;
//   - nothing labeled: the column mean (two Thrust for_each), then one tile_reduce (the point
//     farthest from the mean);
//   - labeled: one for_each marking them, one launch over (point, chunk of 32 labeled) tiles
//     (atomic minimum per point: exact, order-free), one tile_reduce (the first arg-max);
//   - per pick: ONE launch (PickStep: add the previous pick, which it reads from device memory,
//     update the min-distances, reduce the arg-max; the last block combines the block partials
//     in a fixed order, see backend::tile_reduce). With the projection the same launch reads
//     the m-dimensional copy of every row and the full row only where the bound cannot exclude
//     an update (a mask in registers, not a compaction: no second launch, no count to read).
//     From kGraphMinPicks picks on (or when asked), the pick loop is captured into a CUDA graph
//     on a private stream and launched on the caller's stream as one unit;
//   - the indices (Thrust transform) and the radius (one for_each).
//
// Host synchronisations per call (CUDA): none (none per pick); only when the caller asks for the
// count of full rows read (tests, benches), one at the end to read it. The projection's basis
// and mean are copied from pageable host memory (staged at once, no device synchronisation).
// Temporaries: backend::buffer (cudaMallocAsync on the caller's stream). The Python border
// (dalcore/_kcenter.py) synchronises before the call to validate the features, find their
// scale and compute the projection's basis.
//
// The twin checks the algorithm, its fixed reduction order and its launch boundaries (blocks in
// reverse or shuffled order, see backend.h); what only a GPU can check: coalescing and speed,
// the warp-level code (shuffles, __syncwarp, the ticket and fences of tile_reduce), and graph
// capture. The Thrust form of the first version is kept as gpu::kcenter_reference
// (kcenter_reference.cu), the reference of the tests and of tools/gpu_check.sh.
#include <cmath>
#include <cstdint>
#include <limits>

#include <thrust/fill.h>
#include <thrust/for_each.h>
#include <thrust/iterator/counting_iterator.h>
#include <thrust/iterator/transform_iterator.h>
#include <thrust/reduce.h>
#include <thrust/transform.h>

#include "dalcore/detail/backend.h"
#include "dalcore/detail/kcenter_bound.h"
#include "dalcore/detail/kcenter_mean.h"
#include "kcenter_steps.cuh"
#include "dalcore/kcenter.h"

namespace dalcore::gpu {
namespace {

using namespace kcenter_steps;

constexpr i64 kTargetTiles = 16384;  // rows per tile grow with n beyond this many tiles
constexpr i64 kMaxRowsPerTile = 64;
constexpr i64 kGraphMinPicks = 32;

// Rows per tile: a function of n alone (the partition, hence every result, does not depend on
// the device or the threads).
Rows rows_of(i64 n) {
  i64 rpt = (n + kTargetTiles - 1) / kTargetTiles;
  rpt = rpt < 1 ? 1 : (rpt > kMaxRowsPerTile ? kMaxRowsPerTile : rpt);
  return Rows{n, rpt};
}

struct MarkCentre {
  float* min_d;
  const i64* labeled;
  DALCORE_HD void operator()(i64 j) const { min_d[labeled[j]] = kCenter; }
};

// The projected copy on the device, and what the picks read of it.
struct Projection {
  backend::buffer<float> z, eps;
  ProjectedCopy copy;
};

Projection make_projection(const float* x, i64 n, i64 d, const GpuKCenterOptions& o,
                           backend::stream_t s) {
  const kcenter_bound::HostBasis hb = kcenter_bound::prepare(o.basis, o.mean, o.m, d);
  backend::buffer<float> p(hb.p.size(), s), mu(hb.mu.size(), s);
  backend::copy_to_device(p.data(), hb.p.data(), hb.p.size() * sizeof(float), s);
  backend::copy_to_device(mu.data(), hb.mu.data(), hb.mu.size() * sizeof(float), s);
  Projection pr{backend::buffer<float>(static_cast<std::size_t>(n * o.m), s),
                backend::buffer<float>(static_cast<std::size_t>(n), s), ProjectedCopy{}};
  backend::launch_tiles(s, n, Project{x, d, p.data(), mu.data(), o.m, pr.z.data(),
                                      pr.eps.data(), hb.sc}, "kcenter: projection");
  pr.copy = ProjectedCopy{pr.z.data(), pr.eps.data(), o.m, hb.sc};
  return pr;  // p and mu are freed in stream order, after the launch that reads them
}

// picks[0]: the first pick (farthest from the mean, or the first arg-max after the labeled).
void first_pick(const float* x, i64 d, Rows rows, const i64* labeled, i64 n_labeled,
                float* min_d, backend::ReduceScratch<Pick>& scratch, Pick* out,
                backend::stream_t s) {
  const thrust::counting_iterator<i64> first(0);
  if (n_labeled > 0) {
    thrust::for_each(backend::policy(s), first, first + n_labeled, MarkCentre{min_d, labeled});
    backend::check_launch("kcenter: mark labeled");
    const i64 chunks = (n_labeled + LabeledInit::kChunk - 1) / LabeledInit::kChunk;
    backend::launch_tiles(s, rows.n * chunks, LabeledInit{x, d, labeled, n_labeled, chunks, min_d},
                          "kcenter: labeled distances");
    backend::tile_reduce(s, rows.tiles(), PickStep<false>{x, d, rows, min_d, nullptr, {}},
                         PickOp{}, pick_none(), scratch, out, "kcenter: first arg-max");
    return;
  }
  backend::buffer<float> mean(static_cast<std::size_t>(d), s);
  kcenter_mean::column_mean(x, rows.n, d, mean.data(), s);
  backend::tile_reduce(s, rows.tiles(), MeanDist{x, d, rows, mean.data()}, PickOp{},
                       pick_none(), scratch, out, "kcenter: farthest from the mean");
}

// picks[t + 1] for t in [0, passes): one launch each, in a CUDA graph when `capture`.
template <bool Projected>
void pick_loop(const float* x, i64 d, Rows rows, float* min_d, const ProjectedCopy& pc,
               backend::ReduceScratch<Pick>& scratch, Pick* picks, i64 passes, bool capture,
               backend::stream_t s) {
  backend::run_maybe_captured(s, capture, [&](backend::stream_t cs) {
    for (i64 t = 0; t < passes; ++t)
      backend::tile_reduce(cs, rows.tiles(), PickStep<Projected>{x, d, rows, min_d, picks + t, pc},
                           PickOp{}, pick_none(), scratch, picks + t + 1, "kcenter: pick");
  });
}

// Indices, radius and (when asked) the count of full rows read by the passes.
void finish(const Pick* picks, i64 budget, i64 passes, i64* out, double* radius,
            i64* full_rows, backend::stream_t s) {
  const auto pol = backend::policy(s);
  thrust::transform(pol, picks, picks + budget, out, PickIndex{});
  backend::check_launch("kcenter: indices");
  if (radius != nullptr) {
    const thrust::counting_iterator<i64> first(0);
    thrust::for_each(pol, first, first + 1, RadiusOf{picks + budget, radius});
    backend::check_launch("kcenter: radius");
  }
  if (full_rows != nullptr) {  // one host synchronisation, only when asked
    auto it = thrust::make_transform_iterator(picks + 1, FullRows{});
    *full_rows = thrust::reduce(pol, it, it + passes, i64(0));
  }
}

void run(const float* x, i64 n, i64 d, const i64* labeled, i64 n_labeled, i64 budget, i64* out,
         double* radius, backend::stream_t s, const GpuKCenterOptions& opts) {
  const Rows rows = rows_of(n);
  backend::buffer<float> min_d(static_cast<std::size_t>(n), s);
  // picks[t]: pick t; picks[budget]: the final arg-max (covering radius).
  backend::buffer<Pick> picks(static_cast<std::size_t>(budget + 1), s);
  backend::ReduceScratch<Pick> scratch(rows.tiles(), s);
  thrust::fill(backend::policy(s), min_d.data(), min_d.data() + n,
               std::numeric_limits<float>::infinity());
  backend::check_launch("kcenter: fill");
  Projection proj;
  if (opts.basis != nullptr) proj = make_projection(x, n, d, opts, s);
  first_pick(x, d, rows, labeled, n_labeled, min_d.data(), scratch, picks.data(), s);
  const i64 passes = radius != nullptr ? budget : budget - 1;
  const bool capture = opts.graph > 0 || (opts.graph < 0 && passes >= kGraphMinPicks);
  if (opts.basis != nullptr)
    pick_loop<true>(x, d, rows, min_d.data(), proj.copy, scratch, picks.data(), passes, capture,
                    s);
  else
    pick_loop<false>(x, d, rows, min_d.data(), ProjectedCopy{}, scratch, picks.data(), passes,
                     capture, s);
  finish(picks.data(), budget, passes, out, radius, opts.full_rows, s);
}

}  // namespace

void kcenter(const float* features, i64 n, i64 d, const i64* labeled, i64 n_labeled, i64 budget,
             i64* out, double* radius, std::uintptr_t stream, const GpuKCenterOptions& opts) {
  check_kcenter_sizes(n, d, n_labeled, budget);
  require((opts.basis == nullptr) == (opts.mean == nullptr),
          "projection: expected both the basis and the mean, or neither");
  run(features, n, d, labeled, n_labeled, budget, out, radius, backend::to_stream(stream), opts);
}

}  // namespace dalcore::gpu
