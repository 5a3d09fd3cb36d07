// Greedy k-center (farthest-first traversal; Gonzalez 1985, the core-set of Sener & Savarese 2018).
//
// Given N points (rows of a row-major N x d float32 matrix), the indices `labeled` and a budget,
// pick `budget` points one at a time, each maximising the Euclidean distance to the nearest of
// the labeled points and the picks so far; ties go to the lowest index. With nothing labeled the
// first pick is the point farthest from the mean. Picks are written, in order, to out[0..budget).
// Memory beyond the features is O(N): no N x N or N x budget matrix is ever formed.
#pragma once

#include <cstdint>

#include "dalcore/status.h"

namespace dalcore {

// Checks that need no data: n >= 1, d >= 1, 0 <= n_labeled < n, 1 <= budget <= n - n_labeled.
// Throws InvalidArgument naming the argument.
inline void check_kcenter_sizes(std::int64_t n, std::int64_t d, std::int64_t n_labeled,
                                std::int64_t budget) {
  require(n >= 1, "features: expected at least one row, got ", n);
  require(d >= 1, "features: expected at least one column, got ", d);
  require(n_labeled >= 0 && n_labeled <= n, "labeled: expected at most ", n,
          " indices (number of points), got ", n_labeled);
  require(n_labeled < n, "labeled: all ", n, " points are labeled, no unlabeled point to pick");
  require(budget >= 1, "budget: expected an integer >= 1, got ", budget);
  require(budget <= n - n_labeled, "budget: expected at most ", n - n_labeled,
          " (the number of unlabeled points), got ", budget);
}

namespace cpu {

// m orthonormal directions (dalcore/_kcenter.py: the pool's top principal directions, float64)
// and a centre. The kernel projects the pool on them (N x m float32, O(N m) extra memory); the
// pruned path reads the projection for every point it visits and the full row only where the
// lower bound |P(x - c)| <= |x - c| (every rounding accounted for) cannot exclude an update.
struct KCenterProjection {
  std::int64_t m = 0;              // 0: no projection
  const double* basis = nullptr;   // m x d, rows orthonormal (checked)
  const double* mean = nullptr;    // d
};

// Work done by one call (for the benches): rows whose d features were read by the picks, rows
// whose float32 projection was read, members visited by the pruned sweeps, picks made by the
// full pass, rows whose int8 copy of the projection was read (the full passes' first test).
struct KCenterStats {
  std::int64_t full_rows = 0, projected_rows = 0, visited = 0, dense_picks = 0;
  std::int64_t coarse_rows = 0;
};

struct KCenterOptions {
  // Skip, by the triangle inequality, the groups of points (by nearest centre) that the new
  // centre cannot affect, and (with a projection) the rows it provably cannot update. Same
  // picks as the unpruned pass; false = one full pass per pick, every row read.
  bool prune = true;
  // The pruned path even for pools below 2^20 floats, which otherwise take the plain pass.
  bool prune_small = false;
  KCenterProjection projection;
  KCenterStats* stats = nullptr;  // not null: filled
};

// Both paths share one convention: picks written to out[budget]; when `radius` is not null,
// *radius (double) receives the covering radius after the last pick (max over all points of
// the distance to the nearest labeled point or pick; one more pass), else it is not computed.
//
// CPU kernel (OpenMP), host pointers. Also validates `labeled` (range, duplicates).
void kcenter(const float* features, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
             std::int64_t n_labeled, std::int64_t budget, std::int64_t* out, double* radius,
             const KCenterOptions& opts = {});

}  // namespace cpu

namespace gpu {

// Options of the GPU path. basis (m x d, float64, orthonormal rows) and mean (d, float64), host
// memory, both or neither: the projection lower bound (as the CPU path's; same picks, fewer full
// rows read). graph: capture the pick loop into a CUDA graph (-1: when the budget is large, 0:
// never, 1: always; no effect in the twin). full_rows (host, optional): receives the number of
// full rows read by the picks (one host synchronisation, only when asked).
struct GpuKCenterOptions {
  const double* basis = nullptr;
  const double* mean = nullptr;
  std::int64_t m = 0;
  int graph = -1;
  std::int64_t* full_rows = nullptr;
};

// The GPU path (tiled kernels, csrc/cuda/kcenter.cu; on CUDA: device pointers and the caller's
// stream, no host synchronisation; in _core_omp: host pointers). `labeled` must be valid
// (checked by the caller: it lives on the device). `radius` (one double on the device) receives
// the covering radius when not null. Distances are float32 sums in the tile order
// (dalcore/detail/tile.h): bit-identical between CUDA and the twin; picks equal the CPU
// kernel's within float32 rounding (the unpruned algorithm).
void kcenter(const float* features, std::int64_t n, std::int64_t d, const std::int64_t* labeled,
             std::int64_t n_labeled, std::int64_t budget, std::int64_t* out, double* radius,
             std::uintptr_t stream, const GpuKCenterOptions& opts = {});

// The reference form of the GPU path (csrc/cuda/kcenter_reference.cu: Thrust only, one thread
// per row), same arguments, for the tests.
void kcenter_reference(const float* features, std::int64_t n, std::int64_t d,
                       const std::int64_t* labeled, std::int64_t n_labeled, std::int64_t budget,
                       std::int64_t* out, double* radius, std::uintptr_t stream);

}  // namespace gpu
}  // namespace dalcore
