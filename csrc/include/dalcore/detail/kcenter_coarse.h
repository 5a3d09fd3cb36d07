// The full passes of greedy k-center through the int8 copy of the projection
// (csrc/cpu/kcenter_coarse.cpp): every row's coarse test is one integer comparison.
//
// "The coarse test" (kcenter_projection.h) clears row i for centre c when
//   K s^2 >= F (sqrt(mi + abs_slack) + e)^2 + abs_q,   e >= eps_i + eps_c + 2h,
// K = |k_i - k_c|^2 the exact integer distance of the int8 copies (cstride components). With
// e = 2 eps_max (eps_max >= eps_j + h for every j) the right-hand side no longer depends on c:
// it is rounded up once per row to an integer threshold T_i (in units of s^2, in double with
// upward margins; clamped to [0, 2^28]) when mi changes, and K >= T_i clears the row. With
// b = k + 128 (the stored bytes), n_i = |k_i|^2 and S_c = sum_j k_cj,
//   K = n_i + n_c - 2 k_i.k_c = n_i + n_c + 256 S_c - 2 b_i.k_c,
// so K >= T_i  <=>  2 b_i.k_c - V_c <= U_i, with V_c = n_c + 256 S_c and U_i = n_i - T_i. b_i.k_c
// (unsigned bytes times signed bytes, 4 per 32-bit lane: AVX-512 VNNI vpdpbusd, or the same
// integers with shifts and multiplies elsewhere) is exact in int32 (|.| <= 16 * 255 * 127), so
// the comparison is exact. A centre has U = INT32_MAX (never read). min_d only drops, and a T_i
// from an earlier, larger mi is larger: it clears fewer rows, never a row it should not (so the
// picks do not depend on it); U_i is recomputed whenever min_d[i] drops, to clear as many as
// the current mi allows.
//
// The arg-max of min_d is cached per block of kArgRows rows and recomputed only for the blocks
// whose rows changed (the new centre's, and those of rows whose min-distance dropped): a pass
// reads the int8 copy and U (stride + 4 bytes per row), and min_d only where it changed.
#pragma once

#include <cstdint>
#include <vector>

#include "dalcore/detail/kcenter_ops.h"
#include "dalcore/detail/kcenter_projection.h"

namespace dalcore::cpu::coarse {

class CoarsePasses {
 public:
  // Rows per cached arg-max (a multiple of 16, the coarse copy's block).
  static constexpr std::int64_t kArgRows = 256;

  // From the current min-distances (centres: < 0). pb must have an int8 copy (kb not empty).
  CoarsePasses(const float* x, std::int64_t n, std::int64_t d,
               const projection::ProjectionBound& pb, std::vector<float>& min_d);

  // Adds centre c (min_d[c] becomes kCenter) on one thread or on all; returns the new arg-max of
  // min_d (lowest index on ties) and adds the rows read to `count`.
  kcenter_ops::ArgMax add_centre(std::int64_t c, bool serial, projection::ReadCount& count);

 private:
  kcenter_ops::ArgMax chunk(std::int64_t b0, std::int64_t b1, std::int64_t c,
                            projection::ReadCount& count);
  void refresh(std::int64_t i);  // U_i from min_d[i]
  kcenter_ops::ArgMax block_best(std::int64_t a) const;

  const float* x_;
  std::int64_t n_, d_;
  const projection::ProjectionBound& pb_;
  std::vector<float>& min_d_;
  std::vector<std::int32_t> u_;             // per row (padded to the 16-row blocks)
  std::vector<kcenter_ops::ArgMax> best_;   // per block of kArgRows rows
  std::vector<std::uint8_t> dirty_;         // per block of kArgRows rows: best_ is stale
  double scale_ = 0.0;                      // 1 / s^2
  double e2_ = 0.0;                         // 2 eps_max
};

// Whether the coarse passes use AVX-512 VNNI (true only where the CPU has it). `allow` = false
// makes them take the portable integer loop (tests: both give the same integers); returns the
// previous setting.
bool vnni_in_use();
bool allow_vnni(bool allow);

}  // namespace dalcore::cpu::coarse
