// Division by a divisor fixed when a model is built (HBM geometry, mesh width, power window).
// Address maps and calendars divide on every access, and a 64-bit hardware divide costs more
// than the rest of an HBM access's timing; these take a shift, or a multiply and a shift.
//
// A power of two d = 2^k: x / d = x >> k, x % d = x & (d - 1).
// Any other d >= 3 (Granlund and Montgomery, "Division by invariant integers using
// multiplication", 1994, figure 4.1, N = 64): with l = ceil(log2 d) and
//   m = floor(2^64 (2^l - d) / d) + 1,   t = floor(m x / 2^64),
//   x / d = (t + (x - t) / 2) >> (l - 1)        exactly, for every 64-bit x.
#pragma once

#include <cstdint>

namespace tessera::sim {

class Divisor {
  __extension__ typedef unsigned __int128 Wide;  // a GCC and Clang type, not ISO C++

 public:
  Divisor() = default;
  explicit Divisor(uint64_t d) : d_(d) {  // d >= 1
    if ((d & (d - 1)) == 0) {
      shift_ = __builtin_ctzll(d);
      return;
    }
    shift_ = 64 - __builtin_clzll(d - 1);  // l = ceil(log2 d) >= 2
    const uint64_t two_l_minus_d = (~uint64_t(0) >> (64 - shift_)) - d + 1;  // 2^l - d, also for l = 64
    magic_ = uint64_t((static_cast<Wide>(two_l_minus_d) << 64) / d) + 1;
  }
  uint64_t divisor() const { return d_; }
  uint64_t div(uint64_t x) const {
    if (magic_ == 0) return x >> shift_;
    const uint64_t t = uint64_t((static_cast<Wide>(magic_) * x) >> 64);
    return (t + ((x - t) >> 1)) >> (shift_ - 1);
  }
  uint64_t mod(uint64_t x) const { return x - div(x) * d_; }

 private:
  uint64_t d_ = 1;
  uint64_t magic_ = 0;  // 0: a power of two
  int shift_ = 0;
};

}  // namespace tessera::sim
