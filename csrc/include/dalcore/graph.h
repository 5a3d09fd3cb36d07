// Public C++ API of graph (CPU: dalcore::cpu, CUDA/Thrust path: dalcore::gpu).
// Placeholder: the graph issue fills this in.
#pragma once

#include <cstdint>

namespace dalcore {}
