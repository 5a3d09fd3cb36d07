// GPU path of graph, written on Thrust over DALCORE_HD functors (see dalcore/detail/backend.h):
// compiled by nvcc into _core and by the host compiler into _core_omp.
#include "dalcore/graph.h"
#include "dalcore/detail/backend.h"

namespace dalcore::gpu {}
