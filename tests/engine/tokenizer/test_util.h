// Helpers shared by the tokenizer tests: reading files from the source tree.
#pragma once

#include <fstream>
#include <sstream>
#include <string>

namespace kiln::tokenizer::testing {

inline std::string TestdataDir(const std::string& family) {
  return std::string(KILN_SOURCE_DIR) + "/tests/engine/tokenizer/testdata/" + family;
}

inline std::string ReadFileOrEmpty(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace kiln::tokenizer::testing
