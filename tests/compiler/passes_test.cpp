// Golden-IR tests of the compiler's passes, MLIR-Toy style: a small graph (a tiny Llama, Qwen2 or
// GPT-2 with hidden 64, 4 heads of 16, 2 key/value heads, intermediate 128, vocabulary 256, or a
// hand-built graph) runs through the passes up to the one under test, and the text print()
// gives is matched against CHECK lines.
//
// The expectations are derived from what each pass is meant to do (compiler/passes.hpp and the
// planning rules of the kernels), with the arithmetic in comments, not copied from the output.
// The memory plan is not part of the printed text; its tests check the Lowering's addresses
// against the layout the pass documents.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <sstream>

#include "arch/loader.hpp"
#include "compiler/compile.hpp"
#include "compiler/error.hpp"
#include "compiler/hf_frontend.hpp"
#include "compiler/passes.hpp"

namespace tessera::compiler {
namespace {

// ---------------------------------------------------------------------------------------------
// A tiny FileCheck. `checks` holds one directive a line (blank lines and lines without a
// directive are ignored):
//   CHECK: text       the first line at or after the current position containing text; the
//                     position moves past it
//   CHECK-NEXT: text  the line right after the previous match contains text
//   CHECK-NOT: text   no line between the previous match and the next one (or the end, if no
//                     CHECK follows) contains text
// Returns an empty string when `text` passes, else what failed and where.

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string trim(const std::string& s) {
  const size_t a = s.find_first_not_of(" \t"), b = s.find_last_not_of(" \t");
  return a == std::string::npos ? "" : s.substr(a, b - a + 1);
}

std::string file_check(const std::string& text, const std::string& checks) {
  const std::vector<std::string> lines = lines_of(text);
  size_t pos = 0;  // next line a CHECK may match
  long last = -1;  // line of the previous match
  std::vector<std::string> nots;
  int directives = 0;
  // CHECK-NOT patterns pending must not occur in lines [from, to).
  auto check_nots = [&](size_t from, size_t to) -> std::string {
    for (const std::string& n : nots) {
      for (size_t i = from; i < to && i < lines.size(); ++i) {
        if (lines[i].find(n) != std::string::npos)
          return fmt::format("CHECK-NOT: '{}' found at line {}: {}", n, i + 1, lines[i]);
      }
    }
    nots.clear();
    return "";
  };
  for (const std::string& raw : lines_of(checks)) {
    const std::string d = trim(raw);
    auto directive = [&](const std::string& tag) {
      return d.rfind(tag, 0) == 0 ? trim(d.substr(tag.size())) : std::string("\x01");
    };
    if (std::string p = directive("CHECK-NOT:"); p != "\x01") {
      ++directives;
      nots.push_back(p);
    } else if (std::string q = directive("CHECK-NEXT:"); q != "\x01") {
      ++directives;
      const size_t at = size_t(last + 1);
      if (last < 0) return fmt::format("CHECK-NEXT: '{}' has no previous match", q);
      if (at >= lines.size() || lines[at].find(q) == std::string::npos) {
        return fmt::format("CHECK-NEXT: '{}' is not on line {} (after line {}: {}); line {} is: {}",
                           q, at + 1, at, lines[at - 1], at + 1,
                           at < lines.size() ? lines[at] : "<end of text>");
      }
      if (std::string e = check_nots(pos, at); !e.empty()) return e;
      last = long(at), pos = at + 1;
    } else if (std::string c = directive("CHECK:"); c != "\x01") {
      ++directives;
      size_t at = pos;
      while (at < lines.size() && lines[at].find(c) == std::string::npos) ++at;
      if (at == lines.size()) {
        return fmt::format("CHECK: '{}' not found after line {}{}", c, pos,
                           last >= 0 ? " (" + lines[size_t(last)] + ")" : std::string());
      }
      if (std::string e = check_nots(pos, at); !e.empty()) return e;
      last = long(at), pos = at + 1;
    }
  }
  if (directives == 0) return "no CHECK directives";
  return check_nots(pos, lines.size());
}

#define EXPECT_CHECKS(text, checks)                \
  do {                                             \
    const std::string t_ = (text);                 \
    const std::string r_ = file_check(t_, checks); \
    EXPECT_EQ(r_, "") << "--- text ---\n" << t_;   \
  } while (0)

TEST(FileCheck, MatchesInOrder) {
  const std::string text = "alpha 1\nbeta 2\ngamma 3\ndelta 4\n";
  EXPECT_EQ(file_check(text, "CHECK: alpha\nCHECK: gamma\nCHECK-NEXT: delta"), "");
  EXPECT_EQ(file_check(text, "  CHECK:   beta 2  \n\nsome comment\nCHECK-NEXT: gamma"), "");
  EXPECT_EQ(file_check(text, "CHECK: alpha\nCHECK-NOT: zeta\nCHECK: delta\nCHECK-NOT: epsilon"),
            "");
}

TEST(FileCheck, Fails) {
  const std::string text = "alpha 1\nbeta 2\ngamma 3\ndelta 4\n";
  // Missing text, and text that is there but before the current position.
  EXPECT_NE(file_check(text, "CHECK: epsilon"), "");
  EXPECT_NE(file_check(text, "CHECK: gamma\nCHECK: beta"), "");
  // A match on the same line twice is not two matches.
  EXPECT_NE(file_check(text, "CHECK: alpha\nCHECK: alpha"), "");
  // CHECK-NEXT must be the very next line.
  EXPECT_NE(file_check(text, "CHECK: alpha\nCHECK-NEXT: gamma"), "");
  EXPECT_NE(file_check(text, "CHECK-NEXT: alpha"), "");
  EXPECT_NE(file_check(text, "CHECK: delta\nCHECK-NEXT: anything"), "");
  // CHECK-NOT between two matches, and after the last one up to the end.
  EXPECT_NE(file_check(text, "CHECK: alpha\nCHECK-NOT: beta\nCHECK: gamma"), "");
  EXPECT_NE(file_check(text, "CHECK: beta\nCHECK-NOT: delta"), "");
  EXPECT_NE(file_check(text, "CHECK-NOT: alpha"), "");
  // ... but not outside its range.
  EXPECT_EQ(file_check(text, "CHECK: beta\nCHECK-NOT: alpha\nCHECK: delta"), "");
  // Checks without directives cannot pass vacuously.
  EXPECT_NE(file_check(text, ""), "");
  EXPECT_NE(file_check(text, "alpha"), "");
  // The message says what failed.
  EXPECT_NE(file_check(text, "CHECK: epsilon").find("'epsilon' not found"), std::string::npos);
  EXPECT_NE(file_check(text, "CHECK: alpha\nCHECK-NOT: beta\nCHECK: gamma").find("line 2"),
            std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// Graphs.

// Tiny decoders. Llama: hidden 64, 4 heads of 16, 2 KV heads (q 64 + k 32 + v 32 = 128
// columns), intermediate 128 (gate + up = 256), vocabulary 256.
std::string tiny_llama(int64_t layers = 2, int64_t positions = 512, bool tied = false,
                       const std::string& type = "llama") {
  return fmt::format(
      R"({{"model_type": "{}", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": {},
    "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "rms_norm_eps": 1e-5,
    "rope_theta": 10000.0, "max_position_embeddings": {}, "tie_word_embeddings": {}}})",
      type, layers, positions, tied ? "true" : "false");
}
const char* kTinyGpt2 =
    R"({"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 256,
    "n_positions": 64, "layer_norm_epsilon": 1e-5, "activation_function": "gelu"})";

ModelConfig config(const std::string& json, const std::string& name = "tiny") {
  return parse_model_config(json, name + ".json", name);
}

// A prompt; by default only each sequence's last token reaches the final norm and the LM head.
Workload prefill(int64_t batch, int64_t seq, bool all_logits = false) {
  Workload w;
  w.phase = Phase::Prefill, w.batch = batch, w.seq = seq, w.all_logits = all_logits;
  return w;
}
Workload decode(int64_t batch, int64_t context) {
  Workload w;
  w.phase = Phase::Decode, w.batch = batch, w.context = context;
  return w;
}

enum class Stage { Frontend, Shapes, Fused, Dtypes, Partitioned, Tiled, Placed, Memory, Scheduled };

// The passes in compile()'s order, up to and including `last`.
Lowering lower(Graph g, const arch::Arch& a, Stage last, const CompileOptions& o = {}) {
  if (last >= Stage::Shapes) infer_shapes(g);
  if (last >= Stage::Fused) fuse(g);
  if (last >= Stage::Dtypes) assign_dtypes(g, o);
  if (last < Stage::Partitioned) {
    Lowering l;
    l.graph = std::move(g);
    return l;
  }
  Lowering l = partition(std::move(g), a);
  if (last >= Stage::Tiled) tile(l, a);
  if (last >= Stage::Placed) place(l, a);
  if (last >= Stage::Memory) plan_memory(l, a, o);
  if (last >= Stage::Scheduled) schedule(l);
  return l;
}

const arch::Arch& maia() {
  static const arch::Arch a = arch::load_arch("maia100-class");
  return a;
}

std::string text_after(const ModelConfig& m, const Workload& w, Stage last,
                       const CompileOptions& o = {}, const arch::Arch& a = maia()) {
  return print(lower(build_graph(m, w), a, last, o).graph);
}

// ---------------------------------------------------------------------------------------------
// build_graph

// Llama 3.1's rope_scaling in miniature: original context 32, factor 8, low 1, high 4, so
// wavelengths above 32 are stretched 8x, those below 8 kept. head_dim 16, theta 10000: the
// inverse frequencies are 10000^(-i/8), wavelengths 2 pi 10000^(i/8) = 6.28, 19.87, 62.83, ...
TEST(BuildGraph, Llama3RopeScalingInTheRopeTables) {
  std::string json = tiny_llama();
  json.pop_back();  // its closing brace
  json += R"(, "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
    "high_freq_factor": 4.0, "original_max_position_embeddings": 32}})";
  const Graph g = build_graph(config(json), decode(1, 100));  // one step at position 100
  const std::vector<float>& cos = *g.v(g.find("rope.cos")).data;
  ASSERT_EQ(cos.size(), 8u);
  // i = 0: wavelength 6.28 < 32 / 4, kept: cos(100 x 1).
  EXPECT_NEAR(cos[0], 0.8623189, 1e-6);
  // i = 1: wavelength 19.87 between 8 and 32: smooth = (32 / 19.869 - 1) / (4 - 1) = 0.203512,
  // 0.316228 x ((1 - 0.203512) / 8 + 0.203512) = 0.0958400; cos(9.584) (unscaled: 0.979).
  EXPECT_NEAR(cos[1], -0.9873512, 1e-6);
  // i = 2: wavelength 62.83 > 32, 0.1 / 8: cos(1.25) (unscaled: cos(10) = -0.839).
  EXPECT_NEAR(cos[2], 0.3153224, 1e-6);
}

// ---------------------------------------------------------------------------------------------
// infer_shapes

// x [6, 32] -> Linear(w [48, 32], b [48]) -> RmsNorm -> Split [16, 32]; Linear(w2 [64, 48]) ->
// SwiGlu -> Reshape [3, 64]. Every activation is declared without a shape.
Graph hand_graph(int64_t w_in = 32) {
  Graph g;
  g.name = "hand";
  const int x = g.value("x", {6, 32}, isa::Dtype::Bf16, Role::Input);
  const int w = g.value("w", {48, w_in}, isa::Dtype::Bf16, Role::Weight);
  const int b = g.value("b", {48}, isa::Dtype::Bf16, Role::Weight);
  const int nw = g.value("nw", {48}, isa::Dtype::Bf16, Role::Weight);
  const int w2 = g.value("w2", {64, 48}, isa::Dtype::Bf16, Role::Weight);
  g.inputs = {x};
  const int h = g.op(OpKind::Linear, "h", {x, w, b}, "h", {});
  const int n = g.op(OpKind::RmsNorm, "n", {h, nw}, "n", {}, {{"eps", 1e-5}});
  Op split;
  split.kind = OpKind::Split, split.name = "parts", split.inputs = {n};
  split.outputs = {g.value("p0", {}, isa::Dtype::Bf16, Role::Activation),
                   g.value("p1", {}, isa::Dtype::Bf16, Role::Activation)};
  split.attrs = {{"axis", int64_t(1)}, {"sizes", std::vector<int64_t>{16, 32}}};
  g.add_op(split);
  const int gu = g.op(OpKind::Linear, "gu", {n, w2}, "gu", {});
  const int sg = g.op(OpKind::SwiGlu, "sg", {gu}, "sg", {});
  const int r = g.op(OpKind::Reshape, "r", {sg}, "r", {}, {{"shape", std::vector<int64_t>{3, 64}}});
  g.v(r).role = Role::Output;
  g.outputs = {r};
  return g;
}

// Tensor parallelism over 4 chips, chip 1's part: one of the 4 query heads (rows 16..32 of
// q_proj), the 2 key/value heads replicated (chip 1 shares head 0 with chip 0), a quarter of the
// MLP's features (rows of gate/up, columns of down), a quarter of the vocabulary, an all-reduce
// after o_proj and after down_proj.
TEST(BuildGraph, TensorParallelPartOfOneChip) {
  const std::string text = print(build_graph(config(tiny_llama()), decode(2, 16), {4, 1}));
  EXPECT_EQ(file_check(text, R"(CHECK: meta tensor_parallel = 1 of 4
CHECK: weight %model.embed_tokens.weight bf16 [256, 64]
CHECK-NEXT: weight %model.layers.0.input_layernorm.weight bf16 [64]
CHECK-NEXT: weight %model.layers.0.self_attn.q_proj.weight bf16 [16, 64] (shard of [64, 64]: axis 0 [16, 32))
CHECK-NEXT: weight %model.layers.0.self_attn.k_proj.weight bf16 [16, 64] (shard of [32, 64]: axis 0 [0, 16))
CHECK: weight %model.layers.0.self_attn.o_proj.weight bf16 [64, 16] (shard of [64, 64]: axis 1 [16, 32))
CHECK: weight %model.layers.0.mlp.gate_proj.weight bf16 [32, 64] (shard of [128, 64]: axis 0 [32, 64))
CHECK: weight %model.layers.0.mlp.down_proj.weight bf16 [64, 32] (shard of [64, 128]: axis 1 [32, 64))
CHECK: weight %lm_head.weight bf16 [64, 64] (shard of [256, 64]: axis 0 [64, 128))
CHECK: heads=1, kv_heads=1
CHECK: %l0.attn_all_reduce = all_reduce l0.attn_all_reduce(%l0.o_proj) : bf16 [2, 64] {group=[0, 1, 2, 3]
CHECK-NEXT: add l0.attn_residual(%embed_tokens, %l0.attn_all_reduce)
CHECK: %l0.mlp_all_reduce = all_reduce l0.mlp_all_reduce(%l0.down_proj)
CHECK: %logits = linear lm_head(%final_norm, %lm_head.weight) : bf16 [2, 64])"), "") << text;
  // An uneven vocabulary: the last chip's part is padded.
  std::string odd = tiny_llama();
  odd.replace(odd.find(R"("vocab_size": 256)"), 17, R"("vocab_size": 250)");
  const std::string last = print(build_graph(config(odd), decode(2, 16), {4, 3}));
  EXPECT_NE(last.find("weight %lm_head.weight bf16 [63, 64] (shard of [250, 64]: axis 0 [189, 250))"), std::string::npos)
      << last;
}

TEST(BuildGraph, TensorParallelNeedsAnEvenSplit) {
  auto error = [](const std::string& json, int64_t chips) {
    try {
      build_graph(config(json), decode(1, 8), {chips, 0});
    } catch (const CompileError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  auto with = [](std::string json, const std::string& from, const std::string& to) {
    return json.replace(json.find(from), from.size(), to);
  };
  EXPECT_EQ(error(tiny_llama(), 3),
            "tiny: 4 attention heads do not split evenly over 3 chips (tensor parallelism); it splits over 2 chips");
  const std::string kv3 = with(tiny_llama(), R"("num_attention_heads": 4, "num_key_value_heads": 2)",
                               R"("num_attention_heads": 6, "num_key_value_heads": 3)");
  EXPECT_EQ(error(kv3, 2),
            "tiny: 3 key/value heads do not split evenly over 2 chips (tensor parallelism); it runs on one chip only");
  const std::string kv4 = with(with(tiny_llama(), R"("num_attention_heads": 4, "num_key_value_heads": 2)",
                                    R"("num_attention_heads": 12, "num_key_value_heads": 4)"),
                               R"("hidden_size": 64, "intermediate_size": 128)",
                               R"("hidden_size": 96, "intermediate_size": 132)");
  EXPECT_EQ(error(kv4, 6),
            "tiny: 4 key/value heads can be neither split nor replicated evenly over 6 chips (tensor parallelism); it "
            "splits over 2, 4 chips");
  EXPECT_EQ(error(with(tiny_llama(), R"("intermediate_size": 128)", R"("intermediate_size": 130)"), 4),
            "tiny: 130 intermediate features do not split evenly over 4 chips (tensor parallelism); it splits over "
            "2 chips");
  EXPECT_EQ(error(tiny_llama(), 4), "no error");  // 2 key/value heads replicated over 4 chips
}

TEST(InferShapes, DerivesEveryOutput) {
  Graph g = hand_graph();
  EXPECT_THROW(check(g), CompileError) << "values without shapes must not pass check()";
  infer_shapes(g);
  EXPECT_CHECKS(print(g), R"(
    CHECK: graph hand
    CHECK: input %x bf16 [6, 32]
    CHECK: output %r bf16 [3, 64]
    CHECK: %h = linear h(%x, %w, %b) : bf16 [6, 48]
    CHECK-NEXT: %n = rms_norm n(%h, %nw) : bf16 [6, 48] {eps=1e-05}
    CHECK-NEXT: %p0, %p1 = split parts(%n) : bf16 [6, 16] {axis=1, sizes=[16, 32]}
    CHECK-NEXT: %gu = linear gu(%n, %w2) : bf16 [6, 64]
    CHECK-NEXT: %sg = swiglu sg(%gu) : bf16 [6, 32]
    CHECK-NEXT: %r = reshape r(%sg) : bf16 [3, 64] {shape=[3, 64]}
    CHECK-NEXT: return %r
  )");
  EXPECT_EQ(g.v(g.find("p1")).shape,
            (std::vector<int64_t>{6, 32}));  // print() shows the first output only
}

TEST(InferShapes, AcceptsTheFrontendsShapesUnchanged) {
  for (const std::string& json : {tiny_llama(), std::string(kTinyGpt2)}) {
    Graph g = build_graph(config(json), prefill(2, 8));
    const std::string before = print(g);
    infer_shapes(g);
    EXPECT_EQ(print(g), before);
  }
}

TEST(InferShapes, RejectsInconsistentShapesNamingTheOp) {
  Graph g = hand_graph(30);  // w is [48, 30] for a 32-feature input
  try {
    infer_shapes(g);
    FAIL() << "no error";
  } catch (const CompileError& e) {
    EXPECT_STREQ(e.what(),
                 "op h (linear): input has 32 features but the weight [48, 30] expects 30");
  }
  Graph given = hand_graph();
  given.v(given.find("h")).shape = {6, 47};
  EXPECT_THROW(
      {
        try {
          infer_shapes(given);
        } catch (const CompileError& e) {
          EXPECT_NE(std::string(e.what()).find("output %h is [6, 47] but its inputs give [6, 48]"),
                    std::string::npos)
              << e.what();
          throw;
        }
      },
      CompileError);
  Graph reshape = hand_graph();
  reshape.ops.back().attrs["shape"] = std::vector<int64_t>{5, 40};
  EXPECT_THROW(infer_shapes(reshape), CompileError);
}

// ---------------------------------------------------------------------------------------------
// fuse

TEST(Fuse, FrontendGraphHasSeparateProjections) {
  // The pattern fuse() works on: three Linear layers reading the attention norm, gate and up
  // reading the MLP norm, silu(gate) * up. 2 x 8 tokens.
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 8), Stage::Shapes), R"(
    CHECK: %l0.q_proj = linear l0.q_proj(%l0.attn_norm, %model.layers.0.self_attn.q_proj.weight) : bf16 [16, 64]
    CHECK-NEXT: %l0.k_proj = linear l0.k_proj(%l0.attn_norm, %model.layers.0.self_attn.k_proj.weight) : bf16 [16, 32]
    CHECK-NEXT: %l0.v_proj = linear l0.v_proj(%l0.attn_norm, %model.layers.0.self_attn.v_proj.weight) : bf16 [16, 32]
    CHECK: %l0.gate_proj = linear
    CHECK-NEXT: %l0.up_proj = linear
    CHECK-NEXT: %l0.gate_act = silu l0.gate_act(%l0.gate_proj)
    CHECK-NEXT: %l0.gate_mul = mul l0.gate_mul(%l0.gate_act, %l0.up_proj)
  )");
}

TEST(Fuse, LlamaQkvAndGateUpBecomeOneLinearEachAndSwiGluForms) {
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 8), Stage::Fused), R"(
    CHECK: weight %l0.q_proj+l0.k_proj+l0.v_proj.weight bf16 [128, 64]
    CHECK: weight %l0.gate_proj+l0.up_proj.weight bf16 [256, 64]
    CHECK: %l0.attn_norm = rms_norm l0.attn_norm(%embed_tokens, %model.layers.0.input_layernorm.weight) : bf16 [16, 64]
    CHECK-NEXT: %l0.q_proj+l0.k_proj+l0.v_proj.weight = concat l0.q_proj+l0.k_proj+l0.v_proj.stack(%model.layers.0.self_attn.q_proj.weight, %model.layers.0.self_attn.k_proj.weight, %model.layers.0.self_attn.v_proj.weight) : bf16 [128, 64] {axis=0, layer=0}
    CHECK-NEXT: %l0.q_proj+l0.k_proj+l0.v_proj = linear l0.q_proj+l0.k_proj+l0.v_proj(%l0.attn_norm, %l0.q_proj+l0.k_proj+l0.v_proj.weight) : bf16 [16, 128] {layer=0}
    CHECK-NEXT: fused: 3 Linear layers reading %l0.attn_norm
    CHECK-NEXT: %l0.q_proj, %l0.k_proj, %l0.v_proj = split l0.q_proj+l0.k_proj+l0.v_proj.split(%l0.q_proj+l0.k_proj+l0.v_proj) : bf16 [16, 64] {axis=1, layer=0, sizes=[64, 32, 32]}
    CHECK-NEXT: %l0.q_rope = rope l0.q_rope(%l0.q_proj, %rope.cos, %rope.sin) : bf16 [16, 64]
    CHECK-NEXT: %l0.k_rope = rope l0.k_rope(%l0.k_proj, %rope.cos, %rope.sin) : bf16 [16, 32]
    CHECK-NEXT: %l0.attention = attention l0.attention(%l0.q_rope, %l0.k_rope, %l0.v_proj, %kv_cache.0.k, %kv_cache.0.v) : bf16 [16, 64]
    CHECK-NEXT: %l0.o_proj = linear l0.o_proj(%l0.attention, %model.layers.0.self_attn.o_proj.weight) : bf16 [16, 64] {layer=0}
    CHECK-NEXT: %l0.attn_residual = add l0.attn_residual(%embed_tokens, %l0.o_proj) : bf16 [16, 64]
    CHECK-NEXT: %l0.mlp_norm = rms_norm
    CHECK-NEXT: %l0.gate_proj+l0.up_proj.weight = concat l0.gate_proj+l0.up_proj.stack(%model.layers.0.mlp.gate_proj.weight, %model.layers.0.mlp.up_proj.weight) : bf16 [256, 64] {axis=0, layer=0}
    CHECK-NEXT: %l0.gate_proj+l0.up_proj = linear l0.gate_proj+l0.up_proj(%l0.mlp_norm, %l0.gate_proj+l0.up_proj.weight) : bf16 [16, 256] {layer=0}
    CHECK-NEXT: fused: 2 Linear layers reading %l0.mlp_norm
    CHECK-NEXT: %l0.gate_mul = swiglu l0.gate_mul(%l0.gate_proj+l0.up_proj) : bf16 [16, 128] {layer=0}
    CHECK-NEXT: fused: silu(%l0.gate_proj) * %l0.up_proj
    CHECK-NEXT: %l0.down_proj = linear l0.down_proj(%l0.gate_mul, %model.layers.0.mlp.down_proj.weight) : bf16 [16, 64] {layer=0}
    CHECK-NEXT: %l0.mlp_residual = add l0.mlp_residual(%l0.attn_residual, %l0.down_proj) : bf16 [16, 64] {layer=0}
    CHECK-NEXT: %l1.attn_norm = rms_norm l1.attn_norm(%l0.mlp_residual
    CHECK-NEXT: concat l1.q_proj+l1.k_proj+l1.v_proj.stack(
    CHECK-NEXT: %l1.q_proj+l1.k_proj+l1.v_proj = linear
    CHECK: %l1.gate_mul = swiglu
    CHECK: %l1.mlp_residual = add
    CHECK-NEXT: %last_tokens = embedding last_tokens(%l1.mlp_residual) : bf16 [2, 64] {rows=[7, 15]}
    CHECK-NEXT: %final_norm = rms_norm final_norm(%last_tokens, %model.norm.weight) : bf16 [2, 64]
    CHECK-NEXT: %logits = linear lm_head(%final_norm, %lm_head.weight) : bf16 [2, 256]
    CHECK-NEXT: return %logits
  )");
  // With every prompt token's logits, all 16 rows go through the head.
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 8, true), Stage::Fused), R"(
    CHECK: %l1.mlp_residual = add
    CHECK-NEXT: %final_norm = rms_norm final_norm(%l1.mlp_residual, %model.norm.weight) : bf16 [16, 64]
    CHECK-NEXT: %logits = linear lm_head(%final_norm, %lm_head.weight) : bf16 [16, 256]
  )");
  // Nothing of the unfused pattern is left.
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 8), Stage::Fused), R"(
    CHECK: graph tiny
    CHECK-NOT: = silu
    CHECK-NOT: = mul
    CHECK-NOT: %l0.q_proj = linear
    CHECK-NOT: l0.q_proj+l1
    CHECK: return %logits
  )");
}

TEST(Fuse, Qwen2StacksTheBiasesToo) {
  EXPECT_CHECKS(text_after(config(tiny_llama(1, 512, false, "qwen2")), prefill(1, 4), Stage::Fused),
                R"(
    CHECK: %l0.q_proj+l0.k_proj+l0.v_proj.weight = concat
    CHECK-NEXT: %l0.q_proj+l0.k_proj+l0.v_proj.bias = concat l0.q_proj+l0.k_proj+l0.v_proj.stack_bias(%model.layers.0.self_attn.q_proj.bias, %model.layers.0.self_attn.k_proj.bias, %model.layers.0.self_attn.v_proj.bias) : bf16 [128] {axis=0, layer=0}
    CHECK-NEXT: = linear l0.q_proj+l0.k_proj+l0.v_proj(%l0.attn_norm, %l0.q_proj+l0.k_proj+l0.v_proj.weight, %l0.q_proj+l0.k_proj+l0.v_proj.bias) : bf16 [4, 128]
  )");
}

TEST(Fuse, Gpt2ActivationMovesIntoTheLinear) {
  // GPT-2: fc -> gelu -> proj; the gelu becomes the fc Linear's epilogue and the Linear takes
  // over the gelu's output. n_inner defaults to 4 x 64 = 256.
  const std::string text = text_after(config(kTinyGpt2), prefill(1, 8), Stage::Fused);
  EXPECT_CHECKS(text, R"(
    CHECK: %l0.fc_act = linear l0.fc(%l0.mlp_norm, %transformer.h.0.mlp.c_fc.weight, %transformer.h.0.mlp.c_fc.bias) : bf16 [8, 256] {act="gelu", layer=0}
    CHECK-NEXT: fused: then gelu
    CHECK-NEXT: %l0.fc_out = linear l0.fc_out(%l0.fc_act, %transformer.h.0.mlp.c_proj.weight, %transformer.h.0.mlp.c_proj.bias) : bf16 [8, 64]
    CHECK: %l1.fc_act = linear l1.fc(
  )");
  EXPECT_CHECKS(text, "CHECK: graph\nCHECK-NOT: = gelu\nCHECK-NOT: %l0.fc = ");
}

// silu(gate) * up where the silu's output is also read elsewhere: SwiGlu would lose it, so the
// Mul stays; the sibling Linears still fuse. A Linear whose output two ops read keeps its
// activation separate.
TEST(Fuse, LeavesPatternsWhoseIntermediatesAreNeeded) {
  Graph g;
  g.name = "shared";
  const int x = g.value("x", {4, 8}, isa::Dtype::Bf16, Role::Input);
  const int wg = g.value("wg", {6, 8}, isa::Dtype::Bf16, Role::Weight);
  const int wu = g.value("wu", {6, 8}, isa::Dtype::Bf16, Role::Weight);
  const int wh = g.value("wh", {6, 6}, isa::Dtype::Bf16, Role::Weight);
  g.inputs = {x};
  const int gate = g.op(OpKind::Linear, "gate", {x, wg}, "gate", {4, 6});
  const int up = g.op(OpKind::Linear, "up", {x, wu}, "up", {4, 6});
  const int s = g.op(OpKind::Silu, "act", {gate}, "act", {4, 6});
  const int m = g.op(OpKind::Mul, "prod", {s, up}, "prod", {4, 6});
  const int y = g.op(OpKind::Add, "sum", {m, s}, "sum", {4, 6});
  const int h = g.op(OpKind::Linear, "h", {y, wh}, "h", {4, 6});
  const int a = g.op(OpKind::Gelu, "h_act", {h}, "h_act", {4, 6});
  const int out = g.op(OpKind::Add, "out", {a, h}, "out", {4, 6});
  g.outputs = {out};
  infer_shapes(g);
  fuse(g);
  EXPECT_CHECKS(print(g), R"(
    CHECK: %gate+up.weight = concat gate+up.stack(%wg, %wu) : bf16 [12, 8]
    CHECK-NEXT: %gate+up = linear gate+up(%x, %gate+up.weight) : bf16 [4, 12]
    CHECK-NEXT: fused: 2 Linear layers reading %x
    CHECK-NEXT: %gate, %up = split gate+up.split(%gate+up) : bf16 [4, 6] {axis=1, sizes=[6, 6]}
    CHECK-NEXT: %act = silu act(%gate)
    CHECK-NEXT: %prod = mul prod(%act, %up)
    CHECK-NEXT: %sum = add sum(%prod, %act)
    CHECK-NEXT: %h = linear h(%sum, %wh) : bf16 [4, 6]
    CHECK-NEXT: %h_act = gelu h_act(%h)
    CHECK-NEXT: %out = add out(%h_act, %h)
    CHECK-NOT: swiglu
  )");
}

// ---------------------------------------------------------------------------------------------
// assign_dtypes

TEST(AssignDtypes, Fp8WeightsForMatricesOnly) {
  CompileOptions o;
  o.weight_dtype = isa::Dtype::Fp8E4M3;
  o.kv_dtype = isa::Dtype::Fp8E5M2;
  // Matrices (Linear weights, and the parts of stacked ones) take fp8e4m3; the embedding table
  // (gathered, not multiplied), norm weights and the RoPE tables keep their dtypes; KV caches
  // take the KV dtype, logits fp32, activations bf16.
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 8), Stage::Dtypes, o), R"(
    CHECK: weight %model.embed_tokens.weight bf16 [256, 64]
    CHECK-NEXT: weight %model.layers.0.input_layernorm.weight bf16 [64]
    CHECK-NEXT: weight %model.layers.0.self_attn.q_proj.weight fp8e4m3 [64, 64]
    CHECK-NEXT: weight %model.layers.0.self_attn.k_proj.weight fp8e4m3 [32, 64]
    CHECK-NEXT: weight %model.layers.0.self_attn.v_proj.weight fp8e4m3 [32, 64]
    CHECK-NEXT: weight %rope.cos fp32 [8, 8]
    CHECK-NEXT: weight %rope.sin fp32 [8, 8]
    CHECK-NEXT: kv_cache %kv_cache.0.k fp8e5m2 [2, 2, 8, 16]
    CHECK-NEXT: kv_cache %kv_cache.0.v fp8e5m2 [2, 2, 8, 16]
    CHECK-NEXT: weight %model.layers.0.self_attn.o_proj.weight fp8e4m3 [64, 64]
    CHECK-NEXT: weight %model.layers.0.post_attention_layernorm.weight bf16 [64]
    CHECK-NEXT: weight %model.layers.0.mlp.gate_proj.weight fp8e4m3 [128, 64]
    CHECK-NEXT: weight %model.layers.0.mlp.up_proj.weight fp8e4m3 [128, 64]
    CHECK-NEXT: weight %model.layers.0.mlp.down_proj.weight fp8e4m3 [64, 128]
    CHECK: weight %model.norm.weight bf16 [64]
    CHECK-NEXT: weight %lm_head.weight fp8e4m3 [256, 64]
    CHECK-NEXT: output %logits fp32 [2, 256]
    CHECK-NEXT: weight %l0.q_proj+l0.k_proj+l0.v_proj.weight fp8e4m3 [128, 64]
    CHECK-NEXT: weight %l0.gate_proj+l0.up_proj.weight fp8e4m3 [256, 64]
    CHECK: %embed_tokens = embedding embed_tokens(%model.embed_tokens.weight) : bf16 [16, 64]
    CHECK: %l0.gate_mul = swiglu l0.gate_mul(%l0.gate_proj+l0.up_proj) : bf16 [16, 128]
    CHECK: %logits = linear lm_head(%final_norm, %lm_head.weight) : fp32 [2, 256]
  )");
}

TEST(AssignDtypes, TiedEmbeddingIsAMatrixAndBiasesStay) {
  CompileOptions o;
  o.weight_dtype = isa::Dtype::Fp8E5M2;
  // The lm_head multiplies by the (tied) embedding table, so it takes the weight dtype.
  EXPECT_CHECKS(
      text_after(config(tiny_llama(1, 512, true, "qwen2")), prefill(1, 4), Stage::Dtypes, o), R"(
    CHECK: weight %model.embed_tokens.weight fp8e5m2 [256, 64]
    CHECK: weight %model.layers.0.self_attn.q_proj.bias bf16 [64]
    CHECK: kv_cache %kv_cache.0.k bf16
    CHECK-NOT: lm_head.weight
    CHECK: %logits = linear lm_head(%final_norm, %model.embed_tokens.weight) : fp32 [1, 256]
  )");
  // GPT-2: c_attn, c_proj, c_fc are matrices; the position table and biases are not.
  EXPECT_CHECKS(text_after(config(kTinyGpt2), prefill(1, 8), Stage::Dtypes, o), R"(
    CHECK: weight %transformer.wte.weight fp8e5m2 [256, 64]
    CHECK-NEXT: weight %transformer.wpe.weight bf16 [64, 64]
    CHECK: weight %transformer.h.0.attn.c_attn.weight fp8e5m2 [192, 64]
    CHECK-NEXT: weight %transformer.h.0.attn.c_attn.bias bf16 [192]
  )");
}

TEST(AssignDtypes, RejectsWeightDtypesCodegenCannotFeed) {
  CompileOptions o;
  o.weight_dtype = isa::Dtype::Int8;
  Graph g = build_graph(config(tiny_llama()), prefill(1, 4));
  infer_shapes(g);
  fuse(g);
  try {
    assign_dtypes(g, o);
    FAIL() << "no error";
  } catch (const CompileError& e) {
    EXPECT_NE(std::string(e.what()).find("weights in int8"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("use bf16, fp8e4m3 or fp8e5m2"), std::string::npos)
        << e.what();
  }
}

// ---------------------------------------------------------------------------------------------
// partition

TEST(Partition, GemmForManyTokensStreamForFew) {
  // 2 x 128 = 256 tokens: the multicast GEMM (from 256 token rows on a multi-tile chip).
  const std::string many = text_after(config(tiny_llama()), prefill(2, 128), Stage::Partitioned);
  EXPECT_CHECKS(many, R"(
    CHECK: %embed_tokens = embedding
    CHECK-NEXT: strategy: gather
    CHECK-NEXT: %l0.attn_norm = rms_norm
    CHECK-NEXT: strategy: rows
    CHECK-NEXT: = concat l0.q_proj+l0.k_proj+l0.v_proj.stack(
    CHECK-NEXT: = linear l0.q_proj+l0.k_proj+l0.v_proj(
    CHECK-NEXT: fused: 3 Linear layers
    CHECK-NEXT: strategy: gemm
    CHECK-NEXT: = split l0.q_proj+l0.k_proj+l0.v_proj.split(
    CHECK-NEXT: %l0.q_rope = rope
    CHECK-NEXT: strategy: rows
    CHECK-NEXT: %l0.k_rope = rope
    CHECK-NEXT: strategy: rows
    CHECK-NEXT: %l0.attention = attention
    CHECK-NEXT: strategy: heads
    CHECK-NEXT: %l0.o_proj = linear
    CHECK-NEXT: strategy: gemm
    CHECK-NEXT: %l0.attn_residual = add
    CHECK-NEXT: strategy: rows
    CHECK: %l0.gate_mul = swiglu
    CHECK-NEXT: fused:
    CHECK-NEXT: strategy: rows
    CHECK-NEXT: %l0.down_proj = linear
    CHECK-NEXT: strategy: gemm
    CHECK: %last_tokens = embedding
    CHECK-NEXT: strategy: gather
    CHECK-NEXT: %final_norm = rms_norm
    CHECK-NEXT: strategy: rows
    CHECK-NEXT: %logits = linear lm_head
    CHECK-NEXT: strategy: stream, prefetching
  )");
  // Inside the layers, nothing streams (the LM head sees only the 2 last tokens).
  EXPECT_CHECKS(many, "CHECK: graph\nCHECK-NOT: stream\nCHECK: %last_tokens = embedding");
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 128, true), Stage::Partitioned),
                "CHECK: %logits = linear lm_head\nCHECK-NEXT: strategy: gemm");

  // Below 64 tokens every Linear streams its weights, and starts loading them while the op
  // before it (of the same layer, or both outside the layers) finishes.
  const std::string few = text_after(config(tiny_llama()), prefill(1, 63), Stage::Partitioned);
  EXPECT_CHECKS(few, R"(
    CHECK: = linear l0.q_proj+l0.k_proj+l0.v_proj(
    CHECK-NEXT: fused: 3 Linear layers
    CHECK-NEXT: strategy: stream, prefetching
    CHECK: %l0.o_proj = linear
    CHECK-NEXT: strategy: stream, prefetching
    CHECK: %logits = linear lm_head
    CHECK-NEXT: strategy: stream, prefetching
  )");
  EXPECT_CHECKS(few, "CHECK: graph\nCHECK-NOT: gemm");

  // From 64 to 255 tokens a Linear streams only while its input costs less than its weights:
  // Llama-3-8B decoding 128 sequences on maia100-class (64 tiles, 16 cluster L2s). Per row of
  // K, x is 128 x 2 = 256 bytes: 256 x 64 = 16384 to the tiles, 256 x 16 x 4 = 16384 from HBM
  // (weighted), against n x 2 bytes of weights (twice them, and them):
  //   q/k/v  n = 6144:   16384 > 12288          -> gemm
  //   o_proj n = 4096:   16384 > 8192           -> gemm
  //   gate/up n = 28672: 16384 <= 57344         -> stream
  //   down   n = 4096:                          -> gemm
  //   lm_head n = 128256                        -> stream
  EXPECT_CHECKS(text_after(load_model_config("llama-3-8b"), decode(128, 8), Stage::Partitioned), R"(
    CHECK: = linear l0.q_proj+l0.k_proj+l0.v_proj(
    CHECK-NEXT: fused: 3 Linear layers
    CHECK-NEXT: strategy: gemm
    CHECK: %l0.o_proj = linear
    CHECK-NEXT: strategy: gemm
    CHECK: = linear l0.gate_proj+l0.up_proj(
    CHECK-NEXT: fused:
    CHECK-NEXT: strategy: stream
    CHECK: %l0.down_proj = linear
    CHECK-NEXT: strategy: gemm
    CHECK: %logits = linear lm_head
    CHECK-NEXT: strategy: stream
  )");

  // Through a chip-wide L2 (h100-sxm, 132 SMs) the estimates decide. 128 sequences: every Linear
  // streams its weights; gate/up (n = 28672 x 2, 218 columns a SM, whose accumulators fit in one
  // block) reads its 235 MB once from HBM, 70 us at 3.35 TB/s, while x costs each SM 1 MB (24 us
  // with its weights at 64 B a cycle): K is not split, since partial sums could not beat HBM.
  // o_proj (n = 4096, 31 columns a SM) reads 1 MB of x for 0.25 MB of weights, so K is split
  // in two (its partials in L2).
  const arch::Arch h100 = arch::load_arch("h100-sxm");
  const std::string gpu = text_after(load_model_config("llama-3-8b"), decode(128, 8), Stage::Tiled, {}, h100);
  EXPECT_CHECKS(gpu, "CHECK: graph\nCHECK-NOT: gemm\nCHECK: %logits = linear lm_head");
  EXPECT_CHECKS(gpu, R"(
    CHECK: %l0.o_proj = linear
    CHECK-NEXT: strategy: stream
    CHECK-NEXT: K split over 2 tiles
    CHECK: = linear l0.gate_proj+l0.up_proj(
    CHECK-NEXT: fused:
    CHECK-NEXT: strategy: stream
    CHECK-NEXT: tiles: 218 columns a tile, weight chunks of 128 x 128, 3 buffers, x in slices
  )");
  EXPECT_EQ(gpu.find("218 columns a tile, weight chunks of 128 x 128, 3 buffers, x in slices, K split"),
            std::string::npos);

  // A decode step: 2 tokens.
  EXPECT_CHECKS(text_after(config(tiny_llama()), decode(2, 8), Stage::Partitioned), R"(
    CHECK: %l0.o_proj = linear
    CHECK-NEXT: strategy: stream, prefetching
    CHECK-NOT: gemm
    CHECK: %l0.down_proj = linear
    CHECK-NEXT: strategy: stream, prefetching
  )");

  // One tile: nothing to multicast over, so even 256 tokens stream.
  const arch::Arch one = arch::load_arch(
      "maia100-class", {"chip.mesh.cols=1", "chip.mesh.rows=1", "chip.cluster_size=1"});
  ASSERT_EQ(one.tiles(), 1);
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 128), Stage::Partitioned, {}, one),
                "CHECK: %l0.o_proj = linear\nCHECK-NEXT: strategy: stream\nCHECK-NOT: gemm");
}

TEST(Partition, PrefetchingStreamAndItsPredecessorTakeOppositeHalves) {
  Lowering l = lower(build_graph(config(tiny_llama()), decode(2, 8)), maia(), Stage::Partitioned);
  int checked = 0;
  for (size_t i = 0; i < l.graph.ops.size(); ++i) {
    if (!l.plans[i].prefetch) continue;
    EXPECT_EQ(l.plans[i].strategy, Strategy::Stream);
    // The previous op with work.
    size_t j = i;
    while (j-- > 0 && l.plans[j].strategy == Strategy::None) {
    }
    ASSERT_LT(j, i) << l.graph.ops[i].name;
    EXPECT_EQ(l.graph.ops[j].i("layer", -1), l.graph.ops[i].i("layer", -1)) << l.graph.ops[i].name;
    EXPECT_GE(l.plans[j].half, 0) << l.graph.ops[j].name;
    EXPECT_EQ(l.plans[i].half, 1 - l.plans[j].half) << l.graph.ops[i].name;
    ++checked;
  }
  EXPECT_EQ(checked, 2 * 4 + 1);  // qkv, o_proj, gate_up, down in each of 2 layers, and lm_head
}

// ---------------------------------------------------------------------------------------------
// tile and place

TEST(Tile, GemmBlocksAndRowChunks) {
  // maia100-class: 64 tiles, 64x64 weight-stationary arrays (K quantum 64), 5 MB SRAM.
  // 256 tokens. The grid is the factorisation of 64 whose blocks are most square; K is cut in
  // chunks of at most 256 (whole quanta).
  //  qkv:    256 x 128, K 64: 8x8 (32/16 = 2 ties 16x4's 16/32, first wins) -> 32x16, K 64
  //  o_proj: 256 x 64,  K 64: 16x4 (16/16)                                 -> 16x16, K 64
  //  gate_up 256 x 256, K 64: 8x8                                          -> 32x32, K 64
  //  down:   256 x 64,  K 128: 16x4                                         -> 16x16, K 128
  //  lm_head 256 x 256, K 64: 8x8                                          -> 32x32, K 64
  // Rows: 256 rows over 64 tiles = 4 a tile, in one chunk. Attention: 2 query heads per KV head,
  // query blocks of 512 / 2 = 256 tokens, capped at the sequence's 128, all 128 keys in one
  // block: 2 sequences x 2 KV heads = 4 units.
  EXPECT_CHECKS(text_after(config(tiny_llama()), prefill(2, 128, true), Stage::Placed), R"(
    CHECK: %l0.attn_norm = rms_norm
    CHECK: tiles: 4 rows a tile in chunks of 4
    CHECK: = linear l0.q_proj+l0.k_proj+l0.v_proj(
    CHECK-NEXT: fused:
    CHECK-NEXT: place: grid 8x8: block (i, j) on tile i*8 + j (grid rows are mesh rows)
    CHECK-NEXT: strategy: gemm
    CHECK-NEXT: tiles: blocks 32x16, k chunks of 64, 1x1 passes
    CHECK: %l0.attention = attention
    CHECK-NEXT: place: units (causal query blocks paired early with late) round-robin on tiles 0..3
    CHECK-NEXT: strategy: heads
    CHECK-NEXT: tiles: query blocks of 128 tokens, keys in blocks of 128, 4 units
    CHECK-NEXT: %l0.o_proj = linear
    CHECK-NEXT: place: grid 16x4: block (i, j) on tile i*4 + j
    CHECK-NEXT: strategy: gemm
    CHECK-NEXT: tiles: blocks 16x16, k chunks of 64, 1x1 passes
    CHECK: = linear l0.gate_proj+l0.up_proj(
    CHECK: tiles: blocks 32x32, k chunks of 64, 1x1 passes
    CHECK: %l0.down_proj = linear
    CHECK: tiles: blocks 16x16, k chunks of 128, 1x1 passes
    CHECK: %logits = linear lm_head
    CHECK-NEXT: place: grid 8x8
    CHECK-NEXT: strategy: gemm
    CHECK-NEXT: tiles: blocks 32x32, k chunks of 64, 1x1 passes
  )");
}

TEST(Tile, StreamChunksAndDecodeAttention) {
  // Decode, 2 sequences: columns are dealt to the 64 tiles (qkv 128 -> 2 a tile, o_proj 64 ->
  // 1, lm_head 256 -> 4); a chunk holds them all with the whole K (far under 512 KiB). Rows: 2
  // rows, one a tile on tiles 0..1. Attention: one query token, 2 x 2 (sequence, KV head) units
  // over all 9 keys (too few to split them).
  // The embedding's 2 rows go to 2 tiles.
  EXPECT_CHECKS(text_after(config(tiny_llama()), decode(2, 8), Stage::Placed), R"(
    CHECK: %embed_tokens = embedding
    CHECK-NEXT: place: rows dealt to 2 tiles
    CHECK-NEXT: strategy: gather
    CHECK-NEXT: %l0.attn_norm = rms_norm
    CHECK-NEXT: place: tiles 0..1
    CHECK-NEXT: strategy: rows
    CHECK-NEXT: tiles: 1 rows a tile in chunks of 1
    CHECK: = linear l0.q_proj+l0.k_proj+l0.v_proj(
    CHECK-NEXT: fused:
    CHECK-NEXT: place: tiles 0..63
    CHECK-NEXT: strategy: stream, prefetching
    CHECK-NEXT: tiles: 2 columns a tile, weight chunks of 2 x 64, 3 buffers
    CHECK: %l0.attention = attention
    CHECK-NEXT: place: units (causal query blocks paired early with late) round-robin on tiles 0..3
    CHECK-NEXT: strategy: heads
    CHECK-NEXT: tiles: query blocks of 1 tokens, keys in blocks of 9, 4 units
    CHECK-NEXT: %l0.o_proj = linear
    CHECK-NEXT: place: tiles 0..63
    CHECK-NEXT: strategy: stream, prefetching
    CHECK-NEXT: tiles: 1 columns a tile, weight chunks of 1 x 64, 3 buffers
    CHECK: %l0.down_proj = linear
    CHECK: tiles: 1 columns a tile, weight chunks of 1 x 128, 3 buffers
    CHECK: %logits = linear lm_head
    CHECK: tiles: 4 columns a tile, weight chunks of 4 x 64, 3 buffers
  )");
}

TEST(Tile, LargeStreamCutsKInItsHalfOfTheSram) {
  // Llama-3-8B decode, down_proj: K 14336, N 4096 -> 64 columns a tile. It prefetches, so it
  // plans in half the SRAM: 5 MB / 2 x 15/16 = 2,343,750 bytes. Full-K chunks of 64 rows are
  // 1.8 MB (over the 1 MiB target): K halves to 7168 (3 buffers: 2.75 MB, too much), then to
  // 3584 (3 x 64 x 3584 x 2 = 1.38 MB, fits). 128256 vocabulary / 64 = 2004 columns a tile
  // for lm_head, in row blocks of 64 (512 KiB / 8 KiB a row), K whole (3 x 512 KiB fits).
  const ModelConfig m = load_model_config("llama-3-8b");
  EXPECT_CHECKS(text_after(m, decode(1, 100), Stage::Tiled), R"(
    CHECK: %l0.down_proj = linear
    CHECK: strategy: stream, prefetching
    CHECK-NEXT: tiles: 64 columns a tile, weight chunks of 64 x 3584, 3 buffers
    CHECK: %logits = linear lm_head
    CHECK: tiles: 2004 columns a tile, weight chunks of 64 x 4096, 3 buffers
  )");
}

TEST(Tile, LongContextAttentionWalksKeysInBlocks) {
  // Llama-3-8B decode at 4000 tokens of context on h100-sxm. A GPU runs one kernel at a time
  // (o_proj after it does not prefetch), so the attention plans in all of the 512 KiB:
  // 524,288 x 15/16 = 491,520 bytes. One query token a unit, 8 KV heads: 8 units on 132 SMs,
  // so each splits its 4001 keys in min(132 / 8, 4001 / 512) = 7 ranges of 572. With 4 query
  // rows (4 query heads a KV head), a block of kb keys takes 4 x 2 x kb x 128 x 2 (four K/V
  // sets) + 2 x 4 x 128 x 2 (Q) + 2 x 4 x kb x 6 (S, P) + 4 x 128 x 6 (O) + 4 x 20 + 4096 =
  // 2096 kb + 9296 bytes: 572 are too many, 256 too (545,872), 128 fit (277,584). 56 units.
  const ModelConfig m = load_model_config("llama-3-8b");
  EXPECT_CHECKS(text_after(m, decode(1, 4000), Stage::Placed, {}, arch::load_arch("h100-sxm")), R"(
    CHECK: %l0.attention = attention
    CHECK-NEXT: place: units (causal query blocks paired early with late) round-robin on tiles 0..55
    CHECK-NEXT: strategy: heads
    CHECK-NEXT: tiles: query blocks of 1 tokens, keys in blocks of 128, 56 units (keys split in 7 ranges, combined after a barrier)
    CHECK-NEXT: %l0.o_proj = linear
    CHECK-NEXT: place:
    CHECK-NEXT: strategy: stream
    CHECK-NEXT: tiles:
  )");
  // Short contexts take all keys in one block, unsplit (101 < 512).
  EXPECT_CHECKS(text_after(m, decode(1, 100), Stage::Tiled, {}, arch::load_arch("h100-sxm")),
                "CHECK: %l0.attention = attention\nCHECK-NEXT: strategy: heads\nCHECK-NEXT: tiles: "
                "query blocks of 1 tokens, keys in blocks of 101, 8 units\n");
}

// ---------------------------------------------------------------------------------------------
// Framework::PyTorch: the kernels plain PyTorch launches

// Barriers that end a kernel in tile 0's stream (the layer loop's body once).
int64_t kernels(const CompileResult& r) {
  int64_t n = 0;
  for (const isa::Instr& in : r.program.find_stream(0, 0)->code)
    n += in.op == isa::Opcode::Barrier && in[isa::field_index(isa::Opcode::Barrier, "kernel")] != 0;
  return n;
}

TEST(Framework, PyTorchLaunchesEveryTorchOpOfTheReferenceCode) {
  const arch::Arch a = arch::load_arch("h100-sxm");
  const ModelConfig m = load_model_config("llama-3-8b");
  CompileOptions o;
  o.verify = true;
  // Fused, per layer: norm, qkv, two ropes, attention, o_proj, add, norm, gate_up, swiglu,
  // down, add = 12; outside: embedding, final norm, lm_head.
  EXPECT_EQ(kernels(compile_model(m, decode(1, 1024), a, o)), 12 + 3);
  // PyTorch, per layer: each norm 1 + 7 (to fp32, pow, mean, + eps, rsqrt, * rsqrt, to bf16);
  // q, k, v, o, gate, up and down on their own (7); q rope 1 + 6 (tables) + 4, k rope 1 + 4;
  // attention 1 + 3 (two cache copies, the output's transpose); two residual adds; silu and the
  // product (2): 16 + 7 + 16 + 4 + 2 + 2 = 47. Outside: embedding 1, final norm 8, lm_head 1 +
  // the logits' to(float32) 1.
  o.framework = Framework::PyTorch;
  const CompileResult eager = compile_model(m, decode(1, 1024), a, o);
  EXPECT_EQ(kernels(eager), 47 + 11);
  EXPECT_NE(eager.tiled_text.find("pytorch: 7 kernels before the op's own"), std::string::npos);
  // The norm's kernels move 18 and 14 bytes an element (read, written) besides its own.
  Graph g;
  const int x = g.value("x", {8, 4096}, Dtype::Bf16, Role::Input);
  const int w = g.value("w", {4096}, Dtype::Bf16, Role::Weight);
  g.op(OpKind::RmsNorm, "norm", {x, w}, "y", {8, 4096});
  uint64_t read = 0, written = 0;
  for (const Traffic& t : pytorch_kernels(g, g.ops[0], false)) read += t.read, written += t.write;
  EXPECT_EQ(read, 18u * 8 * 4096);
  EXPECT_EQ(written, 14u * 8 * 4096);
}

// ---------------------------------------------------------------------------------------------
// plan_memory

uint64_t align4k(uint64_t v) {
  return (v + 4095) / 4096 * 4096;
}

TEST(PlanMemory, LayerLoopLayout) {
  // 2 x 128 tokens, 2 layers. Per layer (each tensor 4 KiB aligned): input norm [64] bf16 4096,
  // q/k/v stack [128, 64] 16384, o_proj [64, 64] 8192, post-attention norm 4096, gate/up
  // stack [256, 64] 32768, down [64, 128] 16384: a stride of 81920 bytes. KV: each cache
  // [2, 2, 128, 16] bf16 = 16384, K and V: a stride of 32768.
  const Lowering l =
      lower(build_graph(config(tiny_llama()), prefill(2, 128)), maia(), Stage::Memory);
  const Graph& g = l.graph;
  auto at = [&](const std::string& name) -> const Placement& {
    const int v = g.find(name);
    EXPECT_GE(v, 0) << name;
    return l.places.at(size_t(v));
  };
  EXPECT_EQ(l.layers, 2);
  EXPECT_EQ(l.weight_stride, 81920u);
  EXPECT_EQ(l.kv_stride, 32768u);
  // Layer-free weights (embedding 32768, final norm 4096, lm_head 32768) then two layer blocks.
  EXPECT_EQ(l.region_bytes.at("weights"), 32768u + 4096 + 32768 + 2 * 81920);
  EXPECT_EQ(l.region_bytes.at("kv_cache"), 2 * 32768u);
  EXPECT_EQ(l.region_bytes.at("constants"), 2 * align4k(128 * 8 * 4));  // RoPE cos, sin fp32
  for (const char* w :
       {"self_attn.q_proj.weight", "mlp.down_proj.weight", "input_layernorm.weight"}) {
    const Placement& p0 = at(fmt::format("model.layers.0.{}", w));
    const Placement& p1 = at(fmt::format("model.layers.1.{}", w));
    EXPECT_EQ(p0.layer, 0) << w;
    EXPECT_EQ(p1.layer, 1) << w;
    EXPECT_EQ(p1.addr, p0.addr + l.weight_stride) << w;
    EXPECT_FALSE(p0.kv) << w;
  }
  EXPECT_EQ(at("kv_cache.1.v").addr, at("kv_cache.0.v").addr + l.kv_stride);
  EXPECT_TRUE(at("kv_cache.0.k").kv);
  EXPECT_EQ(at("lm_head.weight").layer, -1);
  // The parts of a stacked weight are its row ranges: q [64, 64], then k [32, 64], then v.
  const uint64_t qkv = at("l0.q_proj+l0.k_proj+l0.v_proj.weight").addr;
  EXPECT_EQ(at("model.layers.0.self_attn.q_proj.weight").addr, qkv);
  EXPECT_EQ(at("model.layers.0.self_attn.k_proj.weight").addr, qkv + 64 * 64 * 2);
  EXPECT_EQ(at("model.layers.0.self_attn.v_proj.weight").addr, qkv + 96 * 64 * 2);
  // Split outputs are column views of the fused output: rows of 128 bf16.
  const Placement& fused = at("l0.q_proj+l0.k_proj+l0.v_proj");
  EXPECT_EQ(at("l0.q_proj").addr, fused.addr);
  EXPECT_EQ(at("l0.k_proj").addr, fused.addr + 64 * 2);
  EXPECT_EQ(at("l0.v_proj").addr, fused.addr + 96 * 2);
  EXPECT_EQ(at("l0.k_proj").ld, 128 * 2);
  // The residual stream stays in place: both adds of every layer write over it, which is what
  // lets one loop body serve both layers.
  const uint64_t stream = at("embed_tokens").addr;
  for (const char* v :
       {"l0.attn_residual", "l0.mlp_residual", "l1.attn_residual", "l1.mlp_residual"}) {
    EXPECT_EQ(at(v).addr, stream) << v;
  }
  // Activations come after weights, KV caches and constants.
  const uint64_t act_base =
      l.region_bytes.at("weights") + l.region_bytes.at("kv_cache") + l.region_bytes.at("constants");
  EXPECT_GE(stream, act_base);
  EXPECT_LE(at("logits").addr + g.v(g.find("logits")).bytes(),
            act_base + l.region_bytes.at("activations"));
}

TEST(PlanMemory, NoOpWritesOverWhatItReads) {
  // For every op the program runs (layer 0 stands for all), its output's bytes do not overlap
  // any activation input's, except the residual Add writing in place over its first input.
  const Lowering l =
      lower(build_graph(config(tiny_llama()), prefill(2, 64)), maia(), Stage::Memory);
  const Graph& g = l.graph;
  auto extent = [&](int v) {
    const Placement& p = l.places[size_t(v)];
    const Value& x = g.v(v);
    const uint64_t rows = uint64_t(x.shape[0]), row = x.bytes() / rows;
    return std::pair<uint64_t, uint64_t>{
        p.addr, p.addr + (p.ld ? uint64_t(p.ld) * (rows - 1) + row : x.bytes())};
  };
  int checked = 0;
  for (size_t i = 0; i < g.ops.size(); ++i) {
    const Op& op = g.ops[i];
    if (l.plans[i].strategy == Strategy::None || op.i("layer", -1) > 0) continue;
    for (int out : op.outputs) {
      const auto o = extent(out);
      for (size_t k = 0; k < op.inputs.size(); ++k) {
        const int in = op.inputs[k];
        if (g.v(in).role != Role::Activation) continue;
        const auto r = extent(in);
        const bool overlap = o.first < r.second && r.first < o.second;
        const bool in_place = op.kind == OpKind::Add && k == 0 && o == r;
        EXPECT_TRUE(!overlap || in_place)
            << op.name << " writes %" << g.v(out).name << " over %" << g.v(in).name;
        ++checked;
      }
    }
  }
  EXPECT_GT(checked, 10);
}

TEST(PlanMemory, WithoutTheLayerLoopEveryLayerIsAbsolute) {
  CompileOptions o;
  o.layer_loop = false;
  const Lowering l =
      lower(build_graph(config(tiny_llama()), prefill(2, 8)), maia(), Stage::Memory, o);
  EXPECT_EQ(l.layers, 0);
  for (size_t v = 0; v < l.graph.values.size(); ++v)
    EXPECT_EQ(l.places[v].layer, -1) << l.graph.values[v].name;
}

// ---------------------------------------------------------------------------------------------
// schedule, and the whole pipeline

TEST(Schedule, BarrierAfterEveryOpWithWorkAndPrefetchesBeforeIt) {
  const std::string text = text_after(config(tiny_llama()), decode(2, 8), Stage::Scheduled);
  EXPECT_CHECKS(text, R"(
    CHECK: %embed_tokens = embedding
    CHECK: sync: barrier after
    CHECK: %l0.attn_norm = rms_norm
    CHECK: sync: barrier after
    CHECK: = concat l0.q_proj+l0.k_proj+l0.v_proj.stack(
    CHECK-NEXT: = linear l0.q_proj+l0.k_proj+l0.v_proj(
    CHECK: strategy: stream, prefetching
    CHECK-NEXT: sync: weights requested before the previous barrier; barrier after
    CHECK: = split l0.q_proj+l0.k_proj+l0.v_proj.split(
    CHECK-NEXT: %l0.q_rope = rope
    CHECK: %l0.attention = attention
    CHECK: sync: barrier after
    CHECK: %logits = linear lm_head
    CHECK: sync: weights requested before the previous barrier; barrier after
  )");
  // Views and stacks have no work and no synchronisation.
  EXPECT_CHECKS(text, R"(
    CHECK: = concat l0.gate_proj+l0.up_proj.stack(
    CHECK-NEXT: = linear l0.gate_proj+l0.up_proj(
  )");
  // Prefill: GEMMs do not prefetch.
  EXPECT_CHECKS(
      text_after(config(tiny_llama()), prefill(2, 128), Stage::Scheduled),
      "CHECK: %l0.o_proj = linear\nCHECK: sync: barrier after\nCHECK-NOT: weights requested\n"
      "CHECK: %last_tokens = embedding");
}

TEST(Compile, RunsThePassesInOrder) {
  const Graph g = build_graph(config(tiny_llama()), decode(2, 8));
  const CompileResult r = compile(g, maia());
  EXPECT_EQ(r.graph_text, print(lower(g, maia(), Stage::Dtypes).graph));
  EXPECT_EQ(r.tiled_text, print(lower(g, maia(), Stage::Scheduled).graph));
  EXPECT_EQ(r.layers_looped, 2);
  EXPECT_EQ(r.weight_bytes, 32768u + 4096 + 32768 + 2 * 81920);
}

}  // namespace
}  // namespace tessera::compiler
