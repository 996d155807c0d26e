// What the ISA verifier needs to know of an architecture.
#pragma once

#include "arch/arch.hpp"
#include "isa/verify.hpp"

namespace tessera::compiler {

isa::Target target_for(const arch::Arch& arch);

}  // namespace tessera::compiler
