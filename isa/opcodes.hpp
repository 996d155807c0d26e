// The instruction set, as one constexpr table. Every other part of isa/ (encoder, decoder,
// assembler, disassembler, verifier, the reference document) reads this table; the simulator
// and compiler name fields through `field_index`, checked at compile time.
#pragma once

#include <array>
#include <cstdint>
#include <span>
#include <string_view>

namespace tessera::isa {

enum class OpClass : uint8_t { Control, Sync, Dma, Matmul, Vector, Comm };

// Memory spaces an address can name.
enum class Space : uint8_t {
  None = 0,  // the field is not an address
  Hbm,       // the chip's HBM, byte addresses
  Sram,      // a tile's scratchpad (own tile unless a tile field says otherwise)
  Shared,    // the cluster (or chip) shared memory of the issuing tile
};

enum class FieldKind : uint8_t {
  U,       // unsigned integer
  S,       // signed integer
  Reg,     // scalar register index r0..r15 (r0 reads as zero)
  RegImm,  // base register + signed immediate (a count that may come from a register)
  Addr,    // base register + signed immediate, an address in some space
  Dtype,   // isa::Dtype
  Space,   // isa::Space, written as the prefix of an address ("hbm[...]")
  Tile,    // a tile index on the chip; all ones = the issuing tile ("self")
  Sem,     // a semaphore index; all ones = none
  Flag,    // 0 or 1
  F32,     // a float immediate (its IEEE bits are stored)
  Bcast,   // isa::Bcast
  Act,     // isa::Act
  After,   // isa::After
};

// How the second operand of a binary vector op is read.
enum class Bcast : uint8_t {
  None = 0,  // src1 has the same shape as src0
  Row,       // src1 is one row, reused for every row
  Col,       // src1 is one column (one value per row), reused for every column
  Scalar,    // the immediate `imm` replaces src1
};
inline constexpr std::array<std::string_view, 4> kBcastNames = {"none", "row", "col", "scalar"};

// Activation applied by the MATMUL epilogue.
enum class Act : uint8_t { None = 0, Relu, Gelu, Silu };
inline constexpr std::array<std::string_view, 4> kActNames = {"none", "relu", "gelu", "silu"};

// Which earlier instructions a `sem.signal` waits for before it fires. The sequencer does not
// stall on it: the signal is held until they complete.
enum class After : uint8_t { All = 0, Dma, Matmul, Vector, None };
inline constexpr std::array<std::string_view, 5> kAfterNames = {"all", "dma", "matmul", "vector", "none"};

inline constexpr int kNumRegs = 16;
inline constexpr int kNumSems = 64;          // semaphores per tile
inline constexpr int kNumBarriers = 16;      // barrier ids per chip
inline constexpr int kMaxLoopDepth = 8;
inline constexpr int64_t kMaxTripCount = int64_t(1) << 30;  // larger counts are "unbounded"
inline constexpr uint64_t kTileSelf = 0xFFFF;
inline constexpr uint64_t kSemNone = 0xFF;

struct FieldDef {
  std::string_view name;
  FieldKind kind;
  uint8_t bits;               // width of the value (RegImm/Addr add 4 bits of register)
  int64_t def;                // default value (F32: the float's bits)
  Space space;                // Addr: fixed space, or None when `space_field` gives it
  std::string_view space_field;  // Addr: the Space field that gives this address's space
  std::string_view tile_field;   // Addr: the Tile field naming whose SRAM (empty: own tile)
  std::string_view doc;
  bool required = false;  // must be written in assembly; always printed by the disassembler
};

struct OpDef {
  std::string_view mnemonic;
  OpClass cls;
  std::span<const FieldDef> fields;
  std::string_view summary;
  std::string_view semantics;
  std::string_view vector_timing;  // Vector: the arch op whose latency/throughput applies
};

inline constexpr int64_t kF32One = 0x3F800000;
inline constexpr int64_t kF32NegInf = 0xFF800000;

// ---- fields of each instruction ----------------------------------------------------------

namespace fields {
using K = FieldKind;
using Sp = Space;

inline constexpr FieldDef kNop[] = {
    {"cycles", K::U, 32, 1, Sp::None, {}, {}, "core cycles the sequencer waits", true},
};
inline constexpr FieldDef kNone[] = {{"", K::U, 0, 0, Sp::None, {}, {}, ""}};
inline constexpr FieldDef kMark[] = {
    {"id", K::U, 16, 0, Sp::None, {}, {}, "the region (program metadata mark.<id> names it)", true},
    {"resume", K::Flag, 1, 0, Sp::None, {}, {}, "continue the tile's current instance of the region"},
};
inline constexpr FieldDef kLoop[] = {
    {"count", K::RegImm, 40, 1, Sp::None, {}, {}, "trip count (register + immediate), 0..2^30", true},
};
inline constexpr FieldDef kLd[] = {
    {"rd", K::Reg, 4, 0, Sp::None, {}, {}, "destination register", true},
    {"addr", K::Addr, 44, 0, Sp::Sram, {}, {}, "a signed 32-bit integer in the tile's SRAM", true},
    {"max", K::U, 32, 0, Sp::None, {}, {}, "the value is clamped to 0..max (the verifier assumes max)", true},
};
inline constexpr FieldDef kLi[] = {
    {"rd", K::Reg, 4, 0, Sp::None, {}, {}, "destination register", true},
    {"imm", K::S, 48, 0, Sp::None, {}, {}, "value", true},
};
inline constexpr FieldDef kAddi[] = {
    {"rd", K::Reg, 4, 0, Sp::None, {}, {}, "destination register", true},
    {"rs", K::Reg, 4, 0, Sp::None, {}, {}, "source register", true},
    {"imm", K::S, 48, 0, Sp::None, {}, {}, "value added", true},
};
inline constexpr FieldDef kAdd[] = {
    {"rd", K::Reg, 4, 0, Sp::None, {}, {}, "destination register", true},
    {"rs1", K::Reg, 4, 0, Sp::None, {}, {}, "first source register", true},
    {"rs2", K::Reg, 4, 0, Sp::None, {}, {}, "second source register", true},
};
inline constexpr FieldDef kSemSignal[] = {
    {"tile", K::Tile, 16, int64_t(kTileSelf), Sp::None, {}, {}, "tile whose semaphore is signalled"},
    {"sem", K::U, 8, 0, Sp::None, {}, {}, "semaphore index, 0..63", true},
    {"count", K::U, 16, 1, Sp::None, {}, {}, "amount added"},
    {"after", K::After, 3, 0, Sp::None, {}, {}, "earlier instructions that complete first: all, dma, matmul, vector, none"},
};
inline constexpr FieldDef kSemWait[] = {
    {"sem", K::U, 8, 0, Sp::None, {}, {}, "semaphore index, 0..63", true},
    {"count", K::U, 16, 1, Sp::None, {}, {}, "amount waited for and taken"},
};
inline constexpr FieldDef kBarrier[] = {
    {"id", K::U, 8, 0, Sp::None, {}, {}, "barrier index, 0..15", true},
    {"count", K::U, 16, 1, Sp::None, {}, {}, "tiles that must arrive before all proceed", true},
    {"kernel", K::Flag, 1, 0, Sp::None, {}, {}, "the barrier ends a kernel (see chip.launch)"},
};
inline constexpr FieldDef kDma[] = {
    {"dst", K::Addr, 44, 0, Sp::None, "dst_space", "dst_tile", "destination address", true},
    {"src", K::Addr, 44, 0, Sp::None, "src_space", "src_tile", "source address", true},
    {"dst_space", K::Space, 2, int64_t(Sp::Sram), Sp::None, {}, {}, "space of dst"},
    {"dst_tile", K::Tile, 16, int64_t(kTileSelf), Sp::None, {}, {}, "tile owning dst when it is SRAM"},
    {"src_space", K::Space, 2, int64_t(Sp::Hbm), Sp::None, {}, {}, "space of src"},
    {"src_tile", K::Tile, 16, int64_t(kTileSelf), Sp::None, {}, {}, "tile owning src when it is SRAM"},
    {"d0", K::U, 32, 1, Sp::None, {}, {}, "elements in the innermost (contiguous) dimension", true},
    {"d1", K::U, 16, 1, Sp::None, {}, {}, "size of dimension 1"},
    {"d2", K::U, 16, 1, Sp::None, {}, {}, "size of dimension 2"},
    {"d3", K::U, 16, 1, Sp::None, {}, {}, "size of dimension 3 (outermost)"},
    {"ss1", K::S, 40, 0, Sp::None, {}, {}, "source byte stride of dimension 1"},
    {"ss2", K::S, 40, 0, Sp::None, {}, {}, "source byte stride of dimension 2"},
    {"ss3", K::S, 40, 0, Sp::None, {}, {}, "source byte stride of dimension 3"},
    {"ds1", K::S, 40, 0, Sp::None, {}, {}, "destination byte stride of dimension 1"},
    {"ds2", K::S, 40, 0, Sp::None, {}, {}, "destination byte stride of dimension 2"},
    {"ds3", K::S, 40, 0, Sp::None, {}, {}, "destination byte stride of dimension 3"},
    {"sdt", K::Dtype, 4, 2 /*bf16*/, Sp::None, {}, {}, "source element dtype"},
    {"ddt", K::Dtype, 4, 0, Sp::None, {}, {}, "destination dtype (none: same as sdt)"},
    {"transpose", K::Flag, 1, 0, Sp::None, {}, {}, "swap dimensions 0 and 1 at the destination"},
    {"sem", K::Sem, 8, int64_t(kSemNone), Sp::None, {}, {}, "semaphore signalled (+1) on completion"},
    {"sem_tile", K::Tile, 16, int64_t(kTileSelf), Sp::None, {}, {}, "tile owning that semaphore"},
    {"gather", K::U, 32, 0, Sp::None, {}, {}, "gather: rows the source holds (0: no gather)"},
    {"idx", K::Addr, 44, 0, Sp::Sram, {}, {}, "gather: int32 source row of each row of dimension 1 (-1: zeros)"},
};
inline constexpr FieldDef kMatmul[] = {
    {"acc", K::Addr, 44, 0, Sp::Sram, {}, {}, "accumulator, m x n of fp32 (int32 for int8 inputs)", true},
    {"a", K::Addr, 44, 0, Sp::Sram, {}, {}, "A operand, m x k", true},
    {"b", K::Addr, 44, 0, Sp::Sram, {}, {}, "B operand, k x n (n x k when tb)", true},
    {"m", K::U, 16, 1, Sp::None, {}, {}, "rows of A and of the result", true},
    {"k", K::U, 16, 1, Sp::None, {}, {}, "reduction length", true},
    {"n", K::U, 16, 1, Sp::None, {}, {}, "columns of B and of the result", true},
    {"lda", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of A (0: packed)"},
    {"ldb", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of B (0: packed)"},
    {"ldc", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of acc (0: packed)"},
    {"dtype", K::Dtype, 4, 2 /*bf16*/, Sp::None, {}, {}, "input dtype of A and B"},
    {"accumulate", K::Flag, 1, 0, Sp::None, {}, {}, "add to acc instead of overwriting it"},
    {"tb", K::Flag, 1, 0, Sp::None, {}, {}, "B is stored transposed (n x k)"},
    {"as", K::Addr, 44, 0, Sp::Sram, {}, {}, "MX: E8M0 scales of A, m x k/32"},
    {"bs", K::Addr, 44, 0, Sp::Sram, {}, {}, "MX: E8M0 scales of B, k/32 x n (n x k/32 when tb)"},
    {"out", K::Addr, 44, 0, Sp::Sram, {}, {}, "epilogue output, m x n of odt"},
    {"ldo", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of out (0: packed)"},
    {"odt", K::Dtype, 4, 0, Sp::None, {}, {}, "epilogue output dtype (none: no epilogue)"},
    {"bias", K::Addr, 44, 0, Sp::Sram, {}, {}, "epilogue bias, 1 x n of fp32"},
    {"has_bias", K::Flag, 1, 0, Sp::None, {}, {}, "add bias in the epilogue"},
    {"act", K::Act, 2, 0, Sp::None, {}, {}, "epilogue activation"},
};

// Vector instructions share their operand fields.
#define TESSERA_VEC_DST \
  {"dst", K::Addr, 44, 0, Sp::Sram, {}, {}, "destination", true}, \
  {"rows", K::U, 16, 1, Sp::None, {}, {}, "rows", true}, \
  {"cols", K::U, 16, 1, Sp::None, {}, {}, "columns", true}, \
  {"ldd", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of dst (0: packed)"}, \
  {"ddt", K::Dtype, 4, 2, Sp::None, {}, {}, "dtype of dst"}
#define TESSERA_VEC_SRC0 \
  {"src0", K::Addr, 44, 0, Sp::Sram, {}, {}, "first source", true}, \
  {"lds0", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of src0 (0: packed)"}, \
  {"s0dt", K::Dtype, 4, 2, Sp::None, {}, {}, "dtype of src0"}

inline constexpr FieldDef kVecBinary[] = {
    TESSERA_VEC_DST,
    TESSERA_VEC_SRC0,
    {"src1", K::Addr, 44, 0, Sp::Sram, {}, {}, "second source (see bcast)"},
    {"lds1", K::U, 32, 0, Sp::None, {}, {}, "byte stride between rows of src1 (0: packed)"},
    {"s1dt", K::Dtype, 4, 2, Sp::None, {}, {}, "dtype of src1"},
    {"bcast", K::Bcast, 2, 0, Sp::None, {}, {}, "how src1 is read: none, row, col or scalar"},
    {"imm", K::F32, 32, 0, Sp::None, {}, {}, "the scalar operand when bcast=scalar"},
};
inline constexpr FieldDef kVecUnary[] = {TESSERA_VEC_DST, TESSERA_VEC_SRC0};
inline constexpr FieldDef kVecScale[] = {
    TESSERA_VEC_DST,
    TESSERA_VEC_SRC0,
    {"scale", K::F32, 32, kF32One, Sp::None, {}, {}, "multiplier"},
    {"shift", K::F32, 32, 0, Sp::None, {}, {}, "addend"},
};
inline constexpr FieldDef kVecReduce[] = {
    TESSERA_VEC_DST,
    TESSERA_VEC_SRC0,
    {"scale", K::F32, 32, kF32One, Sp::None, {}, {}, "multiplier applied to each result"},
};
inline constexpr FieldDef kVecFill[] = {
    TESSERA_VEC_DST,
    {"value", K::F32, 32, 0, Sp::None, {}, {}, "value written"},
};
inline constexpr FieldDef kVecMask[] = {
    TESSERA_VEC_DST,
    TESSERA_VEC_SRC0,
    {"diag", K::S, 32, 0, Sp::None, {}, {}, "element (r, c) is kept when c <= r + diag"},
    {"value", K::F32, 32, kF32NegInf, Sp::None, {}, {}, "value of masked elements"},
};
inline constexpr FieldDef kMoeRoute[] = {
    TESSERA_VEC_DST,
    TESSERA_VEC_SRC0,
    {"k", K::U, 8, 1, Sp::None, {}, {}, "experts per token", true},
    {"renorm", K::Flag, 1, 1, Sp::None, {}, {}, "renormalise the k weights to sum to 1"},
    {"e0", K::U, 16, 0, Sp::None, {}, {}, "first expert dispatched here"},
    {"ne", K::U, 16, 0, Sp::None, {}, {}, "experts dispatched here (0: all)"},
    {"cap", K::U, 32, 1, Sp::None, {}, {}, "slots per expert (tokens beyond them are dropped)", true},
    {"block", K::U, 32, 1, Sp::None, {}, {}, "slots per block (cnt counts blocks)"},
    {"cnt", K::Addr, 44, 0, Sp::Sram, {}, {}, "int32 [ne]: blocks of slots each expert fills, ceil(min(n, cap) / block)", true},
    {"disp", K::Addr, 44, 0, Sp::Sram, {}, {}, "int32 [ne, cb = cap rounded up to a block]: each slot's token row, -1 when empty", true},
    {"comb", K::Addr, 44, 0, Sp::Sram, {}, {}, "int32 [k, rows]: each token's j-th slot row (e - e0) * cb + s, -1 when elsewhere or dropped", true},
    {"cw", K::Addr, 44, 0, Sp::Sram, {}, {}, "fp32 [k, rows]: its weight, 0 when elsewhere or dropped", true},
};
#undef TESSERA_VEC_DST
#undef TESSERA_VEC_SRC0

inline constexpr FieldDef kSend[] = {
    {"src", K::Addr, 44, 0, Sp::None, "src_space", {}, "data sent", true},
    {"src_space", K::Space, 2, int64_t(Sp::Hbm), Sp::None, {}, {}, "space of src"},
    {"bytes", K::U, 40, 1, Sp::None, {}, {}, "bytes sent", true},
    {"peer", K::U, 16, 0, Sp::None, {}, {}, "destination chip", true},
    {"tag", K::U, 16, 0, Sp::None, {}, {}, "matches the receiver's tag"},
    {"sem", K::Sem, 8, int64_t(kSemNone), Sp::None, {}, {}, "own semaphore signalled when the data has left"},
};
inline constexpr FieldDef kRecv[] = {
    {"dst", K::Addr, 44, 0, Sp::None, "dst_space", {}, "where the data lands", true},
    {"dst_space", K::Space, 2, int64_t(Sp::Hbm), Sp::None, {}, {}, "space of dst"},
    {"bytes", K::U, 40, 1, Sp::None, {}, {}, "bytes received", true},
    {"peer", K::U, 16, 0, Sp::None, {}, {}, "source chip", true},
    {"tag", K::U, 16, 0, Sp::None, {}, {}, "matches the sender's tag"},
    {"sem", K::Sem, 8, int64_t(kSemNone), Sp::None, {}, {}, "own semaphore signalled when the data has arrived"},
};
}  // namespace fields

// ---- the instructions --------------------------------------------------------------------

#define TESSERA_OPCODES(X)                                                                       \
  X(Nop, "nop", Control, kNop, "wait", "The sequencer issues nothing for `cycles` core cycles.", "") \
  X(Halt, "halt", Control, kNone, "stop this tile",                                              \
    "The tile stops issuing once every instruction in flight has completed. Falling off the "   \
    "end of a stream halts too.", "")                                                            \
  X(Loop, "loop", Control, kLoop, "start a counted loop",                                        \
    "Runs the instructions up to the matching `endloop` `count` times (evaluated on entry); a "  \
    "count of 0 (from `ld`) skips them. Loops nest up to 8 deep and cost no cycles.", "")        \
  X(EndLoop, "endloop", Control, kNone, "end of a loop body", "Closes the innermost `loop`.", "") \
  X(Li, "li", Control, kLi, "load immediate", "rd = imm.", "")                                   \
  X(Addi, "addi", Control, kAddi, "add immediate", "rd = rs + imm.", "")                         \
  X(Add, "add", Control, kAdd, "add registers", "rd = rs1 + rs2.", "")                           \
  X(SemSignal, "sem.signal", Sync, kSemSignal, "signal a semaphore",                             \
    "Adds `count` to semaphore `sem` of `tile` (the issuing tile by default) once the earlier "  \
    "instructions named by `after` have completed (all units by default), without stalling the " \
    "sequencer. A remote signal travels over the NoC.", "")                                                                 \
  X(SemWait, "sem.wait", Sync, kSemWait, "wait on a semaphore",                                  \
    "Stalls the sequencer until semaphore `sem` of the issuing tile is at least `count`, then "  \
    "subtracts `count`.", "")                                                                    \
  X(Barrier, "barrier", Sync, kBarrier, "chip-wide barrier",                                     \
    "Stalls until `count` tiles have reached barrier `id`; then all of them proceed and the "    \
    "barrier resets. Every participant must give the same count. With `kernel` the barrier "     \
    "ends one kernel and begins the next: on a chip that runs programs as a sequence of "        \
    "kernels (a GPU: chip.launch.gap > 0) the tiles proceed that gap after the last arrival, "   \
    "and under eager launch not before the host has issued the next kernel.", "")                           \
  X(Dma, "dma", Dma, kDma, "strided copy between HBM, SRAM and shared memory",                   \
    "Copies a d3 x d2 x d1 x d0 block. Element (i3,i2,i1,i0) is read at src + i3*ss3 + i2*ss2 + " \
    "i1*ss1 + i0*size(sdt) and written at dst + i3*ds3 + i2*ds2 + i1*ds1 + i0*size(ddt); with " \
    "`transpose` it is written at dst + i3*ds3 + i2*ds2 + i0*ds1 + i1*size(ddt). Elements are "  \
    "converted from sdt to ddt (fp32 <-> bf16, bf16/fp32 -> fp8). SRAM may belong to another "  \
    "tile (`dst_tile`, `src_tile`). With `gather` = n, row i1 of the source is row idx[i1] of "  \
    "n rows ss1 apart (int32s in the issuing tile's SRAM; -1 reads zeros; d2 = d3 = 1); timing " \
    "takes the rows in order. On completion semaphore `sem` of `sem_tile` is signalled.",        \
    "")                                                                                          \
  X(Matmul, "matmul", Matmul, kMatmul, "matrix multiply on the systolic arrays",                 \
    "acc = A x B (or acc += A x B with `accumulate`), A m x k and B k x n in `dtype`, "          \
    "accumulated in fp32 (int32 for int8). MX inputs are scaled per block of 32 along k by "     \
    "`as` and `bs`. With `odt` set, the epilogue writes out = act(acc + bias) in `odt` as the "  \
    "results drain from the array.", "")                                                         \
  X(VAdd, "vec.add", Vector, kVecBinary, "elementwise add", "dst = src0 + src1.", "add")         \
  X(VSub, "vec.sub", Vector, kVecBinary, "elementwise subtract", "dst = src0 - src1.", "sub")    \
  X(VMul, "vec.mul", Vector, kVecBinary, "elementwise multiply", "dst = src0 * src1.", "mul")    \
  X(VMax, "vec.max", Vector, kVecBinary, "elementwise maximum", "dst = max(src0, src1).", "max") \
  X(VExp, "vec.exp", Vector, kVecUnary, "exponential", "dst = exp(src0).", "exp")                \
  X(VSilu, "vec.silu", Vector, kVecUnary, "SiLU", "dst = src0 / (1 + exp(-src0)).", "silu")      \
  X(VGelu, "vec.gelu", Vector, kVecUnary, "GELU",                                                \
    "dst = 0.5 * src0 * (1 + erf(src0 / sqrt(2))).", "gelu")                                    \
  X(VRsqrt, "vec.rsqrt", Vector, kVecUnary, "reciprocal square root", "dst = 1 / sqrt(src0).",   \
    "rsqrt")                                                                                     \
  X(VRecip, "vec.recip", Vector, kVecUnary, "reciprocal", "dst = 1 / src0.", "reciprocal")       \
  X(VCast, "vec.cast", Vector, kVecUnary, "copy with dtype conversion",                          \
    "dst = src0, converted from s0dt to ddt (a plain copy when they are equal).", "cast")        \
  X(VScale, "vec.scale", Vector, kVecScale, "scale and shift", "dst = src0 * scale + shift.",    \
    "fma")                                                                                       \
  X(VRsum, "vec.rsum", Vector, kVecReduce, "row sum",                                            \
    "dst[r] = scale * sum over c of src0[r][c]; dst is rows x 1.", "reduce_sum")                 \
  X(VRmax, "vec.rmax", Vector, kVecReduce, "row maximum",                                        \
    "dst[r] = scale * max over c of src0[r][c]; dst is rows x 1.", "reduce_max")                 \
  X(VFill, "vec.fill", Vector, kVecFill, "fill", "dst = value.", "copy")                         \
  X(VMask, "vec.mask", Vector, kVecMask, "causal mask",                                          \
    "dst[r][c] = src0[r][c] if c <= r + diag, else value.", "max")                               \
  X(Send, "send", Comm, kSend, "send to another chip",                                           \
    "Sends `bytes` from src over the chip-to-chip links to chip `peer`, matched with that "      \
    "chip's `recv` of the same tag.", "")                                                        \
  X(Recv, "recv", Comm, kRecv, "receive from another chip",                                      \
    "Receives `bytes` from chip `peer` (matching its `send` of the same tag) into dst.", "")    \
  X(Mark, "mark", Control, kMark, "attribute the following work to a region",                    \
    "From here on the tile's instructions belong to region `id` (an operator of the compiled "  \
    "graph): the simulator accounts their time, work and traffic to it. Each `mark` begins a "  \
    "new instance of the region on this tile (the n-th time is instance n, e.g. layer n of a "  \
    "loop); with `resume` it continues the tile's current instance (after interleaved work of " \
    "another region, such as a prefetch). Costs no cycles.", "")                                  \
  X(Ld, "ld", Control, kLd, "load a register from SRAM",                                        \
    "rd = the int32 at addr in the tile's SRAM, clamped to 0..max, once every earlier "          \
    "instruction writing it has completed. Data-dependent trip counts come from here; the "      \
    "verifier walks the program with rd = max.", "")                                             \
  X(MoeRoute, "moe.route", Vector, kMoeRoute, "mixture-of-experts routing",                     \
    "For each row r of logits src0 [rows, cols = experts]: p = softmax(src0[r]); the k largest " \
    "p (ties to the lower expert) are kept, renormalised to sum 1 with `renorm`, and written to " \
    "dst [rows, cols] (fp32, 0 elsewhere and where dropped; dst may be src0). Tokens are then dispatched, row by row and in order "  \
    "of rank, to the experts e0..e0+ne-1: expert i's n-th token takes slot n when n < cap. cnt, " \
    "disp, comb and cw describe the dispatch (see the fields). In performance mode the experts " \
    "are drawn from the run's routing distribution (seeded, uniform or skewed) with weights "    \
    "1/k; every tile draws the same experts for its n-th moe.route.", "max")

enum class Opcode : uint8_t {
#define TESSERA_X(op_, mnem_, cls_, fields_, summary_, semantics_, timing_) op_,
  TESSERA_OPCODES(TESSERA_X)
#undef TESSERA_X
};

inline constexpr OpDef kOps[] = {
#define TESSERA_X(op_, mnem_, cls_, fields_, summary_, semantics_, timing_)                  \
  OpDef{mnem_, OpClass::cls_,                                                                \
        std::span<const FieldDef>(fields::fields_,                                           \
                                  fields::fields_[0].name.empty() ? 0 : std::size(fields::fields_)), \
        summary_, semantics_, timing_},
    TESSERA_OPCODES(TESSERA_X)
#undef TESSERA_X
};
inline constexpr int kOpCount = static_cast<int>(std::size(kOps));

inline constexpr int kMaxFields = 24;

constexpr const OpDef& op_def(Opcode op) { return kOps[static_cast<size_t>(op)]; }

// Index of field `name` of `op`; a compile-time error when used in a constant expression with a
// name the table does not have.
consteval int field_index(Opcode op, std::string_view name) {
  const OpDef& d = op_def(op);
  for (size_t i = 0; i < d.fields.size(); ++i) {
    if (d.fields[i].name == name) return static_cast<int>(i);
  }
  throw "no such field";  // not a constant expression: compilation fails
}

// Runtime lookup: -1 when absent.
int find_field(Opcode op, std::string_view name);
std::string_view op_class_name(OpClass c);
std::string_view space_name(Space s);  // "hbm", "sram", "shared"

// Encoded size of an instruction in bytes: 8 bits of opcode plus its fields, rounded up to
// 64-bit words.
int encoded_bytes(Opcode op);

}  // namespace tessera::isa
