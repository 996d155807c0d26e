#include "sim/memory.hpp"

#include <algorithm>
#include <cstring>

namespace tessera::sim {

void Memory::read(uint64_t addr, std::span<uint8_t> out) const {
  uint64_t done = 0;
  while (done < out.size()) {
    const uint64_t a = addr + done, off = a % kPage;
    const uint64_t n = std::min<uint64_t>(kPage - off, out.size() - done);
    auto it = pages_.find(a / kPage);
    if (it == pages_.end()) {
      std::memset(out.data() + done, 0, n);
    } else {
      std::memcpy(out.data() + done, it->second.get() + off, n);
    }
    done += n;
  }
}

void Memory::write(uint64_t addr, std::span<const uint8_t> in) {
  uint64_t done = 0;
  while (done < in.size()) {
    const uint64_t a = addr + done, off = a % kPage;
    const uint64_t n = std::min<uint64_t>(kPage - off, in.size() - done);
    auto& p = pages_[a / kPage];
    if (!p) p = std::make_unique<uint8_t[]>(kPage);  // value-initialised: zeros
    std::memcpy(p.get() + off, in.data() + done, n);
    done += n;
  }
}

}  // namespace tessera::sim
