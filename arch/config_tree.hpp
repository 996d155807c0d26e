// A YAML/JSON document as a tree that remembers where every value came from (file, line,
// column), so that errors about a merged, overridden description still point at the text the
// user wrote.
#pragma once

#include <filesystem>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace tessera::arch {

struct SourceLoc {
  std::string file;  // a path, or "<command line>" for -s overrides
  int line = 0;      // 1-based; 0 when unknown
  int column = 0;    // 1-based; 0 when unknown
  std::string str() const;  // "file:line:column", "file:line" or "file"
};

// One problem found in a description: where, which key, what is wrong.
struct Problem {
  SourceLoc loc;
  std::string key_path;  // "chip.tile.sram.capacity"; empty for document-level problems
  std::string message;
  std::string str() const;  // "file:line:col: chip.tile.sram.capacity: message"
};

// Every error from loading or validating a description. what() lists all problems, one a line.
class ArchError : public std::runtime_error {
 public:
  explicit ArchError(std::vector<Problem> problems);
  // One problem.
  ArchError(SourceLoc loc, std::string key_path, std::string message);
  const std::vector<Problem>& problems() const { return problems_; }

 private:
  std::vector<Problem> problems_;
};

struct ConfigNode {
  enum class Kind { Null, Scalar, Map, Seq };
  Kind kind = Kind::Null;
  std::string scalar;                                   // Scalar
  std::vector<std::pair<std::string, ConfigNode>> map;  // Map, in document order
  std::vector<ConfigNode> seq;                          // Seq
  SourceLoc loc;

  bool is_map() const { return kind == Kind::Map; }
  bool is_scalar() const { return kind == Kind::Scalar; }
  const ConfigNode* find(std::string_view key) const;
  ConfigNode* find(std::string_view key);
  // Follows a dotted path ("chip.tile.sram"); nullptr when any step is missing.
  const ConfigNode* find_path(std::string_view dotted) const;
  void erase(std::string_view key);
};

// Parses YAML (and therefore JSON) text. Duplicate keys and syntax errors raise ArchError.
ConfigNode parse_config_text(std::string_view text, const std::string& source_name);
ConfigNode parse_config_file(const std::filesystem::path& path);

// Deep merge: maps merge key by key, anything else in `overlay` replaces what `base` had.
void merge_into(ConfigNode& base, const ConfigNode& overlay);

// Applies one "-s key.path=value" override, creating intermediate maps as needed. The value is
// parsed as YAML and replaces what was there, so "-s chip.mesh={cols: 4, rows: 4}" works as well
// as "-s chip.clock=2GHz".
void apply_override(ConfigNode& root, std::string_view assignment);

}  // namespace tessera::arch
