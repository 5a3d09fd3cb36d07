#include <omp.h>

#include "dalcore/info.h"

namespace dalcore {

std::string cpu_simd_level() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return "avx512f";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
  if (__builtin_cpu_supports("sse4.2")) return "sse4.2";
#endif
  return "baseline";
}

int cpu_threads() { return omp_get_max_threads(); }

}  // namespace dalcore
