#include "arch/loader.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>

#include "arch/validate.hpp"

namespace tessera::arch {

// Generated at build time from arch/presets/*.yaml (see arch/CMakeLists.txt).
struct EmbeddedPreset {
  std::string_view name;
  std::string_view source;  // repository path, used in messages
  std::string_view text;
};
extern const EmbeddedPreset kEmbeddedPresets[];
extern const size_t kEmbeddedPresetsCount;

namespace {

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

std::string did_you_mean(std::string_view key, const std::vector<std::string>& known) {
  std::string best;
  size_t best_distance = 3;  // suggest only close matches
  for (const std::string& k : known) {
    size_t d = edit_distance(key, k);
    if (d < best_distance) best_distance = d, best = k;
  }
  return best.empty() ? "" : " (did you mean '" + best + "'?)";
}

std::string join(const std::vector<std::string>& items, std::string_view sep = ", ") {
  std::string s;
  for (const std::string& item : items) {
    if (!s.empty()) s += sep;
    s += item;
  }
  return s;
}

// Walks the schema (Arch::visit) over a ConfigNode tree, filling the struct and collecting
// problems: missing required keys, unknown keys, values that are not of the field's kind.
class TreeReader {
 public:
  TreeReader(const ConfigNode& root, std::vector<Problem>& problems) : problems_(problems) {
    frames_.push_back({&root, "", root.loc, {}, {}});
  }

  void finish() { close_frame(); }

  void field(std::string_view key, int64_t& v, const FieldSpec& s) {
    if (auto x = number(key, s, Dim::Count)) {
      if (std::fabs(*x) > 9.0e15) {
        problem(key, "value too large");
      } else {
        v = static_cast<int64_t>(*x);
      }
    }
  }

  void field(std::string_view key, double& v, const FieldSpec& s) {
    if (auto x = number(key, s, s.dim)) v = *x;
  }

  void field(std::string_view key, std::optional<double>& v, const FieldSpec& s) {
    v.reset();
    if (lookup(key) == nullptr) return;  // optional: absence is meaningful
    v = number(key, s, s.dim);
  }

  void field(std::string_view key, std::string& v, const FieldSpec& s) {
    const ConfigNode* n = lookup(key);
    if (n == nullptr) {
      if (s.def_text) {
        v = std::string(*s.def_text);
      } else {
        missing(key);
      }
      return;
    }
    if (!n->is_scalar()) {
      problem_at(n->loc, key, "expected text, got a " + kind_name(*n));
      return;
    }
    v = n->scalar;
  }

  template <class E>
  void choice(std::string_view key, E& v, const FieldSpec& s) {
    std::string text;
    FieldSpec as_text = s;
    field(key, text, as_text);
    if (text.empty()) return;  // missing: already reported
    std::vector<std::string> options;
    for (const auto& [value, name] : EnumTraits<E>::names) {
      if (name == text) {
        v = value;
        return;
      }
      options.emplace_back(name);
    }
    const ConfigNode* n = lookup(key);
    problem_at(n ? n->loc : frames_.back().loc, key,
               "'" + text + "' is not one of: " + join(options) + did_you_mean(text, options));
  }

  void table(std::string_view key, DtypeTable& v, const FieldSpec& s) {
    v.values.clear();
    const ConfigNode* n = lookup(key);
    if (n == nullptr) {
      missing(key);
      return;
    }
    if (!n->is_map()) {
      problem_at(n->loc, key, "expected a map of dtype to value, got a " + kind_name(*n));
      return;
    }
    std::vector<std::string> dtypes(kArrayDtypes.begin(), kArrayDtypes.end());
    for (const auto& [dtype, value] : n->map) {
      std::string path = child_path(key) + "." + dtype;
      if (std::find(dtypes.begin(), dtypes.end(), dtype) == dtypes.end()) {
        problems_.push_back({value.loc, path,
                             "unknown dtype; known: " + join(dtypes) + did_you_mean(dtype, dtypes)});
        continue;
      }
      if (auto x = parse(value, path, s, s.dim)) v.values[dtype] = *x;
    }
  }

  template <class F>
  void group(std::string_view key, std::string_view /*doc*/, F&& body) {
    open_frame(key);
    body();
    close_frame();
  }

  template <class F>
  void optional_group(std::string_view key, std::string_view /*doc*/, bool& present, F&& body) {
    present = lookup(key) != nullptr;
    if (present) group(key, "", body);
  }

 private:
  struct Frame {
    const ConfigNode* node;  // nullptr when the group is absent from the document
    std::string path;
    SourceLoc loc;           // where to report problems about this group
    std::vector<std::string> known;    // keys the schema asked for
    std::vector<std::string> missing;  // required keys missing under an absent group
  };

  static std::string kind_name(const ConfigNode& n) {
    switch (n.kind) {
      case ConfigNode::Kind::Map: return "map";
      case ConfigNode::Kind::Seq: return "list";
      case ConfigNode::Kind::Scalar: return "value";
      case ConfigNode::Kind::Null: return "empty value";
    }
    return "value";
  }

  std::string child_path(std::string_view key) const {
    const std::string& base = frames_.back().path;
    return base.empty() ? std::string(key) : base + "." + std::string(key);
  }

  const ConfigNode* lookup(std::string_view key) {
    Frame& f = frames_.back();
    if (std::find(f.known.begin(), f.known.end(), key) == f.known.end()) f.known.emplace_back(key);
    return f.node == nullptr ? nullptr : f.node->find(key);
  }

  void problem(std::string_view key, std::string message) {
    problem_at(frames_.back().loc, key, std::move(message));
  }

  void problem_at(const SourceLoc& loc, std::string_view key, std::string message) {
    problems_.push_back({loc, child_path(key), std::move(message)});
  }

  // A required key is absent. Under a group that is itself absent, the keys are gathered and
  // reported once, at the group.
  void missing(std::string_view key) {
    for (Frame& f : frames_) {
      if (f.node == nullptr) {
        std::string rel = child_path(key).substr(f.path.size() + 1);
        f.missing.push_back(rel);
        return;
      }
    }
    problem(key, "missing required key");
  }

  std::optional<double> number(std::string_view key, const FieldSpec& s, Dim dim) {
    const ConfigNode* n = lookup(key);
    if (n == nullptr) {
      if (s.def) return s.def;
      missing(key);
      return std::nullopt;
    }
    return parse(*n, child_path(key), s, dim);
  }

  std::optional<double> parse(const ConfigNode& n, const std::string& path, const FieldSpec& s,
                              Dim dim) {
    if (!n.is_scalar()) {
      problems_.push_back({n.loc, path, "expected a " +
                                            std::string(dim == Dim::Count ? "whole number" : "value") +
                                            ", got a " + kind_name(n)});
      return std::nullopt;
    }
    double x = 0;
    try {
      x = parse_quantity(n.scalar, dim);
    } catch (const QuantityError& e) {
      problems_.push_back({n.loc, path, e.what()});
      return std::nullopt;
    }
    if (s.bound == Bound::Positive && !(x > 0)) {
      problems_.push_back({n.loc, path, "must be greater than zero, got '" + n.scalar + "'"});
      return std::nullopt;
    }
    if (s.bound == Bound::NonNegative && !(x >= 0)) {
      problems_.push_back({n.loc, path, "must not be negative, got '" + n.scalar + "'"});
      return std::nullopt;
    }
    return x;
  }

  void open_frame(std::string_view key) {
    const ConfigNode* n = lookup(key);
    SourceLoc loc = frames_.back().loc;
    if (n != nullptr) {
      loc = n->loc;
      if (!n->is_map()) {
        problem_at(n->loc, key, "expected a map of keys, got a " + kind_name(*n));
        n = nullptr;
      }
    }
    frames_.push_back({n, child_path(key), loc, {}, {}});
  }

  void close_frame() {
    Frame f = std::move(frames_.back());
    frames_.pop_back();
    if (f.node != nullptr) {
      for (const auto& [key, value] : f.node->map) {
        if (std::find(f.known.begin(), f.known.end(), key) != f.known.end()) continue;
        std::string path = f.path.empty() ? key : f.path + "." + key;
        problems_.push_back({value.loc, path, "unknown key" + did_you_mean(key, f.known)});
      }
    } else if (!f.missing.empty()) {
      problems_.push_back({f.loc, f.path, "missing required key (with " + join(f.missing) + ")"});
    }
  }

  std::vector<Frame> frames_;
  std::vector<Problem>& problems_;
};

bool looks_like_path(std::string_view s) {
  return s.find('/') != std::string_view::npos || s.ends_with(".yaml") || s.ends_with(".yml") ||
         s.ends_with(".json");
}

std::string stem_of(std::string_view path) { return std::filesystem::path(path).stem().string(); }

ConfigNode resolve_document(std::string_view name_or_path, const std::filesystem::path& base_dir,
                            std::vector<std::string>& chain) {
  ConfigNode doc;
  std::string id;
  std::filesystem::path dir = base_dir;
  if (looks_like_path(name_or_path)) {
    std::filesystem::path p(name_or_path);
    if (p.is_relative() && !base_dir.empty()) p = base_dir / p;
    doc = parse_config_file(p);
    id = std::filesystem::weakly_canonical(p).string();
    dir = p.parent_path();
  } else {
    std::string_view text = preset_text(name_or_path);
    std::string source;
    for (size_t i = 0; i < kEmbeddedPresetsCount; ++i) {
      if (kEmbeddedPresets[i].name == name_or_path) source = kEmbeddedPresets[i].source;
    }
    doc = parse_config_text(text, source);
    id = std::string(name_or_path);
    dir.clear();  // a preset's extends names another preset
  }
  doc.loc.line = 0;  // the document as a whole: report by file
  if (std::find(chain.begin(), chain.end(), id) != chain.end()) {
    throw ArchError(doc.loc, "extends", "extends chain loops back to '" + id + "'");
  }
  chain.push_back(id);
  if (doc.find("name") == nullptr) {
    ConfigNode name{ConfigNode::Kind::Scalar, stem_of(name_or_path), {}, {}, doc.loc};
    doc.map.insert(doc.map.begin(), {"name", name});
  }
  if (const ConfigNode* ext = doc.find("extends")) {
    if (!ext->is_scalar() || ext->scalar.empty()) {
      throw ArchError(ext->loc, "extends", "expected the name of a preset or a file path");
    }
    ConfigNode base;
    try {
      base = resolve_document(ext->scalar, dir, chain);
    } catch (const ArchError& e) {
      std::vector<Problem> problems = e.problems();
      problems.push_back({ext->loc, "extends", "while loading '" + ext->scalar + "'"});
      throw ArchError(problems);
    }
    doc.erase("extends");
    merge_into(base, doc);
    base.loc = doc.loc;
    return base;
  }
  return doc;
}

}  // namespace

double DtypeTable::at(std::string_view dtype) const {
  auto it = values.find(dtype);
  if (it == values.end()) throw std::out_of_range("dtype '" + std::string(dtype) + "' not in table");
  return it->second;
}

const VectorOpTiming& VectorParams::op(std::string_view name) const {
  for (size_t i = 0; i < kVectorOps.size(); ++i) {
    if (kVectorOps[i].name == name) return ops[i];
  }
  throw std::out_of_range("unknown vector op '" + std::string(name) + "'");
}

std::vector<std::string> preset_names() {
  std::vector<std::string> names;
  for (size_t i = 0; i < kEmbeddedPresetsCount; ++i) names.emplace_back(kEmbeddedPresets[i].name);
  std::sort(names.begin(), names.end());
  return names;
}

std::string_view preset_text(std::string_view name) {
  for (size_t i = 0; i < kEmbeddedPresetsCount; ++i) {
    if (kEmbeddedPresets[i].name == name) return kEmbeddedPresets[i].text;
  }
  std::vector<std::string> names = preset_names();
  throw ArchError(SourceLoc{std::string(name)}, "",
                    "no such preset or file; presets: " + join(names) + did_you_mean(name, names));
}

ConfigNode resolve_config(std::string_view name_or_path, const std::vector<std::string>& overrides) {
  std::vector<std::string> chain;
  ConfigNode root = resolve_document(name_or_path, {}, chain);
  for (const std::string& o : overrides) apply_override(root, o);
  return root;
}

Arch arch_from_config(const ConfigNode& root) {
  std::vector<Problem> problems;
  Arch arch;
  TreeReader reader(root, problems);
  arch.visit(reader);
  reader.finish();
  if (problems.empty()) validate(arch, root, problems);
  if (!problems.empty()) throw ArchError(problems);
  return arch;
}

Arch load_arch(std::string_view name_or_path, const std::vector<std::string>& overrides) {
  return arch_from_config(resolve_config(name_or_path, overrides));
}

}  // namespace tessera::arch
