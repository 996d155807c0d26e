#include "workloads/requests.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numbers>
#include <tuple>
#include <stdexcept>
#include <string_view>

namespace tessera::workloads {

namespace {

// Bounds that keep a request's token counts and a generated trace's size far from overflow and
// from exhausting memory.
constexpr int64_t kMaxTokens = int64_t(1) << 30;
constexpr double kMaxRequests = 1e7;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view line) {
  std::vector<std::string_view> out;
  size_t start = 0;
  for (size_t i = 0; i <= line.size(); ++i) {
    if (i == line.size() || line[i] == ',') {
      out.push_back(trim(line.substr(start, i - start)));
      start = i + 1;
    }
  }
  return out;
}

template <class T>
bool parse_number(std::string_view s, T& out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's days_from_civil).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

// "YYYY-MM-DD HH:MM:SS[.fraction]" (or with a 'T') as seconds since 1970, or a plain number of
// seconds; false when it is neither.
bool parse_time(std::string_view s, double& seconds) {
  if (parse_number(s, seconds)) return std::isfinite(seconds);
  if (s.size() < 19 || s[4] != '-' || s[7] != '-' || (s[10] != ' ' && s[10] != 'T') || s[13] != ':' || s[16] != ':')
    return false;
  int64_t y = 0, mo = 0, d = 0, h = 0, mi = 0;
  double sec = 0;
  if (!parse_number(s.substr(0, 4), y) || !parse_number(s.substr(5, 2), mo) || !parse_number(s.substr(8, 2), d) ||
      !parse_number(s.substr(11, 2), h) || !parse_number(s.substr(14, 2), mi) || !parse_number(s.substr(17), sec))
    return false;
  if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || !(sec >= 0 && sec < 61)) return false;
  seconds = double(days_from_civil(y, mo, d)) * 86400.0 + double(h * 3600 + mi * 60) + sec;
  return true;
}

// splitmix64: a specified generator, so a seed gives the same traffic everywhere.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }
  double uniform() { return (double(next() >> 11) + 0.5) * 0x1.0p-53; }  // in (0, 1)
  double normal() { return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * std::numbers::pi * uniform()); }
  double exponential(double mean) { return -std::log(uniform()) * mean; }
  // Gamma of shape k and unit scale: Marsaglia and Tsang (k >= 1), boosted below 1.
  double gamma(double k) {
    if (k < 1) return gamma(k + 1) * std::pow(uniform(), 1.0 / k);
    const double d = k - 1.0 / 3.0, c = 1.0 / std::sqrt(9.0 * d);
    for (;;) {
      double x, v;
      do {
        x = normal();
        v = 1 + c * x;
      } while (v <= 0);
      v = v * v * v;
      const double u = uniform();
      if (std::log(u) < 0.5 * x * x + d - d * v + d * std::log(v)) return d * v;
    }
  }
  int64_t integer(int64_t lo, int64_t hi) { return lo + int64_t(next() % uint64_t(hi - lo + 1)); }

 private:
  uint64_t state_;
};

int64_t draw(const Lengths& l, Random& r) {
  switch (l.kind) {
    case Lengths::Kind::Fixed: return l.value;
    case Lengths::Kind::Uniform: return r.integer(l.lo, l.hi);
    case Lengths::Kind::LogNormal:
      return std::llround(std::clamp(l.median * std::exp(l.sigma * r.normal()), double(l.lo), double(l.hi)));
    case Lengths::Kind::Resample: return l.pool[size_t(r.integer(0, int64_t(l.pool.size()) - 1))];
  }
  return 1;
}

// Calls `f(key, value)` for each KEY=VALUE of a comma-separated spec (a CLI option's); an item
// without '=' is an error naming the option.
template <class F>
void for_each_setting(const std::string& spec, const char* option, F f) {
  std::string_view rest = spec;
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) throw std::runtime_error(fmt::format("{} {}: expected KEY=VALUE", option, item));
    f(std::string(trim(item.substr(0, eq))), trim(item.substr(eq + 1)));
  }
}

}  // namespace

std::vector<Request> read_trace(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec))  // a directory or a device would read forever
    throw std::runtime_error(path + ": not a trace file (no such file, or not a regular file)");
  std::ifstream in(path);
  if (!in) throw std::runtime_error(path + ": cannot open the trace");
  auto fail = [&](int64_t line, const std::string& what) {
    return std::runtime_error(fmt::format("{}:{}: {}", path, line, what));
  };
  std::string text;
  int64_t line_no = 0;
  int col_time = -1, col_prompt = -1, col_output = -1;
  size_t columns = 0;
  while (std::getline(in, text)) {  // the header: the first line that is not empty
    ++line_no;
    if (trim(text).empty()) continue;
    const std::vector<std::string_view> names = split(text);
    columns = names.size();
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "TIMESTAMP") col_time = int(i);
      if (names[i] == "ContextTokens") col_prompt = int(i);
      if (names[i] == "GeneratedTokens") col_output = int(i);
    }
    break;
  }
  if (columns == 0) throw fail(std::max<int64_t>(line_no, 1), "an empty trace (no header, no requests)");
  std::vector<std::string> missing;
  if (col_time < 0) missing.push_back("TIMESTAMP");
  if (col_prompt < 0) missing.push_back("ContextTokens");
  if (col_output < 0) missing.push_back("GeneratedTokens");
  if (!missing.empty())
    throw fail(line_no, fmt::format("the header lacks the column(s) {} (a trace has TIMESTAMP,ContextTokens,GeneratedTokens)",
                                    fmt::join(missing, ", ")));

  std::vector<Request> out;
  double first = 0, last = 0;
  while (std::getline(in, text)) {
    ++line_no;
    if (trim(text).empty()) continue;
    const std::vector<std::string_view> f = split(text);
    if (f.size() != columns) throw fail(line_no, fmt::format("{} fields where the header has {}", f.size(), columns));
    double t = 0;
    if (!parse_time(f[size_t(col_time)], t))
      throw fail(line_no, fmt::format("TIMESTAMP '{}' is neither a date and time nor a number of seconds", f[size_t(col_time)]));
    Request r;
    for (const auto& [col, name, value] : {std::tuple{col_prompt, "ContextTokens", &r.prompt_tokens},
                                           std::tuple{col_output, "GeneratedTokens", &r.output_tokens}}) {
      if (!parse_number(f[size_t(col)], *value))
        throw fail(line_no, fmt::format("{} '{}' is not a whole number", name, f[size_t(col)]));
      if (*value < 1) throw fail(line_no, fmt::format("{} {} is below 1", name, *value));
      if (*value > kMaxTokens) throw fail(line_no, fmt::format("{} {} is above {} tokens", name, *value, kMaxTokens));
    }
    if (out.empty()) {
      first = last = t;
    } else if (t < last) {
      throw fail(line_no, "time goes backwards: a trace lists its requests in order of arrival");
    }
    if (t < 0) throw fail(line_no, fmt::format("a negative TIMESTAMP ({})", t));
    last = t;
    r.id = int64_t(out.size());
    r.arrival = t - first;
    out.push_back(r);
  }
  if (out.empty()) throw fail(line_no, "a trace without requests (only a header)");
  return out;
}

std::vector<Request> window(const std::vector<Request>& requests, double from, double duration) {
  if (!(from >= 0) || !(duration > 0)) throw std::runtime_error("a window starts at 0 s or later and lasts more than 0 s");
  std::vector<Request> out;
  for (const Request& r : requests) {
    if (r.arrival < from || r.arrival - from >= duration) continue;
    out.push_back(r);
    out.back().arrival -= from;
  }
  return out;
}

std::vector<Request> scale_time(const std::vector<Request>& requests, double factor) {
  if (!(factor > 0) || !std::isfinite(factor)) throw std::runtime_error(fmt::format("a time scale of {} (it must be above 0)", factor));
  std::vector<Request> out = requests;
  for (Request& r : out) r.arrival *= factor;
  return out;
}

std::vector<Request> scale_rate(const std::vector<Request>& requests, double factor) {
  if (!(factor > 0) || !std::isfinite(factor)) throw std::runtime_error(fmt::format("a rate scale of {} (it must be above 0)", factor));
  return scale_time(requests, 1.0 / factor);
}

std::vector<Request> synthesize(const Synthetic& s) {
  if (!(s.rate > 0) || !std::isfinite(s.rate)) throw std::runtime_error("synthetic traffic needs a rate above 0");
  if (s.count <= 0 && !(s.duration > 0)) throw std::runtime_error("synthetic traffic needs a count or a duration");
  if (s.arrivals == Synthetic::Arrivals::Gamma && !(s.cv > 0)) throw std::runtime_error("gamma arrivals need a cv above 0");
  const double expected = s.count > 0 ? double(s.count) : s.rate * s.duration;
  if (!(expected <= kMaxRequests))
    throw std::runtime_error(fmt::format("synthetic traffic of {:g} requests: at most {:g} (count, or rate x duration)",
                                         expected, kMaxRequests));
  Random gaps(s.seed), lengths(s.seed ^ 0x5eed5eed5eed5eedULL);
  const double mean = 1.0 / s.rate, shape = 1.0 / (s.cv * s.cv);
  std::vector<Request> out;
  double t = 0;
  for (int64_t i = 0; s.count > 0 ? i < s.count : true; ++i) {
    if (i > 0) t += s.arrivals == Synthetic::Arrivals::Poisson ? gaps.exponential(mean) : gaps.gamma(shape) * mean / shape;
    if (s.count <= 0 && t >= s.duration) break;
    Request r;
    r.id = i, r.arrival = t;
    r.prompt_tokens = draw(s.prompt, lengths);
    r.output_tokens = draw(s.output, lengths);
    out.push_back(r);
  }
  return out;
}

Synthetic parse_synthetic(const std::string& spec, const std::vector<Request>& trace) {
  Synthetic s;
  bool has_rate = false, has_prompt = false, has_output = false;
  auto bad = [](const std::string& key, const std::string& what) {
    return std::runtime_error(fmt::format("--synthetic {}: {}", key, what));
  };
  auto lengths = [&](const std::string& key, std::string_view v, bool prompt) {
    Lengths l;
    std::vector<std::string_view> parts;
    size_t start = 0;
    for (size_t i = 0; i <= v.size(); ++i) {
      if (i == v.size() || v[i] == ':') {
        parts.push_back(v.substr(start, i - start));
        start = i + 1;
      }
    }
    auto integer = [&](std::string_view p) {
      int64_t x = 0;
      if (!parse_number(p, x) || x < 1 || x > kMaxTokens)
        throw bad(key, fmt::format("'{}' is not a whole number of tokens from 1 to {}", p, kMaxTokens));
      return x;
    };
    auto real = [&](std::string_view p) {
      double x = 0;
      if (!parse_number(p, x) || !std::isfinite(x) || x < 0) throw bad(key, fmt::format("'{}' is not a number of at least 0", p));
      return x;
    };
    if (parts.size() == 1 && parts[0] == "trace") {
      if (trace.empty()) throw bad(key, "'trace' resamples a trace's lengths: give --requests FILE");
      l.kind = Lengths::Kind::Resample;
      for (const Request& r : trace) l.pool.push_back(prompt ? r.prompt_tokens : r.output_tokens);
    } else if (parts.size() == 1) {
      l.kind = Lengths::Kind::Fixed, l.value = integer(parts[0]);
    } else if (parts[0] == "uniform" && parts.size() == 3) {
      l.kind = Lengths::Kind::Uniform, l.lo = integer(parts[1]), l.hi = integer(parts[2]);
      if (l.hi < l.lo) throw bad(key, "uniform:LO:HI needs LO <= HI");
    } else if (parts[0] == "lognormal" && (parts.size() == 3 || parts.size() == 5)) {
      l.kind = Lengths::Kind::LogNormal, l.median = real(parts[1]), l.sigma = real(parts[2]);
      l.lo = parts.size() == 5 ? integer(parts[3]) : 1;
      l.hi = parts.size() == 5 ? integer(parts[4]) : std::numeric_limits<int32_t>::max();
      if (!(l.median >= 1)) throw bad(key, "lognormal:MEDIAN:SIGMA needs a median of at least 1");
      if (l.hi < l.lo) throw bad(key, "lognormal:MEDIAN:SIGMA:LO:HI needs LO <= HI");
    } else {
      throw bad(key, fmt::format("'{}' is not N, uniform:LO:HI, lognormal:MEDIAN:SIGMA[:LO:HI] or trace", v));
    }
    return l;
  };
  for_each_setting(spec, "--synthetic", [&](const std::string& key, std::string_view value) {
    auto number = [&](double& out) {
      if (!parse_number(value, out) || !std::isfinite(out) || out <= 0)
        throw bad(key, fmt::format("'{}' is not a number above 0", value));
    };
    if (key == "rate") {
      number(s.rate), has_rate = true;
    } else if (key == "cv") {
      number(s.cv);
    } else if (key == "duration") {
      number(s.duration);
    } else if (key == "count") {
      if (!parse_number(value, s.count) || s.count < 1) throw bad(key, fmt::format("'{}' is not a whole number of at least 1", value));
    } else if (key == "seed") {
      if (!parse_number(value, s.seed)) throw bad(key, fmt::format("'{}' is not a whole number of at least 0", value));
    } else if (key == "arrivals") {
      if (value == "poisson") s.arrivals = Synthetic::Arrivals::Poisson;
      else if (value == "gamma") s.arrivals = Synthetic::Arrivals::Gamma;
      else throw bad(key, fmt::format("'{}' is not poisson or gamma", value));
    } else if (key == "prompt") {
      s.prompt = lengths(key, value, true), has_prompt = true;
    } else if (key == "output") {
      s.output = lengths(key, value, false), has_output = true;
    } else {
      throw bad(key, "unknown key (rate, prompt, output, arrivals, cv, count, duration, seed)");
    }
  });
  if (!has_rate) throw bad("rate", "missing: the requests per second");
  if (!has_prompt) throw bad("prompt", "missing: the prompt lengths");
  if (!has_output) throw bad("output", "missing: the output lengths");
  if (s.count == 0 && s.duration == 0) throw bad("count", "missing: give count=N or duration=SECONDS");
  return s;
}

std::vector<Request> assign_prefixes(std::vector<Request> requests, const PrefixSharing& p) {
  Random random(p.seed);
  for (Request& r : requests) {
    const bool shares = random.uniform() < p.requests;
    const int64_t group = random.integer(0, p.groups - 1);
    const int64_t tokens = int64_t(std::floor(p.fraction * double(r.prompt_tokens)));
    if (shares && tokens > 0) r.prefix_group = group, r.prefix_tokens = tokens;
    else r.prefix_group = -1, r.prefix_tokens = 0;
  }
  return requests;
}

PrefixSharing parse_prefix_sharing(const std::string& spec) {
  PrefixSharing p;
  bool has_fraction = false;
  auto bad = [](const std::string& key, const std::string& what) {
    return std::runtime_error(fmt::format("--prefix-sharing {}: {}", key, what));
  };
  for_each_setting(spec, "--prefix-sharing", [&](const std::string& key, std::string_view value) {
    auto share = [&](double& out) {
      if (!parse_number(value, out) || !(out >= 0 && out <= 1)) throw bad(key, fmt::format("'{}' is not a share from 0 to 1", value));
    };
    if (key == "fraction") {
      share(p.fraction), has_fraction = true;
    } else if (key == "requests") {
      share(p.requests);
    } else if (key == "groups") {
      if (!parse_number(value, p.groups) || p.groups < 1 || p.groups > kMaxTokens)
        throw bad(key, fmt::format("'{}' is not a whole number of at least 1", value));
    } else if (key == "seed") {
      if (!parse_number(value, p.seed)) throw bad(key, fmt::format("'{}' is not a whole number of at least 0", value));
    } else {
      throw bad(key, "unknown key (fraction, groups, requests, seed)");
    }
  });
  if (!has_fraction) throw bad("fraction", "missing: the share of each prompt that is a shared prefix");
  return p;
}

}  // namespace tessera::workloads
