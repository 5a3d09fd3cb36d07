// The CUDA path of propagate, unchanged, on Thrust's OpenMP backend (test-only module _core_omp).
#include "../cuda/propagate.cu"
