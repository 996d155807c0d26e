// Hugging Face `config.json` frontend for decoder-only families: Llama 1/2/3, Mistral, Qwen2,
// Mixtral (MoE), GPT-2 and OPT. Builds the prefill graph (batch B, prompt S) or the graph of
// one decode step (batch B, context L: each sequence has L tokens in its KV cache and adds one).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "compiler/graph.hpp"

namespace tessera::compiler {

// Hugging Face `rope_scaling` of type llama3 (Llama 3.1), the only type supported: wavelengths
// longer than original_max_positions / low_freq_factor are stretched by `factor`, those shorter
// than original_max_positions / high_freq_factor kept, those between interpolated.
struct RopeScaling {
  double factor = 1, low_freq_factor = 1, high_freq_factor = 4;
  int64_t original_max_positions = 0;
};

struct ModelConfig {
  std::string name;    // e.g. "llama-3-8b" or the file's stem
  std::string source;  // file the config came from, for messages
  std::string family;  // llama, mistral, qwen2, mixtral, gpt2, opt
  int64_t hidden = 0, intermediate = 0, layers = 0, heads = 0, kv_heads = 0, head_dim = 0;
  int64_t vocab = 0, max_positions = 0;
  double norm_eps = 1e-5, rope_theta = 10000;
  std::optional<RopeScaling> rope_scaling;
  bool layer_norm = false;          // LayerNorm (gpt2, opt) instead of RMSNorm
  bool rope = true;                 // rotary embeddings; else learned absolute positions
  int64_t position_offset = 0;      // OPT's learned positions start at index 2
  bool qkv_bias = false, out_bias = false, mlp_bias = false;
  bool gated_mlp = true;            // SwiGLU; else fc -> act -> proj
  std::string act = "silu";         // silu, gelu, relu
  bool tie_embeddings = false;
  int64_t experts = 0, experts_per_token = 0;  // MoE

  // Parameter count (weights only).
  int64_t parameters() const;
  // The rotary inverse frequencies theta^(-2i/D), i < D/2, after rope_scaling.
  std::vector<double> rope_inv_freq() const;
};

// A shipped model name (workloads/models/NAME.json, built into the library) or a path to a
// config.json. Errors name the file and the key.
ModelConfig load_model_config(const std::string& name_or_path);
ModelConfig parse_model_config(const std::string& json_text, const std::string& source, const std::string& name);
std::vector<std::string> model_names();

enum class Phase { Prefill, Decode };

// One sequence of a ragged iteration: `tokens` new tokens after the `past` ones its KV cache
// holds (a prompt's chunk, or 1: a decode step).
struct SequenceStep {
  int64_t past = 0, tokens = 1;
  bool operator==(const SequenceStep&) const = default;
};

struct Workload {
  Phase phase = Phase::Prefill;
  int64_t batch = 1;
  int64_t seq = 1;      // prefill: prompt tokens per sequence
  int64_t context = 0;  // decode: tokens already in each sequence's KV cache
  // Positions each sequence's KV cache holds (0: just enough for this step). Programs that
  // share a cache (a prefill and the decode steps after it) must use the same capacity.
  int64_t cache_capacity = 0;
  // Token ids (batch * tokens), when the numbers matter; otherwise a fixed pattern.
  std::vector<int64_t> token_ids;
  // Prefill: logits of every prompt token. Serving needs only each sequence's last one (the
  // next token), so by default the final norm and the LM head see only those rows.
  bool all_logits = false;
  // A ragged iteration (continuous batching: some sequences in prefill, some decoding, each
  // its own length); when given, phase, batch, seq and context are not used. Sequence b holds
  // slot b of the KV cache.
  std::vector<SequenceStep> sequences;
  // Every sequence's step, ragged or not.
  std::vector<SequenceStep> steps() const;
  int64_t tokens() const;  // in all sequences
  // Positions each sequence's cache holds: cache_capacity, or enough for the longest step.
  int64_t capacity() const;
};

// Tensor parallelism (Megatron-LM): a model split over `chips` chips, each holding a part of
// every layer. Attention's query and key/value heads and the MLP's intermediate features (each
// expert's, in an MoE) are dealt out in contiguous ranges: the Linear layers that make them are
// split by output rows, the ones that consume them (o_proj, down_proj) by input columns, and an
// all-reduce after each of the latter sums the chips' partial results. Key/value heads fewer
// than the chips are replicated (chip c holds head c * kv_heads / chips). The LM head is split
// by vocabulary rows (padded with zero rows to an even split): each chip ends with its columns
// of the logits. Embeddings and norms are replicated; a bias after a split is added by chip 0.
// Why the model's heads and features do not split over n chips; empty when they do.
std::string tensor_parallel_problem(const ModelConfig& m, int64_t n);

struct TensorParallel {
  int64_t chips = 1;
  int64_t rank = 0;  // this chip's index, 0 .. chips - 1
  // Expert parallelism: the experts dealt out over this many groups of chips / experts chips
  // (each group splits its experts' features); 1: every chip holds a slice of every expert.
  int64_t experts = 1;
};

// Pipeline parallelism: the model's layers dealt out in contiguous stages, the first stages
// taking one more when they do not divide evenly (the last one also has the LM head). The
// first stage embeds the tokens; every other stage starts from the hidden state the one before
// it ends with (an input named "hidden"); every stage but the last ends with it (an output).
struct PipelineStage {
  int64_t stages = 1;
  int64_t stage = 0;  // 0 .. stages - 1
  bool first() const { return stage == 0; }
  bool last() const { return stage == stages - 1; }
  // The stage's layers, [first, end), of a model of `layers`.
  std::pair<int64_t, int64_t> layers(int64_t layers) const;
};

// The model's graph for a workload (on one chip of a tensor-parallel split, for one pipeline
// stage). Weight values and KV caches carry Hugging Face tensor names
// ("model.layers.0.self_attn.q_proj.weight") of the model's layer numbers and, when split,
// which part of that tensor they hold (Value::shard); ops carry a "layer" attribute, counted
// from the stage's first layer (as are their names: "l0.attention").
Graph build_graph(const ModelConfig& m, const Workload& w, const TensorParallel& tp = {},
                  const PipelineStage& stage = {});

}  // namespace tessera::compiler
