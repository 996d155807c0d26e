// Each verb group registers its subcommands on the application.
#pragma once

#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <string>


namespace tessera::cli {

void add_arch_commands(CLI::App& app);
void add_isa_commands(CLI::App& app);
void add_sim_commands(CLI::App& app);
void add_compile_commands(CLI::App& app);
void add_run_commands(CLI::App& app);
void add_serve_commands(CLI::App& app);


}  // namespace tessera::cli
