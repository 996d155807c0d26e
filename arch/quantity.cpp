#include "arch/quantity.hpp"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <span>
#include <string>

namespace tessera::arch {
namespace {

// value = number * 10^dec * 2^bin * factor. Decimal scaling is folded into the number's own
// exponent before conversion, so "1.8TB/s" is the correctly rounded double of 1.8e12.
struct Unit {
  std::string_view symbol;
  int dec = 0;
  int bin = 0;
  double factor = 1.0;
  bool input_only = false;  // an alias accepted when reading, never printed
};

constexpr Unit kBytes[] = {
    {"B"},           {"kB", 3},       {"KB", 3, 0, 1.0, true},       {"MB", 6},       {"GB", 9},
    {"TB", 12},      {"PB", 15},      {"KiB", 0, 10},  {"MiB", 0, 20},  {"GiB", 0, 30},
    {"TiB", 0, 40},
};
constexpr Unit kBandwidth[] = {
    {"B/s"},           {"kB/s", 3},       {"KB/s", 3, 0, 1.0, true},          {"MB/s", 6},
    {"GB/s", 9},       {"TB/s", 12},      {"KiB/s", 0, 10},     {"MiB/s", 0, 20},
    {"GiB/s", 0, 30},  {"TiB/s", 0, 40},  {"bps", 0, 0, 0.125}, {"kbps", 3, 0, 0.125},
    {"Kbps", 3, 0, 0.125}, {"Mbps", 6, 0, 0.125}, {"Gbps", 9, 0, 0.125}, {"Tbps", 12, 0, 0.125},
    {"b/s", 0, 0, 0.125},  {"Mb/s", 6, 0, 0.125}, {"Gb/s", 9, 0, 0.125}, {"Tb/s", 12, 0, 0.125},
};
constexpr Unit kBitRate[] = {
    {"bps"},   {"Kbps", 3, 0, 1.0, true}, {"kbps", 3}, {"Mbps", 6}, {"Gbps", 9}, {"Tbps", 12}, {"Gb/s", 9},
    {"T/s"},   {"MT/s", 6}, {"GT/s", 9},
};
constexpr Unit kFrequency[] = {{"Hz"}, {"kHz", 3}, {"KHz", 3, 0, 1.0, true}, {"MHz", 6}, {"GHz", 9}};
constexpr Unit kTime[] = {{"s"}, {"ms", -3}, {"us", -6}, {"\xC2\xB5s", -6, 0, 1.0, true}, {"ns", -9}, {"ps", -12}};
constexpr Unit kPower[] = {{"W"}, {"mW", -3}, {"kW", 3}, {"MW", 6}};
constexpr Unit kEnergy[] = {{"J"}, {"mJ", -3}, {"uJ", -6}, {"nJ", -9}, {"pJ", -12}, {"fJ", -15}};
// Money amounts carry a leading '$'; the suffix scales the amount or names what it is per.
constexpr Unit kMoney[] = {{""}, {"k", 3, 0, 1.0, true}, {"K", 3, 0, 1.0, true},
                           {"M", 6, 0, 1.0, true}, {"B", 9, 0, 1.0, true}};
constexpr Unit kMoneyPerHour[] = {{"/h"}, {"/hr", 0, 0, 1.0, true}, {"/hour", 0, 0, 1.0, true}};
// Prices print per kWh and per GB whatever their size; the other units are accepted on input.
constexpr Unit kMoneyPerEnergy[] = {{"/J", 0, 0, 1.0, true},
                                    {"/Wh", 0, 0, 1.0 / 3600.0, true},
                                    {"/kWh", 0, 0, 1.0 / 3.6e6},
                                    {"/MWh", 0, 0, 1.0 / 3.6e9, true}};
constexpr Unit kMoneyPerByte[] = {{"/B", 0, 0, 1.0, true},    {"/MB", -6, 0, 1.0, true},
                                  {"/GB", -9},                {"/TB", -12, 0, 1.0, true},
                                  {"/GiB", 0, -30, 1.0, true}, {"/MiB", 0, -20, 1.0, true}};
constexpr Unit kArea[] = {{"mm2"},         {"mm^2", 0, 0, 1.0, true},         {"mm\xC2\xB2", 0, 0, 1.0, true},
                          {"cm2", 2, 0, 1.0, true},      {"cm^2", 2, 0, 1.0, true},      {"cm\xC2\xB2", 2, 0, 1.0, true},
                          {"um2", -6, 0, 1.0, true},     {"um^2", -6, 0, 1.0, true}};
constexpr Unit kLength[] = {{"mm"}, {"cm", 1, 0, 1.0, true}, {"m", 3, 0, 1.0, true}, {"um", -3, 0, 1.0, true}};
constexpr Unit kPerArea[] = {{"/cm2"}, {"/cm^2", 0, 0, 1.0, true}, {"/cm\xC2\xB2", 0, 0, 1.0, true}, {"/mm2", 2, 0, 1.0, true}, {"/mm^2", 2, 0, 1.0, true}};
constexpr Unit kRatio[] = {{""}, {"%", -2}};
constexpr Unit kCount[] = {{""}};

std::span<const Unit> units_of(Dim dim) {
  switch (dim) {
    case Dim::Count: return kCount;
    case Dim::Ratio: return kRatio;
    case Dim::Bytes: return kBytes;
    case Dim::Bandwidth: return kBandwidth;
    case Dim::BitRate: return kBitRate;
    case Dim::Frequency: return kFrequency;
    case Dim::Time: return kTime;
    case Dim::Power: return kPower;
    case Dim::Energy: return kEnergy;
    case Dim::Money: return kMoney;
    case Dim::MoneyPerHour: return kMoneyPerHour;
    case Dim::MoneyPerEnergy: return kMoneyPerEnergy;
    case Dim::MoneyPerByte: return kMoneyPerByte;
    case Dim::Area: return kArea;
    case Dim::Length: return kLength;
    case Dim::PerArea: return kPerArea;
  }
  return kCount;
}

bool is_money(Dim dim) {
  return dim == Dim::Money || dim == Dim::MoneyPerHour || dim == Dim::MoneyPerEnergy ||
         dim == Dim::MoneyPerByte;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// Splits "1.8e3TB/s" into the number "1.8e3" and the unit "TB/s". Returns false when the
// text does not start with a number.
bool split_number(std::string_view s, std::string_view& number, std::string_view& unit) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  size_t digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++digits;
  }
  if (digits == 0) return false;
  // An exponent only if followed by digits: "1e3" is a number, "1e" is not ("1EB" is no unit).
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    size_t j = i + 1;
    if (j < s.size() && (s[j] == '+' || s[j] == '-')) ++j;
    if (j < s.size() && is_digit(s[j])) {
      i = j;
      while (i < s.size() && is_digit(s[i])) ++i;
    }
  }
  number = s.substr(0, i);
  unit = trim(s.substr(i));
  return true;
}

// Parses the decimal text `number` scaled by 10^dec, correctly rounded: the scale is added to
// the number's exponent so that no separate multiplication rounds.
double scaled_decimal(std::string_view number, int dec) {
  std::string mantissa(number);
  long exponent = dec;
  if (size_t e = mantissa.find_first_of("eE"); e != std::string::npos) {
    exponent += std::strtol(mantissa.c_str() + e + 1, nullptr, 10);
    mantissa.resize(e);
  }
  return std::strtod((mantissa + "e" + std::to_string(exponent)).c_str(), nullptr);
}

std::string expected_message(Dim dim, std::string_view text) {
  std::string msg = "expected ";
  switch (dim) {
    case Dim::Count: msg += "a whole number"; break;
    case Dim::Ratio: msg += "a number"; break;
    default: msg += "a quantity with a unit such as '" + std::string(unit_example(dim)) + "'";
  }
  std::string units;
  if (dim != Dim::Count && dim != Dim::Ratio) {
    for (const Unit& u : units_of(dim)) {
      if (u.symbol.empty()) continue;
      if (!units.empty()) units += ", ";
      units += u.symbol;
    }
    msg += " (units: " + units + ")";
  }
  msg += ", got '" + std::string(text) + "'";
  return msg;
}

// Shortest text of `v` with at most `significant` digits: "1.8", "500", "0.25".
std::string short_number(double v, int significant) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", significant, v);
  return buf;
}

}  // namespace

double parse_quantity(std::string_view text, Dim dim) {
  std::string_view s = trim(text);
  if (is_money(dim)) {
    if (s.empty() || s.front() != '$') throw QuantityError(expected_message(dim, text));
    s = trim(s.substr(1));
  }
  std::string_view number, unit;
  if (!split_number(s, number, unit)) throw QuantityError(expected_message(dim, text));
  for (const Unit& u : units_of(dim)) {
    if (u.symbol != unit) continue;
    double value = std::ldexp(scaled_decimal(number, u.dec), u.bin) * u.factor;
    if (!std::isfinite(value)) throw QuantityError("value out of range: '" + std::string(text) + "'");
    if (dim == Dim::Count && value != std::floor(value)) {
      throw QuantityError(expected_message(dim, text));
    }
    return value;
  }
  if (unit.empty()) {
    throw QuantityError("missing unit: " + expected_message(dim, text));
  }
  throw QuantityError("unknown unit '" + std::string(unit) + "': " + expected_message(dim, text));
}

std::string format_quantity(double value, Dim dim, int significant) {
  if (dim == Dim::Count || dim == Dim::Ratio) return short_number(value, significant);
  // The largest decimal unit and the largest binary unit that keep the number at least 1;
  // of the two texts the shorter wins, so 64e9 B prints as "64GB" and 2^29 B as "512MiB".
  std::string best[2];
  double best_scale[2] = {0, 0};
  bool best_fits[2] = {false, false};
  for (const Unit& u : units_of(dim)) {
    // Bits and other converted units are for input only: bandwidths print in bytes/s.
    if (u.input_only || (u.factor != 1.0 && dim != Dim::MoneyPerEnergy)) continue;
    const bool only_choice = dim == Dim::MoneyPerEnergy || dim == Dim::MoneyPerByte;
    const double scale = std::ldexp(std::pow(10.0, u.dec), u.bin) * u.factor;
    const double scaled = value / scale;
    const int k = u.bin != 0 ? 1 : 0;
    const bool fits = std::fabs(scaled) >= 1.0 || value == 0.0 || only_choice;
    // Prefer a unit that keeps the number >= 1, the largest such; when none does, the smallest.
    const bool better = best[k].empty() || (fits && (!best_fits[k] || scale > best_scale[k])) ||
                        (!fits && !best_fits[k] && scale < best_scale[k]);
    if (!better) continue;
    best[k] = (is_money(dim) ? "$" : "") + short_number(scaled, significant) + std::string(u.symbol);
    best_scale[k] = scale;
    best_fits[k] = fits;
  }
  if (best[1].empty() || (!best[0].empty() && best[0].size() <= best[1].size())) return best[0];
  return best[1];
}

std::string_view unit_symbol(Dim dim) {
  switch (dim) {
    case Dim::Count:
    case Dim::Ratio: return "";
    case Dim::Bytes: return "B";
    case Dim::Bandwidth: return "B/s";
    case Dim::BitRate: return "bit/s";
    case Dim::Frequency: return "Hz";
    case Dim::Time: return "s";
    case Dim::Power: return "W";
    case Dim::Energy: return "J";
    case Dim::Money: return "USD";
    case Dim::MoneyPerHour: return "USD/h";
    case Dim::MoneyPerEnergy: return "USD/J";
    case Dim::MoneyPerByte: return "USD/B";
    case Dim::Area: return "mm^2";
    case Dim::Length: return "mm";
    case Dim::PerArea: return "1/cm^2";
  }
  return "";
}

std::string_view unit_example(Dim dim) {
  switch (dim) {
    case Dim::Count: return "64";
    case Dim::Ratio: return "1.2";
    case Dim::Bytes: return "500MiB";
    case Dim::Bandwidth: return "1.8TB/s";
    case Dim::BitRate: return "3.2Gbps";
    case Dim::Frequency: return "1.5GHz";
    case Dim::Time: return "3ns";
    case Dim::Power: return "700W";
    case Dim::Energy: return "0.25pJ";
    case Dim::Money: return "$16988";
    case Dim::MoneyPerHour: return "$4.76/h";
    case Dim::MoneyPerEnergy: return "$0.08/kWh";
    case Dim::MoneyPerByte: return "$17/GB";
    case Dim::Area: return "820mm2";
    case Dim::Length: return "300mm";
    case Dim::PerArea: return "0.2/cm2";
  }
  return "";
}

}  // namespace tessera::arch
