// The dot products of the labeled-set screening of greedy k-center (kcenter.cpp,
// screened_rows), in a source of their own: see kcenter_screen_dots.cpp.
#pragma once

#include <cstdint>

namespace dalcore::cpu::screen {

// approx[p * width + j] = rx2[p] + |l'_j|^2 - 2 x'_p.l'_j for the 4 centred rows xc (4 x d) and
// the labeled rows of all `panels` panels (16 per panel: panel t, column k holds the 16 values
// at (t * d + k) * 16; norm: 16 per panel).
void dots(const float* xc, std::int64_t d, const float* panel, const float* norm,
          std::int64_t panels, const float* rx2, float* approx, std::int64_t width);

}  // namespace dalcore::cpu::screen
