// tessera compile --arch A --model M --phase prefill|decode --batch B (--seq S | --context L)
//                 [--dtype D] [--kv-dtype D] [--pp N --stage S] [--ep N] [--capacity-factor F]
//                 --emit graph|tiled|asm|bin [-o OUT]
#include <fmt/format.h>

#include <fstream>
#include <iostream>
#include <memory>

#include "arch/loader.hpp"
#include "compiler/compile.hpp"
#include "isa/assembly.hpp"
#include "tools/api/api.hpp"
#include "tools/cli/commands.hpp"

namespace tessera::cli {

void add_compile_commands(CLI::App& app) {
  struct Options {
    std::string arch, model, phase = "prefill", emit = "asm", out, dtype = "bf16", kv_dtype = "bf16";
    std::vector<std::string> overrides;
    int64_t batch = 1, seq = 0, context = -1, pp = 0, stage = -1, ep = 0;
    double capacity_factor = 0.0;
    bool no_loop = false, all_logits = false;
  };
  auto opt = std::make_shared<Options>();
  CLI::App* c = app.add_subcommand("compile", "compile a model for an architecture");
  c->add_option("--arch", opt->arch, "preset name or architecture file")->required();
  c->add_option("-s,--set", opt->overrides, "override an architecture parameter: key.path=value");
  c->add_option("--model", opt->model, "shipped model name or path to a Hugging Face config.json")->required();
  c->add_option("--phase", opt->phase, "prefill or decode")->check(CLI::IsMember({"prefill", "decode"}));
  c->add_option("--batch", opt->batch, "sequences in the batch");
  c->add_option("--seq", opt->seq, "prefill: prompt tokens per sequence");
  c->add_option("--context", opt->context, "decode: tokens already in each sequence's KV cache");
  c->add_option("--dtype", opt->dtype, "weight dtype: bf16, fp8e4m3, fp8e5m2");
  c->add_option("--kv-dtype", opt->kv_dtype, "KV-cache dtype: bf16, fp8e4m3, fp8e5m2");
  c->add_option("--emit", opt->emit, "graph, tiled, asm or bin")->check(CLI::IsMember({"graph", "tiled", "asm", "bin"}));
  c->add_option("-o,--output", opt->out, "output file (default: standard output; required for bin)");
  c->add_option("--pp", opt->pp, "pipeline stages (-s system.parallelism.pp=N): compile one stage, --stage")
      ->check(CLI::PositiveNumber);
  c->add_option("--stage", opt->stage, "with a pipeline: the stage to compile (0 .. pp - 1), on its chips / pp chips")
      ->check(CLI::NonNegativeNumber);
  c->add_option("--ep", opt->ep, "MoE: groups of the chips the experts are dealt over (-s system.parallelism.ep=N)")
      ->check(CLI::PositiveNumber);
  c->add_option("--capacity-factor", opt->capacity_factor,
                "MoE: an expert takes at most this x tokens x k / experts of a routed block (default 0: dropless)")
      ->check(CLI::NonNegativeNumber);
  c->add_flag("--no-layer-loop", opt->no_loop, "emit every layer separately");
  c->add_flag("--all-logits", opt->all_logits, "prefill: logits of every prompt token (default: each sequence's last)");
  c->callback([opt] {
    if (opt->pp > 0) opt->overrides.push_back(fmt::format("system.parallelism.pp={}", opt->pp));
    if (opt->ep > 0) opt->overrides.push_back(fmt::format("system.parallelism.ep={}", opt->ep));
    arch::Arch a = arch::load_arch(opt->arch, opt->overrides);
    // A pipeline's program is one stage's, on the stage's chips.
    const int64_t stages = a.system.pipeline_stages();
    if (stages > 1 && (opt->stage < 0 || opt->stage >= stages)) {
      throw std::runtime_error(fmt::format("a pipeline of {} stages: --stage 0 .. {} says which to compile", stages,
                                           stages - 1));
    }
    if (stages == 1 && opt->stage > 0) throw std::runtime_error("--stage needs a pipeline (--pp)");
    a.system.chips /= stages;
    a.system.parallelism.tp = a.system.parallelism.pp = 0;
    const compiler::ModelConfig m = compiler::load_model_config(opt->model);
    compiler::Workload w = api::make_workload(opt->phase, opt->batch, opt->seq, opt->context);
    w.all_logits = opt->all_logits;
    compiler::CompileOptions o;
    o.weight_dtype = api::parse_dtype("--dtype", opt->dtype);
    o.kv_dtype = api::parse_dtype("--kv-dtype", opt->kv_dtype);
    o.layer_loop = !opt->no_loop;
    o.capacity_factor = opt->capacity_factor;
    const compiler::CompileResult r = compiler::compile_model(m, w, a, o, {stages, std::max<int64_t>(opt->stage, 0)});
    if (opt->emit == "bin") {
      if (opt->out.empty()) throw std::runtime_error("--emit bin needs -o FILE");
      isa::save_binary(r.program, opt->out);
      return;
    }
    const std::string text = opt->emit == "graph" ? r.graph_text
                             : opt->emit == "tiled" ? r.tiled_text
                                                    : isa::disassemble(r.program);
    if (opt->out.empty()) {
      std::cout << text;
    } else {
      std::ofstream f(opt->out);
      if (!f) throw std::runtime_error(opt->out + ": cannot write");
      f << text;
    }
    spdlog::info("{} {} on {}: {} instructions, weights {:.3f} GB, KV cache {:.3f} GB, activations {:.3f} GB{}", m.name,
                 opt->phase, a.name, r.program.instruction_count(), double(r.weight_bytes) / 1e9,
                 double(r.kv_bytes) / 1e9, double(r.activation_bytes) / 1e9,
                 r.layers_looped ? fmt::format(", {} layers in a loop", r.layers_looped) : "");
  });
}

}  // namespace tessera::cli
