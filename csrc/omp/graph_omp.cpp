// The CUDA path of graph, unchanged, on Thrust's OpenMP backend (test-only module _core_omp).
#include "../cuda/graph.cu"
