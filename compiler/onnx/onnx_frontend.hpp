// ONNX frontend: imports a decoder-only LLM exported to ONNX (e.g. by torch.onnx.export) as the
// prefill graph the Hugging Face frontend builds for the same architecture. Standard ONNX ops are
// constant-folded where they depend only on shapes and constants; what remains is matched to the
// IR's fused ops (Embedding, RmsNorm, Linear, Rope, Attention, Silu, Mul, Add).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "compiler/graph.hpp"

namespace tessera::compiler {

struct OnnxImportOptions {
  // Batch and prompt length; 0 takes the size the model's token-id input declares (exports
  // without dynamic axes declare both).
  int64_t batch = 0;
  int64_t seq = 0;
  // batch * seq token ids, batch-major: the Embedding's rows. Empty: the fixed pattern the
  // Hugging Face frontend uses.
  std::vector<int64_t> token_ids;
  // Positions each sequence's KV cache holds (0: the prompt's), as Workload::cache_capacity.
  int64_t cache_capacity = 0;
};

// The model must have one input (token ids [batch, seq], int64 or int32) and one output (logits
// [batch, seq, vocab]). Weights become Role::Weight values carrying their data in the IR's layout
// (Linear weights [out, in]) and their initialiser names (or, for the copies an exporter made,
// names derived from the node scope). Throws CompileError naming the file: when it is missing or
// not ONNX, or listing the op types and nodes the importer cannot map.
Graph import_onnx(const std::string& path, const OnnxImportOptions& options = {});

}  // namespace tessera::compiler
