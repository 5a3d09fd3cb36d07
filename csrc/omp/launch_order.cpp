// Test-only (_core_omp): the order in which the twin runs the blocks of a tile launch
// (dalcore/detail/backend.h), and a probe kernel that depends on an order a GPU does not
// guarantee, to show that the setting exposes such a kernel.
#include <pybind11/numpy.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "../bindings/registry.h"
#include "dalcore/detail/backend.h"
#include "dalcore/status.h"

namespace dalcore::bind {
namespace {

void set_launch_order(const std::string& order, std::uint64_t seed) {
  backend::LaunchOrderSetting& s = backend::launch_order();
  if (order == "parallel") s.order = backend::LaunchOrder::parallel;
  else if (order == "forward") s.order = backend::LaunchOrder::forward;
  else if (order == "reverse") s.order = backend::LaunchOrder::reverse;
  else if (order == "shuffle") s.order = backend::LaunchOrder::shuffle;
  else
    throw InvalidArgument("order: expected 'parallel', 'forward', 'reverse' or 'shuffle', got '" +
                          order + "'");
  s.seed = seed;
}

// Running sums out[i] = x[0] + ... + x[i] over tiles of one row each. Broken (one launch):
// tile i reads out[i - 1], written by another block of the same launch: right only when the
// blocks happen to run in increasing order. Correct (`split`): the carries of each block are
// computed in a first launch and used by a second one.
struct BrokenScan {
  const std::int64_t* x;
  std::int64_t* out;
  template <class Tile>
  DALCORE_HD void operator()(const Tile& tl, std::int64_t i) const {
    const std::int64_t before = i == 0 ? 0 : out[i - 1];
    if (tl.leader()) out[i] = before + x[i];
  }
};
struct BlockSums {  // launch 1: sums[b] = sum of block b's elements (kTilesPerBlock each)
  const std::int64_t* x;
  std::int64_t n;
  std::int64_t* sums;
  template <class Tile>
  DALCORE_HD void operator()(const Tile& tl, std::int64_t b) const {
    std::int64_t s = 0;
    for (std::int64_t i = b * backend::kTilesPerBlock;
         i < n && i < (b + 1) * backend::kTilesPerBlock; ++i)
      s += x[i];
    if (tl.leader()) sums[b] = s;
  }
};
struct ScanWithCarry {  // launch 2: out[i] = sums of the earlier blocks + the block's prefix
  const std::int64_t* x;
  const std::int64_t* sums;
  std::int64_t* out;
  template <class Tile>
  DALCORE_HD void operator()(const Tile& tl, std::int64_t i) const {
    const std::int64_t b = i / backend::kTilesPerBlock;
    std::int64_t s = 0;
    for (std::int64_t c = 0; c < b; ++c) s += sums[c];
    for (std::int64_t k = b * backend::kTilesPerBlock; k <= i; ++k) s += x[k];
    if (tl.leader()) out[i] = s;
  }
};

py::array_t<std::int64_t> order_probe(const py::array_t<std::int64_t, py::array::c_style>& x,
                                      bool split) {
  const std::int64_t n = x.shape(0);
  py::array_t<std::int64_t> out(n);
  backend::buffer<std::int64_t> res(static_cast<std::size_t>(n), nullptr);  // poisoned
  const std::int64_t* xp = x.data();
  if (split) {
    const std::int64_t nb = backend::blocks_for(n);
    backend::buffer<std::int64_t> sums(static_cast<std::size_t>(nb), nullptr);
    backend::launch_tiles(nullptr, nb, BlockSums{xp, n, sums.data()}, "probe: block sums");
    backend::launch_tiles(nullptr, n, ScanWithCarry{xp, sums.data(), res.data()}, "probe: scan");
  } else {
    backend::launch_tiles(nullptr, n, BrokenScan{xp, res.data()}, "probe: broken scan");
  }
  std::copy(res.data(), res.data() + n, out.mutable_data());
  return out;
}

}  // namespace

void register_launch_order(py::module_& gpu) {
  gpu.def("_set_launch_order", &set_launch_order, py::arg("order"), py::arg("seed") = 0,
          "Test only: run the blocks of every tile launch 'parallel' (OpenMP, the default) or "
          "one by one in 'forward', 'reverse' or 'shuffle' (seeded) order.");
  gpu.def("_order_probe", &order_probe, py::arg("x"), py::arg("split"),
          "Test only: running sums of x by a kernel with a missing launch split "
          "(split=False) or the correct two-launch form (split=True).");
}

}  // namespace dalcore::bind
