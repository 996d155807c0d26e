// The instruction-set reference, generated from the opcode table (committed as isa/REFERENCE.md;
// a test checks that the committed file is current).
#pragma once

#include <string>

namespace tessera::isa {

std::string reference_markdown();

}  // namespace tessera::isa
