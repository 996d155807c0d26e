// A deterministic stand-in for libFuzzer when the build is not clang: mutates seed inputs
// with a fixed random sequence for a bounded number of runs and calls the fuzz target.
// Usage: fuzz_driver ITERATIONS SEED_FILE...
// A target that crashes aborts the run; an input that takes over a second counts as a hang.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

// The input being run, written to ./fuzz-crash-input if the target aborts or crashes, so the
// failure can be replayed (pass the file as the only seed with ITERATIONS 1).
const std::vector<uint8_t>* g_current = nullptr;

void save_crash_input(int sig) {
  if (g_current != nullptr) {
    const int fd = ::open("fuzz-crash-input", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      (void)!::write(fd, g_current->data(), g_current->size());
      ::close(fd);
    }
  }
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}

// Words that make mutated text reach deeper into the assembler.
const char* kDictionary[] = {
    ".stream tile=0\n", ".tensor X bf16 [4, 4] hbm 0x0 weight\n", "dma ", "matmul ", "loop 3\n", "endloop\n",
    "dst=sram[", "src=hbm[", "]", "r1+", "0x", "-", ",", "=", "@", "vec.add ", "sem.wait sem=", "\"", ";", "nan",
    "-inf", "1e-45", "d0=", "bcast=scalar", "after=matmul", "\n"};

std::vector<uint8_t> mutate(std::vector<uint8_t> in, const std::vector<std::vector<uint8_t>>& seeds,
                            std::mt19937_64& rng) {
  auto pick = [&](size_t n) { return n == 0 ? 0 : std::uniform_int_distribution<size_t>(0, n - 1)(rng); };
  const int rounds = 1 + int(pick(4));
  for (int r = 0; r < rounds; ++r) {
    switch (pick(6)) {
      case 0:  // flip a bit
        if (!in.empty()) in[pick(in.size())] ^= uint8_t(1u << pick(8));
        break;
      case 1:  // set a byte
        if (!in.empty()) in[pick(in.size())] = uint8_t(pick(256));
        break;
      case 2: {  // delete a range
        if (in.empty()) break;
        const size_t at = pick(in.size());
        in.erase(in.begin() + long(at), in.begin() + long(std::min(in.size(), at + 1 + pick(16))));
        break;
      }
      case 3: {  // insert a dictionary word
        const std::string w = kDictionary[pick(std::size(kDictionary))];
        in.insert(in.begin() + long(pick(in.size() + 1)), w.begin(), w.end());
        break;
      }
      case 4: {  // splice another seed
        const auto& s = seeds[pick(seeds.size())];
        if (s.empty()) break;
        const size_t from = pick(s.size()), len = 1 + pick(64);
        in.insert(in.begin() + long(pick(in.size() + 1)), s.begin() + long(from),
                  s.begin() + long(std::min(s.size(), from + len)));
        break;
      }
      default: {  // duplicate a range
        if (in.empty()) break;
        const size_t at = pick(in.size()), len = 1 + pick(32);
        std::vector<uint8_t> piece(in.begin() + long(at), in.begin() + long(std::min(in.size(), at + len)));
        in.insert(in.begin() + long(pick(in.size() + 1)), piece.begin(), piece.end());
      }
    }
  }
  return in;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s ITERATIONS SEED_FILE...\n", argv[0]);
    return 2;
  }
  const long iterations = std::stol(argv[1]);
  std::vector<std::vector<uint8_t>> seeds;
  for (int i = 2; i < argc; ++i) {
    std::ifstream in(argv[i], std::ios::binary);
    if (!in) {
      std::fprintf(stderr, "cannot read seed %s\n", argv[i]);
      return 2;
    }
    seeds.emplace_back(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  for (int sig : {SIGABRT, SIGSEGV, SIGBUS, SIGFPE, SIGILL}) std::signal(sig, save_crash_input);
  std::mt19937_64 rng(12345);
  double slowest = 0;
  for (long i = 0; i < iterations; ++i) {
    const auto& seed = seeds[size_t(i) % seeds.size()];
    const std::vector<uint8_t> input = i < long(seeds.size()) ? seed : mutate(seed, seeds, rng);
    g_current = &input;
    const auto start = std::chrono::steady_clock::now();
    LLVMFuzzerTestOneInput(input.data(), input.size());
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    slowest = std::max(slowest, seconds);
    if (seconds > 1.0) {
      std::fprintf(stderr, "input %ld took %.2f s: a hang\n", i, seconds);
      return 1;
    }
  }
  std::printf("%ld inputs, slowest %.4f s\n", iterations, slowest);
  return 0;
}
