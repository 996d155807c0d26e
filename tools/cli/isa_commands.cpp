// tessera asm | disasm | verify | isa doc
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>

#include "arch/loader.hpp"
#include "compiler/target.hpp"
#include "isa/assembly.hpp"
#include "isa/reference.hpp"
#include "isa/verify.hpp"
#include "tools/api/api.hpp"
#include "tools/cli/commands.hpp"

namespace tessera::cli {

namespace {

void write_text(const std::string& path, const std::string& text) {
  if (path.empty() || path == "-") {
    std::cout << text;
    return;
  }
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(path + ": cannot write");
  out << text;
}

}  // namespace

void add_isa_commands(CLI::App& app) {
  struct Options {
    std::string in, out, arch;
    std::vector<std::string> overrides;
  };
  auto opt = std::make_shared<Options>();

  CLI::App* as = app.add_subcommand("asm", "assemble a .tasm file into a binary program");
  as->add_option("input", opt->in, "assembly text (.tasm)")->required();
  as->add_option("-o,--output", opt->out, "binary program to write (.tbin)")->required();
  as->callback([opt] {
    isa::Program p = isa::assemble_file(opt->in);
    isa::save_binary(p, opt->out);
    spdlog::info("{}: {} streams, {} instructions", opt->out, p.streams.size(), p.instruction_count());
  });

  CLI::App* dis = app.add_subcommand("disasm", "print a program (binary or text) as canonical assembly");
  dis->add_option("input", opt->in, "program (.tbin or .tasm)")->required();
  dis->add_option("-o,--output", opt->out, "text file to write (default: standard output)");
  dis->callback([opt] { write_text(opt->out, isa::disassemble(api::load_program(opt->in))); });

  CLI::App* ver = app.add_subcommand("verify", "check a program against an architecture");
  ver->add_option("input", opt->in, "program (.tbin or .tasm)")->required();
  ver->add_option("--arch", opt->arch, "preset name or architecture file")->required();
  ver->add_option("-s,--set", opt->overrides, "override an architecture parameter: key.path=value");
  ver->callback([opt] {
    const arch::Arch a = arch::load_arch(opt->arch, opt->overrides);
    const isa::Program p = api::load_program(opt->in);
    const auto issues = isa::verify(p, compiler::target_for(a));
    for (const auto& i : issues) std::cerr << opt->in << ": " << i.str() << "\n";
    if (!issues.empty()) throw CLI::RuntimeError(1);
    std::cout << fmt::format("{}: ok for {} ({} streams, {} instructions)\n", opt->in, a.name, p.streams.size(),
                             p.instruction_count());
  });

  CLI::App* isa_cmd = app.add_subcommand("isa", "the instruction set");
  isa_cmd->require_subcommand(1);
  CLI::App* doc = isa_cmd->add_subcommand("doc", "print the instruction-set reference (markdown)");
  doc->callback([] { std::cout << isa::reference_markdown(); });
}

}  // namespace tessera::cli
