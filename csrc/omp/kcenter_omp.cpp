// The CUDA path of kcenter, unchanged, on Thrust's OpenMP backend (test-only module _core_omp).
#include "../cuda/kcenter.cu"
