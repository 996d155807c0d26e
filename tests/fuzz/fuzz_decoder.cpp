// Fuzz target: the binary reader must never crash or hang on any bytes. Whatever it accepts
// must round-trip through text byte for byte, and verifying it must not crash.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "isa/assembly.hpp"
#include "isa/encoding.hpp"
#include "isa/verify.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::isa;
  Program p;
  try {
    p = read_binary(std::span<const uint8_t>(data, size));
  } catch (const FormatError&) {
    return 0;
  } catch (const DecodeError&) {
    return 0;
  }
  const std::vector<uint8_t> bytes = write_binary(p);
  try {
    if (write_binary(assemble(disassemble(p), "fuzz.tasm")) != bytes) std::abort();
  } catch (const AsmError&) {
    // Unbalanced loops are the one thing binaries can hold that text rejects; the verifier
    // reports them for binaries.
  }
  Target t;
  t.tiles = 4;
  t.sram_bytes = 1 << 16;
  t.shared_bytes = 1 << 16;
  t.hbm_bytes = 1 << 24;
  t.matmul_dtypes = {Dtype::Bf16};
  (void)verify(p, t, /*budget=*/100'000);  // loops of 2^30 iterations are fine, just not here
  return 0;
}
