// How the binding shows a value it refuses itself (detail::quoted): the shared vectors,
// tests/vectors/quoted.tsv, which tests/vectors_test.rs checks against Rust's {:?}.
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "promotion_gates.hpp"

namespace {

std::string from_hex(const std::string& hex) {
  std::string bytes;
  for (std::size_t at = 0; at + 1 < hex.size(); at += 2) {
    bytes += static_cast<char>(std::stoi(hex.substr(at, 2), nullptr, 16));
  }
  return bytes;
}

// Each row: INPUT (hex), a tab, SHOWN, and where Rust's {:?} differs a tab and its text, which
// the binding does not follow (it carries no Unicode tables but the format and invisible
// characters').
TEST(Quoted, TheSharedVectors) {
  std::ifstream file(PGATE_QUOTED_VECTORS);
  ASSERT_TRUE(file.good()) << PGATE_QUOTED_VECTORS;
  int rows = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t tab = line.find('\t');
    ASSERT_NE(tab, std::string::npos) << line;
    ASSERT_EQ(tab % 2, 0u) << line;
    const std::size_t end = line.find('\t', tab + 1);
    const std::string shown = line.substr(tab + 1, end - tab - 1);  // to the end without RUST
    EXPECT_EQ(promotion_gates::detail::quoted(from_hex(line.substr(0, tab))), shown) << line;
    rows++;
  }
  EXPECT_GE(rows, 100);
}

}  // namespace
