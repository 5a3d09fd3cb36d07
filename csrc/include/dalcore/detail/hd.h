// DALCORE_HD marks arithmetic shared by the CPU path, the CUDA path and its OpenMP twin.
#pragma once

#if defined(__CUDACC__)
#define DALCORE_HD __host__ __device__ __forceinline__
#else
#define DALCORE_HD inline
#endif
