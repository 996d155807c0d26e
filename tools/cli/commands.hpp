// Each verb group registers its subcommands on the application.
#pragma once

#include <CLI/CLI.hpp>

namespace tessera::cli {

void add_arch_commands(CLI::App& app);

}  // namespace tessera::cli
