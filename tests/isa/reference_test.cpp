// isa/REFERENCE.md is the output of `tessera isa doc`: regenerate it when the table changes.
#include "isa/reference.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "isa/opcodes.hpp"

namespace tessera::isa {
namespace {

TEST(Reference, CommittedFileIsCurrent) {
  std::ifstream in(std::string(TESSERA_SOURCE_DIR) + "/isa/REFERENCE.md");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_TRUE(ss.str() == reference_markdown())
      << "isa/REFERENCE.md is stale: run `tessera isa doc > isa/REFERENCE.md`";
}

TEST(Reference, ListsEveryInstructionAndField) {
  const std::string doc = reference_markdown();
  for (int i = 0; i < kOpCount; ++i) {
    EXPECT_NE(doc.find("### `" + std::string(kOps[i].mnemonic) + "`"), std::string::npos) << kOps[i].mnemonic;
    for (const FieldDef& f : kOps[i].fields) {
      EXPECT_NE(doc.find("| `" + std::string(f.name) + "` |"), std::string::npos) << f.name;
    }
  }
}

}  // namespace
}  // namespace tessera::isa
