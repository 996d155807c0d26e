// tessera: the command line front end. Verbs are registered by cli/*_commands.cpp; errors from
// any layer are printed as one message and give a non-zero exit.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <iostream>

#include "tools/cli/commands.hpp"

int main(int argc, char** argv) {
  CLI::App app{"Tessera: simulate LLM inference on in-house AI accelerators and compare with GPUs",
               "tessera"};
  app.require_subcommand(1);
  app.fallthrough();  // -v/-q may follow the verb; subcommands inherit this
  bool verbose = false;
  bool quiet = false;
  app.add_flag("-v,--verbose", verbose, "log details (debug level)");
  app.add_flag("-q,--quiet", quiet, "log only warnings and errors");
  app.set_version_flag("--version", "tessera 0.1.0");

  tessera::cli::add_arch_commands(app);
  tessera::cli::add_isa_commands(app);
  tessera::cli::add_sim_commands(app);
  tessera::cli::add_compile_commands(app);
  tessera::cli::add_run_commands(app);
  tessera::cli::add_serve_commands(app);

  auto logger = spdlog::stderr_color_mt("tessera");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^%l%$: %v");
  app.parse_complete_callback([&] {
    spdlog::set_level(verbose ? spdlog::level::debug
                              : quiet ? spdlog::level::warn : spdlog::level::info);
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
