// The facade the `tessera` CLI and the Python module share: they call these, and neither
// re-implements the pipeline (load, compile, simulate, price).
#pragma once

#include <string>

#include "compiler/compile.hpp"
#include "isa/program.hpp"

namespace tessera::api {

// A program from a binary (.tbin, recognised by its magic) or an assembly text file.
isa::Program load_program(const std::string& path);

// A workload from the CLI's (or Python's) words: phase "prefill" needs seq > 0, "decode"
// needs context >= 0, "mixed" (a ragged iteration) the sequences' steps.
compiler::Workload make_workload(const std::string& phase, int64_t batch, int64_t seq, int64_t context,
                                 int64_t cache_capacity = 0, const std::vector<compiler::SequenceStep>& sequences = {});

// A dtype by name; `what` names the option in the error.
isa::Dtype parse_dtype(const std::string& what, const std::string& text);

}  // namespace tessera::api
