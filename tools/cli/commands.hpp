// Each verb group registers its subcommands on the application.
#pragma once

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <string>

#include "isa/program.hpp"

namespace tessera::cli {

void add_arch_commands(CLI::App& app);
void add_isa_commands(CLI::App& app);
void add_sim_commands(CLI::App& app);

// A program from a binary (.tbin, recognised by its magic) or assembly text file.
isa::Program load_program(const std::string& path);

}  // namespace tessera::cli
