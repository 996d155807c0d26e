// A program: one instruction stream per tile (per chip), the HBM memory map, a symbol table of
// tensors, and metadata. Programs are SPMD across chips: every chip has the same memory map.
//
// Binary file format (little-endian):
//   "TSRAPROG" magic, u32 version, u32 section count, then sections of
//   u32 type, u64 payload bytes, payload. Types: 1 metadata, 2 regions, 3 symbols, 4 streams.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa/instr.hpp"

namespace tessera::isa {

enum class RegionKind : uint8_t { Weights, KvCache, Activations, Scratch, Io };
std::string_view region_kind_name(RegionKind k);
std::optional<RegionKind> region_kind_from_name(std::string_view s);

enum class Role : uint8_t { Weight, KvCache, Activation, Input, Output, Scratch };
std::string_view role_name(Role r);
std::optional<Role> role_from_name(std::string_view s);

// A named range of HBM.
struct Region {
  std::string name;
  RegionKind kind = RegionKind::Scratch;
  uint64_t base = 0;
  uint64_t size = 0;
  bool operator==(const Region&) const = default;
};

// A tensor with a name, so that programs and disassembly can refer to it symbolically.
struct Symbol {
  std::string name;
  Dtype dtype = Dtype::Bf16;
  std::vector<int64_t> shape;
  Space space = Space::Hbm;
  int32_t tile = -1;  // owning tile for SRAM symbols; -1 otherwise
  uint64_t addr = 0;
  Role role = Role::Activation;
  uint64_t bytes() const;
  bool operator==(const Symbol&) const = default;
};

struct Stream {
  uint32_t chip = 0;
  uint32_t tile = 0;
  std::vector<Instr> code;
  std::vector<uint32_t> lines;  // source line of each instruction (empty when not from text)
  bool operator==(const Stream& o) const {
    return chip == o.chip && tile == o.tile && code == o.code;
  }
};

struct Program {
  std::map<std::string, std::string> meta;  // model, phase, batch, seq, arch, arch_fingerprint, ...
  std::vector<Region> regions;
  std::vector<Symbol> symbols;
  std::vector<Stream> streams;

  Stream& stream(uint32_t chip, uint32_t tile);  // finds or appends
  const Stream* find_stream(uint32_t chip, uint32_t tile) const;
  const Symbol* find_symbol(std::string_view name) const;
  size_t instruction_count() const;
  bool operator==(const Program&) const = default;
};

// Names of metadata keys, regions and tensors: a letter or '_', then letters, digits, '_' or '.'
// (what the assembly text can spell).
bool valid_name(std::string_view s);

class FormatError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr uint32_t kProgramVersion = 1;

std::vector<uint8_t> write_binary(const Program& p);
// Throws FormatError (bad magic, version, truncation, a section that does not parse) or
// DecodeError (an instruction), each naming the byte offset.
Program read_binary(std::span<const uint8_t> bytes);

void save_binary(const Program& p, const std::filesystem::path& path);
Program load_binary(const std::filesystem::path& path);

}  // namespace tessera::isa
