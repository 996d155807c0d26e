// Physical quantities with units: parsing "1.8TB/s", "500MiB", "$0.08/kWh" into SI base values
// and formatting them back. Decimal (k, M, G, T) and binary (Ki, Mi, Gi, Ti) prefixes are
// distinct and exact: "500MiB" is 500 * 2^20 bytes, "64GB" is 64e9 bytes.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace tessera::arch {

// The dimension a value is measured in. Values are stored in these base units:
enum class Dim {
  Count,           // plain integer
  Ratio,           // plain real number
  Bytes,           // B
  Bandwidth,       // B/s (bits per second accepted and converted)
  BitRate,         // bit/s per pin (Gbps, GT/s)
  Frequency,       // Hz
  Time,            // s
  Power,           // W
  Energy,          // J
  Money,           // USD
  MoneyPerHour,    // USD/h
  MoneyPerEnergy,  // USD/J (given as $/kWh)
  MoneyPerByte,    // USD/B (given as $/GB)
  Area,            // mm^2
  Length,          // mm
  PerArea,         // 1/cm^2 (defect density)
};

// Thrown for text that is not a quantity of the wanted dimension; the message says what was
// expected and shows an example, but not where the text came from (callers add that).
class QuantityError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses `text` as a quantity of dimension `dim` and returns it in the base unit above.
double parse_quantity(std::string_view text, Dim dim);

// Formats a base-unit value for people: "1.8TB/s", "500MiB", "1.53GHz". With the default 12
// significant digits the text parses back to the same value (to double rounding); tables
// pass fewer.
std::string format_quantity(double value, Dim dim, int significant = 12);

// The base unit's symbol, for schema listings ("B/s", "Hz", "" for counts).
std::string_view unit_symbol(Dim dim);

// One example of accepted text, used in error messages and the schema ("1.8TB/s").
std::string_view unit_example(Dim dim);

}  // namespace tessera::arch
