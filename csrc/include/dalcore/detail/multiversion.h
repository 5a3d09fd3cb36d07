// DALCORE_MULTIVERSION: run-time dispatch of a CPU loop between AVX-512, AVX2 and baseline clones
// (GCC target_clones, resolved once at load through an ifunc), so that a portable build (no
// -march=native) still runs its hot loops at the machine's SIMD width. ISA-only clones (not
// arch=...): inline helpers called from a clone, such as the shared arithmetic of kcenter_ops.h
// or a GCC vector-extension loop, are inlined into and vectorised for every clone.
// Elsewhere (clang, other targets) the macro is empty and the baseline build runs.
#pragma once

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#define DALCORE_MULTIVERSION __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define DALCORE_MULTIVERSION
#endif
