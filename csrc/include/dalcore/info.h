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
// The device holding device memory at p; -1 for host, managed or unknown memory.
int pointer_device(const void* p);
// The calling thread's current device, and setting it (throw CudaError on failure).
int current_device();
void set_device(int device);
// set_device for destructors: never throws (an error is cleared and ignored).
void restore_device(int device) noexcept;
}  // namespace gpu

}  // namespace dalcore
