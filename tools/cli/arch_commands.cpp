// tessera arch list | show | validate | diff | schema
#include <fmt/format.h>

#include <iostream>
#include <memory>

#include "arch/derived.hpp"
#include "arch/describe.hpp"
#include "arch/loader.hpp"
#include "tools/cli/commands.hpp"
#include "tools/cli/table.hpp"

namespace tessera::cli {
namespace {

using arch::Arch;
using arch::Derived;

std::string tflops(const Derived& d, const std::string& dtype) {
  auto it = d.peak_flops.find(dtype);
  return it == d.peak_flops.end() ? "-" : fmt::format("{:.0f}", it->second / 1e12);
}

void list(bool json) {
  Table t({"preset", "kind", "chips", "tiles", "bf16 TF/s", "fp8 TF/s", "SRAM", "HBM", "HBM BW",
           "TDP", "chip $", "TCO $/h"});
  nlohmann::json out = nlohmann::json::array();
  for (const std::string& name : arch::preset_names()) {
    const Arch a = arch::load_arch(name);
    const Derived d = arch::derive(a);
    t.add({name, std::string(arch::enum_name(a.kind)), std::to_string(a.system.chips), std::to_string(d.tiles),
           tflops(d, "bf16"),
           tflops(d, "fp8"), arch::format_quantity(d.sram_capacity, arch::Dim::Bytes, 4),
           arch::format_quantity(d.hbm_capacity, arch::Dim::Bytes, 4),
           arch::format_quantity(d.hbm_bandwidth, arch::Dim::Bandwidth, 4),
           arch::format_quantity(a.power.tdp, arch::Dim::Power, 4), fmt::format("{:.0f}", d.chip_cost),
           fmt::format("{:.3f}", d.tco_usd_per_hour)});
    out.push_back({{"name", name}, {"description", a.description}, {"chips", a.system.chips}, {"derived", arch::to_json(d)}});
  }
  if (json) {
    std::cout << out.dump(2) << "\n";
  } else {
    t.print(std::cout, true);
  }
}

void show(const std::string& target, const std::vector<std::string>& overrides, bool json) {
  const Arch a = arch::load_arch(target, overrides);
  const Derived d = arch::derive(a);
  if (json) {
    nlohmann::json j = arch::to_json(a);
    j["derived"] = arch::to_json(d);
    j["fingerprint"] = fmt::format("{:016x}", arch::fingerprint(a));
    std::cout << j.dump(2) << "\n";
    return;
  }
  std::cout << a.name << ": " << a.description << "\n\n";
  Table params({"parameter", "value"});
  for (const auto& row : arch::value_rows(a)) params.add({row.path, row.text});
  params.print(std::cout);
  std::cout << "\n";
  Table derived({"derived", "value"});
  for (const auto& row : arch::derived_rows(d)) derived.add({row.path, row.text});
  derived.print(std::cout);
}

int validate(const std::vector<std::string>& files) {
  int failures = 0;
  for (const std::string& f : files) {
    try {
      const Arch a = arch::load_arch(f);
      std::cout << f << ": ok (" << a.name << ")\n";
    } catch (const arch::ArchError& e) {
      ++failures;
      std::cerr << e.what() << "\n";
    }
  }
  return failures;
}

void diff(const std::string& a_name, const std::string& b_name,
          const std::vector<std::string>& overrides, bool json) {
  const Arch a = arch::load_arch(a_name);
  const Arch b = arch::load_arch(b_name, overrides);
  const auto rows = arch::diff(a, b);
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows) out.push_back({{"path", r.path}, {a.name, r.a}, {b.name, r.b}});
    std::cout << out.dump(2) << "\n";
    return;
  }
  if (rows.empty()) {
    std::cout << a.name << " and " << b.name << " have identical parameters\n";
    return;
  }
  Table t({"parameter", a.name, b.name});
  for (const auto& r : rows) t.add({r.path, r.a, r.b});
  t.print(std::cout);
}

void schema(bool json) {
  const auto rows = arch::schema_rows();
  if (json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& r : rows) {
      out.push_back({{"path", r.path}, {"kind", r.kind}, {"default", r.default_}, {"doc", r.doc}});
    }
    std::cout << out.dump(2) << "\n";
    return;
  }
  Table t({"key", "kind", "default", "description"});
  for (const auto& r : rows) t.add({r.path, r.kind, r.default_, r.doc});
  t.print(std::cout);
}

}  // namespace

void add_arch_commands(CLI::App& app) {
  CLI::App* arch = app.add_subcommand("arch", "architecture descriptions: list, show, validate, diff, schema");
  arch->require_subcommand(1);

  struct Options {
    std::string target, other;
    std::vector<std::string> files, overrides;
    bool json = false;
  };
  auto opt = std::make_shared<Options>();

  CLI::App* l = arch->add_subcommand("list", "the built-in presets side by side with their derived figures");
  l->add_flag("--json", opt->json, "machine-readable output");
  l->callback([opt] { list(opt->json); });

  CLI::App* s = arch->add_subcommand("show", "every parameter of a design and its derived figures");
  s->add_option("design", opt->target, "preset name or YAML/JSON file")->required();
  s->add_option("-s,--set", opt->overrides, "override a parameter: key.path=value (repeatable)");
  s->add_flag("--json", opt->json, "machine-readable output (SI base units)");
  s->callback([opt] { show(opt->target, opt->overrides, opt->json); });

  CLI::App* v = arch->add_subcommand("validate", "check description files; non-zero exit on errors");
  v->add_option("files", opt->files, "YAML/JSON files or preset names")->required();
  v->callback([opt] {
    if (int failures = validate(opt->files)) throw CLI::RuntimeError(failures > 0 ? 1 : 0);
  });

  CLI::App* d = arch->add_subcommand("diff", "parameters that differ between two designs");
  d->add_option("a", opt->target, "first design")->required();
  d->add_option("b", opt->other, "second design")->required();
  d->add_option("-s,--set", opt->overrides, "override a parameter of the second design");
  d->add_flag("--json", opt->json, "machine-readable output");
  d->callback([opt] { diff(opt->target, opt->other, opt->overrides, opt->json); });

  CLI::App* sc = arch->add_subcommand("schema", "every parameter with its unit, default and description");
  sc->add_flag("--json", opt->json, "machine-readable output");
  sc->callback([opt] { schema(opt->json); });
}

}  // namespace tessera::cli
