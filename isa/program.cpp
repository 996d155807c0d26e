#include "isa/program.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <fstream>
#include <iterator>

#include "isa/encoding.hpp"

namespace tessera::isa {
namespace {

constexpr char kMagic[8] = {'T', 'S', 'R', 'A', 'P', 'R', 'O', 'G'};
enum SectionType : uint32_t { kMeta = 1, kRegions = 2, kSymbols = 3, kStreams = 4 };

constexpr std::array<std::string_view, 5> kRegionKinds = {"weights", "kv_cache", "activations",
                                                          "scratch", "io"};
constexpr std::array<std::string_view, 6> kRoles = {"weight", "kv_cache", "activation",
                                                    "input",  "output",   "scratch"};

class Writer {
 public:
  std::vector<uint8_t> bytes;
  template <class T>
  void put(T v) {
    uint8_t buf[sizeof(T)];
    std::memcpy(buf, &v, sizeof(T));
    bytes.insert(bytes.end(), buf, buf + sizeof(T));
  }
  void str(const std::string& s) {
    put<uint32_t>(static_cast<uint32_t>(s.size()));
    bytes.insert(bytes.end(), s.begin(), s.end());
  }
  void section(uint32_t type, const Writer& payload) {
    put(type);
    put<uint64_t>(payload.bytes.size());
    bytes.insert(bytes.end(), payload.bytes.begin(), payload.bytes.end());
  }
};

class Reader {
 public:
  Reader(std::span<const uint8_t> b, size_t base) : b_(b), base_(base) {}
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, b_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string name() {
    const size_t at = offset();
    std::string s = str();
    if (!valid_name(s)) throw FormatError(fmt::format("invalid name at byte {}", at));
    return s;
  }
  std::string str() {
    const uint32_t n = get<uint32_t>();
    need(n);
    std::string s(reinterpret_cast<const char*>(b_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::span<const uint8_t> take(uint64_t n) {
    need(n);
    auto s = b_.subspan(pos_, n);
    pos_ += n;
    return s;
  }
  bool done() const { return pos_ == b_.size(); }
  size_t offset() const { return base_ + pos_; }
  std::span<const uint8_t> rest() const { return b_.subspan(pos_); }
  void skip(size_t n) { pos_ += n; }

 private:
  void need(uint64_t n) const {
    if (n > b_.size() - pos_) {
      throw FormatError(fmt::format("truncated program file at byte {}", base_ + pos_));
    }
  }
  std::span<const uint8_t> b_;
  size_t base_;
  size_t pos_ = 0;
};

template <class E, size_t N>
E checked_enum(uint8_t v, const std::array<std::string_view, N>&, const char* what, size_t at) {
  if (v >= N) throw FormatError(fmt::format("bad {} {} at byte {}", what, v, at));
  return static_cast<E>(v);
}

}  // namespace

std::string_view region_kind_name(RegionKind k) { return kRegionKinds[static_cast<size_t>(k)]; }
std::optional<RegionKind> region_kind_from_name(std::string_view s) {
  for (size_t i = 0; i < kRegionKinds.size(); ++i) {
    if (kRegionKinds[i] == s) return static_cast<RegionKind>(i);
  }
  return std::nullopt;
}
std::string_view role_name(Role r) { return kRoles[static_cast<size_t>(r)]; }
std::optional<Role> role_from_name(std::string_view s) {
  for (size_t i = 0; i < kRoles.size(); ++i) {
    if (kRoles[i] == s) return static_cast<Role>(i);
  }
  return std::nullopt;
}

bool valid_name(std::string_view s) {
  auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (s.empty() || !alpha(s[0])) return false;
  for (char c : s) {
    if (!alpha(c) && !digit(c) && c != '.') return false;
  }
  // Register names would read as registers in addresses.
  if (s[0] == 'r' && s.size() > 1 && std::all_of(s.begin() + 1, s.end(), digit)) return false;
  return true;
}

uint64_t Symbol::bytes() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return dtype_bytes(dtype, n);
}

Stream& Program::stream(uint32_t chip, uint32_t tile) {
  for (Stream& s : streams) {
    if (s.chip == chip && s.tile == tile) return s;
  }
  streams.push_back(Stream{chip, tile, {}, {}});
  return streams.back();
}

const Stream* Program::find_stream(uint32_t chip, uint32_t tile) const {
  for (const Stream& s : streams) {
    if (s.chip == chip && s.tile == tile) return &s;
  }
  return nullptr;
}

const Symbol* Program::find_symbol(std::string_view name) const {
  for (const Symbol& s : symbols) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

size_t Program::instruction_count() const {
  size_t n = 0;
  for (const Stream& s : streams) n += s.code.size();
  return n;
}

std::vector<uint8_t> write_binary(const Program& p) {
  Writer out;
  out.bytes.insert(out.bytes.end(), std::begin(kMagic), std::end(kMagic));
  out.put<uint32_t>(kProgramVersion);
  out.put<uint32_t>(4);

  Writer meta;
  meta.put<uint32_t>(static_cast<uint32_t>(p.meta.size()));
  for (const auto& [k, v] : p.meta) {
    meta.str(k);
    meta.str(v);
  }
  out.section(kMeta, meta);

  Writer regions;
  regions.put<uint32_t>(static_cast<uint32_t>(p.regions.size()));
  for (const Region& r : p.regions) {
    regions.str(r.name);
    regions.put<uint8_t>(static_cast<uint8_t>(r.kind));
    regions.put<uint64_t>(r.base);
    regions.put<uint64_t>(r.size);
  }
  out.section(kRegions, regions);

  Writer symbols;
  symbols.put<uint32_t>(static_cast<uint32_t>(p.symbols.size()));
  for (const Symbol& s : p.symbols) {
    symbols.str(s.name);
    symbols.put<uint8_t>(static_cast<uint8_t>(s.dtype));
    symbols.put<uint8_t>(static_cast<uint8_t>(s.space));
    symbols.put<int32_t>(s.tile);
    symbols.put<uint64_t>(s.addr);
    symbols.put<uint8_t>(static_cast<uint8_t>(s.role));
    symbols.put<uint32_t>(static_cast<uint32_t>(s.shape.size()));
    for (int64_t d : s.shape) symbols.put<int64_t>(d);
  }
  out.section(kSymbols, symbols);

  Writer streams;
  streams.put<uint32_t>(static_cast<uint32_t>(p.streams.size()));
  for (const Stream& s : p.streams) {
    streams.put<uint32_t>(s.chip);
    streams.put<uint32_t>(s.tile);
    streams.put<uint32_t>(static_cast<uint32_t>(s.code.size()));
    for (const Instr& in : s.code) encode(in, streams.bytes);
  }
  out.section(kStreams, streams);
  return out.bytes;
}

Program read_binary(std::span<const uint8_t> bytes) {
  if (bytes.size() < 16 || std::memcmp(bytes.data(), kMagic, 8) != 0) {
    throw FormatError("not a Tessera program (bad magic)");
  }
  Reader head(bytes, 0);
  head.skip(8);
  const uint32_t version = head.get<uint32_t>();
  if (version != kProgramVersion) {
    throw FormatError(fmt::format("unsupported program version {} (this build reads {})", version,
                                  kProgramVersion));
  }
  const uint32_t sections = head.get<uint32_t>();
  Program p;
  bool seen[5] = {};
  for (uint32_t s = 0; s < sections; ++s) {
    const size_t at = head.offset();
    const uint32_t type = head.get<uint32_t>();
    const uint64_t len = head.get<uint64_t>();
    Reader r(head.take(len), head.offset() - len);
    if (type < kMeta || type > kStreams) {
      throw FormatError(fmt::format("unknown section type {} at byte {}", type, at));
    }
    if (seen[type]) throw FormatError(fmt::format("duplicate section {} at byte {}", type, at));
    seen[type] = true;
    const uint32_t count = r.get<uint32_t>();
    switch (type) {
      case kMeta:
        for (uint32_t i = 0; i < count; ++i) {
          std::string k = r.name();
          if (p.meta.count(k)) throw FormatError(fmt::format("duplicate metadata '{}' at byte {}", k, r.offset()));
          p.meta[k] = r.str();
        }
        break;
      case kRegions:
        for (uint32_t i = 0; i < count; ++i) {
          Region g;
          g.name = r.name();
          for (const Region& o : p.regions) {
            if (o.name == g.name) throw FormatError(fmt::format("duplicate region '{}' at byte {}", g.name, r.offset()));
          }
          g.kind = checked_enum<RegionKind>(r.get<uint8_t>(), kRegionKinds, "region kind", r.offset());
          g.base = r.get<uint64_t>();
          g.size = r.get<uint64_t>();
          p.regions.push_back(std::move(g));
        }
        break;
      case kSymbols:
        for (uint32_t i = 0; i < count; ++i) {
          Symbol y;
          y.name = r.name();
          if (p.find_symbol(y.name)) throw FormatError(fmt::format("duplicate tensor '{}' at byte {}", y.name, r.offset()));
          const uint8_t dt = r.get<uint8_t>();
          if (dt >= kDtypeCount) throw FormatError(fmt::format("bad dtype {} at byte {}", dt, r.offset()));
          y.dtype = static_cast<Dtype>(dt);
          const uint8_t sp = r.get<uint8_t>();
          if (sp > static_cast<uint8_t>(Space::Shared)) {
            throw FormatError(fmt::format("bad space {} at byte {}", sp, r.offset()));
          }
          y.space = static_cast<Space>(sp);
          y.tile = r.get<int32_t>();
          if (y.space == Space::None || (y.space == Space::Sram ? y.tile < 0 : y.tile != -1)) {
            throw FormatError(fmt::format("tensor '{}': space and tile disagree at byte {}", y.name, r.offset()));
          }
          y.addr = r.get<uint64_t>();
          y.role = checked_enum<Role>(r.get<uint8_t>(), kRoles, "role", r.offset());
          const uint32_t rank = r.get<uint32_t>();
          if (rank > 8) throw FormatError(fmt::format("symbol rank {} at byte {}", rank, r.offset()));
          for (uint32_t d = 0; d < rank; ++d) {
            y.shape.push_back(r.get<int64_t>());
            if (y.shape.back() < 0) throw FormatError(fmt::format("negative dimension at byte {}", r.offset()));
          }
          p.symbols.push_back(std::move(y));
        }
        break;
      case kStreams:
        for (uint32_t i = 0; i < count; ++i) {
          Stream st;
          st.chip = r.get<uint32_t>();
          st.tile = r.get<uint32_t>();
          if (p.find_stream(st.chip, st.tile)) {
            throw FormatError(fmt::format("second stream for chip {} tile {} at byte {}", st.chip, st.tile, r.offset()));
          }
          const uint32_t n = r.get<uint32_t>();
          const std::span<const uint8_t> rest = r.rest();
          size_t off = 0;
          // Every instruction is at least 8 bytes: refuse counts the data cannot hold.
          if (uint64_t(n) * 8 > rest.size()) {
            throw FormatError(fmt::format("truncated stream at byte {}", r.offset()));
          }
          st.code.reserve(n);
          for (uint32_t k = 0; k < n; ++k) {
            try {
              st.code.push_back(decode(rest, off));
            } catch (const DecodeError& e) {
              throw DecodeError(fmt::format("stream chip {} tile {}, instruction {}: {} (section at byte {})",
                                            st.chip, st.tile, k, e.what(), r.offset()));
            }
          }
          r.skip(off);
          p.streams.push_back(std::move(st));
        }
        break;
    }
    if (!r.done()) throw FormatError(fmt::format("section {} at byte {} has trailing bytes", type, at));
  }
  if (!head.done()) throw FormatError(fmt::format("trailing bytes after the last section at byte {}", head.offset()));
  return p;
}

void save_binary(const Program& p, const std::filesystem::path& path) {
  std::vector<uint8_t> bytes = write_binary(p);
  std::ofstream out(path, std::ios::binary);
  if (!out) throw FormatError(fmt::format("{}: cannot write", path.string()));
  out.write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

Program load_binary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw FormatError(fmt::format("{}: cannot open", path.string()));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  try {
    return read_binary(bytes);
  } catch (const std::exception& e) {
    throw FormatError(fmt::format("{}: {}", path.string(), e.what()));
  }
}

}  // namespace tessera::isa
