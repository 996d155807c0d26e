// The text assembly format (.tasm): readable and writable by hand, with comments and symbolic
// tensor names. The disassembler prints canonical text, which the assembler turns back into
// the same program, so binary -> text -> binary is byte-identical.
//
//   ; comments run from ';' or '#' to the end of the line
//   .meta model "tiny-gemm"                           ; metadata, quoted or bare values
//   .region weights weights 0x0 0x100000              ; .region NAME KIND BASE SIZE
//   .tensor W bf16 [256, 256] hbm 0x0 weight          ; .tensor NAME DTYPE SHAPE SPACE ADDR ROLE
//   .tensor wbuf bf16 [64, 256] sram@0 0x0 scratch    ; SRAM tensors name their tile
//   .stream chip=0 tile=0                              ; instructions of one tile follow
//     li r1, 0
//     loop 4
//       dma dst=sram[wbuf], src=hbm[r1+W], d0=16384, sem=0
//       addi r1, r1, 0x8000
//     endloop
//     sem.wait 0, 4
//
// Operands are `name=value` pairs in any order; control instructions (and any instruction,
// for its leading fields) may give values by position instead. Addresses are
// `space[@tile][reg + SYMBOL + offset]`, with every part optional.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "isa/program.hpp"

namespace tessera::isa {

struct AsmDiagnostic {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string str() const;  // "file:line:column: message"
};

class AsmError : public std::runtime_error {
 public:
  explicit AsmError(std::vector<AsmDiagnostic> diags);
  const std::vector<AsmDiagnostic>& diagnostics() const { return diags_; }

 private:
  std::vector<AsmDiagnostic> diags_;
};

// Assembles text into a program; the line of each instruction is kept in Stream::lines.
// Throws AsmError with every problem found (up to a limit).
Program assemble(std::string_view text, const std::string& file_name = "<input>");
Program assemble_file(const std::string& path);

// Canonical text of a program.
std::string disassemble(const Program& p);

}  // namespace tessera::isa
