#include "isa/verify.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "isa/operands.hpp"

namespace tessera::isa {

std::string VerifyIssue::str() const {
  std::string where = fmt::format("chip {} tile {}", chip, tile);
  if (index >= 0) where += fmt::format(", instruction {}", index);
  if (line > 0) where += fmt::format(" (line {})", line);
  return where + ": " + message;
}

namespace {
std::string join_issues(const std::vector<VerifyIssue>& v) {
  std::string s;
  for (const auto& i : v) s += (s.empty() ? "" : "\n") + i.str();
  return s;
}
}  // namespace

VerifyError::VerifyError(std::vector<VerifyIssue> issues)
    : std::runtime_error(join_issues(issues)), issues_(std::move(issues)) {}

namespace {

constexpr size_t kMaxIssuesPerStream = 20;

struct SemKey {
  uint32_t chip, tile, sem;
  auto operator<=>(const SemKey&) const = default;
};

struct Where {
  uint32_t chip, tile;
  int64_t index;
  uint32_t line;
};

class Verifier {
 public:
  Verifier(const Program& p, const Target& t, uint64_t budget) : p_(p), t_(t), budget_(budget) {}

  std::vector<VerifyIssue> run() {
    std::set<std::pair<uint32_t, uint32_t>> seen;
    for (const Stream& s : p_.streams) {
      if (!seen.insert({s.chip, s.tile}).second) {
        program_issue(s, fmt::format("a second stream for chip {} tile {}", s.chip, s.tile));
        continue;
      }
      stream(s);
    }
    semaphores();
    barriers();
    return std::move(issues_);
  }

 private:
  void program_issue(const Stream& s, std::string msg) {
    issues_.push_back({s.chip, s.tile, -1, 0, std::move(msg)});
  }

  void issue(const Stream& s, size_t pc, std::string msg) {
    if (stream_issues_ >= kMaxIssuesPerStream) return;
    // One report per static instruction and message: a loop repeats its errors.
    if (!reported_.insert({pc, msg}).second) return;
    ++stream_issues_;
    issues_.push_back({s.chip, s.tile, int64_t(pc), pc < s.lines.size() ? s.lines[pc] : 0, std::move(msg)});
  }

  // Matching endloop of every loop (and the other way round); reports unbalanced ones.
  std::vector<size_t> match_loops(const Stream& s) {
    std::vector<size_t> match(s.code.size(), SIZE_MAX);
    std::vector<size_t> open;
    for (size_t pc = 0; pc < s.code.size(); ++pc) {
      if (s.code[pc].op == Opcode::Loop) {
        open.push_back(pc);
        if (open.size() > size_t(kMaxLoopDepth)) issue(s, pc, fmt::format("loops nest more than {} deep", kMaxLoopDepth));
      } else if (s.code[pc].op == Opcode::EndLoop) {
        if (open.empty()) {
          issue(s, pc, "endloop without loop");
        } else {
          match[open.back()] = pc;
          match[pc] = open.back();
          open.pop_back();
        }
      }
    }
    for (size_t pc : open) issue(s, pc, "loop without endloop");
    return match;
  }

  void stream(const Stream& s) {
    stream_issues_ = 0;
    reported_.clear();
    if (s.chip >= t_.chips) {
      program_issue(s, fmt::format("chip {} is beyond the target's {} chip(s)", s.chip, t_.chips));
      return;
    }
    if (s.tile >= t_.tiles) {
      program_issue(s, fmt::format("tile {} is beyond the target's {} tiles", s.tile, t_.tiles));
      return;
    }
    const std::vector<size_t> match = match_loops(s);
    if (stream_issues_ > 0) return;  // control flow is not trustworthy

    int64_t regs[kNumRegs] = {};
    struct Frame {
      size_t start;
      int64_t remaining;
    };
    std::vector<Frame> loops;
    uint64_t executed = 0;
    for (size_t pc = 0; pc < s.code.size(); ++pc) {
      if (++executed > budget_) {
        issue(s, pc, fmt::format("more than {} dynamic instructions: too large to verify", budget_));
        return;
      }
      const Instr& in = s.code[pc];
      switch (in.op) {
        case Opcode::Li:
          if (in[0] != 0) regs[in[0]] = in[1];
          break;
        case Opcode::Addi:
          if (in[0] != 0) regs[in[0]] = regs[in[1]] + in[2];
          break;
        case Opcode::Add:
          if (in[0] != 0) regs[in[0]] = regs[in[1]] + regs[in[2]];
          break;
        case Opcode::Ld:  // the value comes from data: walk the largest it may take
          check(s, pc, in, regs);
          if (in[0] != 0) regs[in[0]] = in[2];
          if (in[2] == 0) issue(s, pc, "ld with max 0 always loads 0");
          break;
        case Opcode::Loop: {
          const int64_t count = resolve(in, 0, regs);
          if (count <= 0 || count > kMaxTripCount) {
            issue(s, pc, count <= 0 ? fmt::format("loop trip count is {} (must be at least 1)", count)
                                    : fmt::format("loop trip count {} is unbounded (more than 2^30)", count));
            pc = match[pc];  // skip the body
            break;
          }
          loops.push_back({pc, count});
          break;
        }
        case Opcode::EndLoop:
          if (--loops.back().remaining > 0) {
            pc = loops.back().start;
          } else {
            loops.pop_back();
          }
          break;
        case Opcode::Halt: return;
        default: check(s, pc, in, regs);
      }
    }
  }

  uint32_t tile_of(const Stream& s, int64_t tile_field) const {
    return tile_field == int64_t(kTileSelf) ? s.tile : uint32_t(tile_field);
  }

  bool tile_ok(const Stream& s, size_t pc, int64_t tile_field, std::string_view what) {
    if (tile_field == int64_t(kTileSelf) || tile_field < int64_t(t_.tiles)) return true;
    issue(s, pc, fmt::format("{} names tile {}, beyond the target's {} tiles", what, tile_field, t_.tiles));
    return false;
  }

  void signal(const Stream& s, size_t pc, uint32_t tile, int64_t sem, int64_t count) {
    if (sem < 0 || sem >= kNumSems) {
      issue(s, pc, fmt::format("semaphore {} out of range (0..{})", sem, kNumSems - 1));
      return;
    }
    signals_[{s.chip, tile, uint32_t(sem)}] += count;
  }

  void check(const Stream& s, size_t pc, const Instr& in, const int64_t* regs) {
    const OpDef& d = in.def();
    switch (in.op) {
      case Opcode::SemSignal:
        if (tile_ok(s, pc, in[0], "sem.signal")) signal(s, pc, tile_of(s, in[0]), in[1], in[2]);
        if (in[2] == 0) issue(s, pc, "sem.signal with count 0");
        return;
      case Opcode::SemWait: {
        if (in[0] >= kNumSems) return issue(s, pc, fmt::format("semaphore {} out of range (0..{})", in[0], kNumSems - 1));
        if (in[1] == 0) issue(s, pc, "sem.wait with count 0");
        const SemKey key{s.chip, s.tile, uint32_t(in[0])};
        waits_[key] += in[1];
        if (!first_wait_.count(key)) first_wait_[key] = {s.chip, s.tile, int64_t(pc), pc < s.lines.size() ? s.lines[pc] : 0};
        return;
      }
      case Opcode::Barrier: {
        if (in[0] >= kNumBarriers) return issue(s, pc, fmt::format("barrier {} out of range (0..{})", in[0], kNumBarriers - 1));
        if (in[1] < 1 || in[1] > int64_t(t_.tiles)) {
          return issue(s, pc, fmt::format("barrier count {} must be 1..{} (the target's tiles)", in[1], t_.tiles));
        }
        auto& b = barriers_[{s.chip, uint32_t(in[0])}];
        if (b.arrivals == 0) b.count = in[1], b.where = {s.chip, s.tile, int64_t(pc), pc < s.lines.size() ? s.lines[pc] : 0};
        else if (b.count != in[1]) issue(s, pc, fmt::format("barrier {} used with count {} here and {} elsewhere", in[0], in[1], b.count));
        b.arrivals += 1;
        return;
      }
      default: break;
    }

    if (in.op == Opcode::Dma) {
      dma_rules(s, pc, in);
    } else if (in.op == Opcode::Matmul) {
      matmul_rules(s, pc, in);
    } else if (d.cls == OpClass::Vector) {
      vector_rules(s, pc, in);
    } else if (d.cls == OpClass::Comm) {
      const int64_t peer = in[find_field(in.op, "peer")];
      if (peer >= int64_t(t_.chips) || peer == int64_t(s.chip)) {
        issue(s, pc, fmt::format("{} peer chip {} must be another of the target's {} chips", d.mnemonic, peer, t_.chips));
      }
      const int64_t sem = in[find_field(in.op, "sem")];  // the issuing tile's own
      if (sem != int64_t(kSemNone)) signal(s, pc, s.tile, sem, 1);
    }

    accesses_.clear();
    collect_accesses(in, regs, accesses_);
    for (const Access& a : accesses_) range_rules(s, pc, d, a);
    overlap_rules(s, pc, in);
  }

  void dma_rules(const Stream& s, size_t pc, const Instr& in) {
    static constexpr int sdt = field_index(Opcode::Dma, "sdt"), d0 = field_index(Opcode::Dma, "d0");
    static constexpr int sem = field_index(Opcode::Dma, "sem"), sem_tile = field_index(Opcode::Dma, "sem_tile");
    static constexpr int dst_tile = field_index(Opcode::Dma, "dst_tile"), src_tile = field_index(Opcode::Dma, "src_tile");
    static constexpr int dst_space = field_index(Opcode::Dma, "dst_space"), src_space = field_index(Opcode::Dma, "src_space");
    for (int f = d0; f < d0 + 4; ++f) {
      if (in[f] == 0) issue(s, pc, fmt::format("dma dimension d{} is 0", f - d0));
    }
    const Dtype from = in.dtype(sdt), to = dma_dst_dtype(in);
    if (from == Dtype::None) issue(s, pc, "dma source dtype is none");
    if (!dma_conversion_ok(from, to)) {
      issue(s, pc, fmt::format("dma cannot convert {} to {}", dtype_name(from), dtype_name(to)));
    }
    if ((is_mx(from) || dtype_bits(from) < 8) && (in[d0] * dtype_bits(from)) % 8 != 0) {
      issue(s, pc, fmt::format("dma rows of {} {} elements are not whole bytes", in[d0], dtype_name(from)));
    }
    for (int sp : {dst_space, src_space}) {
      if (in.space(sp) == Space::None) issue(s, pc, "dma address space is none");
    }
    static constexpr int gather = field_index(Opcode::Dma, "gather"), transpose = field_index(Opcode::Dma, "transpose");
    if (in[gather] > 0 && (in[d0 + 2] != 1 || in[d0 + 3] != 1 || in[transpose] != 0)) {
      issue(s, pc, "a gathering dma has d2 = d3 = 1 and no transpose");
    }
    for (int tf : {dst_tile, src_tile}) {
      const int sp = tf == dst_tile ? dst_space : src_space;
      if (in[tf] != int64_t(kTileSelf) && in.space(sp) != Space::Sram) {
        issue(s, pc, "only SRAM addresses name a tile");
      }
      tile_ok(s, pc, in[tf], "dma");
    }
    if (in[sem] != int64_t(kSemNone) && tile_ok(s, pc, in[sem_tile], "dma semaphore")) {
      signal(s, pc, tile_of(s, in[sem_tile]), in[sem], 1);
    }
  }

  void matmul_rules(const Stream& s, size_t pc, const Instr& in) {
    static constexpr int dtype = field_index(Opcode::Matmul, "dtype"), m = field_index(Opcode::Matmul, "m");
    static constexpr int k = field_index(Opcode::Matmul, "k"), n = field_index(Opcode::Matmul, "n");
    static constexpr int odt = field_index(Opcode::Matmul, "odt");
    const Dtype dt = in.dtype(dtype);
    if (std::find(t_.matmul_dtypes.begin(), t_.matmul_dtypes.end(), dt) == t_.matmul_dtypes.end()) {
      std::string supported;
      for (Dtype x : t_.matmul_dtypes) supported += (supported.empty() ? "" : ", ") + std::string(dtype_name(x));
      issue(s, pc, fmt::format("matmul dtype {} is not supported by {}'s arrays (supported: {})", dtype_name(dt),
                               t_.name, supported));
    }
    for (int f : {m, k, n}) {
      if (in[f] == 0) issue(s, pc, fmt::format("matmul {} is 0", in.def().fields[size_t(f)].name));
    }
    if (is_mx(dt) && in[k] % kMxBlock != 0) issue(s, pc, fmt::format("matmul k={} is not a multiple of the MX block of 32", in[k]));
    const Dtype o = in.dtype(odt);
    if (o != Dtype::None && o != Dtype::Fp32 && o != Dtype::Bf16 && o != Dtype::Fp8E4M3 && o != Dtype::Fp8E5M2) {
      issue(s, pc, fmt::format("matmul epilogue cannot write {}", dtype_name(o)));
    }
  }

  void vector_rules(const Stream& s, size_t pc, const Instr& in) {
    const OpDef& d = in.def();
    for (size_t i = 0; i < d.fields.size(); ++i) {
      if (d.fields[i].kind == FieldKind::Dtype) {
        const Dtype dt = in.dtype(int(i));
        if (dt == Dtype::None || is_mx(dt)) {
          issue(s, pc, fmt::format("{} {} cannot be {}", d.mnemonic, d.fields[i].name, dtype_name(dt)));
        }
      }
      if ((d.fields[i].name == "rows" || d.fields[i].name == "cols") && in.f[i] == 0) {
        issue(s, pc, fmt::format("{} {} is 0", d.mnemonic, d.fields[i].name));
      }
    }
    if (in.op != Opcode::MoeRoute) return;
    static constexpr int cols = field_index(Opcode::MoeRoute, "cols"), k = field_index(Opcode::MoeRoute, "k");
    static constexpr int e0 = field_index(Opcode::MoeRoute, "e0"), ne = field_index(Opcode::MoeRoute, "ne");
    static constexpr int cap = field_index(Opcode::MoeRoute, "cap"), ddt = field_index(Opcode::MoeRoute, "ddt");
    static constexpr int s0dt = field_index(Opcode::MoeRoute, "s0dt");
    if (in[k] < 1 || in[k] > in[cols]) issue(s, pc, fmt::format("moe.route k {} must be 1..{} (the experts)", in[k], in[cols]));
    if (in[e0] + (in[ne] ? in[ne] : in[cols]) > in[cols]) {
      issue(s, pc, fmt::format("moe.route experts {}..{} beyond its {}", in[e0], in[e0] + in[ne] - 1, in[cols]));
    }
    if (in[cap] == 0) issue(s, pc, "moe.route cap is 0");
    if (in.dtype(ddt) != Dtype::Fp32 || in.dtype(s0dt) != Dtype::Fp32) issue(s, pc, "moe.route works on fp32");
  }

  void range_rules(const Stream& s, size_t pc, const OpDef& d, const Access& a) {
    auto what = [&] { return fmt::format("{} {}", d.mnemonic, a.operand); };  // only for messages
    if (a.begin % a.align != 0) {
      issue(s, pc, fmt::format("{} at {:#x} is not aligned to {} bytes", what(), a.begin, a.align));
    }
    uint64_t limit = 0;
    std::string memory;
    switch (a.space) {
      case Space::Sram: limit = t_.sram_bytes, memory = "SRAM"; break;
      case Space::Shared: limit = t_.shared_bytes, memory = "shared memory"; break;
      case Space::Hbm: limit = t_.hbm_bytes, memory = "HBM"; break;
      case Space::None: return;
    }
    if (a.begin < 0 || a.end > int64_t(limit) || a.end < a.begin) {
      issue(s, pc, fmt::format("{} [{:#x}, {:#x}) is outside the {} {} bytes", what(), a.begin, a.end, memory, limit));
      return;
    }
    if (a.space == Space::Hbm) {
      const bool inside = std::any_of(p_.regions.begin(), p_.regions.end(), [&](const Region& r) {
        return uint64_t(a.begin) >= r.base && uint64_t(a.end) <= r.base + r.size;
      });
      if (!inside) issue(s, pc, fmt::format("{} [{:#x}, {:#x}) is not inside any HBM region", what(), a.begin, a.end));
    }
  }

  // A write must not partly overlap another operand of the same instruction. An elementwise
  // vector op may write in place (dst exactly on a source of the same shape).
  void overlap_rules(const Stream& s, size_t pc, const Instr& in) {
    for (size_t i = 0; i < accesses_.size(); ++i) {
      const Access& w = accesses_[i];
      if (!w.write) continue;
      for (size_t j = 0; j < accesses_.size(); ++j) {
        const Access& o = accesses_[j];
        if (i == j || o.space != w.space || o.operand == w.operand) continue;
        if (o.space == Space::Sram && o.tile != w.tile) continue;
        if (o.end <= w.begin || w.end <= o.begin) continue;
        const bool in_place = in.def().cls == OpClass::Vector && in.op != Opcode::VRsum && in.op != Opcode::VRmax &&
                              o.begin == w.begin && o.end == w.end;
        if (!in_place) {
          issue(s, pc, fmt::format("{} {} overlaps {}", in.def().mnemonic, w.operand, o.operand));
        }
      }
    }
  }

  void semaphores() {
    for (const auto& [key, waited] : waits_) {
      const auto it = signals_.find(key);
      const int64_t signalled = it == signals_.end() ? 0 : it->second;
      if (signalled >= waited) continue;
      const Where& w = first_wait_[key];
      std::string msg =
          signalled == 0
              ? fmt::format("sem.wait on semaphore {}: no instruction ever signals it", key.sem)
              : fmt::format("sem.wait on semaphore {}: waits for {} in total but only {} are ever signalled", key.sem,
                            waited, signalled);
      issues_.push_back({w.chip, w.tile, w.index, w.line, msg});
    }
  }

  void barriers() {
    for (const auto& [key, b] : barriers_) {
      if (b.arrivals % b.count == 0) continue;
      issues_.push_back({b.where.chip, b.where.tile, b.where.index, b.where.line,
                         fmt::format("barrier {}: {} arrivals in all is not a multiple of its count {}, so some "
                                     "tile waits forever",
                                     key.second, b.arrivals, b.count)});
    }
  }

  struct BarrierUse {
    int64_t count = 0;
    int64_t arrivals = 0;
    Where where{};
  };

  const Program& p_;
  const Target& t_;
  uint64_t budget_;
  std::vector<VerifyIssue> issues_;
  size_t stream_issues_ = 0;
  std::set<std::pair<size_t, std::string>> reported_;
  std::vector<Access> accesses_;
  std::map<SemKey, int64_t> signals_, waits_;
  std::map<SemKey, Where> first_wait_;
  std::map<std::pair<uint32_t, uint32_t>, BarrierUse> barriers_;
};

}  // namespace

std::vector<VerifyIssue> verify(const Program& p, const Target& t, uint64_t budget) {
  return Verifier(p, t, budget).run();
}

void verify_or_throw(const Program& p, const Target& t) {
  auto issues = verify(p, t);
  if (!issues.empty()) throw VerifyError(std::move(issues));
}

}  // namespace tessera::isa
