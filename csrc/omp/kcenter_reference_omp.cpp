// The reference (Thrust) form of the GPU path of kcenter on Thrust's OpenMP backend (_core_omp).
#include "../cuda/kcenter_reference.cu"
