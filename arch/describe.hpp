// Views of a description produced from the schema: the parameter reference (`arch schema`),
// every value with its unit (`arch show`), JSON, and differences between two designs.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "arch/arch.hpp"
#include "arch/derived.hpp"

namespace tessera::arch {

struct SchemaRow {
  std::string path;      // "chip.tile.sram.capacity"
  std::string kind;      // "bytes (B)", "one of: ws, os", "group", ...
  std::string default_;  // "required", "optional", or the default value
  std::string doc;
};
std::vector<SchemaRow> schema_rows();

// Every parameter of a design as (key path, value text with unit), in schema order.
struct ValueRow {
  std::string path;
  std::string text;
};
std::vector<ValueRow> value_rows(const Arch& arch);
std::vector<ValueRow> derived_rows(const Derived& d);

// The design as JSON, values in SI base units, plus "derived" when asked.
nlohmann::json to_json(const Arch& arch);
nlohmann::json to_json(const Derived& d);

// Parameters whose values differ between a and b: (path, text in a, text in b).
struct DiffRow {
  std::string path;
  std::string a;
  std::string b;
};
std::vector<DiffRow> diff(const Arch& a, const Arch& b);

// A stable 64-bit hash of every parameter (FNV-1a over the canonical JSON), so a compiled
// program can say which design it was compiled for.
uint64_t fingerprint(const Arch& arch);

}  // namespace tessera::arch
