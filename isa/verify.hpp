// The verifier: checks a program against the machine it targets before anything runs it.
// It executes each stream's control flow abstractly (scalar registers and loops, no data), so
// every dynamic instance of every instruction is checked with its actual addresses.
//
// Rules: SRAM, shared-memory and HBM operands inside the memory (and HBM inside a declared
// region); operands that must not overlap; alignment to the element size; MATMUL dtypes the
// target's arrays support; tile, chip, semaphore and barrier indices in range; loops with zero
// or unbounded trip counts; loop structure; semaphore waits that no instruction can satisfy and
// barriers that can never fill.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa/program.hpp"

namespace tessera::isa {

// What the verifier needs to know of the target (built from an arch description by callers).
struct Target {
  std::string name;
  uint32_t chips = 1;
  uint32_t tiles = 1;           // per chip
  uint64_t sram_bytes = 0;      // per tile
  uint64_t shared_bytes = 0;    // per shared-memory instance
  uint64_t hbm_bytes = 0;       // per chip
  std::vector<Dtype> matmul_dtypes;
};

struct VerifyIssue {
  uint32_t chip = 0;
  uint32_t tile = 0;
  int64_t index = -1;  // instruction index in the stream; -1 for stream- or program-level issues
  uint32_t line = 0;   // source line when the program came from text
  std::string message;
  std::string str() const;  // "chip 0 tile 3, instruction 17 (line 42): message"
};

class VerifyError : public std::runtime_error {
 public:
  explicit VerifyError(std::vector<VerifyIssue> issues);
  const std::vector<VerifyIssue>& issues() const { return issues_; }

 private:
  std::vector<VerifyIssue> issues_;
};

// Dynamic instructions the verifier walks before it gives up on a program.
inline constexpr uint64_t kVerifyBudget = 200'000'000;

// `budget` bounds the dynamic instructions walked (a program beyond it is reported as too large).
std::vector<VerifyIssue> verify(const Program& p, const Target& t, uint64_t budget = kVerifyBudget);
void verify_or_throw(const Program& p, const Target& t);  // throws VerifyError

}  // namespace tessera::isa
