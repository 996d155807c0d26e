#include "sim/topology.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <numeric>
#include <stdexcept>

#include "arch/network.hpp"

namespace tessera::sim {

int Topology::connect(int a, int b, double bandwidth, double latency, bool scale_out) {
  links_.push_back({a, b, bandwidth, latency, scale_out});
  links_.push_back({b, a, bandwidth, latency, scale_out});
  return int(links_.size()) - 2;
}

namespace {

// Links in the bundle to each neighbour of a chip of `s` (one scale-up domain), or the error
// validation gives (for a system built without it).
int64_t per_neighbour(const arch::SystemParams& s) {
  if (const std::string e = arch::too_few_links(s); !e.empty()) throw std::invalid_argument("system.link.count: " + e);
  const int64_t n = arch::link_neighbours(s.topology, s.chips);
  return n > 0 ? s.link.count / n : 0;
}

class FullyConnected : public Topology {
 public:
  explicit FullyConnected(const arch::SystemParams& s) : Topology(int(s.chips)) {
    const double bw = double(per_neighbour(s)) * s.link.bandwidth;
    for (int a = 0; a < chips_; ++a) {
      for (int b = a + 1; b < chips_; ++b) connect(a, b, bw, s.link.latency);
    }
  }
  std::string name() const override { return "fully_connected"; }
  // Pairs a < b were joined in order: a's come after those of every chip before it.
  std::vector<int> route(int src, int dst) const override {
    const int a = std::min(src, dst), b = std::max(src, dst);
    const int pair = a * chips_ - a * (a + 1) / 2 + (b - a - 1);
    return {2 * pair + (src < dst ? 0 : 1)};
  }
};

// Every chip has a bundle of all its links to one switch; a message crosses two links.
class Switch : public Topology {
 public:
  explicit Switch(const arch::SystemParams& s) : Topology(int(s.chips)) {
    for (int c = 0; c < chips_; ++c) {
      connect(c, chips_, double(per_neighbour(s)) * s.link.bandwidth, s.link.latency / 2);
    }
  }
  std::string name() const override { return "switch"; }
  std::vector<int> route(int src, int dst) const override { return {2 * src, 2 * dst + 1}; }
};

// Chips on a torus of the given dimensions (a ring is one dimension), each linked to its two
// neighbours along every dimension longer than 1 (one bundle, twice as wide, when the
// dimension has length 2). Routes go dimension by dimension, the shorter way round.
class Torus : public Topology {
 public:
  Torus(const arch::SystemParams& s, std::string name)
      : Topology(int(s.chips)), dims_(arch::torus_dims(s.topology, s.chips)), name_(std::move(name)) {
    // Two neighbours per dimension, whatever its length, so that the bundles do not depend on
    // the number of chips.
    const int64_t bundle = per_neighbour(s);
    next_.assign(size_t(chips_) * dims_.size() * 2, -1);
    for (int c = 0; c < chips_; ++c) {
      for (size_t d = 0; d < dims_.size(); ++d) {
        if (dims_[d] < 2) continue;
        const int up = neighbour(c, d, +1);
        if (dims_[d] == 2 && up < c) continue;  // the pair is already joined
        const double bw = double(bundle * (dims_[d] == 2 ? 2 : 1)) * s.link.bandwidth;
        const int i = connect(c, up, bw, s.link.latency);
        next_[slot(c, d, +1)] = i, next_[slot(up, d, -1)] = i + 1;
        if (dims_[d] == 2) next_[slot(c, d, -1)] = i, next_[slot(up, d, +1)] = i + 1;
      }
    }
  }
  std::string name() const override {
    std::string dims;
    for (int d : dims_) dims += (dims.empty() ? "" : "x") + std::to_string(d);
    return fmt::format("{} {}", name_, dims);
  }
  std::vector<int> route(int src, int dst) const override {
    std::vector<int> path;
    int at = src;
    for (size_t d = 0; d < dims_.size(); ++d) {
      const int n = dims_[d];
      const int from = coord(at, d), to = coord(dst, d);
      const int up = ((to - from) % n + n) % n;
      // Halfway round, even coordinates go up and odd ones down, so that all-to-all traffic
      // loads both directions alike.
      const int dir = up < n - up || (up == n - up && from % 2 == 0) ? +1 : -1;
      for (int hop = 0, hops = dir > 0 ? up : n - up; hop < hops; ++hop) {
        path.push_back(next_[slot(at, d, dir)]);
        at = neighbour(at, d, dir);
      }
    }
    return path;
  }

 private:
  int stride(size_t d) const {
    int s = 1;
    for (size_t i = 0; i < d; ++i) s *= dims_[i];
    return s;
  }
  int coord(int c, size_t d) const { return c / stride(d) % dims_[d]; }
  int neighbour(int c, size_t d, int dir) const {
    const int n = dims_[d], x = coord(c, d);
    return c + (((x + dir) % n + n) % n - x) * stride(d);
  }
  size_t slot(int c, size_t d, int dir) const { return (size_t(c) * dims_.size() + d) * 2 + (dir > 0 ? 0 : 1); }

  std::vector<int> dims_;
  std::string name_;
  std::vector<int> next_;  // [chip, dimension, direction] -> link
};

// Domains of one topology each, and a scale-out switch (the node after every chip) that every
// chip reaches over its scale-out links.
class Domains : public Topology {
 public:
  Domains(const arch::SystemParams& s, std::unique_ptr<Topology> domain)
      : Topology(int(s.chips)), size_(domain->chips()), domain_(std::move(domain)) {
    // The domain's own nodes beyond its chips (a switch) become one node per domain here.
    const int extra = 1 + std::accumulate(domain_->links().begin(), domain_->links().end(), 0,
                                          [](int m, const LinkSpec& l) { return std::max({m, l.from, l.to}); }) -
                      size_;
    for (int d = 0; d < chips_ / size_; ++d) {
      auto node = [&](int n) { return n < size_ ? d * size_ + n : chips_ + 1 + d * extra + (n - size_); };
      for (const LinkSpec& l : domain_->links()) links_.push_back({node(l.from), node(l.to), l.bandwidth, l.latency});
    }
    up_ = int(links_.size());
    for (int c = 0; c < chips_; ++c) {
      connect(c, chips_, double(s.scale_out.count) * s.scale_out.bandwidth, s.scale_out.latency / 2, true);
    }
  }
  std::string name() const override { return fmt::format("{} domains of {} chips, a scale-out switch", domain_->name(), size_); }
  std::vector<int> route(int src, int dst) const override {
    if (src / size_ != dst / size_) return {up_ + 2 * src, up_ + 2 * dst + 1};
    const int base = src / size_ * size_, per = int(domain_->links().size());
    std::vector<int> r = domain_->route(src - base, dst - base);
    for (int& l : r) l += src / size_ * per;
    return r;
  }

 private:
  int size_;
  std::unique_ptr<Topology> domain_;
  int up_ = 0;  // the first scale-out link
};

// One scale-up domain's topology.
std::unique_ptr<Topology> make_domain(const arch::SystemParams& s) {
  switch (s.topology) {
    case arch::Topology::FullyConnected: return std::make_unique<FullyConnected>(s);
    case arch::Topology::Switch: return std::make_unique<Switch>(s);
    case arch::Topology::Ring: return std::make_unique<Torus>(s, "ring");
    case arch::Topology::Torus2D: return std::make_unique<Torus>(s, "2D torus");
    case arch::Topology::Torus3D: return std::make_unique<Torus>(s, "3D torus");
  }
  throw std::logic_error("a topology without an implementation");
}

}  // namespace

std::unique_ptr<Topology> make_topology(const arch::SystemParams& s) {
  if (s.domain() == s.chips) return make_domain(s);
  arch::SystemParams one = s;
  one.chips = s.domain(), one.scale_out = {};
  return std::make_unique<Domains>(s, make_domain(one));
}

}  // namespace tessera::sim
