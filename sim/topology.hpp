// How the chips of a system are wired: the directed links between nodes (chips, and switches
// where the topology has them) and the route a message takes from one chip to another. Each
// topology is an implementation of one interface, made for its arch::Topology by make_topology
// (a switch statement: static libraries drop self-registration); the dimensions of a ring or
// torus and the neighbours sharing a chip's links are arch/network.hpp's.
//
// A chip's `system.link.count` links are shared among its neighbours: fully connected, a
// (count / (chips - 1))-link bundle to every other chip; a ring, count / 2 to each of its two
// neighbours; a 2D (3D) torus, count / 4 (count / 6) to each of four (six) neighbours; a switch,
// all count links to the switch. `link.latency` is one message's end-to-end latency over one
// link; through a switch it covers both hops (half each). With `system.scale_out.domain` below
// the chip count, the topology joins the chips of each domain (chips d*D .. d*D + D - 1), and
// every chip also has its scale-out links to one switch shared by all domains, which carries
// whatever goes between domains.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "arch/arch.hpp"

namespace tessera::sim {

struct LinkSpec {
  int from = 0, to = 0;    // nodes: chips are 0..chips-1, switches follow
  double bandwidth = 0;    // bytes/s in this direction (all the links of a bundle)
  double latency = 0;      // seconds
  bool scale_out = false;  // between scale-up domains
};

class Topology {
 public:
  virtual ~Topology() = default;
  virtual std::string name() const = 0;
  int chips() const { return chips_; }
  const std::vector<LinkSpec>& links() const { return links_; }
  // The links (indices into links()) from chip `src` to chip `dst`, in order (src != dst).
  virtual std::vector<int> route(int src, int dst) const = 0;

 protected:
  explicit Topology(int chips) : chips_(chips) {}
  // Adds links a -> b and b -> a; returns the index of a -> b (b -> a follows it).
  int connect(int a, int b, double bandwidth, double latency, bool scale_out = false);
  int chips_;
  std::vector<LinkSpec> links_;
};

// The topology the system describes, or a clear error naming what does not fit.
std::unique_ptr<Topology> make_topology(const arch::SystemParams& s);

}  // namespace tessera::sim
