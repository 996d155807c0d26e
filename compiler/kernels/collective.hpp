// Collectives across the chips of a system, as programs of send and recv: the building blocks
// that tensor, pipeline and expert parallelism put between a model's operators. Each kernel
// emits one chip's part (ctx.pb.chip()'s) with the op's scratch (ctx): every chip's code depends
// only on its index, so each chip's program is generated on its own, as a sharded model's is. A
// ring is a list of chips in ring order (all_chips(n): 0 .. n - 1).
//
// Ring collectives (bandwidth-optimal on a ring, and what NCCL runs within a node) cut the
// tensor into n parts, part p the values [p * elements / n, (p + 1) * elements / n):
// - reduce-scatter: n - 1 steps; in each, every chip sends one part to the next chip of the
//   ring and adds the part it receives from the previous one into its own (every tile adds a
//   slice: HBM to SRAM, vec.add, back). Chip c ends with the sum of part c.
// - all-gather: chip c holds part c; n - 1 steps pass the parts round. Every chip ends with all.
// - all-reduce: the two. Each chip sends 2 (n - 1) / n of the tensor:
//   time ~ 2 (n - 1) / n x bytes / link bandwidth + 2 (n - 1) x latency, plus the adds.
// - hierarchical all-reduce, for scale-up domains of D chips joined by a slower scale-out
//   network (m domains): reduce-scatter within each domain (direct when the domain is a switch
//   or a full mesh, else a ring), the part each chip then holds all-reduced across the domains
//   (directly through the scale-out switch, over the m chips holding it), all-gather within the
//   domain; only 2 (m - 1) / m of a D-th of the tensor crosses the scale-out links.
// - torus all-reduce (2D or 3D torus, dimensions n_1, n_2, ...): a ring reduce-scatter along
//   each dimension in turn, each on the part the one before left (a 1/n_1, then 1/(n_1 n_2) of
//   the tensor), then the all-gathers in reverse. Every step is between torus neighbours, and
//   2 sum(n_d - 1) latencies replace a ring's 2 (n - 1):
//   time ~ sum_d [2 (n_d - 1) / n_d x bytes / (n_1 .. n_{d-1}) / link bandwidth + 2 (n_d - 1) x
//   latency], plus the adds.
// Broadcast from the ring's first chip: the tensor cut into `segments` pieces that go down the
// ring, each chip passing a segment on as soon as it has it (a pipeline): time ~ (segments +
// n - 2) x (bytes / segments) / bandwidth + (n - 1) x latency.
// Direct all-reduce (two-shot), for chips that reach every other in one hop (a switch, a full
// mesh): every chip sends part p straight to chip p, adds the n - 1 parts it receives (scratch:
// n - 1 slots of ceil(elements / n) values), and sends its sum straight to every other chip.
// Each chip sends 2 (n - 1) / n of the tensor as with a ring, but in two steps rather than
// 2 (n - 1): time ~ 2 ((n - 1) / n x bytes / port bandwidth + latency), plus the adds.
// All-to-all sends block d of every chip's source to chip d, which puts it at block c of its
// destination (chip c's), all at once: on a switch, ~ (n - 1) / n x bytes / port bandwidth +
// latency; on a ring or torus the routes share links.
#pragma once

#include <cstdint>
#include <vector>

#include "compiler/builder.hpp"
#include "compiler/kernels/kernel.hpp"

namespace tessera::compiler {

struct CollectiveSpec {
  int64_t elements = 0;       // of the whole tensor (all-to-all: of each chip's source)
  Dtype dtype = Dtype::Fp32;  // of the values (and of their sums)
  Addr buf{};                 // HBM, the same address on every chip: the tensor, in place
  Addr scratch{};             // HBM: received parts before they are added (ring: ceil(elements /
                              // n) values, direct: n - 1 times that; all_reduce_scratch says
                              // how many); all-to-all: the destination
  int64_t tag = 0;            // tags tag .. tag + 2 (n - 1) - 1 are a ring's (direct: tag, tag + 1;
                              // hierarchical: the domain's, then the 2 across)
};

std::vector<int> all_chips(int64_t chips);
void emit_ring_reduce_scatter(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s);
void emit_ring_all_gather(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s);
void emit_ring_all_reduce(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s);
// Over chips 0 .. chips - 1 in domains of `domain` (chips d * domain ...); one domain: a ring.
// Its scratch: all_reduce_scratch's for a system of these domains.
void emit_hierarchical_all_reduce(KernelContext& ctx, int64_t chips, int64_t domain, const CollectiveSpec& s);
// Over every chip of a torus of these dimensions (chip = x_1 + n_1 (x_2 + n_2 x_3)).
void emit_torus_all_reduce(KernelContext& ctx, const std::vector<int>& dims, const CollectiveSpec& s);
void emit_ring_broadcast(KernelContext& ctx, const std::vector<int>& ring, const CollectiveSpec& s, int64_t segments);
void emit_direct_all_reduce(KernelContext& ctx, const std::vector<int>& group, const CollectiveSpec& s);
void emit_all_to_all(KernelContext& ctx, int64_t chips, const CollectiveSpec& s);

// The all-reduce over `group` (chips, in ring order) that suits the system: hierarchical when
// the group is every chip of a system of several scale-up domains, by dimensions when it is every
// chip of a 2D or 3D torus, direct on a switch or a full mesh, else a ring; and the values of
// scratch it needs.
void emit_all_reduce(KernelContext& ctx, const std::vector<int64_t>& group, const CollectiveSpec& s);
int64_t all_reduce_scratch(const arch::Arch& a, int64_t group, int64_t elements);

// The programs of several chips' builders as one: every chip's streams, and the memory map
// they share (each builder must have made the same regions).
isa::Program take_system(std::vector<ProgramBuilder>& chips);

}  // namespace tessera::compiler
