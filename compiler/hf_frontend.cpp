#include "compiler/hf_frontend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>

#include "compiler/error.hpp"

namespace tessera::compiler {

// Generated at build time from workloads/models/*.json (see compiler/CMakeLists.txt).
struct EmbeddedModel {
  std::string_view name;
  std::string_view source;
  std::string_view text;
};
extern const EmbeddedModel kEmbeddedModels[];
extern const size_t kEmbeddedModelsCount;

namespace {

using nlohmann::json;
using isa::Dtype;

// Reads the keys of a config object; `prefix` is the key path of a nested object
// ("rope_scaling."), for messages.
class ConfigReader {
 public:
  ConfigReader(const json& j, std::string source, std::string prefix = "")
      : j_(j), source_(std::move(source)), prefix_(std::move(prefix)) {}

  const json* find(const std::string& key) const {
    auto it = j_.find(key);
    return it == j_.end() || it->is_null() ? nullptr : &*it;
  }
  int64_t integer(const std::string& key) const {
    const json* v = required(key);
    if (!v->is_number_integer() || v->get<int64_t>() <= 0) {
      throw CompileError(fmt::format("{}: key '{}{}' must be a positive integer, got {}", source_, prefix_, key, v->dump()));
    }
    return v->get<int64_t>();
  }
  int64_t integer(const std::string& key, int64_t fallback) const { return find(key) ? integer(key) : fallback; }
  double number(const std::string& key) const {
    const json* v = required(key);
    if (!v->is_number() || v->get<double>() <= 0) {
      throw CompileError(fmt::format("{}: key '{}{}' must be a positive number, got {}", source_, prefix_, key, v->dump()));
    }
    return v->get<double>();
  }
  double number(const std::string& key, double fallback) const { return find(key) ? number(key) : fallback; }
  bool boolean(const std::string& key, bool fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_boolean()) {
      throw CompileError(fmt::format("{}: key '{}{}' must be true or false, got {}", source_, prefix_, key, v->dump()));
    }
    return v->get<bool>();
  }
  std::string text(const std::string& key, const std::string& fallback) const {
    const json* v = find(key);
    if (v == nullptr) return fallback;
    if (!v->is_string()) throw CompileError(fmt::format("{}: key '{}{}' must be a string, got {}", source_, prefix_, key, v->dump()));
    return v->get<std::string>();
  }

 private:
  const json* required(const std::string& key) const {
    const json* v = find(key);
    if (v == nullptr) throw CompileError(fmt::format("{}: missing key '{}{}'", source_, prefix_, key));
    return v;
  }

  const json& j_;
  std::string source_, prefix_;
};

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw CompileError(fmt::format("{}: cannot open model config", path));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string act_of(const std::string& hf, const std::string& source) {
  if (hf == "silu" || hf == "swish") return "silu";
  if (hf == "gelu" || hf == "gelu_new" || hf == "gelu_pytorch_tanh" || hf == "gelu_fast") return "gelu";
  if (hf == "relu") return "relu";
  throw CompileError(fmt::format("{}: unsupported activation '{}' (supported: silu, gelu, gelu_new, relu)", source, hf));
}

// `rope_scaling` (absent or null: none), with the key names of transformers' rope_config_validation.
std::optional<RopeScaling> rope_scaling_of(const ConfigReader& r, const std::string& source) {
  const json* v = r.find("rope_scaling");
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) {
    throw CompileError(fmt::format("{}: key 'rope_scaling' must be an object or null, got {}", source, v->dump()));
  }
  const ConfigReader s(*v, source, "rope_scaling.");
  const std::string type_key = s.find("type") && !s.find("rope_type") ? "type" : "rope_type";  // "type": older configs
  const std::string type = s.text(type_key, "");
  if (type.empty()) throw CompileError(fmt::format("{}: missing key 'rope_scaling.rope_type'", source));
  if (type != "llama3") {
    throw CompileError(fmt::format("{}: rope_scaling.{} '{}' is not supported (supported: llama3)", source, type_key, type));
  }
  RopeScaling rs;
  rs.factor = s.number("factor");
  rs.low_freq_factor = s.number("low_freq_factor");
  rs.high_freq_factor = s.number("high_freq_factor");
  rs.original_max_positions = s.integer("original_max_position_embeddings");
  if (rs.high_freq_factor <= rs.low_freq_factor) {
    throw CompileError(fmt::format("{}: rope_scaling.high_freq_factor ({}) must exceed rope_scaling.low_freq_factor ({})",
                                   source, rs.high_freq_factor, rs.low_freq_factor));
  }
  return rs;
}

}  // namespace

int64_t ModelConfig::parameters() const {
  const int64_t q = heads * head_dim, kv = kv_heads * head_dim;
  int64_t attn = hidden * q + 2 * hidden * kv + q * hidden;
  int64_t mlp = (gated_mlp ? 3 : 2) * hidden * intermediate;
  if (experts > 0) mlp = experts * mlp + experts * hidden;
  const int64_t norms = (layer_norm ? 4 : 2) * hidden;
  int64_t total = layers * (attn + mlp + norms) + vocab * hidden + (layer_norm ? 2 : 1) * hidden;
  if (!tie_embeddings) total += vocab * hidden;
  if (!rope) total += (max_positions + position_offset) * hidden;
  return total;
}

// As transformers' _compute_llama3_parameters: each frequency by its wavelength against the
// original context.
std::vector<double> ModelConfig::rope_inv_freq() const {
  std::vector<double> inv;
  for (int64_t i = 0; i < head_dim / 2; ++i) {
    double f = std::pow(rope_theta, -2.0 * double(i) / double(head_dim));
    if (rope_scaling) {
      const RopeScaling& s = *rope_scaling;
      const double wavelen = 2 * std::numbers::pi / f, original = double(s.original_max_positions);
      if (wavelen > original / s.low_freq_factor) {
        f /= s.factor;
      } else if (wavelen >= original / s.high_freq_factor) {
        const double smooth = (original / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = (1 - smooth) * f / s.factor + smooth * f;
      }
    }
    inv.push_back(f);
  }
  return inv;
}

std::vector<std::string> model_names() {
  std::vector<std::string> names;
  for (size_t i = 0; i < kEmbeddedModelsCount; ++i) names.emplace_back(kEmbeddedModels[i].name);
  std::sort(names.begin(), names.end());
  return names;
}

ModelConfig load_model_config(const std::string& name_or_path) {
  const bool is_path = name_or_path.find('/') != std::string::npos || name_or_path.ends_with(".json");
  if (is_path) {
    return parse_model_config(read_text(name_or_path), name_or_path, std::filesystem::path(name_or_path).stem().string());
  }
  for (size_t i = 0; i < kEmbeddedModelsCount; ++i) {
    if (kEmbeddedModels[i].name == name_or_path) {
      return parse_model_config(std::string(kEmbeddedModels[i].text), std::string(kEmbeddedModels[i].source), name_or_path);
    }
  }
  std::string known;
  for (const std::string& n : model_names()) known += (known.empty() ? "" : ", ") + n;
  throw CompileError(fmt::format("no model '{}': give a path to a config.json or one of: {}", name_or_path, known));
}

ModelConfig parse_model_config(const std::string& text, const std::string& source, const std::string& name) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    const size_t at = std::min(size_t(e.byte), text.size());
    const int line = 1 + int(std::count(text.begin(), text.begin() + long(at ? at - 1 : 0), '\n'));
    throw CompileError(fmt::format("{}:{}: not valid JSON: {}", source, line, e.what()));
  }
  if (!j.is_object()) throw CompileError(fmt::format("{}: a config.json is a JSON object", source));
  ConfigReader r(j, source);
  ModelConfig m;
  m.name = name;
  m.source = source;
  m.family = r.text("model_type", "");
  if (m.family == "llama" || m.family == "mistral" || m.family == "qwen2" || m.family == "mixtral") {
    m.hidden = r.integer("hidden_size");
    m.intermediate = r.integer("intermediate_size");
    m.layers = r.integer("num_hidden_layers");
    m.heads = r.integer("num_attention_heads");
    m.kv_heads = r.integer("num_key_value_heads", m.heads);
    m.head_dim = r.integer("head_dim", m.hidden / m.heads);
    m.vocab = r.integer("vocab_size");
    m.max_positions = r.integer("max_position_embeddings", 4096);
    m.norm_eps = r.number("rms_norm_eps", 1e-6);
    m.rope_theta = r.number("rope_theta", 10000.0);
    m.rope_scaling = rope_scaling_of(r, source);
    m.act = act_of(r.text("hidden_act", "silu"), source);
    m.tie_embeddings = r.boolean("tie_word_embeddings", false);
    m.qkv_bias = m.family == "qwen2" || r.boolean("attention_bias", false);
    m.out_bias = r.boolean("attention_bias", false);
    m.mlp_bias = r.boolean("mlp_bias", false);
    if (m.family == "mixtral") {
      m.experts = r.integer("num_local_experts");
      m.experts_per_token = r.integer("num_experts_per_tok");
      if (m.experts_per_token > m.experts) {
        throw CompileError(fmt::format("{}: num_experts_per_tok ({}) exceeds num_local_experts ({})", source,
                                       m.experts_per_token, m.experts));
      }
    }
  } else if (m.family == "gpt2") {
    m.hidden = r.integer("n_embd");
    m.layers = r.integer("n_layer");
    m.heads = r.integer("n_head");
    m.kv_heads = m.heads;
    m.head_dim = m.hidden / m.heads;
    m.intermediate = r.integer("n_inner", 4 * m.hidden);
    m.vocab = r.integer("vocab_size");
    m.max_positions = r.integer("n_positions", 1024);
    m.norm_eps = r.number("layer_norm_epsilon", 1e-5);
    m.act = act_of(r.text("activation_function", "gelu_new"), source);
    m.layer_norm = true, m.rope = false, m.gated_mlp = false;
    m.qkv_bias = m.out_bias = m.mlp_bias = true;
    m.tie_embeddings = r.boolean("tie_word_embeddings", true);
  } else if (m.family == "opt") {
    m.hidden = r.integer("hidden_size");
    m.layers = r.integer("num_hidden_layers");
    m.heads = r.integer("num_attention_heads");
    m.kv_heads = m.heads;
    m.head_dim = m.hidden / m.heads;
    m.intermediate = r.integer("ffn_dim");
    m.vocab = r.integer("vocab_size");
    m.max_positions = r.integer("max_position_embeddings", 2048);
    m.position_offset = 2;
    m.act = act_of(r.text("activation_function", "relu"), source);
    m.layer_norm = true, m.rope = false, m.gated_mlp = false;
    m.qkv_bias = m.out_bias = m.mlp_bias = r.boolean("enable_bias", true);
    m.tie_embeddings = r.boolean("tie_word_embeddings", true);
    if (!r.boolean("do_layer_norm_before", true)) {
      throw CompileError(fmt::format("{}: OPT with do_layer_norm_before=false (post-norm) is not supported", source));
    }
    if (r.integer("word_embed_proj_dim", m.hidden) != m.hidden) {
      throw CompileError(fmt::format("{}: OPT with word_embed_proj_dim != hidden_size is not supported", source));
    }
  } else {
    throw CompileError(fmt::format("{}: model_type '{}' is not supported (supported: llama, mistral, qwen2, mixtral, "
                                   "gpt2, opt)",
                                   source, m.family));
  }
  if (m.hidden % m.heads != 0 && m.head_dim * m.heads == 0) {
    throw CompileError(fmt::format("{}: hidden size {} is not divisible by {} heads", source, m.hidden, m.heads));
  }
  if (m.heads % m.kv_heads != 0) {
    throw CompileError(fmt::format("{}: {} attention heads are not a multiple of {} key/value heads", source, m.heads,
                                   m.kv_heads));
  }
  if (m.rope && m.head_dim % 2 != 0) throw CompileError(fmt::format("{}: rotary embeddings need an even head_dim", source));
  return m;
}

namespace {

// What a chip holds of a dimension split across chips: index ranges of the whole and the size
// of its part (at least their total; more is zero padding). An empty cut is the whole.
struct Cut {
  std::vector<std::pair<int64_t, int64_t>> ranges{};
  int64_t size = 0;
  bool whole() const { return ranges.empty() && size == 0; }
};

}  // namespace

std::vector<SequenceStep> Workload::steps() const {
  if (!sequences.empty()) return sequences;
  const SequenceStep one = phase == Phase::Prefill ? SequenceStep{0, seq} : SequenceStep{context, 1};
  return std::vector<SequenceStep>(size_t(std::max<int64_t>(batch, 0)), one);
}

int64_t Workload::tokens() const {
  int64_t n = 0;
  for (const SequenceStep& s : steps()) n += s.tokens;
  return n;
}

int64_t Workload::capacity() const {
  int64_t most = 0;
  for (const SequenceStep& s : steps()) most = std::max(most, s.past + s.tokens);
  return std::max(cache_capacity, most);
}

std::string tensor_parallel_problem(const ModelConfig& m, int64_t n) {
  if (m.heads % n != 0) return fmt::format("{} attention heads do not split evenly over {} chips", m.heads, n);
  if (m.intermediate % n != 0) {
    return fmt::format("{} intermediate features do not split evenly over {} chips", m.intermediate, n);
  }
  if (m.kv_heads >= n && m.kv_heads % n != 0) {
    return fmt::format("{} key/value heads do not split evenly over {} chips", m.kv_heads, n);
  }
  if (m.kv_heads < n && n % m.kv_heads != 0) {
    return fmt::format("{} key/value heads can be neither split nor replicated evenly over {} chips", m.kv_heads, n);
  }
  return "";
}

namespace {

class GraphBuilder {
 public:
  GraphBuilder(const ModelConfig& m, const Workload& w, const TensorParallel& tp, const PipelineStage& stage)
      : m_(m), w_(w), tp_(tp), stage_(stage), steps_(w.steps()) {
    tokens_ = w.tokens();
    ragged_ = std::adjacent_find(steps_.begin(), steps_.end(), std::not_equal_to<>()) != steps_.end();
    g_.name = m.name;
    g_.meta["model"] = m.name;
    g_.meta["family"] = m.family;
    if (!w.sequences.empty()) {
      g_.meta["phase"] = "mixed";
      g_.meta["sequences"] = std::to_string(steps_.size());
      g_.meta["tokens"] = std::to_string(tokens_);
    } else {
      g_.meta["phase"] = w.phase == Phase::Prefill ? "prefill" : "decode";
      g_.meta["batch"] = std::to_string(w.batch);
      g_.meta[w.phase == Phase::Prefill ? "seq" : "context"] = std::to_string(w.phase == Phase::Prefill ? w.seq : w.context);
    }
    g_.meta["layers"] = std::to_string(m.layers);
    if (tp.chips > 1) g_.meta["tensor_parallel"] = fmt::format("{} of {}", tp.rank, tp.chips);
    if (stage.stages > 1) {
      const auto [first, end] = stage.layers(m.layers);
      g_.meta["pipeline_stage"] = fmt::format("{} of {} (layers {}-{})", stage.stage, stage.stages, first, end - 1);
    }
  }

  Graph build() {
    split_heads_and_features();
    if (w_.sequences.empty()) {
      if (w_.batch <= 0) throw CompileError("batch must be at least 1");
      if (w_.phase == Phase::Prefill && w_.seq <= 0) throw CompileError("the prompt must have at least 1 token");
      if (w_.phase == Phase::Decode && w_.context < 0) throw CompileError("the context cannot be negative");
    }
    for (size_t b = 0; b < w_.sequences.size(); ++b) {
      const SequenceStep& s = w_.sequences[b];
      if (s.tokens < 1 || s.past < 0) {
        throw CompileError(fmt::format("sequence {}: {} tokens after {} (at least 1 after 0 or more)", b, s.tokens, s.past));
      }
    }
    const int64_t positions = w_.capacity();
    if (positions > m_.max_positions) {
      throw CompileError(fmt::format("{} tokens per sequence exceed {}'s {} positions", positions, m_.name, m_.max_positions));
    }
    if (!w_.token_ids.empty() && int64_t(w_.token_ids.size()) != tokens_) {
      throw CompileError(fmt::format("{} token ids given for {} tokens", w_.token_ids.size(), tokens_));
    }
    for (int64_t id : w_.token_ids) {
      if (id < 0 || id >= m_.vocab) throw CompileError(fmt::format("token id {} is outside the vocabulary of {}", id, m_.vocab));
    }
    if (stage_.stages < 1 || stage_.stage < 0 || stage_.stage >= stage_.stages) {
      throw CompileError(fmt::format("stage {} of a {}-stage pipeline", stage_.stage, stage_.stages));
    }
    if (stage_.stages > m_.layers) {
      throw CompileError(fmt::format("{}'s {} layers cannot make {} pipeline stages", m_.name, m_.layers, stage_.stages));
    }
    int x = -1;
    if (stage_.first()) {
      x = embed();
    } else {
      x = g_.value("hidden", {tokens_, m_.hidden}, Dtype::Bf16, Role::Input);
      g_.inputs = {x};
    }
    const auto [first, end] = stage_.layers(m_.layers);
    for (int64_t l = first; l < end; ++l) x = layer(l, l - first, x);
    if (!stage_.last()) {
      g_.v(x).role = Role::Output;
      g_.v(x).name = "hidden";
      g_.outputs = {x};
      return std::move(g_);
    }
    const std::string final_norm = m_.family == "gpt2" ? "transformer.ln_f" : m_.family == "opt" ? "model.decoder.final_layer_norm" : "model.norm";
    int64_t rows = tokens_;
    if (!w_.all_logits && tokens_ > int64_t(steps_.size())) {
      std::vector<int64_t> last;
      int64_t row = 0;
      for (const SequenceStep& s : steps_) last.push_back((row += s.tokens) - 1);
      rows = int64_t(last.size());
      x = add_op(OpKind::Embedding, "last_tokens", {x}, {rows, m_.hidden}, -1, {{"rows", last}});
    }
    const int h = norm(final_norm, x, -1, "final_norm");
    // Each chip: its vocabulary rows of the head, so its columns of the logits.
    const Cut vocab = cut_evenly(m_.vocab);
    const std::string head_name = m_.tie_embeddings ? embed_table_name() : "lm_head.weight";
    const int head = tp_.chips == 1 && m_.tie_embeddings && embed_table_ >= 0 ? embed_table_ : part(head_name, {m_.vocab, m_.hidden}, 0, vocab);
    const int logits = linear("lm_head", h, head, -1, {rows, vocab.size}, -1);
    g_.v(logits).role = Role::Output;
    g_.v(logits).name = "logits";
    if (tp_.chips > 1) g_.v(logits).shard = Shard{1, vocab.ranges, {rows, m_.vocab}};
    g_.outputs = {logits};
    return std::move(g_);
  }

 private:
  std::string layer_prefix(int64_t l) const {
    return m_.family == "gpt2" ? fmt::format("transformer.h.{}.", l)
           : m_.family == "opt" ? fmt::format("model.decoder.layers.{}.", l)
                                : fmt::format("model.layers.{}.", l);
  }

  int weight(const std::string& name, std::vector<int64_t> shape) {
    return g_.value(name, std::move(shape), Dtype::Bf16, Role::Weight);
  }

  // Units (heads, features) [first, first + count) of `unit` indices each, `offset` on.
  static Cut cut(int64_t first, int64_t count, int64_t unit, int64_t offset = 0) {
    return {{{offset + first * unit, offset + (first + count) * unit}}, count * unit};
  }
  // An even split of n indices (the last chips' parts padded when n does not divide).
  Cut cut_evenly(int64_t n) const {
    if (tp_.chips == 1) return {{}, n};
    const int64_t each = (n + tp_.chips - 1) / tp_.chips, first = std::min(n, tp_.rank * each);
    return {{{first, std::min(n, first + each)}}, each};
  }

  // This chip's part of weight `name` (whole shape `whole`): `c` along `axis`.
  int part(const std::string& name, std::vector<int64_t> whole, int axis, const Cut& c) {
    if (c.whole()) return weight(name, std::move(whole));
    std::vector<int64_t> shape = whole;
    shape[size_t(axis)] = c.size;
    const int v = weight(name, shape);
    if (shape != whole || c.ranges.size() > 1) g_.v(v).shard = Shard{axis, c.ranges, std::move(whole)};
    return v;
  }

  // Heads and features per chip; the model's sizes must split evenly.
  void split_heads_and_features() {
    const int64_t n = tp_.chips;
    if (n < 1 || tp_.rank < 0 || tp_.rank >= n) {
      throw CompileError(fmt::format("chip {} of a {}-chip tensor-parallel split", tp_.rank, n));
    }
    if (const std::string why = tensor_parallel_problem(m_, n); !why.empty()) {
      std::string fits;  // the fewer chips it splits over
      for (int64_t k = 2; k < n; ++k) {
        if (tensor_parallel_problem(m_, k).empty()) fits += (fits.empty() ? "" : ", ") + std::to_string(k);
      }
      throw CompileError(fmt::format("{}: {} (tensor parallelism); {}", m_.name, why,
                                     fits.empty() ? "it runs on one chip only" : "it splits over " + fits + " chips"));
    }
    const int64_t ep = tp_.experts;
    if (ep != 1 && m_.experts == 0) throw CompileError(fmt::format("{} has no experts to split (ep {})", m_.name, ep));
    if (ep < 1 || n % ep != 0 || (m_.experts > 0 && m_.experts % ep != 0)) {
      throw CompileError(fmt::format("{}: ep {} must divide both its {} experts and the {} chips", m_.name, ep,
                                     m_.experts, n));
    }
    heads_ = m_.heads / n, intermediate_ = m_.intermediate / n;
    // Experts: ep groups of n / ep chips; a group holds E / ep experts, split by features.
    const int64_t per_group = n / ep;
    local_experts_ = m_.experts / ep, expert_first_ = tp_.rank / per_group * local_experts_;
    expert_rank_ = tp_.rank % per_group, expert_inter_ = m_.intermediate / per_group;
    kv_heads_ = m_.kv_heads >= n ? m_.kv_heads / n : 1;  // fewer: replicated, n / kv_heads chips share each
    kv_first_ = m_.kv_heads >= n ? tp_.rank * kv_heads_ : tp_.rank * m_.kv_heads / n;
  }

  // After a Linear whose inputs were split across chips: the sum of every chip's result.
  int all_reduce(int x, const std::string& name, int64_t layer) {
    if (tp_.chips == 1) return x;
    std::vector<int64_t> group(size_t(tp_.chips));
    for (int64_t c = 0; c < tp_.chips; ++c) group[size_t(c)] = c;
    return add_op(OpKind::AllReduce, name, {x}, g_.v(x).shape, layer, {{"group", group}});
  }

  int add_op(OpKind kind, const std::string& name, std::vector<int> in, std::vector<int64_t> shape, int64_t layer,
             std::map<std::string, AttrValue> attrs = {}) {
    if (layer >= 0) attrs["layer"] = layer;
    return g_.op(kind, name, std::move(in), name, std::move(shape), std::move(attrs));
  }

  // Every token's position, sequence after sequence; `one`: a uniform step's first sequence's
  // (which every sequence shares).
  std::vector<int64_t> positions(bool one = false) const {
    std::vector<int64_t> p;
    const size_t sequences = one && !ragged_ ? 1 : steps_.size();
    for (size_t b = 0; b < sequences; ++b) {
      for (int64_t s = 0; s < steps_[b].tokens; ++s) p.push_back(steps_[b].past + s + m_.position_offset);
    }
    return p;
  }

  std::string embed_table_name() const {
    return m_.family == "gpt2"  ? "transformer.wte.weight"
           : m_.family == "opt" ? "model.decoder.embed_tokens.weight"
                                : "model.embed_tokens.weight";
  }

  int embed() {
    embed_table_ = weight(embed_table_name(), {m_.vocab, m_.hidden});
    std::vector<int64_t> ids = w_.token_ids;
    if (ids.empty()) {
      for (int64_t t = 0; t < tokens_; ++t) ids.push_back((t * 7919 + 1) % m_.vocab);  // a fixed pattern
    }
    int x = add_op(OpKind::Embedding, "embed_tokens", {embed_table_}, {tokens_, m_.hidden}, -1, {{"rows", ids}});
    if (!m_.rope) {
      const std::string pos_name = m_.family == "gpt2" ? "transformer.wpe.weight" : "model.decoder.embed_positions.weight";
      const int pos_table = weight(pos_name, {m_.max_positions + m_.position_offset, m_.hidden});
      const int pos =
          add_op(OpKind::Embedding, "embed_positions", {pos_table}, {tokens_, m_.hidden}, -1, {{"rows", positions()}});
      x = add_op(OpKind::Add, "embed_sum", {x, pos}, {tokens_, m_.hidden}, -1);
    }
    return x;
  }

  int norm(const std::string& base, int x, int64_t layer, const std::string& name) {
    const int w = weight(base + ".weight", {m_.hidden});
    std::map<std::string, AttrValue> attrs{{"eps", m_.norm_eps}};
    if (m_.layer_norm) {
      const int b = weight(base + ".bias", {m_.hidden});
      return add_op(OpKind::LayerNorm, name, {x, w, b}, g_.v(x).shape, layer, attrs);
    }
    return add_op(OpKind::RmsNorm, name, {x, w}, g_.v(x).shape, layer, attrs);
  }

  int linear(const std::string& name, int x, int w, int b, std::vector<int64_t> shape, int64_t layer,
             const std::string& act = "") {
    std::vector<int> in{x, w};
    if (b >= 0) in.push_back(b);
    std::map<std::string, AttrValue> attrs;
    if (!act.empty()) attrs["act"] = act;
    return add_op(OpKind::Linear, name, in, std::move(shape), layer, attrs);
  }

  // A Linear layer whose weight (and bias) carry Hugging Face names; split across chips by
  // output rows (`rows`: each chip makes some of the features) or input columns (`cols`: each
  // makes a partial sum of all of them, its bias added by chip 0 only).
  int proj(const std::string& base, const std::string& op_name, int x, int64_t out, int64_t in, bool bias, int64_t layer,
           const Cut& rows = {}, const Cut& cols = {}) {
    const int w = rows.whole() ? part(base + ".weight", {out, in}, 1, cols) : part(base + ".weight", {out, in}, 0, rows);
    int b = -1;
    if (bias) {
      b = part(base + ".bias", {out}, 0, rows);
      if (!cols.whole() && tp_.rank > 0) g_.v(b).shard = Shard{0, {}, {out}};
    }
    return linear(op_name, x, w, b, {tokens_, rows.whole() ? out : rows.size}, layer);
  }

  // Layer `model_layer` of the model, the stage's `l`-th.
  int layer(int64_t model_layer, int64_t l, int x) {
    const std::string p = layer_prefix(model_layer);
    const std::string n = fmt::format("l{}.", l);
    // This chip's heads and features (all of them on one chip).
    const int64_t d = m_.head_dim, q_dim = heads_ * d, kv_dim = kv_heads_ * d;
    const Cut q_cut = tp_.chips > 1 ? cut(tp_.rank * heads_, heads_, d) : Cut{};
    const Cut kv_cut = tp_.chips > 1 ? cut(kv_first_, kv_heads_, d) : Cut{};
    const Cut mlp_cut = tp_.chips > 1 ? cut(tp_.rank * intermediate_, intermediate_, 1) : Cut{};
    const bool gpt2 = m_.family == "gpt2", opt = m_.family == "opt";

    // Attention
    const std::string ln1 = gpt2 ? p + "ln_1" : opt ? p + "self_attn_layer_norm" : p + "input_layernorm";
    int h = norm(ln1, x, l, n + "attn_norm");
    int q, k, v;
    if (gpt2) {
      // One weight [q; k; v]: this chip's rows of each.
      Cut qkv_cut;
      if (tp_.chips > 1) {
        const int64_t whole_q = m_.heads * d, whole_kv = m_.kv_heads * d;
        qkv_cut.ranges = {q_cut.ranges[0], cut(kv_first_, kv_heads_, d, whole_q).ranges[0],
                          cut(kv_first_, kv_heads_, d, whole_q + whole_kv).ranges[0]};
        qkv_cut.size = q_dim + 2 * kv_dim;
      }
      const int qkv = proj(p + "attn.c_attn", n + "qkv_proj", h, m_.heads * d + 2 * m_.kv_heads * d, m_.hidden, true,
                           l, qkv_cut);
      Op split;
      split.kind = OpKind::Split;
      split.name = n + "qkv_split";
      split.inputs = {qkv};
      split.attrs = {{"axis", int64_t(1)}, {"sizes", std::vector<int64_t>{q_dim, kv_dim, kv_dim}}, {"layer", l}};
      for (const char* part : {"q", "k", "v"}) {
        split.outputs.push_back(g_.value(n + part, {tokens_, std::string(part) == "q" ? q_dim : kv_dim}, Dtype::Bf16, Role::Activation));
      }
      q = split.outputs[0], k = split.outputs[1], v = split.outputs[2];
      g_.add_op(std::move(split));
    } else {
      const std::string attn = opt ? p + "self_attn." : p + "self_attn.";
      q = proj(attn + "q_proj", n + "q_proj", h, m_.heads * d, m_.hidden, m_.qkv_bias, l, q_cut);
      k = proj(attn + "k_proj", n + "k_proj", h, m_.kv_heads * d, m_.hidden, m_.qkv_bias, l, kv_cut);
      v = proj(attn + "v_proj", n + "v_proj", h, m_.kv_heads * d, m_.hidden, m_.qkv_bias, l, kv_cut);
    }
    const int64_t batch = int64_t(steps_.size());
    if (m_.rope) {
      if (rope_cos_ < 0) rope_tables();
      // Token t takes table row t % seq: a uniform step's tables hold one sequence's positions.
      std::map<std::string, AttrValue> rope_attrs{{"seq", g_.v(rope_cos_).shape[0]}, {"head_dim", m_.head_dim}};
      rope_attrs["heads"] = heads_;
      q = add_op(OpKind::Rope, n + "q_rope", {q, rope_cos_, rope_sin_}, {tokens_, q_dim}, l, rope_attrs);
      rope_attrs["heads"] = kv_heads_;
      k = add_op(OpKind::Rope, n + "k_rope", {k, rope_cos_, rope_sin_}, {tokens_, kv_dim}, l, rope_attrs);
    }
    const int64_t cache_len = w_.capacity();
    const int kc = g_.value(fmt::format("kv_cache.{}.k", model_layer), {batch, kv_heads_, cache_len, d}, Dtype::Bf16, Role::KvCache);
    const int vc = g_.value(fmt::format("kv_cache.{}.v", model_layer), {batch, kv_heads_, cache_len, d}, Dtype::Bf16, Role::KvCache);
    std::map<std::string, AttrValue> attn_attrs{{"batch", batch}, {"head_dim", m_.head_dim}};
    if (ragged_) {
      std::vector<int64_t> seq_lens, past_lens;
      for (const SequenceStep& s : steps_) seq_lens.push_back(s.tokens), past_lens.push_back(s.past);
      attn_attrs["seq_lens"] = seq_lens, attn_attrs["past_lens"] = past_lens;
    } else {
      attn_attrs["seq"] = steps_.at(0).tokens, attn_attrs["past"] = steps_.at(0).past;
    }
    attn_attrs["heads"] = heads_;
    attn_attrs["kv_heads"] = kv_heads_;
    attn_attrs["causal"] = int64_t(1);
    attn_attrs["capacity"] = cache_len;
    const int a = add_op(OpKind::Attention, n + "attention", {q, k, v, kc, vc}, {tokens_, q_dim}, l, attn_attrs);
    const std::string o_name = gpt2 ? p + "attn.c_proj" : opt ? p + "self_attn.out_proj" : p + "self_attn.o_proj";
    const int o = all_reduce(proj(o_name, n + "o_proj", a, m_.hidden, m_.heads * d, m_.out_bias, l, {}, q_cut),
                             n + "attn_all_reduce", l);
    x = add_op(OpKind::Add, n + "attn_residual", {x, o}, {tokens_, m_.hidden}, l);

    // MLP
    const std::string ln2 = gpt2 ? p + "ln_2" : opt ? p + "final_layer_norm" : p + "post_attention_layernorm";
    h = norm(ln2, x, l, n + "mlp_norm");
    int mlp;
    if (m_.experts > 0) {
      // Every chip routes every token over all experts (the router is small) and runs its own
      // experts' part on the tokens routed to them; the all-reduce sums the chips' parts.
      const int router_w = weight(p + "block_sparse_moe.gate.weight", {m_.experts, m_.hidden});
      const int logits = linear(n + "router", h, router_w, -1, {tokens_, m_.experts}, l);
      const Cut expert_cut = tp_.chips > 1 ? cut(expert_rank_ * expert_inter_, expert_inter_, 1) : Cut{};
      std::vector<int> in{h, logits};
      for (int64_t e = expert_first_; e < expert_first_ + local_experts_; ++e) {
        const std::string ep = fmt::format("{}block_sparse_moe.experts.{}.", p, e);
        in.push_back(part(ep + "w1.weight", {m_.intermediate, m_.hidden}, 0, expert_cut));
        in.push_back(part(ep + "w3.weight", {m_.intermediate, m_.hidden}, 0, expert_cut));
        in.push_back(part(ep + "w2.weight", {m_.hidden, m_.intermediate}, 1, expert_cut));
      }
      mlp = add_op(OpKind::MoeExperts, n + "experts", in, {tokens_, m_.hidden}, l,
                   {{"experts", local_experts_}, {"routed_experts", m_.experts}, {"expert_first", expert_first_},
                    {"intermediate", expert_inter_}, {"top_k", m_.experts_per_token}});
    } else if (m_.gated_mlp) {
      const int gate = proj(p + "mlp.gate_proj", n + "gate_proj", h, m_.intermediate, m_.hidden, m_.mlp_bias, l, mlp_cut);
      const int up = proj(p + "mlp.up_proj", n + "up_proj", h, m_.intermediate, m_.hidden, m_.mlp_bias, l, mlp_cut);
      const int act = add_op(OpKind::Silu, n + "gate_act", {gate}, {tokens_, intermediate_}, l);
      const int prod = add_op(OpKind::Mul, n + "gate_mul", {act, up}, {tokens_, intermediate_}, l);
      mlp = proj(p + "mlp.down_proj", n + "down_proj", prod, m_.hidden, m_.intermediate, m_.mlp_bias, l, {}, mlp_cut);
    } else {
      const std::string fc = gpt2 ? p + "mlp.c_fc" : p + "fc1";
      const std::string out = gpt2 ? p + "mlp.c_proj" : p + "fc2";
      const int f = proj(fc, n + "fc", h, m_.intermediate, m_.hidden, m_.mlp_bias, l, mlp_cut);
      const OpKind act = m_.act == "relu" ? OpKind::Relu : m_.act == "silu" ? OpKind::Silu : OpKind::Gelu;
      const int a2 = add_op(act, n + "fc_act", {f}, {tokens_, intermediate_}, l);
      mlp = proj(out, n + "fc_out", a2, m_.hidden, m_.intermediate, m_.mlp_bias, l, {}, mlp_cut);
    }
    mlp = all_reduce(mlp, n + "mlp_all_reduce", l);
    return add_op(OpKind::Add, n + "mlp_residual", {x, mlp}, {tokens_, m_.hidden}, l);
  }

  // cos and sin of position * inv_freq[i] for the positions of this step, i < D/2.
  void rope_tables() {
    const int64_t half = m_.head_dim / 2;
    const std::vector<int64_t> pos = positions(true);
    const std::vector<double> inv_freq = m_.rope_inv_freq();
    auto cos = std::make_shared<std::vector<float>>(), sin = std::make_shared<std::vector<float>>();
    for (int64_t p : pos) {
      for (int64_t i = 0; i < half; ++i) {
        const double angle = double(p) * inv_freq[size_t(i)];
        cos->push_back(float(std::cos(angle)));
        sin->push_back(float(std::sin(angle)));
      }
    }
    const std::vector<int64_t> shape{int64_t(pos.size()), half};
    rope_cos_ = g_.value("rope.cos", shape, Dtype::Fp32, Role::Weight);
    rope_sin_ = g_.value("rope.sin", shape, Dtype::Fp32, Role::Weight);
    g_.v(rope_cos_).data = cos;
    g_.v(rope_sin_).data = sin;
  }

  const ModelConfig& m_;
  const Workload& w_;
  const TensorParallel tp_;
  const PipelineStage stage_;
  int64_t heads_ = 0, kv_heads_ = 0, kv_first_ = 0, intermediate_ = 0;  // this chip's
  int64_t local_experts_ = 0, expert_first_ = 0, expert_rank_ = 0, expert_inter_ = 0;  // its experts
  Graph g_;
  const std::vector<SequenceStep> steps_;
  bool ragged_ = false;  // sequences of unlike steps
  int64_t tokens_ = 0;
  int embed_table_ = -1;
  int rope_cos_ = -1, rope_sin_ = -1;
};

}  // namespace

std::pair<int64_t, int64_t> PipelineStage::layers(int64_t layers) const {
  const int64_t each = layers / stages, more = layers % stages;  // the first `more` take one more
  const int64_t first = stage * each + std::min(stage, more);
  return {first, first + each + (stage < more ? 1 : 0)};
}

Graph build_graph(const ModelConfig& m, const Workload& w, const TensorParallel& tp, const PipelineStage& stage) {
  return GraphBuilder(m, w, tp, stage).build();
}

}  // namespace tessera::compiler
