#include "isa/assembly.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>

#include "isa/encoding.hpp"

namespace tessera::isa {

std::string AsmDiagnostic::str() const {
  return fmt::format("{}:{}:{}: {}", file, line, column, message);
}

namespace {
std::string join_diags(const std::vector<AsmDiagnostic>& d) {
  std::string s;
  for (const auto& x : d) s += (s.empty() ? "" : "\n") + x.str();
  return s;
}
}  // namespace

AsmError::AsmError(std::vector<AsmDiagnostic> diags)
    : std::runtime_error(join_diags(diags)), diags_(std::move(diags)) {}

namespace {

// ---- lexing ---------------------------------------------------------------------------------

enum class Tok { Ident, Number, String, Punct };

struct Token {
  Tok kind;
  std::string text;
  int col;  // 1-based
};

struct Located {
  std::string message;
  int col;
};

bool ident_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }
bool ident_char(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.'; }

// Splits one line (comment already removed) into tokens. Throws Located on a bad character.
std::vector<Token> lex(std::string_view line) {
  std::vector<Token> out;
  size_t i = 0;
  while (i < line.size()) {
    const char c = line[i];
    const int col = static_cast<int>(i) + 1;
    if (c == ' ' || c == '\t' || c == '\r') {
      ++i;
    } else if (std::isdigit(static_cast<unsigned char>(c))) {
      size_t j = i + 1;
      const bool hex = c == '0' && j < line.size() && (line[j] == 'x' || line[j] == 'X');
      while (j < line.size() &&
             (std::isalnum(static_cast<unsigned char>(line[j])) || line[j] == '.' ||
              (!hex && (line[j] == '+' || line[j] == '-') && (line[j - 1] == 'e' || line[j - 1] == 'E')))) {
        ++j;
      }
      out.push_back({Tok::Number, std::string(line.substr(i, j - i)), col});
      i = j;
    } else if (ident_start(c)) {
      size_t j = i + 1;
      while (j < line.size() && ident_char(line[j])) ++j;
      out.push_back({Tok::Ident, std::string(line.substr(i, j - i)), col});
      i = j;
    } else if (c == '"') {
      std::string s;
      size_t j = i + 1;
      for (; j < line.size() && line[j] != '"'; ++j) {
        if (line[j] == '\\' && j + 1 < line.size()) {
          ++j;
          s += line[j] == 'n' ? '\n' : line[j] == 't' ? '\t' : line[j];
        } else {
          s += line[j];
        }
      }
      if (j >= line.size()) throw Located{"unterminated string", col};
      out.push_back({Tok::String, s, col});
      i = j + 1;
    } else if (std::strchr(",=[]+-@", c) != nullptr) {
      out.push_back({Tok::Punct, std::string(1, c), col});
      ++i;
    } else {
      throw Located{fmt::format("unexpected character '{}'", c), col};
    }
  }
  return out;
}

// Removes a trailing comment (';' or '#') outside of strings.
std::string_view strip_comment(std::string_view line) {
  bool in_string = false;
  for (size_t i = 0; i < line.size(); ++i) {
    if (in_string && line[i] == '\\') {
      ++i;  // skip the escaped character
    } else if (line[i] == '"') {
      in_string = !in_string;
    } else if (!in_string && (line[i] == ';' || line[i] == '#')) {
      return line.substr(0, i);
    }
  }
  return line;
}

// ---- value parsing ----------------------------------------------------------------------------

std::optional<int64_t> parse_int(std::string_view s) {
  bool neg = false;
  if (!s.empty() && s[0] == '-') neg = true, s.remove_prefix(1);
  int base = 10;
  if (s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) base = 16, s.remove_prefix(2);
  uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v, base);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  if (v > uint64_t(std::numeric_limits<int64_t>::max()) + (neg ? 1 : 0)) return std::nullopt;
  return neg ? static_cast<int64_t>(0 - v) : static_cast<int64_t>(v);
}

std::optional<int> parse_reg(std::string_view s) {
  if (s.size() < 2 || s[0] != 'r') return std::nullopt;
  auto v = parse_int(s.substr(1));
  if (!v || *v < 0 || *v >= kNumRegs || s.substr(1) != std::to_string(*v)) return std::nullopt;
  return static_cast<int>(*v);
}

// A cursor over the tokens of one operand.
class Operand {
 public:
  Operand(std::vector<Token> toks, int col) : t_(std::move(toks)), col_(col) {}
  bool done() const { return i_ >= t_.size(); }
  const Token* peek() const { return done() ? nullptr : &t_[i_]; }
  const Token& next(const char* expected) {
    if (done()) throw Located{fmt::format("expected {}", expected), end_col()};
    return t_[i_++];
  }
  bool accept(std::string_view punct) {
    if (!done() && t_[i_].kind == Tok::Punct && t_[i_].text == punct) {
      ++i_;
      return true;
    }
    return false;
  }
  void expect(std::string_view punct) {
    if (!accept(punct)) throw Located{fmt::format("expected '{}'", punct), done() ? end_col() : t_[i_].col};
  }
  void expect_end() {
    if (!done()) throw Located{fmt::format("unexpected '{}'", t_[i_].text), t_[i_].col};
  }
  int col() const { return done() ? end_col() : t_[i_].col; }
  int start_col() const { return col_; }

 private:
  int end_col() const { return t_.empty() ? col_ : t_.back().col + static_cast<int>(t_.back().text.size()); }
  std::vector<Token> t_;
  size_t i_ = 0;
  int col_;
};

// Splits tokens at top-level commas.
std::vector<Operand> split_operands(const std::vector<Token>& toks, size_t from) {
  std::vector<Operand> ops;
  std::vector<Token> cur;
  int depth = 0;
  int start = from < toks.size() ? toks[from].col : 0;
  for (size_t i = from; i < toks.size(); ++i) {
    const Token& t = toks[i];
    if (t.kind == Tok::Punct && t.text == "[") ++depth;
    if (t.kind == Tok::Punct && t.text == "]") --depth;
    if (t.kind == Tok::Punct && t.text == "," && depth == 0) {
      if (cur.empty()) throw Located{"empty operand", t.col};
      ops.emplace_back(std::move(cur), start);
      cur.clear();
      start = i + 1 < toks.size() ? toks[i + 1].col : t.col + 1;
    } else {
      cur.push_back(t);
    }
  }
  if (!cur.empty()) ops.emplace_back(std::move(cur), start);
  else if (from < toks.size()) throw Located{"expected an operand after ','", toks.back().col + 1};
  return ops;
}

template <size_t N>
std::optional<int64_t> index_of(const std::array<std::string_view, N>& names, std::string_view s) {
  for (size_t i = 0; i < N; ++i) {
    if (names[i] == s) return static_cast<int64_t>(i);
  }
  return std::nullopt;
}

constexpr std::array<std::string_view, 4> kSpaceNames = {"none", "hbm", "sram", "shared"};

std::string list_names(std::span<const std::string_view> names) {
  std::string s;
  for (auto n : names) s += (s.empty() ? "" : ", ") + std::string(n);
  return s;
}

// ---- the assembler ----------------------------------------------------------------------------

class Assembler {
 public:
  Assembler(std::string_view text, std::string file) : file_(std::move(file)) {
    size_t start = 0;
    while (start <= text.size()) {
      size_t end = text.find('\n', start);
      if (end == std::string_view::npos) end = text.size();
      lines_.push_back(text.substr(start, end - start));
      start = end + 1;
      if (end == text.size()) break;
    }
  }

  Program run() {
    // Pass 1: tensors, so that instructions may name them before their declaration.
    for (size_t i = 0; i < lines_.size(); ++i) {
      guarded(i, [&](const std::vector<Token>& t) {
        if (!t.empty() && t[0].text == ".tensor") tensor(t);
      });
    }
    for (size_t i = 0; i < lines_.size(); ++i) {
      guarded(i, [&](const std::vector<Token>& t) {
        if (t.empty() || t[0].text == ".tensor") return;
        if (t[0].text == ".meta") return meta(t);
        if (t[0].text == ".region") return region(t);
        if (t[0].text == ".stream") return stream(t);
        if (t[0].kind == Tok::Ident && t[0].text[0] == '.') {
          throw Located{fmt::format("unknown directive '{}' (expected .meta, .region, .tensor or .stream)", t[0].text), t[0].col};
        }
        instruction(t);
      });
    }
    close_stream();
    if (!diags_.empty()) throw AsmError(diags_);
    return std::move(p_);
  }

 private:
  template <class F>
  void guarded(size_t index, F&& f) {
    line_ = static_cast<int>(index) + 1;
    try {
      f(lex(strip_comment(lines_[index])));
    } catch (const Located& e) {
      error(e.col, e.message);
    }
  }

  void error(int col, std::string message) {
    if (diags_.size() < 100) diags_.push_back({file_, line_, col, std::move(message)});
  }

  static std::string_view word(const Token& t) { return t.text; }

  const Token& at(const std::vector<Token>& t, size_t i, const char* expected) {
    if (i >= t.size()) {
      throw Located{fmt::format("expected {}", expected),
                    t.empty() ? 1 : t.back().col + static_cast<int>(t.back().text.size())};
    }
    return t[i];
  }

  std::string identifier(const std::vector<Token>& t, size_t i, const char* what) {
    const Token& k = at(t, i, what);
    if (k.kind != Tok::Ident || !valid_name(k.text)) throw Located{fmt::format("expected {}", what), k.col};
    return k.text;
  }

  uint64_t unsigned_number(const std::vector<Token>& t, size_t i, const char* what) {
    const Token& k = at(t, i, what);
    auto v = k.kind == Tok::Number ? parse_int(k.text) : std::nullopt;
    if (!v || *v < 0) throw Located{fmt::format("expected {}", what), k.col};
    return static_cast<uint64_t>(*v);
  }

  void expect_end(const std::vector<Token>& t, size_t i) {
    if (i < t.size()) throw Located{fmt::format("unexpected '{}'", t[i].text), t[i].col};
  }

  void meta(const std::vector<Token>& t) {
    const std::string key = identifier(t, 1, "a metadata key");
    const Token& v = at(t, 2, "a metadata value");
    if (v.kind == Tok::Punct) throw Located{"expected a metadata value", v.col};
    expect_end(t, 3);
    if (p_.meta.count(key)) throw Located{fmt::format("metadata '{}' given twice", key), t[1].col};
    p_.meta[key] = v.text;
  }

  void region(const std::vector<Token>& t) {
    Region r;
    r.name = identifier(t, 1, "a region name");
    const Token& k = at(t, 2, "a region kind");
    auto kind = region_kind_from_name(k.text);
    if (!kind) throw Located{"expected a region kind (weights, kv_cache, activations, scratch, io)", k.col};
    r.kind = *kind;
    r.base = unsigned_number(t, 3, "the region's base address");
    r.size = unsigned_number(t, 4, "the region's size in bytes");
    expect_end(t, 5);
    for (const Region& o : p_.regions) {
      if (o.name == r.name) throw Located{fmt::format("region '{}' declared twice", r.name), t[1].col};
    }
    p_.regions.push_back(std::move(r));
  }

  void tensor(const std::vector<Token>& t) {
    Symbol s;
    s.name = identifier(t, 1, "a tensor name");
    const Token& dt = at(t, 2, "a dtype");
    auto d = dtype_from_name(dt.text);
    if (!d || *d == Dtype::None) throw Located{"expected a dtype (fp32, bf16, fp8e4m3, int8, ...)", dt.col};
    s.dtype = *d;
    size_t i = 3;
    if (at(t, i, "'['").text != "[") throw Located{"expected '[' starting the shape", t[i].col};
    ++i;
    while (at(t, i, "a dimension or ']'").text != "]") {
      if (!s.shape.empty()) {
        if (t[i].text != ",") throw Located{"expected ',' or ']'", t[i].col};
        ++i;
      }
      s.shape.push_back(static_cast<int64_t>(unsigned_number(t, i, "a dimension")));
      ++i;
    }
    ++i;
    const Token& sp = at(t, i, "a space (hbm, sram@TILE, shared)");
    auto space = index_of(kSpaceNames, sp.text);
    if (!space || *space == 0) throw Located{"expected a space (hbm, sram@TILE, shared)", sp.col};
    s.space = static_cast<Space>(*space);
    ++i;
    if (i < t.size() && t[i].text == "@") {
      const uint64_t tile = unsigned_number(t, i + 1, "a tile index");
      if (tile > uint64_t(INT32_MAX)) throw Located{"tile index out of range", t[i + 1].col};
      s.tile = static_cast<int32_t>(tile);
      i += 2;
    }
    if (s.space == Space::Sram && s.tile < 0) throw Located{"an SRAM tensor names its tile: sram@TILE", sp.col};
    if (s.space != Space::Sram && s.tile >= 0) throw Located{"only SRAM tensors belong to a tile", sp.col};
    s.addr = unsigned_number(t, i, "the tensor's address");
    const Token& r = at(t, i + 1, "a role");
    auto role = role_from_name(r.text);
    if (!role) throw Located{"expected a role (weight, kv_cache, activation, input, output, scratch)", r.col};
    s.role = *role;
    expect_end(t, i + 2);
    if (p_.find_symbol(s.name)) throw Located{fmt::format("tensor '{}' declared twice", s.name), t[1].col};
    p_.symbols.push_back(std::move(s));
  }

  // .stream chip=C tile=T (chip defaults to 0; commas between the pairs are optional)
  void stream(const std::vector<Token>& t) {
    close_stream();
    current_ = kBrokenStream;  // until this line parses: keeps its instructions from piling up errors
    uint32_t chip = 0, tile = 0;
    bool has_tile = false;
    for (size_t i = 1; i < t.size();) {
      if (t[i].text == "," && i > 1) {
        ++i;
        continue;
      }
      const Token& k = t[i];
      if (k.text != "chip" && k.text != "tile") throw Located{"expected chip=N or tile=N", k.col};
      if (at(t, i + 1, "'='").text != "=") throw Located{"expected '='", t[i + 1].col};
      const uint64_t v = unsigned_number(t, i + 2, "a number");
      if (v > 0xFFFFFFFF) throw Located{"number out of range", t[i + 2].col};
      if (k.text == "chip") {
        chip = static_cast<uint32_t>(v);
      } else {
        tile = static_cast<uint32_t>(v), has_tile = true;
      }
      i += 3;
    }
    if (!has_tile) throw Located{"expected tile=N", t[0].col};
    if (p_.find_stream(chip, tile)) {
      throw Located{fmt::format("stream chip={} tile={} declared twice", chip, tile), t[0].col};
    }
    p_.streams.push_back(Stream{chip, tile, {}, {}});
    current_ = static_cast<int>(p_.streams.size()) - 1;
  }

  void close_stream() {
    for (const auto& [line, col] : open_loops_) {
      diags_.push_back({file_, line, col, "loop without endloop"});
    }
    open_loops_.clear();
  }

  void instruction(const std::vector<Token>& t) {
    const Token& m = t[0];
    if (m.kind != Tok::Ident) throw Located{"expected an instruction mnemonic", m.col};
    int op_index = -1;
    for (int i = 0; i < kOpCount; ++i) {
      if (kOps[i].mnemonic == m.text) op_index = i;
    }
    if (op_index < 0) throw Located{fmt::format("unknown instruction '{}'", m.text), m.col};
    if (current_ == kBrokenStream) return;  // its .stream line was already reported
    if (current_ < 0) throw Located{"instruction outside a stream (start one with .stream tile=N)", m.col};
    Stream& st = p_.streams[static_cast<size_t>(current_)];
    Instr in = Instr::make(static_cast<Opcode>(op_index));
    const OpDef& d = in.def();

    std::vector<bool> given(d.fields.size(), false);
    size_t positional = 0;
    for (Operand& op : split_operands(t, 1)) {
      int fi = -1;
      const Token* first = op.peek();
      Operand probe = op;
      probe.next("");
      if (first->kind == Tok::Ident && probe.accept("=")) {
        fi = find_field(in.op, first->text);
        if (fi < 0 || is_hidden(d, fi)) {
          throw Located{fmt::format("{} has no field '{}' (fields: {})", d.mnemonic, first->text, field_list(d)), first->col};
        }
        op = probe;
      } else if (first->kind == Tok::Ident && is_flag_name(d, first->text) && (probe.done())) {
        fi = find_field(in.op, first->text);  // a bare flag name sets it
        in.f[size_t(fi)] = 1;
        mark(given, fi, *first, d);
        continue;
      } else {
        fi = nth_visible(d, positional++);
        if (fi < 0) throw Located{fmt::format("{} takes at most {} operands", d.mnemonic, visible_count(d)), op.start_col()};
      }
      mark(given, fi, *first, d);
      value(in, fi, op, st);
    }
    for (size_t i = 0; i < d.fields.size(); ++i) {
      if (d.fields[i].required && !given[i]) {
        throw Located{fmt::format("{} needs {}= (required fields: {})", d.mnemonic, d.fields[i].name, required_list(d)),
                      m.col};
      }
    }
    control_structure(in, m);
    st.code.push_back(in);
    st.lines.push_back(static_cast<uint32_t>(line_));
  }

  void mark(std::vector<bool>& given, int fi, const Token& at_tok, const OpDef& d) {
    if (given[size_t(fi)]) throw Located{fmt::format("field '{}' given twice", d.fields[size_t(fi)].name), at_tok.col};
    given[size_t(fi)] = true;
  }

  void control_structure(const Instr& in, const Token& m) {
    if (in.op == Opcode::Loop) {
      if (open_loops_.size() >= size_t(kMaxLoopDepth)) {
        throw Located{fmt::format("loops nest at most {} deep", kMaxLoopDepth), m.col};
      }
      open_loops_.emplace_back(line_, m.col);
    } else if (in.op == Opcode::EndLoop) {
      if (open_loops_.empty()) throw Located{"endloop without loop", m.col};
      open_loops_.pop_back();
    }
  }

  static bool is_hidden(const OpDef& d, int fi) {
    const std::string_view name = d.fields[size_t(fi)].name;
    for (const FieldDef& f : d.fields) {
      if (f.space_field == name || f.tile_field == name) return true;
    }
    return false;
  }
  static int nth_visible(const OpDef& d, size_t n) {
    for (size_t i = 0; i < d.fields.size(); ++i) {
      if (!is_hidden(d, int(i)) && n-- == 0) return int(i);
    }
    return -1;
  }
  static size_t visible_count(const OpDef& d) {
    size_t n = 0;
    for (size_t i = 0; i < d.fields.size(); ++i) n += is_hidden(d, int(i)) ? 0 : 1;
    return n;
  }
  static bool is_flag_name(const OpDef& d, std::string_view s) {
    for (const FieldDef& f : d.fields) {
      if (f.name == s && f.kind == FieldKind::Flag) return true;
    }
    return false;
  }
  static std::string required_list(const OpDef& d) {
    std::string s;
    for (const FieldDef& f : d.fields) {
      if (f.required) s += (s.empty() ? "" : ", ") + std::string(f.name);
    }
    return s;
  }
  static std::string field_list(const OpDef& d) {
    std::string s;
    for (size_t i = 0; i < d.fields.size(); ++i) {
      if (!is_hidden(d, int(i))) s += (s.empty() ? "" : ", ") + std::string(d.fields[i].name);
    }
    return s;
  }

  // Parses the value of field `fi` from `op` into `in`.
  void value(Instr& in, int fi, Operand& op, const Stream& st) {
    const FieldDef& fd = in.def().fields[size_t(fi)];
    const int col = op.col();
    int64_t v = 0;
    switch (fd.kind) {
      case FieldKind::U:
      case FieldKind::S: v = integer(op, "an integer"); break;
      case FieldKind::Reg: {
        const Token& k = op.next("a register r0..r15");
        auto r = parse_reg(k.text);
        if (!r) throw Located{"expected a register r0..r15", k.col};
        v = *r;
        break;
      }
      case FieldKind::RegImm: v = reg_imm(in, fi, op); break;
      case FieldKind::Addr: v = address(in, fi, op, st); break;
      case FieldKind::Dtype: {
        const Token& k = op.next("a dtype");
        auto dt = dtype_from_name(k.text);
        if (!dt) throw Located{"expected a dtype (none, fp32, bf16, fp8e4m3, fp8e5m2, int8, int32, mxfp8, mxfp6, mxfp4, mxint8)", k.col};
        v = static_cast<int64_t>(*dt);
        break;
      }
      case FieldKind::Tile: {
        const Token* k = op.peek();
        if (k && k->text == "self") {
          op.next("");
          v = int64_t(kTileSelf);
        } else {
          v = integer(op, "a tile index or 'self'");
        }
        break;
      }
      case FieldKind::Sem: {
        const Token* k = op.peek();
        if (k && k->text == "none") {
          op.next("");
          v = int64_t(kSemNone);
        } else {
          v = integer(op, "a semaphore index or 'none'");
        }
        break;
      }
      case FieldKind::Flag: {
        const Token& k = op.next("0, 1, true or false");
        if (k.text == "1" || k.text == "true") v = 1;
        else if (k.text == "0" || k.text == "false") v = 0;
        else throw Located{"expected 0, 1, true or false", k.col};
        break;
      }
      case FieldKind::F32: v = std::bit_cast<uint32_t>(float_value(op)); break;
      case FieldKind::Bcast: v = named(op, kBcastNames, "a broadcast mode"); break;
      case FieldKind::Act: v = named(op, kActNames, "an activation"); break;
      case FieldKind::After: v = named(op, kAfterNames, "a unit"); break;
      case FieldKind::Space: throw Located{"space fields are written as address prefixes", col};
    }
    op.expect_end();
    std::string why;
    if (!field_value_ok(fd, v, &why)) throw Located{fmt::format("field '{}': {}", fd.name, why), col};
    in.f[size_t(fi)] = v;
  }

  template <size_t N>
  int64_t named(Operand& op, const std::array<std::string_view, N>& names, const char* what) {
    const Token& k = op.next(what);
    auto v = index_of(names, k.text);
    if (!v) throw Located{fmt::format("expected {} ({})", what, list_names(names)), k.col};
    return *v;
  }

  int64_t integer(Operand& op, const char* what) {
    bool neg = op.accept("-");
    const Token& k = op.next(what);
    auto v = k.kind == Tok::Number ? parse_int(k.text) : std::nullopt;
    if (!v) throw Located{fmt::format("expected {}", what), k.col};
    return neg ? -*v : *v;
  }

  float float_value(Operand& op) {
    bool neg = op.accept("-");
    const Token& k = op.next("a number");
    float f = 0;
    if (k.text == "inf") {
      f = std::numeric_limits<float>::infinity();
    } else if (k.text.starts_with("nan")) {
      // nan or nan(0xBITS) -- written by the disassembler to keep NaN payloads exact.
      f = std::numeric_limits<float>::quiet_NaN();
    } else if (k.kind == Tok::Number) {
      if (k.text.starts_with("0x")) {
        auto bits = parse_int(k.text);
        if (!bits || *bits < 0 || *bits > 0xFFFFFFFF) throw Located{"expected a float", k.col};
        f = std::bit_cast<float>(static_cast<uint32_t>(*bits));
      } else {
        auto [p, ec] = std::from_chars(k.text.data(), k.text.data() + k.text.size(), f);
        if (ec != std::errc() || p != k.text.data() + k.text.size()) throw Located{"expected a float", k.col};
      }
    } else {
      throw Located{"expected a float (1.5, -inf, 0x3f800000)", k.col};
    }
    return neg ? -f : f;
  }

  // r3, 16, r3+16, r3-4
  int64_t reg_imm(Instr& in, int fi, Operand& op) {
    int64_t imm = 0;
    bool first = true;
    while (!op.done()) {
      bool neg = false;
      if (!first) {
        if (op.accept("-")) neg = true;
        else op.expect("+");
      } else if (op.accept("-")) {
        neg = true;
      }
      const Token& k = op.next("a register or a number");
      if (auto r = parse_reg(k.text)) {
        if (neg || in.base[size_t(fi)] != 0) throw Located{"at most one register, added", k.col};
        in.base[size_t(fi)] = static_cast<uint8_t>(*r);
      } else if (auto v = k.kind == Tok::Number ? parse_int(k.text) : std::nullopt) {
        imm += neg ? -*v : *v;
      } else {
        throw Located{"expected a register or a number", k.col};
      }
      first = false;
    }
    return imm;
  }

  // space[@tile][reg + SYMBOL + offset]
  int64_t address(Instr& in, int fi, Operand& op, const Stream& st) {
    const FieldDef& fd = in.def().fields[size_t(fi)];
    Space space = fd.space;
    int64_t tile = int64_t(kTileSelf);
    const int sf = fd.space_field.empty() ? -1 : find_field(in.op, fd.space_field);
    const int tf = fd.tile_field.empty() ? -1 : find_field(in.op, fd.tile_field);
    if (sf >= 0) space = static_cast<Space>(in.f[size_t(sf)]);
    if (tf >= 0) tile = in.f[size_t(tf)];

    const Token* k = op.peek();
    if (k && k->kind == Tok::Ident) {
      auto s = index_of(kSpaceNames, k->text);
      if (!s) throw Located{"expected a space (hbm, sram, shared) or '['", k->col};
      if (sf < 0 && static_cast<Space>(*s) != fd.space) {
        throw Located{fmt::format("field '{}' is always in {}", fd.name, space_name(fd.space)), k->col};
      }
      space = static_cast<Space>(*s);
      op.next("");
      if (op.accept("@")) {
        if (tf < 0) throw Located{fmt::format("field '{}' cannot name a tile", fd.name), op.col()};
        const Token* t = op.peek();
        if (t && t->text == "self") {
          op.next("");
          tile = int64_t(kTileSelf);
        } else {
          tile = integer(op, "a tile index");
          if (tile < 0 || tile >= int64_t(kTileSelf)) throw Located{"tile index out of range", t->col};
        }
      }
    } else if (sf >= 0) {
      throw Located{fmt::format("expected the space of '{}' (hbm[...], sram[...], shared[...])", fd.name), op.col()};
    }
    if (sf >= 0) in.f[size_t(sf)] = static_cast<int64_t>(space);
    if (tf >= 0) in.f[size_t(tf)] = tile;

    op.expect("[");
    int64_t imm = 0;
    bool first = true;
    while (!op.accept("]")) {
      bool neg = false;
      if (!first) {
        if (op.accept("-")) neg = true;
        else op.expect("+");
      } else if (op.accept("-")) {
        neg = true;
      }
      const Token& t = op.next("a register, tensor name or number");
      if (auto r = parse_reg(t.text)) {
        if (neg || in.base[size_t(fi)] != 0) throw Located{"at most one register, added", t.col};
        in.base[size_t(fi)] = static_cast<uint8_t>(*r);
      } else if (t.kind == Tok::Number) {
        auto v = parse_int(t.text);
        if (!v) throw Located{"expected an integer offset", t.col};
        imm += neg ? -*v : *v;
      } else if (t.kind == Tok::Ident) {
        const Symbol* sym = p_.find_symbol(t.text);
        if (!sym) throw Located{fmt::format("unknown tensor '{}'", t.text), t.col};
        if (neg) throw Located{"a tensor name cannot be subtracted", t.col};
        if (sym->space != space) {
          throw Located{fmt::format("tensor '{}' is in {}, not {}", t.text, space_name(sym->space), space_name(space)), t.col};
        }
        const int64_t owner = tile == int64_t(kTileSelf) ? int64_t(st.tile) : tile;
        if (space == Space::Sram && sym->tile != owner) {
          throw Located{fmt::format("tensor '{}' is in the SRAM of tile {}, not tile {}", t.text, sym->tile, owner), t.col};
        }
        imm += static_cast<int64_t>(sym->addr);
      } else {
        throw Located{"expected a register, tensor name or number", t.col};
      }
      first = false;
    }
    return imm;
  }

  std::string file_;
  std::vector<std::string_view> lines_;
  std::vector<AsmDiagnostic> diags_;
  Program p_;
  int line_ = 0;
  static constexpr int kBrokenStream = -2;
  int current_ = -1;
  std::vector<std::pair<int, int>> open_loops_;  // (line, column) of each open loop
};

// ---- the disassembler -------------------------------------------------------------------------

std::string hex(uint64_t v) { return fmt::format("{:#x}", v); }

std::string float_text(uint32_t bits) {
  const float f = std::bit_cast<float>(bits);
  if (std::isnan(f)) return hex(bits);  // exact bits, NaN payload included
  if (std::isinf(f)) return f < 0 ? "-inf" : "inf";
  char buf[32];
  auto [p, ec] = std::to_chars(buf, buf + sizeof buf, f);
  std::string s(buf, p);
  // Keep a float looking like one, so "1" is not mistaken for an integer by readers.
  if (s.find_first_of(".e") == std::string::npos) s += ".0";
  return s;
}

std::string quoted(const std::string& s) {
  std::string q = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') q += '\\', q += c;
    else if (c == '\n') q += "\\n";
    else if (c == '\t') q += "\\t";
    else q += c;
  }
  return q + "\"";
}

class Disassembler {
 public:
  explicit Disassembler(const Program& p) : p_(p) {}

  std::string run() {
    std::string out;
    for (const auto& [k, v] : p_.meta) out += fmt::format(".meta {} {}\n", k, quoted(v));
    if (!p_.meta.empty()) out += "\n";
    for (const Region& r : p_.regions) {
      out += fmt::format(".region {} {} {} {}\n", r.name, region_kind_name(r.kind), hex(r.base), hex(r.size));
    }
    for (const Symbol& s : p_.symbols) {
      std::string shape;
      for (int64_t d : s.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
      std::string space(space_name(s.space));
      if (s.tile >= 0) space += "@" + std::to_string(s.tile);
      out += fmt::format(".tensor {} {} [{}] {} {} {}\n", s.name, dtype_name(s.dtype), shape, space, hex(s.addr),
                         role_name(s.role));
    }
    for (const Stream& st : p_.streams) {
      out += fmt::format("\n.stream chip={} tile={}\n", st.chip, st.tile);
      int depth = 1;
      for (const Instr& in : st.code) {
        if (in.op == Opcode::EndLoop && depth > 1) --depth;
        out += std::string(size_t(depth) * 2, ' ') + instruction(in, st) + "\n";
        if (in.op == Opcode::Loop) ++depth;
      }
    }
    return out;
  }

 private:
  static bool hidden(const OpDef& d, size_t i) {
    for (const FieldDef& f : d.fields) {
      if (f.space_field == d.fields[i].name || f.tile_field == d.fields[i].name) return true;
    }
    return false;
  }

  std::string instruction(const Instr& in, const Stream& st) {
    const OpDef& d = in.def();
    std::string s(d.mnemonic);
    // Control instructions print every field by position; others name their non-default fields.
    const bool positional = d.cls == OpClass::Control;
    bool first = true;
    for (size_t i = 0; i < d.fields.size(); ++i) {
      if (hidden(d, i)) continue;
      const FieldDef& fd = d.fields[i];
      const bool is_default = in.f[i] == fd.def && in.base[i] == 0 && !address_has_prefix_info(in, i);
      if (!positional && is_default && !fd.required) continue;
      s += first ? " " : ", ";
      first = false;
      if (!positional) s += std::string(fd.name) + "=";
      s += value(in, i, st);
    }
    return s;
  }

  // A dynamic-space address whose space or tile differs from the default must be printed,
  // since those hidden fields travel in its prefix.
  bool address_has_prefix_info(const Instr& in, size_t i) const {
    const OpDef& d = in.def();
    const FieldDef& fd = d.fields[i];
    if (fd.kind != FieldKind::Addr) return false;
    for (std::string_view hidden_name : {fd.space_field, fd.tile_field}) {
      if (hidden_name.empty()) continue;
      const int h = find_field(in.op, hidden_name);
      if (in.f[size_t(h)] != d.fields[size_t(h)].def) return true;
    }
    return false;
  }

  std::string value(const Instr& in, size_t i, const Stream& st) {
    const FieldDef& fd = in.def().fields[i];
    const int64_t v = in.f[i];
    switch (fd.kind) {
      case FieldKind::U:
      case FieldKind::S: return std::to_string(v);
      case FieldKind::Reg: return "r" + std::to_string(v);
      case FieldKind::RegImm: {
        if (in.base[i] == 0) return std::to_string(v);
        std::string s = "r" + std::to_string(in.base[i]);
        if (v > 0) s += "+" + std::to_string(v);
        if (v < 0) s += "-" + std::to_string(-v);
        return s;
      }
      case FieldKind::Addr: return address(in, i, st);
      case FieldKind::Dtype: return std::string(dtype_name(static_cast<Dtype>(v)));
      case FieldKind::Tile: return v == int64_t(kTileSelf) ? "self" : std::to_string(v);
      case FieldKind::Sem: return v == int64_t(kSemNone) ? "none" : std::to_string(v);
      case FieldKind::Flag: return std::to_string(v);
      case FieldKind::F32: return float_text(static_cast<uint32_t>(v));
      case FieldKind::Bcast: return std::string(kBcastNames[size_t(v)]);
      case FieldKind::Act: return std::string(kActNames[size_t(v)]);
      case FieldKind::After: return std::string(kAfterNames[size_t(v)]);
      case FieldKind::Space: return std::string(kSpaceNames[size_t(v)]);
    }
    return "?";
  }

  std::string address(const Instr& in, size_t i, const Stream& st) {
    const FieldDef& fd = in.def().fields[i];
    Space space = fd.space;
    int64_t tile = int64_t(kTileSelf);
    if (!fd.space_field.empty()) space = static_cast<Space>(in.f[size_t(find_field(in.op, fd.space_field))]);
    std::string prefix(kSpaceNames[size_t(space)]);
    if (!fd.tile_field.empty()) {
      tile = in.f[size_t(find_field(in.op, fd.tile_field))];
      if (tile != int64_t(kTileSelf)) prefix += "@" + std::to_string(tile);
    }
    const int64_t owner = tile == int64_t(kTileSelf) ? int64_t(st.tile) : tile;
    int64_t imm = in.f[i];
    std::string body;
    if (in.base[i] != 0) body = "r" + std::to_string(in.base[i]);
    if (const Symbol* sym = symbol_at(space, owner, imm)) {
      body += (body.empty() ? "" : "+") + sym->name;
      const uint64_t offset = uint64_t(imm) - sym->addr;  // within the symbol (symbol_at)
      if (offset > 0) body += "+" + hex(offset);
    } else if (body.empty()) {
      body = imm < 0 ? "-" + hex(0 - uint64_t(imm)) : hex(uint64_t(imm));
    } else if (imm != 0) {
      body += imm < 0 ? "-" + hex(0 - uint64_t(imm)) : "+" + hex(uint64_t(imm));
    }
    return prefix + "[" + body + "]";
  }

  // The tensor of this space (and tile, for SRAM) whose bytes contain `addr`; of several, the
  // one starting closest below it.
  const Symbol* symbol_at(Space space, int64_t tile, int64_t addr) const {
    const Symbol* best = nullptr;
    for (const Symbol& s : p_.symbols) {
      if (s.space != space || (space == Space::Sram && s.tile != tile)) continue;
      // Unsigned offsets: a decoded symbol may lie anywhere in 64 bits without overflowing.
      if (addr < 0 || uint64_t(addr) < s.addr || uint64_t(addr) - s.addr >= std::max<uint64_t>(s.bytes(), 1)) continue;
      if (!best || s.addr > best->addr) best = &s;
    }
    return best;
  }

  const Program& p_;
};

}  // namespace

Program assemble(std::string_view text, const std::string& file_name) {
  return Assembler(text, file_name).run();
}

Program assemble_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw AsmError({{path, 0, 0, "cannot open file"}});
  std::stringstream ss;
  ss << in.rdbuf();
  return assemble(ss.str(), path);
}

std::string disassemble(const Program& p) { return Disassembler(p).run(); }

}  // namespace tessera::isa
