// Rules that relate several parameters: values each valid alone that cannot work together.
#pragma once

#include <vector>

#include "arch/arch.hpp"
#include "arch/config_tree.hpp"

namespace tessera::arch {

// Appends a Problem per broken rule. `root` locates the keys a rule names.
void validate(const Arch& arch, const ConfigNode& root, std::vector<Problem>& problems);

// Bytes of tile SRAM one array needs for a double-buffered bf16 tile: two weight tiles
// (rows x cols), two input blocks (rows x rows) and one fp32 accumulator block (rows x cols).
double min_sram_for_array(const SystolicParams& sa);

}  // namespace tessera::arch
