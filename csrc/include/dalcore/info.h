// What this build of the core is and what the machine running it offers.
#pragma once

#include <string>

namespace dalcore {

// Best SIMD instruction set the running CPU supports among those the kernels dispatch to:
// "avx512f", "avx2", "sse4.2" or "baseline".
std::string cpu_simd_level();
// Threads an OpenMP parallel region of the core uses (omp_get_max_threads).
int cpu_threads();

namespace gpu {
// Number of CUDA devices the runtime sees (0 without a GPU or driver). CUDA builds only.
int device_count();
}  // namespace gpu

}  // namespace dalcore
