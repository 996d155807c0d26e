// Fuzz target: the assembler must never crash or hang on any text. Whatever it accepts must
// disassemble and reassemble to the same program.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "isa/assembly.hpp"
#include "isa/encoding.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace tessera::isa;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Program p;
  try {
    p = assemble(text, "fuzz.tasm");
  } catch (const AsmError&) {
    return 0;  // rejected with diagnostics: fine
  }
  const Program back = assemble(disassemble(p), "canonical.tasm");
  if (!(back == p)) std::abort();
  try {
    if (read_binary(write_binary(p)) != p) std::abort();
  } catch (const EncodeError&) {
    // the text assembled a value wider than its field: impossible, the assembler checks ranges
    std::abort();
  }
  return 0;
}
