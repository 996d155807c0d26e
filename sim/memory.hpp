// Byte storage for functional mode: sparse pages allocated on first write, reading zeros
// elsewhere, so a 64 GB HBM costs only what a test touches. Performance mode never creates one.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <unordered_map>
#include <vector>

namespace tessera::sim {

class Memory {
 public:
  void read(uint64_t addr, std::span<uint8_t> out) const;
  void write(uint64_t addr, std::span<const uint8_t> in);
  std::vector<uint8_t> read(uint64_t addr, uint64_t n) const {
    std::vector<uint8_t> v(n);
    read(addr, v);
    return v;
  }
  uint64_t allocated_bytes() const { return pages_.size() * kPage; }

 private:
  static constexpr uint64_t kPage = 1 << 16;
  std::unordered_map<uint64_t, std::unique_ptr<uint8_t[]>> pages_;
};

}  // namespace tessera::sim
