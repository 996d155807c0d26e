// The `tessera` Python module (the compiled part; tessera/__init__.py adds the Python side).
// Errors keep the CLI's messages: ArchError, CompileError and SimError subclass TesseraError.
// The GIL is released while compiling and simulating.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <fmt/format.h>

#include <fstream>

#include "arch/derived.hpp"
#include "arch/describe.hpp"
#include "arch/loader.hpp"
#include "compiler/compile.hpp"
#include "compiler/onnx/onnx_frontend.hpp"
#include "isa/assembly.hpp"
#include "isa/verify.hpp"
#include "sim/simulation.hpp"
#include "tools/api/api.hpp"
#include "tools/api/run.hpp"
#include "tools/api/serve.hpp"

namespace py = pybind11;
using namespace tessera;

namespace {

py::object json_to_python(const nlohmann::json& j) { return py::module_::import("json").attr("loads")(j.dump()); }

// An architecture and how it was made (a preset or file plus overrides), so that with_()
// can derive new designs the way `-s` does on the command line.
struct PyArch {
  std::string source;
  std::vector<std::string> overrides;
  arch::Arch arch;

  static PyArch load(const std::string& source, const std::vector<std::string>& overrides) {
    return {source, overrides, arch::load_arch(source, overrides)};
  }
  PyArch with(const std::vector<std::string>& more) const {
    std::vector<std::string> o = overrides;
    o.insert(o.end(), more.begin(), more.end());
    return load(source, o);
  }
  PyArch with_kwargs(const py::kwargs& kw) const {
    std::vector<std::string> more;
    for (const auto& [k, v] : kw) more.push_back(py::str(k).cast<std::string>() + "=" + py::str(v).cast<std::string>());
    return with(more);
  }
};

struct PyProgram {
  compiler::CompileResult result;
};

py::dict tensor_dict(const compiler::TensorPlacement& t) {
  py::dict d;
  d["name"] = t.name;
  d["addr"] = t.addr;
  d["shape"] = t.shape;
  d["dtype"] = std::string(isa::dtype_name(t.dtype));
  d["role"] = std::string(compiler::role_name(t.role));
  if (t.data) d["data"] = py::array_t<float>(py::ssize_t(t.data->size()), t.data->data());
  d["chip"] = t.chip;
  if (t.shard) {  // which part of the named tensor this chip holds (see compiler::Shard)
    py::list ranges;
    for (const auto& [b, e] : t.shard->ranges) ranges.append(py::make_tuple(b, e));
    d["shard"] = py::dict(py::arg("axis") = t.shard->axis, py::arg("ranges") = ranges, py::arg("whole") = t.shard->whole);
  }
  return d;
}

// Python's (past, tokens) pairs.
std::vector<compiler::SequenceStep> steps_of(const std::vector<std::pair<int64_t, int64_t>>& sequences) {
  std::vector<compiler::SequenceStep> steps;
  for (const auto& [past, tokens] : sequences) steps.push_back({past, tokens});
  return steps;
}

api::RunSpec run_spec(const std::string& model, const std::string& op, const std::vector<int64_t>& shape,
                      const std::string& phase, int64_t batch, int64_t seq, int64_t context, const std::string& dtype,
                      const std::string& kv_dtype) {
  api::RunSpec s;
  s.model = model, s.op = op, s.shape = shape, s.phase = phase, s.batch = batch, s.seq = seq, s.context = context;
  s.dtype = dtype, s.kv_dtype = kv_dtype;
  return s;
}

api::RunOptions run_options(bool full, const std::string& trace, const std::string& pricing) {
  api::RunOptions o;
  if (full) o.sample_layers = 0, o.sample_rounds = 0;
  o.trace = trace, o.pricing = pricing;
  return o;
}

// serve() and plan()'s traffic: a window from `from` for `duration` seconds (0: to the end;
// below 0, load_traffic's error).
api::Traffic traffic_of(const std::string& requests, const std::string& synthetic, double from, double duration,
                        double rate_scale, const std::string& prefix_sharing) {
  api::Traffic t;
  t.requests = requests, t.synthetic = synthetic, t.from = from, t.rate_scale = rate_scale;
  t.prefix_sharing = prefix_sharing;
  if (duration != 0) t.duration = duration;
  return t;
}

api::ServeSpec serve_spec(const std::string& model, const std::string& slo, int64_t max_running,
                          int64_t max_batched_tokens, bool chunked_prefill, int64_t block_tokens, int64_t kv_blocks,
                          const std::string& preemption, bool prefix_caching, const std::string& dtype,
                          const std::string& kv_dtype, int64_t grid) {
  api::ServeSpec s;
  s.model = model, s.dtype = dtype, s.kv_dtype = kv_dtype, s.slo = slo, s.preemption = preemption;
  s.scheduler.max_running = max_running, s.scheduler.max_batched_tokens = max_batched_tokens;
  s.scheduler.chunked_prefill = chunked_prefill, s.scheduler.block_tokens = block_tokens;
  s.scheduler.blocks = kv_blocks, s.scheduler.prefix_caching = prefix_caching, s.grid_per_octave = grid;
  return s;
}

py::dict run_result(const sim::RunResult& r) {
  py::dict d;
  d["seconds"] = r.seconds();
  d["instructions"] = r.instructions;
  d["stats"] = json_to_python(r.stats.to_json());
  return d;
}

}  // namespace

PYBIND11_MODULE(_tessera, m) {
  m.doc() = "Tessera: simulate LLM inference on in-house AI accelerators and compare with GPUs";
  static py::exception<std::runtime_error> base(m, "TesseraError");
  static py::exception<arch::ArchError> arch_error(m, "ArchError", base.ptr());
  static py::exception<compiler::CompileError> compile_error(m, "CompileError", base.ptr());
  static py::exception<sim::SimError> sim_error(m, "SimError", base.ptr());
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const arch::ArchError& e) {
      arch_error(e.what());
    } catch (const compiler::CompileError& e) {
      compile_error(e.what());
    } catch (const sim::SimError& e) {
      sim_error(e.what());
    } catch (const isa::VerifyError& e) {
      base(e.what());
    } catch (const isa::AsmError& e) {
      base(e.what());
    } catch (const std::runtime_error& e) {  // the facade's own checks of a request
      base(e.what());
    }
  });

  py::class_<PyArch>(m, "Arch")
      .def_static("load", &PyArch::load, py::arg("name_or_path"), py::arg("overrides") = std::vector<std::string>{},
                  "A preset by name or a YAML/JSON file, with key.path=value overrides")
      .def_static("presets", &arch::preset_names)
      .def("with_", &PyArch::with_kwargs, "A copy with parameters overridden: arch.with_(**{'hbm.stacks': 6})")
      .def_property_readonly("name", [](const PyArch& a) { return a.arch.name; })
      .def_property_readonly("tiles", [](const PyArch& a) { return a.arch.tiles(); })
      .def("to_dict", [](const PyArch& a) { return json_to_python(arch::to_json(a.arch)); })
      .def("derived", [](const PyArch& a) { return json_to_python(arch::to_json(arch::derive(a.arch))); })
      .def("__repr__", [](const PyArch& a) { return fmt::format("<tessera.Arch {}>", a.arch.name); });

  py::class_<PyProgram>(m, "Program")
      .def_property_readonly("instructions", [](const PyProgram& p) { return p.result.program.instruction_count(); })
      .def_property_readonly("tensors", [](const PyProgram& p) {
        py::list l;
        for (const auto& t : p.result.tensors) l.append(tensor_dict(t));
        return l;
      })
      .def_property_readonly("graph", [](const PyProgram& p) { return p.result.graph_text; })
      .def_property_readonly("tiled", [](const PyProgram& p) { return p.result.tiled_text; })
      .def_property_readonly("weight_bytes", [](const PyProgram& p) { return p.result.weight_bytes; })
      .def_property_readonly("kv_bytes", [](const PyProgram& p) { return p.result.kv_bytes; })
      .def("assembly", [](const PyProgram& p) { return isa::disassemble(p.result.program); })
      .def("save", [](const PyProgram& p, const std::string& path) { isa::save_binary(p.result.program, path); });

  m.def(
      "compile_model",
      [](const PyArch& a, const std::string& model, const std::string& phase, int64_t batch, int64_t seq,
         int64_t context, int64_t cache_capacity, const std::string& dtype, const std::string& kv_dtype,
         const std::vector<int64_t>& token_ids, int64_t attention_key_block, bool all_logits, int64_t stage,
         int64_t stages, double capacity_factor, const std::vector<std::pair<int64_t, int64_t>>& sequences) {
        compiler::Workload w = api::make_workload(phase, batch, seq, context, cache_capacity, steps_of(sequences));
        w.token_ids = token_ids;
        w.all_logits = all_logits;
        compiler::CompileOptions o;
        o.weight_dtype = api::parse_dtype("dtype", dtype);
        o.kv_dtype = api::parse_dtype("kv_dtype", kv_dtype);
        o.attention_key_block = attention_key_block;
        o.capacity_factor = capacity_factor;
        const compiler::ModelConfig cfg = compiler::load_model_config(model);
        py::gil_scoped_release release;
        return PyProgram{compiler::compile_model(cfg, w, a.arch, o, {stages, stage})};
      },
      py::arg("arch"), py::arg("model"), py::arg("phase") = "prefill", py::arg("batch") = 1, py::arg("seq") = 0,
      py::arg("context") = -1, py::arg("cache_capacity") = 0, py::arg("dtype") = "bf16", py::arg("kv_dtype") = "bf16",
      py::arg("token_ids") = std::vector<int64_t>{}, py::arg("attention_key_block") = 0, py::arg("all_logits") = false,
      py::arg("stage") = 0, py::arg("stages") = 1, py::arg("capacity_factor") = 0.0,
      py::arg("sequences") = std::vector<std::pair<int64_t, int64_t>>{},
      "Compile a model (shipped name or config.json path) for a phase and shape; phase 'mixed' takes sequences, "
      "(past, tokens) of each (a serving engine's ragged iteration; sequence b holds slot b of the KV cache; "
      "batch, seq and context unused). attention_key_block > 0 makes "
      "attention walk the keys in blocks of that many (online softmax); all_logits makes a prefill compute the "
      "logits of every prompt token instead of each sequence's last; stages > 1 compiles pipeline stage `stage` "
      "of that many (its layers; input and output 'hidden' between stages); capacity_factor > 0 caps the tokens "
      "an MoE expert takes at factor x tokens x k / experts (0: dropless)");

  m.def(
      "compile_onnx",
      [](const PyArch& a, const std::string& path, const std::vector<int64_t>& token_ids, int64_t batch, int64_t seq,
         int64_t cache_capacity, const std::string& dtype) {
        compiler::OnnxImportOptions io;
        io.token_ids = token_ids, io.batch = batch, io.seq = seq, io.cache_capacity = cache_capacity;
        compiler::CompileOptions o;
        o.weight_dtype = api::parse_dtype("dtype", dtype);
        py::gil_scoped_release release;
        return PyProgram{compiler::compile(compiler::import_onnx(path, io), a.arch, o)};
      },
      py::arg("arch"), py::arg("path"), py::arg("token_ids") = std::vector<int64_t>{}, py::arg("batch") = 0,
      py::arg("seq") = 0, py::arg("cache_capacity") = 0, py::arg("dtype") = "bf16",
      "Compile a decoder exported to ONNX (its initialisers carry the weights) for a prefill");

  m.def(
      "run",
      [](const PyArch& a, const std::string& model, const std::string& op, const std::vector<int64_t>& shape,
         const std::string& phase, int64_t batch, int64_t seq, int64_t context, const std::string& dtype,
         const std::string& kv_dtype, bool full, const std::string& trace, const std::string& pricing, int64_t chips,
         bool stats, int64_t tp, int64_t pp, int64_t ep, double capacity_factor, double routing_skew,
         uint64_t routing_seed, const std::string& launch, const std::string& framework) {
        api::RunSpec s = run_spec(model, op, shape, phase, batch, seq, context, dtype, kv_dtype);
        s.capacity_factor = capacity_factor, s.framework = framework;
        std::vector<std::string> overrides;
        if (chips != 0) overrides.push_back(fmt::format("system.chips={}", chips));
        if (tp != 0) overrides.push_back(fmt::format("system.parallelism.tp={}", tp));
        if (pp != 0) overrides.push_back(fmt::format("system.parallelism.pp={}", pp));
        if (ep != 0) overrides.push_back(fmt::format("system.parallelism.ep={}", ep));
        const arch::Arch system = a.with(overrides).arch;
        api::RunOptions o = run_options(full, trace, pricing);
        o.routing_skew = routing_skew, o.routing_seed = routing_seed, o.launch = launch;
        nlohmann::json j;
        {
          py::gil_scoped_release release;
          j = api::run(system, s, o).to_json(stats);
        }
        return json_to_python(j);
      },
      py::arg("arch"), py::arg("model") = "", py::arg("op") = "", py::arg("shape") = std::vector<int64_t>{},
      py::arg("phase") = "decode", py::arg("batch") = 1, py::arg("seq") = 0, py::arg("context") = -1,
      py::arg("dtype") = "bf16", py::arg("kv_dtype") = "bf16", py::arg("full") = false, py::arg("trace") = "",
      py::arg("pricing") = "owned", py::arg("chips") = 0, py::arg("stats") = false, py::arg("tp") = 0,
      py::arg("pp") = 0, py::arg("ep") = 0, py::arg("capacity_factor") = 0.0, py::arg("routing_skew") = 0.0,
      py::arg("routing_seed") = 1, py::arg("launch") = "graph", py::arg("framework") = "fused",
      "Compile, simulate and price a model step (model=..., phase, batch, seq or context) or an operator "
      "(op='gemm'|'attention'|'copy', shape=[...]) on the system's chips (chips=N: N of them, as -s system.chips=N; "
      "a model is split across them, tp x pp: tensor parallelism and pipeline stages, searched when not given; ep: "
      "MoE experts dealt over ep groups of a stage's chips); MoE: capacity_factor (0: dropless), and in performance "
      "mode the routing drawn with probability ~ 1 / rank^routing_skew from routing_seed; launch: 'graph' or 'eager' "
      "(kernels issued one by one by the host, on chips that run kernels); framework: 'fused' or 'pytorch' (plain "
      "PyTorch's kernels); returns the report as a "
      "dict (with every stat if stats=True)");

  const api::ServeSpec serve_defaults;  // the keyword defaults are the facade's
  const api::PlanSpec plan_defaults;
  // The scheduler's keywords, shared by serve() and plan().
#define SCHEDULER_ARGS                                                                                               \
  py::arg("max_running") = serve_defaults.scheduler.max_running,                                                     \
      py::arg("max_batched_tokens") = serve_defaults.scheduler.max_batched_tokens,                                   \
      py::arg("chunked_prefill") = serve_defaults.scheduler.chunked_prefill,                                         \
      py::arg("block_tokens") = serve_defaults.scheduler.block_tokens,                                               \
      py::arg("kv_blocks") = serve_defaults.scheduler.blocks, py::arg("preemption") = serve_defaults.preemption,     \
      py::arg("prefix_sharing") = "", py::arg("prefix_caching") = serve_defaults.scheduler.prefix_caching,           \
      py::arg("dtype") = serve_defaults.dtype, py::arg("kv_dtype") = serve_defaults.kv_dtype
  m.def(
      "serve",
      [](const PyArch& a, const std::string& model, const std::string& requests, const std::string& synthetic,
         double from, double duration, double rate_scale, int64_t replicas, int64_t tp, int64_t prefill_replicas,
         int64_t decode_replicas, const std::string& slo, int64_t max_running, int64_t max_batched_tokens,
         bool chunked_prefill, int64_t block_tokens, int64_t kv_blocks, const std::string& preemption,
         const std::string& prefix_sharing, bool prefix_caching, const std::string& dtype, const std::string& kv_dtype,
         int64_t grid, bool exact, const std::string& pricing, const std::string& trace) {
        const api::Traffic t = traffic_of(requests, synthetic, from, duration, rate_scale, prefix_sharing);
        api::ServeSpec s = serve_spec(model, slo, max_running, max_batched_tokens, chunked_prefill, block_tokens,
                                      kv_blocks, preemption, prefix_caching, dtype, kv_dtype, grid);
        s.replicas = replicas, s.tp = tp, s.prefill_replicas = prefill_replicas, s.decode_replicas = decode_replicas;
        s.exact = exact;
        api::RunOptions o;
        o.pricing = pricing;
        nlohmann::json j;
        {
          py::gil_scoped_release release;
          const api::ServeReport r = api::serve(a.arch, api::load_traffic(t), s, o);
          if (!trace.empty()) {
            std::ofstream out(trace);
            if (!out) throw std::runtime_error(trace + ": cannot write");
            r.write_trace(out);
          }
          j = r.to_json();
        }
        return json_to_python(j);
      },
      py::arg("arch"), py::arg("model"), py::arg("requests") = "", py::arg("synthetic") = "", py::arg("start") = 0.0,
      py::arg("duration") = 0.0, py::arg("rate_scale") = 1.0, py::arg("replicas") = serve_defaults.replicas,
      py::arg("tp") = serve_defaults.tp, py::arg("prefill_replicas") = 0, py::arg("decode_replicas") = 0,
      py::arg("slo") = "", SCHEDULER_ARGS, py::arg("grid") = serve_defaults.grid_per_octave,
      py::arg("exact") = serve_defaults.exact, py::arg("pricing") = "owned",
      py::arg("trace") = "",
      "Replay request traffic (requests: a trace CSV of Azure's schema; or synthetic: 'rate=..,prompt=..,output=..', "
      "its lengths resampled from the trace with prompt=trace) on replicas of a system with continuous batching; a "
      "window of it from `start` seconds for `duration` (0: to the end), at rate_scale x its rate. A replica is tp "
      "chips (0: all the system's); prefill_replicas and decode_replicas: disaggregated pools instead of `replicas`. "
      "slo: 'ttft=500ms,tpot=50ms'; preemption: 'recompute' or 'swap'; prefix_sharing: "
      "'fraction=0.5,groups=8[,requests=R][,seed=S]'. Returns the report as a dict with 'request_results' (every "
      "request's times; tessera.to_dataframe makes a DataFrame of them); trace: a Perfetto timeline of the iterations");

  m.def(
      "plan",
      [](const std::vector<PyArch>& systems, const std::string& model, const std::string& requests,
         const std::string& synthetic, double from, double duration, double rate_scale, const std::string& slo,
         double attainment, const std::vector<double>& loads, double requests_per_user_month,
         const std::vector<int64_t>& tp, bool disaggregation, int64_t max_replicas, int64_t max_running,
         int64_t max_batched_tokens, bool chunked_prefill, int64_t block_tokens, int64_t kv_blocks,
         const std::string& preemption, const std::string& prefix_sharing, bool prefix_caching,
         const std::string& dtype, const std::string& kv_dtype, int64_t grid, const std::string& pricing) {
        std::vector<arch::Arch> archs;
        for (const PyArch& a : systems) archs.push_back(a.arch);
        const api::Traffic t = traffic_of(requests, synthetic, from, duration, rate_scale, prefix_sharing);
        api::PlanSpec p;
        p.serve = serve_spec(model, slo, max_running, max_batched_tokens, chunked_prefill, block_tokens, kv_blocks,
                             preemption, prefix_caching, dtype, kv_dtype, grid);
        p.attainment = attainment, p.loads = loads, p.requests_per_user_month = requests_per_user_month;
        p.tp = tp, p.disaggregation = disaggregation, p.max_replicas = max_replicas;
        api::RunOptions o;
        o.pricing = pricing;
        nlohmann::json j;
        {
          py::gil_scoped_release release;
          j = api::plan(archs, api::load_traffic(t), p, o).to_json();
        }
        return json_to_python(j);
      },
      py::arg("systems"), py::arg("model"), py::arg("requests") = "", py::arg("synthetic") = "", py::arg("start") = 0.0,
      py::arg("duration") = 0.0, py::arg("rate_scale") = 1.0, py::arg("slo") = "",
      py::arg("attainment") = plan_defaults.attainment, py::arg("loads") = plan_defaults.loads,
      py::arg("requests_per_user_month") = plan_defaults.requests_per_user_month, py::arg("tp") = plan_defaults.tp,
      py::arg("disaggregation") = plan_defaults.disaggregation, py::arg("max_replicas") = plan_defaults.max_replicas,
      SCHEDULER_ARGS, py::arg("grid") = plan_defaults.serve.grid_per_octave, py::arg("pricing") = "owned",
      "Capacity planning: for each system, every mapping (tp: chips a replica spans; default every divisor of its "
      "chips) and mode (co-located, and disaggregated prefill/decode pools unless disaggregation=False), the fewest "
      "replicas whose replay of the traffic meets the SLO for `attainment` of the requests, at each of `loads` "
      "(multiples of its rate); priced owned and cloud, with $ per user-month at requests_per_user_month. Returns a "
      "dict: 'rows' (tessera.to_dataframe makes a DataFrame of them) and 'cheapest' per load (a row index, by pricing)");
#undef SCHEDULER_ARGS

  m.def(
      "compare",
      [](const std::vector<PyArch>& systems, const std::string& model, const std::string& phase, int64_t batch,
         int64_t seq, int64_t context, const std::string& dtype, const std::string& kv_dtype, bool full,
         const std::string& pricing) {
        std::vector<arch::Arch> archs;
        for (const PyArch& a : systems) archs.push_back(a.arch);
        const std::vector<api::RunSpec> workloads =
            model.empty() ? api::default_workloads()
                          : std::vector<api::RunSpec>{run_spec(model, "", {}, phase, batch, seq, context, dtype, kv_dtype)};
        nlohmann::json j;
        {
          py::gil_scoped_release release;
          j = api::compare(archs, workloads, run_options(full, "", pricing)).to_json(false);
        }
        return json_to_python(j);
      },
      py::arg("systems"), py::arg("model") = "", py::arg("phase") = "decode", py::arg("batch") = 1, py::arg("seq") = 0,
      py::arg("context") = -1, py::arg("dtype") = "bf16", py::arg("kv_dtype") = "bf16", py::arg("full") = false,
      py::arg("pricing") = "owned",
      "Run one workload (or, with no model, the built-in Llama-3-8B decode and prefill) on several systems; per "
      "workload, each system's report with ratios to the first system's. A run that fails (the model does not fit "
      "a system, say) gives {system, workload, error} instead of raising; mistakes in the request still raise");

  py::class_<sim::Simulation>(m, "Simulation")
      .def(py::init([](const PyArch& a, bool functional) {
             return std::make_unique<sim::Simulation>(a.arch, functional ? sim::Mode::Functional : sim::Mode::Performance);
           }),
           py::arg("arch"), py::arg("functional") = false)
      .def(
          "write",
          [](sim::Simulation& s, uint64_t addr, py::array_t<float, py::array::c_style | py::array::forcecast> values,
             const std::string& dtype, int chip) {
            const isa::Dtype d = api::parse_dtype("dtype", dtype);
            std::vector<uint8_t> bytes(isa::dtype_bytes(d, size_t(values.size())));
            const float* x = values.data();
            for (py::ssize_t i = 0; i < values.size(); ++i) isa::store_element(d, bytes.data(), size_t(i), x[i]);
            s.memory(chip).hbm.write(addr, bytes);
          },
          py::arg("addr"), py::arg("values"), py::arg("dtype") = "bf16", py::arg("chip") = 0,
          "Write values into a chip's HBM (functional mode)")
      .def(
          "read",
          [](sim::Simulation& s, uint64_t addr, py::ssize_t count, const std::string& dtype, int chip) {
            const isa::Dtype d = api::parse_dtype("dtype", dtype);
            const std::vector<uint8_t> bytes = s.memory(chip).hbm.read(addr, isa::dtype_bytes(d, size_t(count)));
            py::array_t<float> out(count);
            float* y = out.mutable_data();
            for (py::ssize_t i = 0; i < count; ++i) y[i] = isa::load_element(d, bytes.data(), size_t(i));
            return out;
          },
          py::arg("addr"), py::arg("count"), py::arg("dtype") = "bf16", py::arg("chip") = 0,
          "Read values from a chip's HBM (functional mode)")
      .def(
          "run",
          [](sim::Simulation& s, const PyProgram& p) {
            sim::RunResult r;
            {
              py::gil_scoped_release release;
              r = s.run(p.result.program);
            }
            return run_result(r);
          },
          py::arg("program"));
}

// libsystemc refers to sc_main: the extension must export one (tessera_sim defines it).
