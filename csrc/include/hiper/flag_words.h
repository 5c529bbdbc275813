// Eight flag bytes at a time (SWAR: one 64-bit word holds eight flags).
//
// The row scan and the keep-consistency check look for the first position where two masks
// are both set, and count a row's set flags. Byte by byte, with `!= 0` tests, gcc emits a
// compare and branch per byte; on words, one test covers eight positions and the position of
// a hit falls out of a count of trailing zeros. Flags are any non-zero byte (common.h), so a
// word's set bytes are found with carries confined to each byte, not by assuming 0/1 bytes.
//
// Host code only: CUDA threads read a few bytes each and keep the byte loops.
#pragma once

#include <cstring>

#include "hiper/common.h"

namespace hiper {

#if !defined(__CUDA_ARCH__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    (defined(__GNUC__) || defined(__clang__))
#define HIPER_FLAG_WORDS 1

inline constexpr uint64_t kLow7Bits = 0x7F7F7F7F7F7F7F7FULL;

inline uint64_t load_flags8(const flag_t* p) {
  uint64_t word;
  std::memcpy(&word, p, sizeof(word));  // an unaligned load, not undefined behaviour
  return word;
}

// The high bit of each byte of the result is set where that byte of `word` is non-zero:
// adding 0x7F to the low seven bits carries into bit 7 exactly when they are non-zero, and
// OR-ing `word` back in catches bytes whose only set bit is bit 7. No carry leaves a byte.
inline uint64_t nonzero_bytes(uint64_t word) { return (((word & kLow7Bits) + kLow7Bits) | word) & ~kLow7Bits; }

// Offset of the first byte flagged in a non-zero `nonzero_bytes` result (little-endian: the
// lowest address is the lowest byte).
inline index_t first_flagged_byte(uint64_t flagged) { return __builtin_ctzll(flagged) >> 3; }

// Set flags of n bytes.
inline index_t count_flags(const flag_t* p, index_t n) {
  index_t total = 0, j = 0;
  while (j + 8 <= n) {
    // Per-byte counters (one per lane) hold at most 255 words' worth before they are summed.
    uint64_t lanes = 0;
    const index_t stop = j + 8 * 255 <= n ? j + 8 * 255 : n - (n - j) % 8;
    for (; j < stop; j += 8) lanes += nonzero_bytes(load_flags8(p + j)) >> 7;
    // Sum of the eight byte lanes (each <= 255, the sum <= 2040: fold pairwise in 16 bits).
    lanes = (lanes & 0x00FF00FF00FF00FFULL) + ((lanes >> 8) & 0x00FF00FF00FF00FFULL);
    total += static_cast<index_t>((lanes * 0x0001000100010001ULL) >> 48);
  }
  for (; j < n; ++j) total += bit(p[j]);
  return total;
}

// First j < n with a[j] and b[j] both set, or -1. Four words per round, so a miss costs a
// few instructions per 32 positions; a hit is located inside its round.
inline index_t first_both_words(const flag_t* a, const flag_t* b, index_t n) {
  index_t j = 0;
  for (; j + 32 <= n; j += 32) {
    uint64_t hits[4];
    for (int w = 0; w < 4; ++w)
      hits[w] = nonzero_bytes(load_flags8(a + j + 8 * w)) & nonzero_bytes(load_flags8(b + j + 8 * w));
    if ((hits[0] | hits[1] | hits[2] | hits[3]) == 0) continue;
    for (int w = 0; w < 4; ++w)
      if (hits[w] != 0) return j + 8 * w + first_flagged_byte(hits[w]);
  }
  for (; j + 8 <= n; j += 8) {
    const uint64_t hit = nonzero_bytes(load_flags8(a + j)) & nonzero_bytes(load_flags8(b + j));
    if (hit != 0) return j + first_flagged_byte(hit);
  }
  for (; j < n; ++j)
    if (bit(a[j]) & bit(b[j])) return j;
  return -1;
}

#endif

}  // namespace hiper
