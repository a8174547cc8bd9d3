// The README says what the header declares: its lists of enum values are the header's.
#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string read_file(const char* path) {
  std::ifstream in(path);
  EXPECT_TRUE(in) << "cannot read " << path;
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// The enumerators of `enum class <name>` in the binding's header, in order.
std::vector<std::string> enumerators(const std::string& header, const std::string& name) {
  const auto start = header.find("enum class " + name + " ");
  EXPECT_NE(start, std::string::npos) << "no enum class " << name;
  const std::string body = header.substr(start, header.find("};", start) - start);
  std::vector<std::string> found;
  const std::regex enumerator(R"(\n\s*(\w+) = PGATE_)");
  for (auto it = std::sregex_iterator(body.begin(), body.end(), enumerator);
       it != std::sregex_iterator(); ++it) {
    found.push_back((*it)[1]);
  }
  return found;
}

TEST(Docs, TheReadmeListsEveryRecordedValue) {
  const std::string readme = read_file(PGATE_CPP_README);
  const std::string header = read_file(PGATE_CPP_HEADER);
  const std::string lead = "`record` returns what happened to the outcome (";
  const auto at = readme.find(lead);
  ASSERT_NE(at, std::string::npos) << "the README no longer says what record returns";
  const std::string listed =
      readme.substr(at + lead.size(), readme.find(')', at + lead.size()) - at - lead.size());
  const std::vector<std::string> values = enumerators(header, "Recorded");
  ASSERT_EQ(values.size(), 4u) << "Counted, Late, Foreign, Forced";
  for (const std::string& value : values) {
    EXPECT_NE(listed.find("`" + value + "`"), std::string::npos)
        << "the README's list (" << listed << ") lacks Recorded::" << value;
  }
}

}  // namespace
