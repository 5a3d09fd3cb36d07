#include <cuda_runtime.h>

#include "dalcore/info.h"
#include "dalcore/status.h"
#include "dalcore/detail/backend.h"

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

int pointer_device(const void* p) {
  cudaPointerAttributes attr{};
  if (cudaPointerGetAttributes(&attr, p) != cudaSuccess) {
    cudaGetLastError();  // unregistered host memory on old runtimes: not device memory
    return -1;
  }
  return attr.type == cudaMemoryTypeDevice ? attr.device : -1;
}

int current_device() {
  int d = 0;
  backend::check(cudaGetDevice(&d), "cudaGetDevice");
  return d;
}

void set_device(int device) { backend::check(cudaSetDevice(device), "cudaSetDevice"); }

void restore_device(int device) noexcept {
  if (cudaSetDevice(device) != cudaSuccess) cudaGetLastError();
}

}  // namespace dalcore::gpu
