// The dot products of the labeled-set screening of greedy k-center, compiled with FMA
// contraction (unlike the other kcenter sources, see CMakeLists.txt): the screening's error
// bound (screened_rows in kcenter.cpp) covers any rounding of the products and their sums, and a
// fused multiply-add only rounds less; the exact distances that decide min_d are computed
// elsewhere, each product and sum rounded on its own. One FMA instead of a multiply and an add
// per element pair: 4 rows x 32 labeled rows per step, where the loads of the broadcasts and of
// the panels, not the arithmetic, then set the pace.
#include "kcenter_screen_dots.h"

#include <cstring>

#include "dalcore/detail/multiversion.h"

namespace dalcore::cpu::screen {
namespace {

typedef float v16f __attribute__((vector_size(64)));

template <int T>
[[gnu::always_inline]] inline void panels_t(const float* xc, std::int64_t d, const float* l,
                                            const float* norm, const float* rx2, float* approx,
                                            std::int64_t width, std::int64_t t) {
  constexpr int P = 4;
  v16f acc[P][T];
  for (int p = 0; p < P; ++p)
    for (int u = 0; u < T; ++u) acc[p][u] = v16f{};
  for (std::int64_t k = 0; k < d; ++k) {
    v16f b[T];
    for (int u = 0; u < T; ++u) std::memcpy(&b[u], l + (u * d + k) * 16, sizeof(v16f));
    for (int p = 0; p < P; ++p) {
      const float a = xc[p * d + k];  // vector op scalar: the scalar is broadcast
      for (int u = 0; u < T; ++u) acc[p][u] += a * b[u];
    }
  }
  for (int u = 0; u < T; ++u) {
    v16f nv;
    std::memcpy(&nv, norm + (t + u) * 16, sizeof(v16f));
    for (int p = 0; p < P; ++p) {
      const v16f ap = rx2[p] + nv * nv - 2.0f * acc[p][u];
      std::memcpy(approx + p * width + (t + u) * 16, &ap, sizeof(v16f));
    }
  }
}

}  // namespace

DALCORE_MULTIVERSION
void dots(const float* xc, std::int64_t d, const float* panel, const float* norm,
          std::int64_t panels, const float* rx2, float* approx, std::int64_t width) {
  for (std::int64_t t = 0; t < panels; t += 2) {
    const float* l = panel + t * d * 16;
    if (t + 1 < panels) {
      panels_t<2>(xc, d, l, norm, rx2, approx, width, t);
    } else {
      panels_t<1>(xc, d, l, norm, rx2, approx, width, t);
    }
  }
}

}  // namespace dalcore::cpu::screen
