#include "tools/api/api.hpp"

#include <fmt/format.h>

#include <fstream>
#include <stdexcept>

#include "isa/assembly.hpp"

namespace tessera::api {

isa::Program load_program(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path + ": cannot open");
  char magic[8] = {};
  in.read(magic, 8);
  if (in.gcount() == 8 && std::string_view(magic, 8) == "TSRAPROG") return isa::load_binary(path);
  return isa::assemble_file(path);
}

compiler::Workload make_workload(const std::string& phase, int64_t batch, int64_t seq, int64_t context,
                                 int64_t cache_capacity, const std::vector<compiler::SequenceStep>& sequences) {
  compiler::Workload w;
  w.cache_capacity = cache_capacity;
  if ((phase == "mixed") != !sequences.empty()) {
    throw std::runtime_error(phase == "mixed" ? "phase mixed needs the sequences' steps (past and tokens of each)"
                                              : "sequences' steps are given for phase mixed only, not " + phase);
  }
  if (phase == "mixed") {
    for (size_t b = 0; b < sequences.size(); ++b) {
      const compiler::SequenceStep& s = sequences[b];
      if (s.tokens < 1 || s.past < 0) {
        throw std::runtime_error(
            fmt::format("sequence {}: {} tokens after {} (at least 1 token after 0 or more)", b, s.tokens, s.past));
      }
    }
    w.sequences = sequences;
    return w;
  }
  if (phase == "prefill") {
    w.phase = compiler::Phase::Prefill;
    if (seq <= 0) {
      throw std::runtime_error("phase prefill needs seq > 0: the prompt tokens per sequence (--seq S)");
    }
    w.seq = seq;
  } else if (phase == "decode") {
    w.phase = compiler::Phase::Decode;
    if (context < 0) {
      throw std::runtime_error(
          "phase decode needs context >= 0: the tokens already in each sequence's KV cache (--context L)");
    }
    w.context = context;
  } else {
    throw std::runtime_error("phase must be prefill, decode or mixed, got '" + phase + "'");
  }
  if (batch <= 0) throw std::runtime_error(fmt::format("batch must be at least 1, got {}", batch));
  w.batch = batch;
  return w;
}

isa::Dtype parse_dtype(const std::string& what, const std::string& text) {
  auto d = isa::dtype_from_name(text);
  if (!d || *d == isa::Dtype::None) throw std::runtime_error(fmt::format("{}: unknown dtype '{}'", what, text));
  return *d;
}

}  // namespace tessera::api
