#include "arch/describe.hpp"

#include <fmt/format.h>

#include <map>

namespace tessera::arch {
namespace {

std::string kind_text(Dim dim) {
  switch (dim) {
    case Dim::Count: return "integer";
    case Dim::Ratio: return "number";
    default: return fmt::format("quantity ({}), e.g. {}", unit_symbol(dim), unit_example(dim));
  }
}

std::string default_text(const FieldSpec& s) {
  if (s.def) return format_quantity(*s.def, s.dim);
  return "required";
}

std::string join_path(const std::string& base, std::string_view key) {
  return base.empty() ? std::string(key) : base + "." + std::string(key);
}

// Lists the schema: one row per field and group.
class SchemaLister {
 public:
  std::vector<SchemaRow> rows;

  template <class T>
  void field(std::string_view key, T&, const FieldSpec& s) {
    add(key, kind_text(s.dim), default_text(s), s.doc);
  }
  void field(std::string_view key, std::optional<double>&, const FieldSpec& s) {
    add(key, kind_text(s.dim), "optional", s.doc);
  }
  void field(std::string_view key, std::string&, const FieldSpec& s) {
    add(key, "text", s.def_text ? fmt::format("\"{}\"", *s.def_text) : "required", s.doc);
  }
  template <class E>
  void choice(std::string_view key, E&, const FieldSpec& s) {
    std::string options;
    for (const auto& [v, name] : EnumTraits<E>::names) {
      options += options.empty() ? "" : ", ";
      options += name;
    }
    add(key, "one of: " + options, s.def_text ? std::string(*s.def_text) : "required", s.doc);
  }
  void table(std::string_view key, DtypeTable&, const FieldSpec& s) {
    std::string dtypes;
    for (std::string_view d : kArrayDtypes) dtypes += (dtypes.empty() ? "" : ", ") + std::string(d);
    add(key, "map of dtype (" + dtypes + ") to " + kind_text(s.dim), "required", s.doc);
  }
  template <class F>
  void group(std::string_view key, std::string_view doc, F&& body) {
    if (!doc.empty()) add(key, "group", "", doc);
    path_.push_back(join_path(path_.back(), key));
    body();
    path_.pop_back();
  }
  template <class F>
  void optional_group(std::string_view key, std::string_view doc, bool&, F&& body) {
    add(key, "group", "optional", doc);
    path_.push_back(join_path(path_.back(), key));
    body();
    path_.pop_back();
  }

 private:
  void add(std::string_view key, std::string kind, std::string def, std::string_view doc) {
    rows.push_back({join_path(path_.back(), key), std::move(kind), std::move(def), std::string(doc)});
  }
  std::vector<std::string> path_{""};
};

// Writes values as display rows and as JSON (SI base units) in one walk.
class Dumper {
 public:
  std::vector<ValueRow> rows;
  nlohmann::json json = nlohmann::json::object();

  void field(std::string_view key, int64_t& v, const FieldSpec&) {
    put(key, std::to_string(v), v);
  }
  void field(std::string_view key, double& v, const FieldSpec& s) {
    put(key, format_quantity(v, s.dim), v);
  }
  void field(std::string_view key, std::optional<double>& v, const FieldSpec& s) {
    if (v) put(key, format_quantity(*v, s.dim), *v);
  }
  void field(std::string_view key, std::string& v, const FieldSpec&) { put(key, v, v); }
  template <class E>
  void choice(std::string_view key, E& v, const FieldSpec&) {
    put(key, std::string(enum_name(v)), std::string(enum_name(v)));
  }
  void table(std::string_view key, DtypeTable& t, const FieldSpec& s) {
    group(key, "", [&] {
      for (auto& [dtype, value] : t.values) field(dtype, value, s);
    });
  }
  template <class F>
  void group(std::string_view key, std::string_view, F&& body) {
    path_.push_back(join_path(path_.back(), key));
    nodes_.push_back(&(*nodes_.back())[std::string(key)]);
    *nodes_.back() = nlohmann::json::object();
    body();
    nodes_.pop_back();
    path_.pop_back();
  }
  template <class F>
  void optional_group(std::string_view key, std::string_view doc, bool& present, F&& body) {
    if (present) group(key, doc, body);
  }

 private:
  template <class J>
  void put(std::string_view key, std::string text, const J& value) {
    rows.push_back({join_path(path_.back(), key), std::move(text)});
    (*nodes_.back())[std::string(key)] = value;
  }
  std::vector<std::string> path_{""};
  std::vector<nlohmann::json*> nodes_{&json};
};

Dumper dump(const Arch& arch) {
  Dumper d;
  Arch copy = arch;  // visit() takes non-const references: the same walk fills and reads
  copy.visit(d);
  return d;
}

}  // namespace

std::vector<SchemaRow> schema_rows() {
  SchemaLister lister;
  Arch arch;
  arch.visit(lister);
  return lister.rows;
}

std::vector<ValueRow> value_rows(const Arch& arch) { return dump(arch).rows; }

nlohmann::json to_json(const Arch& arch) { return dump(arch).json; }

nlohmann::json to_json(const Derived& d) {
  nlohmann::json j;
  j["tiles"] = d.tiles;
  j["clusters"] = d.clusters;
  j["peak_flops"] = d.peak_flops;
  j["sram_capacity"] = d.sram_capacity;
  j["hbm_bandwidth"] = d.hbm_bandwidth;
  j["hbm_capacity"] = d.hbm_capacity;
  j["noc_link_bandwidth"] = d.noc_link_bandwidth;
  j["noc_bisection_bandwidth"] = d.noc_bisection_bandwidth;
  j["link_bandwidth"] = d.link_bandwidth;
  j["die_area_mm2"] = d.die_area;
  j["die_area_estimated"] = d.die_area_estimated;
  j["dies_per_wafer"] = d.dies_per_wafer;
  j["yield"] = d.yield;
  j["die_cost_usd"] = d.die_cost;
  j["chip_cost_usd"] = d.chip_cost;
  j["capex_per_chip_usd"] = d.capex_per_chip;
  j["tco_usd_per_hour"] = d.tco_usd_per_hour;
  return j;
}

std::vector<ValueRow> derived_rows(const Derived& d) {
  std::vector<ValueRow> rows;
  auto add = [&](std::string path, double v, Dim dim) {
    rows.push_back({std::move(path), format_quantity(v, dim)});
  };
  add("tiles", double(d.tiles), Dim::Count);
  add("clusters", double(d.clusters), Dim::Count);
  for (const auto& [dtype, flops] : d.peak_flops) {
    rows.push_back({"peak_flops." + dtype, fmt::format("{:.4g} TFLOP/s", flops / 1e12)});
  }
  add("sram_capacity", d.sram_capacity, Dim::Bytes);
  add("hbm_bandwidth", d.hbm_bandwidth, Dim::Bandwidth);
  add("hbm_capacity", d.hbm_capacity, Dim::Bytes);
  add("noc_link_bandwidth", d.noc_link_bandwidth, Dim::Bandwidth);
  add("noc_bisection_bandwidth", d.noc_bisection_bandwidth, Dim::Bandwidth);
  add("link_bandwidth", d.link_bandwidth, Dim::Bandwidth);
  rows.push_back({"die_area", fmt::format("{:.1f}mm2{}", d.die_area,
                                          d.die_area_estimated ? " (estimated)" : "")});
  add("dies_per_wafer", d.dies_per_wafer, Dim::Count);
  rows.push_back({"yield", fmt::format("{:.1f}%", d.yield * 100)});
  rows.push_back({"die_cost", fmt::format("${:.2f}", d.die_cost)});
  rows.push_back({"chip_cost", fmt::format("${:.2f}", d.chip_cost)});
  rows.push_back({"capex_per_chip", fmt::format("${:.2f}", d.capex_per_chip)});
  rows.push_back({"tco_per_hour", fmt::format("${:.4f}/h", d.tco_usd_per_hour)});
  return rows;
}

std::vector<DiffRow> diff(const Arch& a, const Arch& b) {
  std::map<std::string, std::string> in_b;
  for (ValueRow& r : value_rows(b)) in_b[r.path] = r.text;
  std::vector<DiffRow> rows;
  for (ValueRow& r : value_rows(a)) {
    auto it = in_b.find(r.path);
    std::string other = it == in_b.end() ? "-" : it->second;
    if (it != in_b.end()) in_b.erase(it);
    if (other != r.text) rows.push_back({r.path, r.text, other});
  }
  for (auto& [path, text] : in_b) rows.push_back({path, "-", text});
  return rows;
}

uint64_t fingerprint(const Arch& arch) {
  nlohmann::json j = to_json(arch);
  j.erase("name");
  j.erase("description");
  const std::string text = j.dump();
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

}  // namespace tessera::arch
