// Loading an architecture: a preset by name or a YAML/JSON file, following `extends:` chains,
// applying "-s key.path=value" overrides, reading every field by the schema and checking that
// the values can work together. Every problem is reported at once, each naming the file, line
// and key path.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "arch/arch.hpp"
#include "arch/config_tree.hpp"

namespace tessera::arch {

// Names of the built-in presets (arch/presets/*.yaml, embedded in the library), sorted.
std::vector<std::string> preset_names();

// The YAML text of a built-in preset; throws ArchError for an unknown name.
std::string_view preset_text(std::string_view name);

// A preset name, or a path to a .yaml/.yml/.json file, with `extends:` resolved and the
// overrides applied. The result is not yet checked against the schema.
ConfigNode resolve_config(std::string_view name_or_path,
                          const std::vector<std::string>& overrides = {});

// Reads a resolved tree by the schema and validates it. Throws ArchError listing every problem.
Arch arch_from_config(const ConfigNode& root);

// resolve_config + arch_from_config.
Arch load_arch(std::string_view name_or_path, const std::vector<std::string>& overrides = {});

}  // namespace tessera::arch
