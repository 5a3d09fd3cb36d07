// Full passes of greedy k-center through the int8 copy of the projection: one integer comparison
// per row (the derivation is in dalcore/detail/kcenter_coarse.h), the float32 projection test
// and the full row only for the rows it cannot clear (RowLists), and the arg-max from per-block
// caches. The byte dot products run on AVX-512 VNNI where the CPU has it (checked at run time)
// and as the same integer operations on GCC vectors elsewhere: the same integers, the same picks.
#include "dalcore/detail/kcenter_coarse.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
#include <immintrin.h>
#define DALCORE_VNNI 1
#else
#define DALCORE_VNNI 0
#endif

#include "dalcore/detail/multiversion.h"
#include "kcenter_row_lists.h"

namespace dalcore::cpu::coarse {
namespace {

using kcenter_ops::ArgMax;
using projection::ProjectionBound;
using projection::ReadCount;

constexpr int kBlock = 16;
constexpr std::int32_t kNever = std::numeric_limits<std::int32_t>::max();  // U of a centre
constexpr double kMaxT = 268435456.0;  // 2^28: above any K (16 * 254^2), so "never cleared"

typedef std::int32_t v16i __attribute__((vector_size(64)));
typedef std::uint32_t v16u __attribute__((vector_size(64)));

// The new centre as the coarse test uses it: its bytes k_c (signed), 4 to an int32 (byte t of
// k4[g] = component 4 g + t), one by one, and V_c = n_c + 256 S_c.
struct Centre {
  std::int32_t k4[16];
  std::int32_t kc[64];
  std::int32_t v;
};

// Component j of row i's int8 copy, k in [-127, 127].
std::int32_t coarse_k(const ProjectionBound& pb, std::int64_t i, std::int64_t j) {
  return static_cast<std::int32_t>(pb.kb[projection::coarse_at(pb.cstride, i, j)]) - 128;
}

Centre centre_of(const ProjectionBound& pb, std::int64_t c) {
  Centre cc{};
  std::int32_t n = 0, s = 0;
  for (std::int64_t j = 0; j < pb.cstride; ++j) {
    const std::int32_t k = coarse_k(pb, c, j);
    cc.kc[j] = k;
    n += k * k;
    s += k;
    const auto byte = static_cast<std::uint32_t>(k & 0xFF);
    cc.k4[j / 4] |= static_cast<std::int32_t>(byte << (8 * (j % 4)));
  }
  cc.v = n + 256 * s;
  return cc;
}

// n_i = |k_i|^2.
std::int32_t row_norm(const ProjectionBound& pb, std::int64_t i) {
  std::int32_t n = 0;
  for (std::int64_t j = 0; j < pb.cstride; ++j) {
    const std::int32_t k = coarse_k(pb, i, j);
    n += k * k;
  }
  return n;
}

// U_i = n_i - T_i for min-distance mi (kcenter_coarse.h): T_i = ceil(F (sqrt(mi + abs_slack) +
// e2)^2 + abs_q) / s^2, in double with a relative margin of 1e-12 above its own rounding, clamped
// to [0, 2^28] (NaN and inf: 2^28, never cleared). Centres (mi < 0): kNever.
std::int32_t u_of(float mi, std::int32_t ni, const ProjectionBound& pb, double scale, double e2) {
  if (mi < 0.0f) return kNever;
  const double r = std::sqrt(static_cast<double>(mi) + static_cast<double>(pb.abs_slack)) + e2;
  double t = (static_cast<double>(pb.factor) * r * r + static_cast<double>(pb.abs_q)) *
             (1.0 + 1e-12) * scale;
  if (!(t < kMaxT)) t = kMaxT;
  return ni - static_cast<std::int32_t>(std::ceil(t));
}

// What a pass needs, shared by its chunks.
struct Pass {
  const float* x;
  std::int64_t d;
  const ProjectionBound* pb;
  float* min_d;
  std::int32_t* u;
  std::uint8_t* dirty;
  double scale, e2;
  std::int64_t c;
  Centre cc;
};

// After min_d[i] dropped: its U and its block's arg-max are stale.
struct Refresh {
  const Pass* p;
  void operator()(std::int64_t i) const {
    p->u[i] = u_of(p->min_d[i], row_norm(*p->pb, i), *p->pb, p->scale, p->e2);
    p->dirty[i / CoarsePasses::kArgRows] = 1;
  }
};

// The rows of the 16-row block at kb (stride bytes each, blocked) that the coarse test cannot
// clear: lane l set when 2 b_l.k_c - V_c > U_l.
[[gnu::always_inline]] inline std::uint32_t block_mask_generic(const std::uint8_t* kb,
                                                               std::int64_t stride,
                                                               const Centre& cc,
                                                               const std::int32_t* u) {
  v16i acc{};
  for (std::int64_t g = 0; g < stride / 4; ++g) {
    v16u w;
    std::memcpy(&w, kb + 64 * g, sizeof(w));
    for (int t = 0; t < 4; ++t)
      acc += reinterpret_cast<v16i>((w >> (8 * t)) & 0xFFu) * cc.kc[4 * g + t];
  }
  v16i uv;
  std::memcpy(&uv, u, sizeof(uv));
  const v16i read = (2 * acc - cc.v) > uv;
  std::uint32_t bits = 0;
  for (int l = 0; l < kBlock; ++l) bits |= static_cast<std::uint32_t>(read[l] & 1) << l;
  return bits;
}

// Rows [r0, r1) (multiples of 16; the padding rows have U = kNever) through the coarse test,
// the rows it cannot clear through RowLists. `mask` gives a block's rows to examine.
template <class Mask>
[[gnu::always_inline]] inline void scan(const Pass& p, std::int64_t r0, std::int64_t r1,
                                        ReadCount& count, Mask mask) {
  const ProjectionBound& pb = *p.pb;
  projection::RowLists<Refresh> lists(p.x, p.d, pb, p.c, p.min_d, Refresh{&p});
  for (std::int64_t i0 = r0; i0 < r1; i0 += kBlock)
    for (std::uint32_t bits = mask(pb.kb.data() + i0 * pb.cstride, p.u + i0); bits;
         bits &= bits - 1)
      lists.add_fine(i0 + __builtin_ctz(bits));
  lists.finish();
  count.full += lists.full();
  count.projected += lists.fine();
}

DALCORE_MULTIVERSION
void scan_generic(const Pass& p, std::int64_t r0, std::int64_t r1, ReadCount& count) {
  scan(p, r0, r1, count, [&p](const std::uint8_t* kb, const std::int32_t* u)
                             __attribute__((always_inline)) {
    return block_mask_generic(kb, p.pb->cstride, p.cc, u);
  });
}

#if DALCORE_VNNI
#define DALCORE_VNNI_TARGET \
  __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512cd,avx512vnni")))

// block_mask_generic's integers with vpdpbusd: 4 byte products per 32-bit lane, summed exactly.
DALCORE_VNNI_TARGET [[gnu::always_inline]] inline std::uint32_t block_mask_vnni(
    const std::uint8_t* kb, std::int64_t stride, const Centre& cc, const std::int32_t* u) {
  __m512i acc = _mm512_setzero_si512();
  for (std::int64_t g = 0; g < stride / 4; ++g)
    acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(kb + 64 * g), _mm512_set1_epi32(cc.k4[g]));
  const __m512i t = _mm512_sub_epi32(_mm512_slli_epi32(acc, 1), _mm512_set1_epi32(cc.v));
  return _mm512_cmpgt_epi32_mask(t, _mm512_loadu_si512(u));
}

// scan() with block_mask_vnni (written out: a lambda would not carry the target).
DALCORE_VNNI_TARGET
void scan_vnni(const Pass& p, std::int64_t r0, std::int64_t r1, ReadCount& count) {
  const ProjectionBound& pb = *p.pb;
  projection::RowLists<Refresh> lists(p.x, p.d, pb, p.c, p.min_d, Refresh{&p});
  for (std::int64_t i0 = r0; i0 < r1; i0 += kBlock)
    for (std::uint32_t bits = block_mask_vnni(pb.kb.data() + i0 * pb.cstride, pb.cstride, p.cc,
                                              p.u + i0);
         bits; bits &= bits - 1)
      lists.add_fine(i0 + __builtin_ctz(bits));
  lists.finish();
  count.full += lists.full();
  count.projected += lists.fine();
}

bool cpu_has_vnni() {
  static const bool yes = __builtin_cpu_supports("avx512f") &&
                          __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vnni");
  return yes;
}
#else
bool cpu_has_vnni() { return false; }
#endif

std::atomic<bool> g_allow_vnni{true};

void scan_rows(const Pass& p, std::int64_t r0, std::int64_t r1, ReadCount& count) {
#if DALCORE_VNNI
  if (vnni_in_use()) return scan_vnni(p, r0, r1, count);
#endif
  scan_generic(p, r0, r1, count);
}

}  // namespace

bool vnni_in_use() { return cpu_has_vnni() && g_allow_vnni.load(std::memory_order_relaxed); }

bool allow_vnni(bool allow) { return g_allow_vnni.exchange(allow); }

CoarsePasses::CoarsePasses(const float* x, std::int64_t n, std::int64_t d,
                           const ProjectionBound& pb, std::vector<float>& min_d)
    : x_(x), n_(n), d_(d), pb_(pb), min_d_(min_d) {
  const std::int64_t padded = (n + kBlock - 1) / kBlock * kBlock;
  scale_ = 1.0 / static_cast<double>(pb.s2);  // a power of two: exact
  e2_ = 2.0 * static_cast<double>(pb.eps_max);
  u_.assign(static_cast<std::size_t>(padded), kNever);
  const std::int64_t na = (n + kArgRows - 1) / kArgRows;
  best_.assign(static_cast<std::size_t>(na), kcenter_ops::argmax_none());
  dirty_.assign(static_cast<std::size_t>(na), 0);
#pragma omp parallel for schedule(static)
  for (std::int64_t a = 0; a < na; ++a) {
    const std::int64_t end = std::min(n, (a + 1) * kArgRows);
    for (std::int64_t i = a * kArgRows; i < end; ++i)
      u_[static_cast<std::size_t>(i)] =
          u_of(min_d[static_cast<std::size_t>(i)], row_norm(pb, i), pb, scale_, e2_);
    best_[static_cast<std::size_t>(a)] = block_best(a);
  }
}

ArgMax CoarsePasses::block_best(std::int64_t a) const {
  ArgMax best = kcenter_ops::argmax_none();
  const std::int64_t end = std::min(n_, (a + 1) * kArgRows);
  for (std::int64_t i = a * kArgRows; i < end; ++i) {
    const float m = min_d_[static_cast<std::size_t>(i)];
    if (m >= 0.0f && (best.index < 0 || m > best.value)) best = ArgMax{m, i};  // in order: ties
  }                                                                            // keep the first
  return best;
}

ArgMax CoarsePasses::add_centre(std::int64_t c, bool serial, ReadCount& count) {
  min_d_[static_cast<std::size_t>(c)] = kcenter_ops::kCenter;
  u_[static_cast<std::size_t>(c)] = kNever;
  dirty_[static_cast<std::size_t>(c / kArgRows)] = 1;
  const Pass p{x_,      d_,  &pb_, min_d_.data(), u_.data(), dirty_.data(), scale_, e2_, c,
               centre_of(pb_, c)};
  const std::int64_t na = static_cast<std::int64_t>(best_.size());
  const std::int64_t nt = omp_get_max_threads();
  const std::int64_t per = std::max<std::int64_t>(4, na / (8 * nt) + 1);  // arg-blocks per chunk
  const std::int64_t nc = (na + per - 1) / per;
  const std::int64_t padded = static_cast<std::int64_t>(u_.size());
  std::vector<ArgMax> part(static_cast<std::size_t>(nc), kcenter_ops::argmax_none());
  std::vector<ReadCount> counts(static_cast<std::size_t>(nc));
  // Nothing in the loop throws (no allocation): no exception can leave the region.
#pragma omp parallel for schedule(dynamic, 1) if (nc > 1 && !serial)
  for (std::int64_t k = 0; k < nc; ++k) {
    const std::int64_t a0 = k * per, a1 = std::min(na, a0 + per);
    scan_rows(p, a0 * kArgRows, std::min(padded, a1 * kArgRows),
              counts[static_cast<std::size_t>(k)]);
    ArgMax best = kcenter_ops::argmax_none();
    for (std::int64_t a = a0; a < a1; ++a) {  // the chunk's own blocks: no other thread's rows
      if (dirty_[static_cast<std::size_t>(a)]) {
        best_[static_cast<std::size_t>(a)] = block_best(a);
        dirty_[static_cast<std::size_t>(a)] = 0;
      }
      if (kcenter_ops::beats(best_[static_cast<std::size_t>(a)], best))
        best = best_[static_cast<std::size_t>(a)];
    }
    part[static_cast<std::size_t>(k)] = best;
  }
  ArgMax best = kcenter_ops::argmax_none();
  for (std::int64_t k = 0; k < nc; ++k) {
    best = kcenter_ops::ArgMaxOp{}(best, part[static_cast<std::size_t>(k)]);
    count.full += counts[static_cast<std::size_t>(k)].full;
    count.projected += counts[static_cast<std::size_t>(k)].projected;
  }
  count.coarse += n_ - 1;
  return best;
}

}  // namespace dalcore::cpu::coarse
