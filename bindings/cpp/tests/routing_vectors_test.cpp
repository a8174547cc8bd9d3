// Every vector of tests/vectors/routing.json, the routing decisions all bindings share,
// routed through the C++ binding. The file's header explains id, id_hex and id_rule.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using nlohmann::json;
using promotion_gates::Environment;
using promotion_gates::Gate;

/// The format this reader knows; a new format needs a new reader, not a silent pass.
constexpr int kFormatVersion = 1;

struct Vector {
  std::string name;
  std::string salt;
  std::string id;  // bytes, not necessarily UTF-8
  double traffic_percent;
  std::uint32_t bucket;
  std::uint32_t threshold;
  bool is_canary;
};

std::string from_hex(const std::string& hex) {
  if (hex.size() % 2 != 0) {
    throw std::runtime_error("odd-length hex " + hex);
  }
  std::string bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    bytes.push_back(static_cast<char>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  }
  return bytes;
}

/// The request id's bytes: exactly one of id, id_hex and id_rule.
std::string request_id(const json& v) {
  const int forms = static_cast<int>(v.contains("id")) + static_cast<int>(v.contains("id_hex")) +
                    static_cast<int>(v.contains("id_rule"));
  if (forms != 1) {
    throw std::runtime_error(v.at("name").get<std::string>() +
                             ": needs exactly one of id, id_hex, id_rule");
  }
  if (v.contains("id")) {
    return v.at("id").get<std::string>();
  }
  if (v.contains("id_hex")) {
    return from_hex(v.at("id_hex").get<std::string>());
  }
  const auto repeat = v.at("id_rule").at("repeat").get<std::string>();
  const auto length = v.at("id_rule").at("length").get<std::size_t>();
  std::string bytes;
  while (bytes.size() < length) {
    bytes += repeat;  // the cut below may split a multi-byte character: bytes, not text
  }
  bytes.resize(length);
  return bytes;
}

/// The header's `overridden` rule: every vector routes the same through a gate with these
/// overrides, with no forcing value and with `ignored_value`, and is not forced.
struct Overridden {
  json overrides;
  std::string ignored_value;
};

json load_file() {
  std::ifstream in(PGATE_ROUTING_VECTORS);
  if (!in) {
    throw std::runtime_error("cannot open " PGATE_ROUTING_VECTORS);
  }
  json file = json::parse(in);
  if (file.at("header").at("format_version").get<int>() != kFormatVersion) {
    throw std::runtime_error("unknown format_version in " PGATE_ROUTING_VECTORS);
  }
  return file;
}

Overridden load_overridden() {
  const json rule = load_file().at("header").at("overridden");
  return Overridden{rule.at("overrides"), rule.at("ignored_value").get<std::string>()};
}

std::vector<Vector> load() {
  const json file = load_file();
  std::vector<Vector> vectors;
  for (const json& v : file.at("vectors")) {
    vectors.push_back(Vector{v.at("name").get<std::string>(), v.at("salt").get<std::string>(),
                             request_id(v), v.at("traffic_percent").get<double>(),
                             v.at("bucket").get<std::uint32_t>(),
                             v.at("threshold").get<std::uint32_t>(),
                             v.at("is_canary").get<bool>()});
  }
  return vectors;
}

/// A canary config at `percent` salted by `salt`, either as `salt` or as the gate's name
/// (the effective salt falls back to the gate). nlohmann writes doubles in their shortest
/// round-trip form, so the library reads the very percentage of the vector.
/// With `overrides` (not null), the config holds them too.
std::string config(const std::string& salt, double percent, bool via_gate,
                   const json& overrides = nullptr) {
  json c = {{"environment", {{"canary", {{"traffic_percent", percent}}}}}};
  c[via_gate ? "gate" : "salt"] = salt;
  if (!overrides.is_null()) {
    c["overrides"] = overrides;
  }
  return c.dump();
}

TEST(RoutingVectors, EveryVectorRoutesAsTheFormulaSays) {
  const std::vector<Vector> vectors = load();
  const Overridden overridden = load_overridden();
  ASSERT_GE(vectors.size(), 100u);
  std::map<std::pair<std::string, double>, std::vector<const Vector*>> groups;
  for (const Vector& v : vectors) {
    groups[{v.salt, v.traffic_percent}].push_back(&v);
  }
  std::size_t routed = 0;
  for (const auto& [key, group] : groups) {
    for (const bool via_gate : {false, true}) {
      const Gate gate = Gate::create(config(key.first, key.second, via_gate));
      // The header's overridden rule: the override path routes as the quick one.
      const Gate overriding =
          Gate::create(config(key.first, key.second, via_gate, overridden.overrides));
      for (const Vector* v : group) {
        SCOPED_TRACE(v->name + (via_gate ? " (salted via gate)" : " (salted via salt)"));
        const auto d = gate.route(v->id);
        EXPECT_EQ(d.bucket, v->bucket);
        EXPECT_EQ(d.threshold, v->threshold);
        EXPECT_EQ(d.is_canary, v->is_canary);
        EXPECT_EQ(d.environment, Environment::Canary);
        EXPECT_EQ(d.traffic_percent, v->traffic_percent);
        EXPECT_EQ(d.forced, promotion_gates::Forced::None);
        EXPECT_EQ(gate.route(v->id), d) << "routing is deterministic";
        const std::optional<std::string_view> ignored = overridden.ignored_value;
        for (const auto& [how, o] :
             {std::pair{"with overrides, no forcing value", overriding.route(v->id)},
              std::pair{"with overrides, an ignored forcing value",
                        overriding.route_forced(v->id, ignored)}}) {
          SCOPED_TRACE(how);
          EXPECT_EQ(o.bucket, v->bucket);
          EXPECT_EQ(o.threshold, v->threshold);
          EXPECT_EQ(o.is_canary, v->is_canary);
          EXPECT_EQ(o.forced, promotion_gates::Forced::None);
        }
        ++routed;
      }
    }
  }
  EXPECT_EQ(routed, 2 * vectors.size());
}

TEST(RoutingVectors, TheFileCoversWhatItPromises) {
  const std::vector<Vector> vectors = load();
  auto any = [&](auto&& pred) {
    for (const Vector& v : vectors) {
      if (pred(v)) return true;
    }
    return false;
  };
  EXPECT_TRUE(any([](const Vector& v) { return v.is_canary; }));
  EXPECT_TRUE(any([](const Vector& v) { return !v.is_canary; }));
  EXPECT_TRUE(any([](const Vector& v) { return v.bucket + 1 == v.threshold; }));
  EXPECT_TRUE(any([](const Vector& v) { return v.bucket == v.threshold; }));
  EXPECT_TRUE(any([](const Vector& v) { return v.id.empty(); }));
  EXPECT_TRUE(any([](const Vector& v) { return v.id.size() >= 1000; }));
}

}  // namespace
