#pragma once

#include <stdexcept>

namespace tessera::compiler {

// Anything the compiler cannot do with its input: the message says what and where.
class CompileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tessera::compiler
