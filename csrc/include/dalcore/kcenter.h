// Public C++ API of kcenter (CPU: dalcore::cpu, CUDA/Thrust path: dalcore::gpu).
// Placeholder: the kcenter issue fills this in.
#pragma once

#include <cstdint>

namespace dalcore {}
