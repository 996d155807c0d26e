// The vocabulary the architecture structs use to describe their parameters once. Each struct in
// arch.hpp has a `visit(V&)` that names every field with a FieldSpec; visitors (the loader, the
// schema printer, the dumper) walk that single description, so a parameter is declared in one
// place only.
#pragma once

#include <array>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "arch/quantity.hpp"

namespace tessera::arch {

enum class Bound { Positive, NonNegative, Any };

struct FieldSpec {
  std::string_view doc;
  Dim dim = Dim::Count;
  std::optional<double> def = std::nullopt;  // numeric default; absent and no default = required
  std::optional<std::string_view> def_text = std::nullopt;  // default for strings and choices
  Bound bound = Bound::Positive;
};

// Names for enumerations as they appear in files. Specialised next to each enum.
template <class E>
struct EnumTraits;

template <class E>
std::string_view enum_name(E value) {
  for (const auto& [v, name] : EnumTraits<E>::names) {
    if (v == value) return name;
  }
  return "?";
}

// Input dtypes a matrix unit may support, as keys of per-dtype tables.
inline constexpr std::array<std::string_view, 7> kArrayDtypes = {
    "bf16", "fp8", "int8", "mxfp8", "mxfp6", "mxfp4", "mxint8"};

// A value per array dtype (MACs per cycle, energy per MAC). A missing key means the dtype is
// not supported by the hardware.
struct DtypeTable {
  std::map<std::string, double, std::less<>> values;
  bool has(std::string_view dtype) const { return values.find(dtype) != values.end(); }
  double at(std::string_view dtype) const;  // throws std::out_of_range naming the dtype
};

}  // namespace tessera::arch
