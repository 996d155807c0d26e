#include "arch/config_tree.hpp"

#include <yaml-cpp/yaml.h>

#include <fstream>
#include <sstream>

namespace tessera::arch {

std::string SourceLoc::str() const {
  std::string s = file.empty() ? "<input>" : file;
  if (line > 0) {
    s += ":" + std::to_string(line);
    if (column > 0) s += ":" + std::to_string(column);
  }
  return s;
}

std::string Problem::str() const {
  std::string s = loc.str() + ": ";
  if (!key_path.empty()) s += key_path + ": ";
  return s + message;
}

namespace {
std::string join_problems(const std::vector<Problem>& problems) {
  std::string s;
  for (const Problem& p : problems) {
    if (!s.empty()) s += "\n";
    s += p.str();
  }
  return s;
}

SourceLoc loc_of(const YAML::Mark& mark, const std::string& file) {
  // yaml-cpp marks are 0-based; a mark of -1 means unknown.
  return {file, mark.line >= 0 ? mark.line + 1 : 0, mark.column >= 0 ? mark.column + 1 : 0};
}

ConfigNode convert(const YAML::Node& y, const std::string& file) {
  ConfigNode n;
  n.loc = loc_of(y.Mark(), file);
  switch (y.Type()) {
    case YAML::NodeType::Undefined:
    case YAML::NodeType::Null: n.kind = ConfigNode::Kind::Null; break;
    case YAML::NodeType::Scalar:
      n.kind = ConfigNode::Kind::Scalar;
      n.scalar = y.Scalar();
      break;
    case YAML::NodeType::Sequence:
      n.kind = ConfigNode::Kind::Seq;
      for (const YAML::Node& item : y) n.seq.push_back(convert(item, file));
      break;
    case YAML::NodeType::Map:
      n.kind = ConfigNode::Kind::Map;
      for (const auto& kv : y) {
        if (!kv.first.IsScalar()) {
          throw ArchError(loc_of(kv.first.Mark(), file), "", "map keys must be plain names");
        }
        std::string key = kv.first.Scalar();
        if (n.find(key) != nullptr) {
          throw ArchError(loc_of(kv.first.Mark(), file), key, "duplicate key");
        }
        ConfigNode child = convert(kv.second, file);
        if (child.kind == ConfigNode::Kind::Null) child.loc = loc_of(kv.first.Mark(), file);
        n.map.emplace_back(std::move(key), std::move(child));
      }
      break;
  }
  return n;
}
void relocate(ConfigNode& n, const SourceLoc& where) {
  n.loc = where;
  for (auto& kv : n.map) relocate(kv.second, where);
  for (auto& item : n.seq) relocate(item, where);
}

// The right-hand side of an override, parsed as YAML; every node of it is located at the
// override itself.
ConfigNode parse_config_value(std::string_view text, const SourceLoc& where) {
  ConfigNode value;
  try {
    value = convert(YAML::Load(std::string(text)), where.file);
  } catch (const YAML::Exception& e) {
    throw ArchError(where, "", "cannot parse the value: " + e.msg);
  }
  relocate(value, where);
  return value;
}
}  // namespace

ArchError::ArchError(std::vector<Problem> problems)
    : std::runtime_error(join_problems(problems)), problems_(std::move(problems)) {}

namespace {
std::vector<Problem> one_problem(SourceLoc loc, std::string key_path, std::string message) {
  std::vector<Problem> v(1);
  v[0].loc = std::move(loc);
  v[0].key_path = std::move(key_path);
  v[0].message = std::move(message);
  return v;
}
}  // namespace

ArchError::ArchError(SourceLoc loc, std::string key_path, std::string message)
    : ArchError(one_problem(std::move(loc), std::move(key_path), std::move(message))) {}

const ConfigNode* ConfigNode::find(std::string_view key) const {
  for (const auto& [k, v] : map) {
    if (k == key) return &v;
  }
  return nullptr;
}

ConfigNode* ConfigNode::find(std::string_view key) {
  return const_cast<ConfigNode*>(std::as_const(*this).find(key));
}

const ConfigNode* ConfigNode::find_path(std::string_view dotted) const {
  const ConfigNode* n = this;
  while (n != nullptr && !dotted.empty()) {
    size_t dot = dotted.find('.');
    n = n->find(dotted.substr(0, dot));
    dotted = dot == std::string_view::npos ? std::string_view{} : dotted.substr(dot + 1);
  }
  return n;
}

void ConfigNode::erase(std::string_view key) {
  std::erase_if(map, [&](const auto& kv) { return kv.first == key; });
}

ConfigNode parse_config_text(std::string_view text, const std::string& source_name) {
  try {
    YAML::Node root = YAML::Load(std::string(text));
    ConfigNode n = convert(root, source_name);
    if (n.kind == ConfigNode::Kind::Null) {
      n.kind = ConfigNode::Kind::Map;  // an empty document is an empty description
    }
    if (!n.is_map()) {
      throw ArchError(n.loc, "", "the document must be a map of keys to values");
    }
    return n;
  } catch (const YAML::Exception& e) {
    throw ArchError(loc_of(e.mark, source_name), "", "syntax error: " + e.msg);
  }
}

ConfigNode parse_config_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw ArchError(SourceLoc{path.string()}, "", "cannot open file");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_config_text(ss.str(), path.string());
}

void merge_into(ConfigNode& base, const ConfigNode& overlay) {
  if (!base.is_map() || !overlay.is_map()) {
    base = overlay;
    return;
  }
  for (const auto& [key, value] : overlay.map) {
    if (ConfigNode* existing = base.find(key)) {
      merge_into(*existing, value);
    } else {
      base.map.emplace_back(key, value);
    }
  }
}

void apply_override(ConfigNode& root, std::string_view assignment) {
  const SourceLoc where{"<command line>: -s " + std::string(assignment)};
  size_t eq = assignment.find('=');
  if (eq == std::string_view::npos || eq == 0) {
    throw ArchError(where, "", "an override must look like key.path=value");
  }
  std::string_view path = assignment.substr(0, eq);
  ConfigNode value = parse_config_value(assignment.substr(eq + 1), where);
  ConfigNode* node = &root;
  while (true) {
    size_t dot = path.find('.');
    std::string key(path.substr(0, dot));
    if (key.empty()) throw ArchError(where, std::string(path), "empty key in the path");
    if (!node->is_map()) {
      node->kind = ConfigNode::Kind::Map;
      node->scalar.clear();
      node->seq.clear();
    }
    ConfigNode* child = node->find(key);
    if (child == nullptr) {
      node->map.emplace_back(key, ConfigNode{ConfigNode::Kind::Null, {}, {}, {}, where});
      child = &node->map.back().second;
    }
    if (dot == std::string_view::npos) {
      *child = value;  // an override sets the value; only `extends` merges
      return;
    }
    node = child;
    path = path.substr(dot + 1);
  }
}

}  // namespace tessera::arch
