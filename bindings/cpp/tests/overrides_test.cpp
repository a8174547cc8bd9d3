// Overrides: the shared vectors (tests/vectors/overrides.tsv, read by every language), and
// forced requests counted in neither cohort.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "promotion_gates.hpp"

namespace {

using promotion_gates::Decision;
using promotion_gates::Environment;
using promotion_gates::Forced;
using promotion_gates::Gate;
using promotion_gates::Recorded;

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> fields;
  std::size_t start = 0;
  for (std::size_t tab; (tab = line.find('\t', start)) != std::string::npos; start = tab + 1) {
    fields.push_back(line.substr(start, tab - start));
  }
  fields.push_back(line.substr(start));
  return fields;
}

// A VALUE field of the vectors: "-" none, "hex:" and the bytes in hex, or the field's bytes.
std::optional<std::string> forcing_value(const std::string& field) {
  if (field == "-") return std::nullopt;
  const std::string prefix = "hex:";
  if (field.compare(0, prefix.size(), prefix) != 0) return field;
  std::string bytes;
  for (std::size_t i = prefix.size(); i + 1 < field.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoi(field.substr(i, 2), nullptr, 16)));
  }
  EXPECT_EQ((field.size() - prefix.size()) % 2, 0u) << field;
  return bytes;
}

Forced forced_named(const std::string& name) {
  if (name == "value") return Forced::Value;
  if (name == "id_list") return Forced::IdList;
  EXPECT_EQ(name, "none");
  return Forced::None;
}

TEST(Overrides, TheSharedVectors) {
  std::ifstream file(PGATE_OVERRIDE_VECTORS);
  ASSERT_TRUE(file.good()) << PGATE_OVERRIDE_VECTORS;
  std::map<std::string, Gate> gates;
  int cases = 0;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::vector<std::string> f = split_tabs(line);
    if (f[0] == "config") {
      ASSERT_EQ(f.size(), 3u) << line;
      gates.emplace(f[1], Gate::create(f[2]));
      continue;
    }
    ASSERT_EQ(f.size(), 6u) << line;
    ASSERT_EQ(f[0], "route") << line;
    const Gate& gate = gates.at(f[1]);
    const std::optional<std::string> bytes = forcing_value(f[3]);
    std::optional<std::string_view> value;
    if (bytes) value = *bytes;
    const Decision d = gate.route_forced(f[2], value);
    const Forced forced = forced_named(f[5]);
    EXPECT_EQ(d.is_canary, f[4] == "1") << line;
    EXPECT_EQ(d.forced, forced) << line;
    const auto latency = std::chrono::microseconds(1);
    const Recorded expected = forced == Forced::None ? Recorded::Counted : Recorded::Forced;
    EXPECT_EQ(gate.record(d, true, latency), expected) << line;
    EXPECT_EQ(gate.record_by_id_forced(f[2], value, true, latency), expected) << line;
    // The plain call cannot see the value: only an id list forces it.
    EXPECT_EQ(gate.record_by_id(f[2], true, latency),
              forced == Forced::IdList ? Recorded::Forced : Recorded::Counted)
        << line;
    cases++;
  }
  EXPECT_GE(cases, 45);
  EXPECT_GE(gates.size(), 5u);
}

TEST(Overrides, ForcedRequestsStayOutOfTheCohorts) {
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 0}},
          "overrides": {"header": "X-Canary", "canary_ids": ["tester-1"]}})",
      R"({"min_samples": 20})");
  for (int i = 0; i < 200; i++) {
    const Decision d = gate.route_forced("user-" + std::to_string(i), "canary");
    EXPECT_TRUE(d.is_canary);
    EXPECT_EQ(d.forced, Forced::Value);
    EXPECT_EQ(gate.record(d, false, std::chrono::seconds(5)), Recorded::Forced);
  }
  const Decision tester = gate.route("tester-1");  // route checks the id lists too
  EXPECT_TRUE(tester.is_canary);
  EXPECT_EQ(tester.forced, Forced::IdList);
  const auto health = gate.health();
  EXPECT_EQ(health.canary_requests + health.production_requests, 0u);
  EXPECT_EQ(gate.route("probe").environment, Environment::Canary);
  // An empty value is a value (ignored), not "none".
  const Decision empty = gate.route_forced("user-1", std::string_view());
  EXPECT_EQ(empty.forced, Forced::None);
  EXPECT_EQ(empty, gate.route_forced("user-1", std::nullopt));
  EXPECT_EQ(gate.record(empty, true, std::chrono::microseconds(1)), Recorded::Counted);
}

TEST(Overrides, ARecordByIdWithTheForcingValueCountsInNeitherCohort) {
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 0}},
          "overrides": {"header": "X-Canary"}})");
  using std::chrono::milliseconds;
  EXPECT_TRUE(gate.route_forced("tester", "canary").is_canary);
  EXPECT_EQ(gate.record_by_id_forced("tester", "canary", false, milliseconds(1)),
            Recorded::Forced);
  EXPECT_EQ(gate.record_by_id_forced(std::string("tester"), std::string_view(), false,
                                     milliseconds(1)),
            Recorded::Counted);  // an empty value is a value, ignored
  EXPECT_EQ(gate.record_by_id_forced("tester", static_cast<const char*>(nullptr), false,
                                     milliseconds(1)),
            Recorded::Counted);
  EXPECT_EQ(gate.record_by_id("tester", false, milliseconds(1)), Recorded::Counted);
  const auto health = gate.read_health();
  EXPECT_EQ(health.canary_requests, 0u);
  EXPECT_EQ(health.production_requests, 3u);
  EXPECT_THROW((void)gate.record_by_id_forced("tester", "canary", true, milliseconds(-1)),
               promotion_gates::Error);
}

TEST(Overrides, TheNamesAreTheConfigsAndFollowASwap) {
  const Gate gate = Gate::create(
      R"({"overrides": {"header": "X-Canary", "cookie": "pg_canary"}})");
  auto names = gate.override_names();
  EXPECT_EQ(names.header, std::optional<std::string>("X-Canary"));
  EXPECT_EQ(names.cookie, std::optional<std::string>("pg_canary"));
  const auto before = gate.change_count();
  gate.swap_config(R"({"overrides": {"cookie": "say-'canary'"}})");
  EXPECT_GT(gate.change_count(), before);
  names = gate.override_names();
  EXPECT_EQ(names.header, std::nullopt);
  EXPECT_EQ(names.cookie, std::optional<std::string>("say-'canary'"));
  const std::string longest(128, 'h');  // the longest name the library takes
  gate.swap_config(R"({"overrides": {"header": ")" + longest + R"("}})");
  EXPECT_EQ(gate.override_names().header, longest);
  names = Gate::create("").override_names();
  EXPECT_EQ(names.header, std::nullopt);
  EXPECT_EQ(names.cookie, std::nullopt);
}

}  // namespace
