// Public C++ API of propagate (CPU: dalcore::cpu, CUDA/Thrust path: dalcore::gpu).
// Placeholder: the propagate issue fills this in.
#pragma once

#include <cstdint>

namespace dalcore {}
