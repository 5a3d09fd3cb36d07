#include <cuda_runtime.h>

#include "dalcore/info.h"

namespace dalcore::gpu {

int device_count() {
  int n = 0;
  // No driver or no device is an answer (0), not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky error state
    return 0;
  }
  return n;
}

}  // namespace dalcore::gpu
