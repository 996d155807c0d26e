// Bad input to the compiler: each gives a CompileError whose message says what is wrong, where
// (file and key, op), and what would work. Expected figures are derived from the model's
// dimensions, not copied from the messages.
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>

#include "arch/loader.hpp"
#include "compiler/compile.hpp"
#include "compiler/error.hpp"
#include "compiler/hf_frontend.hpp"
#include "compiler/passes.hpp"

namespace tessera::compiler {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;

// The message of the CompileError `f` throws ("" and a failure if none).
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const CompileError& e) {
    return e.what();
  }
  ADD_FAILURE() << "no CompileError";
  return "";
}

// The number in `text` right after `prefix` (NaN if absent).
double number_after(const std::string& text, const std::string& prefix) {
  const size_t at = text.find(prefix);
  return at == std::string::npos ? NAN : std::stod(text.substr(at + prefix.size()));
}

Workload prefill(int64_t batch, int64_t seq) {
  Workload w;
  w.phase = Phase::Prefill, w.batch = batch, w.seq = seq;
  return w;
}
Workload decode(int64_t batch, int64_t context) {
  Workload w;
  w.phase = Phase::Decode, w.batch = batch, w.context = context;
  return w;
}

// ---------------------------------------------------------------------------------------------
// Does not fit.

TEST(Errors, ModelLargerThanHbmSaysHowManyChipsItNeeds) {
  // Llama-3-8B's bf16 weights (16 GB) on a maia100-class with 12 GB of HBM. (The CLI test does
  // the same with Llama-2-70B on the real 64 GB; 80 layers take too long here under ASan.)
  const ModelConfig m = load_model_config("llama-3-8b");
  const arch::Arch a = arch::load_arch("maia100-class", {"hbm.capacity=12GB"});
  const std::string e = error_of([&] { compile_model(m, decode(1, 16), a); });
  // bf16 weights: 2 bytes a parameter (plus 4 KiB alignment per tensor, well under 0.01 GB).
  const double weights_gb = double(m.parameters()) * 2 / 1e9;
  EXPECT_THAT(e, AllOf(HasSubstr("llama-3-8b needs"), HasSubstr("GB of HBM"),
                       HasSubstr("but maia100-class has 12.00 GB")));
  EXPECT_NEAR(number_after(e, "weights "), weights_gb, 0.02) << e;
  EXPECT_GE(number_after(e, "needs "), number_after(e, "weights ")) << e;
  // What would fit: ceil(16.06 GB / 12 GB) = 2 chips, or smaller weights; fp8 weights (8 GB)
  // do fit.
  EXPECT_THAT(e, AllOf(HasSubstr("the weights alone need 2 chips' HBM"), HasSubstr("fp8e4m3")));
  CompileOptions fp8;
  fp8.weight_dtype = isa::Dtype::Fp8E4M3;
  EXPECT_NO_THROW(compile_model(m, decode(1, 16), a, fp8));
  // Weights already in fp8 that do not fit: more chips is the only advice.
  const arch::Arch small = arch::load_arch("maia100-class", {"hbm.capacity=6GB"});
  const std::string e8 = error_of([&] { compile_model(m, decode(1, 16), small, fp8); });
  EXPECT_THAT(e8, AllOf(HasSubstr("the weights alone need 2 chips' HBM: use more chips"), Not(HasSubstr("fp8e4m3"))));
}

TEST(Errors, KvCacheLargerThanHbmSaysWhichBatchFits) {
  // Llama-3-8B decode at 2000 tokens of context, batch 256. A sequence's cache: 32 layers x K,V
  // x 8 KV heads x 2001 positions x 128 x 2 bytes = 262 MB; the weights take 16 GB of 64.
  const ModelConfig m = load_model_config("llama-3-8b");
  const arch::Arch a = arch::load_arch("maia100-class");
  const std::string e = error_of([&] { compile_model(m, decode(256, 2000), a); });
  const double per_sequence = 32.0 * 2 * 8 * 2001 * 128 * 2;
  const double room = double(a.hbm.capacity) - double(m.parameters()) * 2;
  EXPECT_THAT(e, AllOf(HasSubstr("llama-3-8b needs"), HasSubstr("KV cache"),
                       HasSubstr("a batch of at most")));
  EXPECT_NEAR(number_after(e, "KV cache "), 256 * per_sequence / 1e9, 0.01) << e;
  const double fits = number_after(e, "a batch of at most ");
  EXPECT_LE(fits * per_sequence, room) << e;                  // the advice fits ...
  EXPECT_GE(fits, std::floor(room / per_sequence) - 1) << e;  // ... and is not too cautious
}

TEST(Errors, AttentionThatCannotFitOneKeyBlock) {
  // Keys are walked in blocks (online softmax), down to blocks of 8 keys and one query token;
  // below that the SRAM is too small. With 4 query heads a KV head and head_dim 128: four K/V
  // buffer pairs of 8 keys (4 x 2 x 8 x 128 x 2 = 16384) + two Q buffers (2 x 4 x 128 x 2 =
  // 2048) + two S and P (2 x 4 x 8 x 6 = 384) + O (4 x 128 x 6 = 3072) + five row vectors
  // (4 x 4 x 5 = 80) + a 4096-byte margin = 26,064 bytes.
  AttentionSpec s;
  s.batch = 1, s.seq = 1, s.past = 100000, s.heads = 32, s.kv_heads = 8, s.head_dim = 128,
  s.capacity = 100001;
  const arch::Arch a = arch::load_arch("maia100-class");
  EXPECT_EQ(error_of([&] { plan_attention(a, s, 26063); }),
            "attention with head_dim 128 does not fit the tile SRAM of maia100-class (26064 bytes "
            "needed)");
  EXPECT_EQ(plan_attention(a, s, 26064).key_block, 8);
}

// The RoPE row kernel loads only the table rows of the positions in its chunk: a Llama-3-8B prompt
// of 1024 tokens fits an H100 SM (whole tables would take 2 x 1024 x 64 x 4 = 512 KiB, more than
// the 480 KiB budget).
TEST(Errors, LongPromptRopeFitsGpuSram) {
  const ModelConfig m = load_model_config("llama-3-8b");
  const arch::Arch a = arch::load_arch("h100-sxm");
  Graph g = build_graph(m, prefill(1, 1024));
  infer_shapes(g);
  fuse(g);
  assign_dtypes(g, {});
  Lowering l = partition(std::move(g), a);
  EXPECT_NO_THROW(tile(l, a));
}

// BUG (reported): with --dtype fp8e4m3 (CompileOptions.weight_dtype), decode works (the weight
// stream converts x to the weights' dtype as it loads it) but any prefill of 256 tokens or more
// on a multi-tile chip fails: gemm_spec() refuses "a GEMM multiplies bf16 activations by
// fp8e4m3 weights; make them the same dtype", and there is no option to make activations fp8
// from the CLI. The HBM error above even advises fp8e4m3. Enable when the GEMM converts A.
TEST(Errors, Fp8WeightsCompileForPrefill) {
  const ModelConfig m = parse_model_config(
      R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512})",
      "tiny.json", "tiny");
  CompileOptions o;
  o.weight_dtype = isa::Dtype::Fp8E4M3;
  EXPECT_NO_THROW(compile_model(m, prefill(2, 128), arch::load_arch("maia100-class"), o));
}

// ---------------------------------------------------------------------------------------------
// Model configs.

class ConfigErrors : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const std::filesystem::path dir =
        std::filesystem::path(::testing::TempDir()) / "tessera_config_errors";
    std::filesystem::create_directories(dir);
    const std::string path = (dir / name).string();
    std::ofstream(path) << text;
    return path;
  }
  // A tiny Llama config with `extra` keys added (or replacing others) and `drop` removed.
  std::string llama(const std::string& extra = "", const std::string& drop = "") {
    std::vector<std::pair<std::string, std::string>> keys = {
        {"model_type", "\"llama\""},  {"hidden_size", "64"},
        {"intermediate_size", "128"}, {"num_hidden_layers", "2"},
        {"num_attention_heads", "4"}, {"num_key_value_heads", "2"},
        {"vocab_size", "256"},        {"max_position_embeddings", "64"}};
    std::string text = "{\n";
    for (const auto& [k, v] : keys) {
      if (k == drop || extra.find("\"" + k + "\"") != std::string::npos) continue;
      text += fmt::format("  \"{}\": {},\n", k, v);
    }
    text += extra.empty() ? "  \"rms_norm_eps\": 1e-5\n}\n" : "  " + extra + "\n}\n";
    return text;
  }
};

TEST_F(ConfigErrors, UnsupportedModelTypeNamesFileKeyAndWhatIsSupported) {
  const std::string path = write("bert.json", llama(R"("model_type": "bert")"));
  EXPECT_EQ(error_of([&] { load_model_config(path); }),
            path +
                ": model_type 'bert' is not supported (supported: llama, mistral, qwen2, mixtral, "
                "gpt2, opt)");
  const std::string none = write("none.json", llama("", "model_type"));
  EXPECT_THAT(error_of([&] { load_model_config(none); }),
              AllOf(HasSubstr(none + ": "), HasSubstr("model_type")));
}

TEST_F(ConfigErrors, MissingOrBadKeysNameFileAndKey) {
  const std::string missing = write("missing.json", llama("", "hidden_size"));
  EXPECT_EQ(error_of([&] { load_model_config(missing); }), missing + ": missing key 'hidden_size'");
  const std::string zero = write("zero.json", llama(R"("num_hidden_layers": 0)"));
  EXPECT_EQ(error_of([&] { load_model_config(zero); }),
            zero + ": key 'num_hidden_layers' must be a positive integer, got 0");
  const std::string text = write("text.json", llama(R"("vocab_size": "many")"));
  EXPECT_THAT(error_of([&] { load_model_config(text); }),
              HasSubstr(text + ": key 'vocab_size' must be a positive integer"));
  const std::string eps = write("eps.json", llama(R"("rms_norm_eps": "small")"));
  EXPECT_THAT(error_of([&] { load_model_config(eps); }),
              HasSubstr(eps + ": key 'rms_norm_eps' must be a positive number"));
  const std::string act = write("act.json", llama(R"("hidden_act": "tanh")"));
  EXPECT_THAT(error_of([&] { load_model_config(act); }),
              HasSubstr(act + ": unsupported activation 'tanh'"));
  const std::string heads = write("heads.json", llama(R"("num_key_value_heads": 3)"));
  EXPECT_THAT(error_of([&] { load_model_config(heads); }),
              HasSubstr(heads + ": 4 attention heads are not a multiple of 3 key/value heads"));
  const std::string gpt2 =
      write("gpt2.json", R"({"model_type": "gpt2", "n_layer": 2, "n_head": 4, "vocab_size": 256})");
  EXPECT_EQ(error_of([&] { load_model_config(gpt2); }), gpt2 + ": missing key 'n_embd'");
}

TEST_F(ConfigErrors, UnreadableFilesAndUnknownNames) {
  const std::string bad =
      write("bad.json", "{\n  \"model_type\": \"llama\",\n  \"hidden_size\": 64,,\n}\n");
  EXPECT_THAT(error_of([&] { load_model_config(bad); }), HasSubstr(bad + ":3: not valid JSON"));
  const std::string list = write("list.json", "[1, 2]");
  EXPECT_THAT(error_of([&] { load_model_config(list); }),
              HasSubstr(list + ": a config.json is a JSON object"));
  EXPECT_THAT(error_of([&] { load_model_config("/nonexistent/config.json"); }),
              HasSubstr("/nonexistent/config.json: cannot open model config"));
  EXPECT_THAT(error_of([&] { load_model_config("llama-9"); }),
              AllOf(HasSubstr("no model 'llama-9'"), HasSubstr("llama-3-8b"), HasSubstr("gpt2")));
}

TEST_F(ConfigErrors, MixtureOfExpertsKeysAreChecked) {
  EXPECT_THAT(
      error_of([&] {
        load_model_config(write(
            "moe_bad.json",
            llama(R"("model_type": "mixtral", "num_local_experts": 2, "num_experts_per_tok": 3)")));
      }),
      HasSubstr("num_experts_per_tok (3) exceeds num_local_experts (2)"));
  const std::string missing =
      write("moe_missing.json", llama(R"("model_type": "mixtral", "num_experts_per_tok": 2)"));
  EXPECT_EQ(error_of([&] { load_model_config(missing); }),
            missing + ": missing key 'num_local_experts'");
}

TEST_F(ConfigErrors, RopeScalingOtherThanLlama3IsRefusedNamingTheKey) {
  const std::string yarn = write(
      "yarn.json",
      llama(
          R"("rope_scaling": {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32})"));
  EXPECT_EQ(error_of([&] { load_model_config(yarn); }),
            yarn + ": rope_scaling.rope_type 'yarn' is not supported (supported: llama3)");
  // Older configs name the key "type".
  const std::string linear =
      write("linear.json", llama(R"("rope_scaling": {"type": "linear", "factor": 2.0})"));
  EXPECT_EQ(error_of([&] { load_model_config(linear); }),
            linear + ": rope_scaling.type 'linear' is not supported (supported: llama3)");
  const std::string dynamic =
      write("dynamic.json", llama(R"("rope_scaling": {"type": "dynamic", "factor": 2.0})"));
  EXPECT_THAT(error_of([&] { load_model_config(dynamic); }),
              HasSubstr("rope_scaling.type 'dynamic' is not supported"));
  const std::string untyped = write("untyped.json", llama(R"("rope_scaling": {"factor": 2.0})"));
  EXPECT_EQ(error_of([&] { load_model_config(untyped); }),
            untyped + ": missing key 'rope_scaling.rope_type'");
  const std::string number = write("number.json", llama(R"("rope_scaling": 8)"));
  EXPECT_EQ(error_of([&] { load_model_config(number); }),
            number + ": key 'rope_scaling' must be an object or null, got 8");
}

TEST_F(ConfigErrors, Llama3RopeScalingNeedsItsFourParameters) {
  // rope_scaling with `key` set to `value`, or without `drop`.
  auto scaling = [](const std::string& drop, const std::string& key = "",
                    const std::string& value = "") {
    std::vector<std::pair<std::string, std::string>> keys = {
        {"rope_type", "\"llama3\""},
        {"factor", "8.0"},
        {"low_freq_factor", "1.0"},
        {"high_freq_factor", "4.0"},
        {"original_max_position_embeddings", "32"}};
    std::string text;
    for (const auto& [k, v] : keys) {
      if (k == drop) continue;
      text += fmt::format("{}\"{}\": {}", text.empty() ? "" : ", ", k, k == key ? value : v);
    }
    return "\"rope_scaling\": {" + text + "}";
  };
  EXPECT_NO_THROW(load_model_config(write("llama3.json", llama(scaling("")))));
  EXPECT_NO_THROW(load_model_config(write("null.json", llama(R"("rope_scaling": null)"))));
  for (const char* key :
       {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"}) {
    const std::string path = write(fmt::format("no_{}.json", key), llama(scaling(key)));
    EXPECT_EQ(error_of([&] { load_model_config(path); }),
              fmt::format("{}: missing key 'rope_scaling.{}'", path, key));
  }
  const std::string zero = write("zero_factor.json", llama(scaling("", "factor", "0")));
  EXPECT_EQ(error_of([&] { load_model_config(zero); }),
            zero + ": key 'rope_scaling.factor' must be a positive number, got 0");
  const std::string text =
      write("text_original.json", llama(scaling("", "original_max_position_embeddings", "\"8k\"")));
  EXPECT_EQ(error_of([&] { load_model_config(text); }),
            text +
                ": key 'rope_scaling.original_max_position_embeddings' must be a positive integer, "
                "got \"8k\"");
  const std::string swapped = write("swapped.json", llama(scaling("", "high_freq_factor", "0.5")));
  EXPECT_EQ(
      error_of([&] { load_model_config(swapped); }),
      swapped +
          ": rope_scaling.high_freq_factor (0.5) must exceed rope_scaling.low_freq_factor (1)");
}

// ---------------------------------------------------------------------------------------------
// Graphs code generation cannot lower.

TEST(Errors, UnsupportedOpsAreRejectedNamingTheOp) {
  Graph g;
  g.name = "matmul";
  const int a = g.value("a", {4, 8}, isa::Dtype::Bf16, Role::Input);
  const int b = g.value("b", {8, 6}, isa::Dtype::Bf16, Role::Input);
  g.inputs = {a, b};
  const int c = g.op(OpKind::MatMul, "scores", {a, b}, "c", {4, 6});
  g.v(c).role = Role::Output;
  g.outputs = {c};
  EXPECT_EQ(error_of([&] { compile(g, arch::load_arch("maia100-class")); }),
            "op scores: a MatMul of two activations is supported only inside attention");
  Graph t = g;
  t.ops[0].kind = OpKind::Transpose;
  t.ops[0].attrs["perm"] = std::vector<int64_t>{1, 0};
  EXPECT_THAT(error_of([&] { compile(t, arch::load_arch("maia100-class")); }),
              AllOf(HasSubstr("op scores (transpose)"), HasSubstr("not supported")));
}

// ---------------------------------------------------------------------------------------------
// Workloads.

TEST(Errors, WorkloadsOutsideTheModel) {
  const ModelConfig m = parse_model_config(
      R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 1,
          "num_attention_heads": 4, "vocab_size": 256, "max_position_embeddings": 64})",
      "tiny.json", "tiny");
  EXPECT_EQ(error_of([&] { build_graph(m, prefill(1, 65)); }),
            "65 tokens per sequence exceed tiny's 64 positions");
  EXPECT_EQ(error_of([&] { build_graph(m, decode(1, 64)); }),
            "65 tokens per sequence exceed tiny's 64 positions");
  EXPECT_EQ(error_of([&] { build_graph(m, prefill(0, 4)); }), "batch must be at least 1");
  Workload ids = prefill(1, 2);
  ids.token_ids = {3, 256};
  EXPECT_EQ(error_of([&] { build_graph(m, ids); }),
            "token id 256 is outside the vocabulary of 256");
  ids.token_ids = {1, 2, 3};
  EXPECT_EQ(error_of([&] { build_graph(m, ids); }), "3 token ids given for 2 tokens");
}

}  // namespace
}  // namespace tessera::compiler
