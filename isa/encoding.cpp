#include "isa/encoding.hpp"

#include <fmt/format.h>

namespace tessera::isa {
namespace {

bool has_base(FieldKind k) { return k == FieldKind::RegImm || k == FieldKind::Addr; }

bool is_signed(FieldKind k) {
  return k == FieldKind::S || k == FieldKind::RegImm || k == FieldKind::Addr;
}

int64_t enum_limit(FieldKind k) {
  switch (k) {
    case FieldKind::Dtype: return kDtypeCount;
    case FieldKind::Space: return 4;
    case FieldKind::Bcast: return int64_t(kBcastNames.size());
    case FieldKind::Act: return int64_t(kActNames.size());
    case FieldKind::After: return int64_t(kAfterNames.size());
    case FieldKind::Reg: return kNumRegs;
    case FieldKind::Flag: return 2;
    default: return -1;
  }
}

class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>& out) : out_(out), start_(out.size()) {}
  void put(uint64_t v, int bits) {
    for (int i = 0; i < bits; ++i, ++pos_) {
      if (pos_ % 8 == 0) out_.push_back(0);
      if ((v >> i) & 1) out_.back() |= static_cast<uint8_t>(1u << (pos_ % 8));
    }
  }
  void pad_to_words() {
    while (out_.size() - start_ < (pos_ + 63) / 64 * 8) out_.push_back(0);
  }

 private:
  std::vector<uint8_t>& out_;
  size_t start_;
  size_t pos_ = 0;
};

class BitReader {
 public:
  BitReader(std::span<const uint8_t> bytes, size_t offset) : bytes_(bytes), offset_(offset) {}
  uint64_t get(int bits) {
    uint64_t v = 0;
    for (int i = 0; i < bits; ++i, ++pos_) {
      const size_t byte = offset_ + pos_ / 8;
      if (byte >= bytes_.size()) {
        throw DecodeError(fmt::format("truncated instruction at byte {}", offset_));
      }
      v |= static_cast<uint64_t>((bytes_[byte] >> (pos_ % 8)) & 1) << i;
    }
    return v;
  }
  size_t bits_read() const { return pos_; }

 private:
  std::span<const uint8_t> bytes_;
  size_t offset_;
  size_t pos_ = 0;
};

int64_t sign_extend(uint64_t v, int bits) {
  if (bits < 64 && ((v >> (bits - 1)) & 1)) v |= ~uint64_t(0) << bits;
  return static_cast<int64_t>(v);
}

}  // namespace

bool field_value_ok(const FieldDef& fd, int64_t v, std::string* why) {
  auto fail = [&](std::string msg) {
    if (why) *why = std::move(msg);
    return false;
  };
  if (int64_t limit = enum_limit(fd.kind); limit >= 0) {
    if (v < 0 || v >= limit) return fail(fmt::format("{} is out of range 0..{}", v, limit - 1));
    return true;
  }
  if (is_signed(fd.kind)) {
    const int64_t lo = -(int64_t(1) << (fd.bits - 1));
    const int64_t hi = (int64_t(1) << (fd.bits - 1)) - 1;
    if (v < lo || v > hi) return fail(fmt::format("{} does not fit {} signed bits", v, fd.bits));
    return true;
  }
  const int64_t hi = (int64_t(1) << fd.bits) - 1;
  if (v < 0 || v > hi) return fail(fmt::format("{} does not fit {} unsigned bits", v, fd.bits));
  return true;
}

void encode(const Instr& in, std::vector<uint8_t>& out) {
  const OpDef& d = in.def();
  BitWriter w(out);
  w.put(static_cast<uint64_t>(in.op), 8);
  for (size_t i = 0; i < d.fields.size(); ++i) {
    const FieldDef& fd = d.fields[i];
    std::string why;
    if (!field_value_ok(fd, in.f[i], &why)) {
      throw EncodeError(fmt::format("{}: field {}: {}", d.mnemonic, fd.name, why));
    }
    if (has_base(fd.kind)) {
      if (in.base[i] >= kNumRegs) {
        throw EncodeError(fmt::format("{}: field {}: no register r{}", d.mnemonic, fd.name, in.base[i]));
      }
      w.put(in.base[i], 4);
    } else if (in.base[i] != 0) {
      throw EncodeError(fmt::format("{}: field {} takes no register", d.mnemonic, fd.name));
    }
    w.put(static_cast<uint64_t>(in.f[i]), fd.bits);
  }
  w.pad_to_words();
}

Instr decode(std::span<const uint8_t> bytes, size_t& offset) {
  BitReader r(bytes, offset);
  const uint64_t opcode = r.get(8);
  if (opcode >= static_cast<uint64_t>(kOpCount)) {
    throw DecodeError(fmt::format("unknown opcode {} at byte {}", opcode, offset));
  }
  Instr in;
  in.op = static_cast<Opcode>(opcode);
  const OpDef& d = in.def();
  for (size_t i = 0; i < d.fields.size(); ++i) {
    const FieldDef& fd = d.fields[i];
    if (has_base(fd.kind)) in.base[i] = static_cast<uint8_t>(r.get(4));
    const uint64_t raw = r.get(fd.bits);
    in.f[i] = is_signed(fd.kind) ? sign_extend(raw, fd.bits) : static_cast<int64_t>(raw);
    std::string why;
    if (!field_value_ok(fd, in.f[i], &why)) {
      throw DecodeError(fmt::format("{} at byte {}: field {}: {}", d.mnemonic, offset, fd.name, why));
    }
  }
  const size_t total_bits = (r.bits_read() + 63) / 64 * 64;
  while (r.bits_read() < total_bits) {
    if (r.get(1) != 0) throw DecodeError(fmt::format("{} at byte {}: non-zero padding", d.mnemonic, offset));
  }
  offset += total_bits / 8;
  return in;
}

int encoded_bytes(Opcode op) {
  int bits = 8;
  for (const FieldDef& fd : op_def(op).fields) {
    bits += fd.bits + (has_base(fd.kind) ? 4 : 0);
  }
  return (bits + 63) / 64 * 8;
}

int find_field(Opcode op, std::string_view name) {
  const OpDef& d = op_def(op);
  for (size_t i = 0; i < d.fields.size(); ++i) {
    if (d.fields[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

std::string_view op_class_name(OpClass c) {
  switch (c) {
    case OpClass::Control: return "control";
    case OpClass::Sync: return "sync";
    case OpClass::Dma: return "dma";
    case OpClass::Matmul: return "matmul";
    case OpClass::Vector: return "vector";
    case OpClass::Comm: return "comm";
  }
  return "?";
}

std::string_view space_name(Space s) {
  switch (s) {
    case Space::None: return "none";
    case Space::Hbm: return "hbm";
    case Space::Sram: return "sram";
    case Space::Shared: return "shared";
  }
  return "?";
}

}  // namespace tessera::isa
