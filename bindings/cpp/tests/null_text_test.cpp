// Text given as a `const char*`, as C APIs hand it out (a proxy's header lookup, getenv): a
// null one means what NULL means in the C ABI (no forcing value, the empty id, the default
// document) or is refused naming the parameter, and never reaches strlen through
// std::string_view's constructor, where it crashed. Every other kind of text still picks
// exactly one overload.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using promotion_gates::Decision;
using promotion_gates::Environment;
using promotion_gates::Error;
using promotion_gates::Forced;
using promotion_gates::Gate;
using promotion_gates::Recorded;

constexpr const char* kOverrides =
    R"({"environment": {"canary": {"traffic_percent": 50}}, "overrides": {"header": "X-Canary"}})";

/// promotion_ignored_override_values_total: forcing values given but neither "canary" nor
/// "stable". An empty value is one; no value is none.
std::string ignored_values(const Gate& gate) {
  const std::string text = gate.metrics_prometheus();
  const std::string series = "\npromotion_ignored_override_values_total{gate=\"default\"} ";
  const auto at = text.find(series);
  if (at == std::string::npos) {
    ADD_FAILURE() << "no ignored-values series in\n" << text;
    return {};
  }
  const auto start = at + series.size();
  return text.substr(start, text.find('\n', start) - start);
}

// The reviewer's repro: a header lookup that found nothing.
TEST(NullText, ANullForcingValueIsNoValue) {
  const Gate gate = Gate::create(kOverrides);
  const char* header_value = nullptr;
  const Decision d = gate.route_forced("user-1", header_value);
  EXPECT_EQ(d, gate.route_forced("user-1", std::nullopt));
  EXPECT_EQ(d.forced, Forced::None);
  EXPECT_EQ(ignored_values(gate), "0") << "no value, not an empty one";
  (void)gate.route_forced("user-1", "");
  EXPECT_EQ(ignored_values(gate), "1") << "an empty value is a value, ignored";
  const char* canary = "canary";
  EXPECT_EQ(gate.route_forced("user-1", canary).forced, Forced::Value);
  EXPECT_EQ(gate.route_forced(std::string("user-1"), header_value), d);
}

TEST(NullText, ANullRequestIdIsTheEmptyId) {
  const Gate gate = Gate::create(kOverrides);
  const char* id = nullptr;
  const Decision empty = gate.route("");
  EXPECT_EQ(gate.route(id), empty);
  EXPECT_EQ(gate.route_forced(id, std::nullopt), empty);
  EXPECT_EQ(gate.route_forced(id, id), empty);
  EXPECT_EQ(gate.route_forced(id, "canary"), gate.route_forced("", "canary"));
  EXPECT_EQ(gate.record_by_id(id, true, 1ms), Recorded::Counted);
}

TEST(NullText, ANullDocumentIsTheDefaults) {
  const char* none = nullptr;
  const std::string defaults = Gate::create("").config_json();
  EXPECT_EQ(Gate::create(none).config_json(), defaults);
  EXPECT_EQ(Gate::create(none, none).config_json(), defaults);
  const Gate with_slo = Gate::create(none, R"({"min_samples": 7})");
  EXPECT_EQ(with_slo.slo_json(), Gate::create("", R"({"min_samples": 7})").slo_json());
  const Gate default_slo = Gate::create(kOverrides, none);
  EXPECT_EQ(default_slo.state().environment, Environment::Canary);
  EXPECT_EQ(default_slo.slo_json(), Gate::create("").slo_json());
  EXPECT_EQ(Gate::create(std::string(kOverrides), none).config_json(),
            default_slo.config_json());
  EXPECT_EQ(promotion_gates::store_location(none), "");
  EXPECT_EQ(promotion_gates::document_gate_name(none), "default");
  EXPECT_FALSE(promotion_gates::document_fleet_judging(none));
  EXPECT_NO_THROW(promotion_gates::document_check_slo(none, none));
  EXPECT_NO_THROW(promotion_gates::document_check_slo(none, R"({"min_samples": 7})"));
  EXPECT_NO_THROW(promotion_gates::document_check_slo(std::string(kOverrides), none));
  EXPECT_THROW(promotion_gates::document_check_slo(R"({"rollback_window_seconds": 5})", none),
               promotion_gates::Error)
      << "the default SLO's 1 s interval in a 5 s window";
}

// Where only a string means something, a null one is most likely a lookup that found nothing:
// refused, naming the parameter and the member, and nothing changes.
TEST(NullText, ANullNameReasonOrReplacingDocumentIsRefusedNamingIt) {
  const Gate gate = Gate::create(kOverrides);
  gate.enable_feature("on");
  const std::string config = gate.config_json();
  const std::string slo = gate.slo_json();
  const auto changes = gate.change_count();
  const char* none = nullptr;
  const auto names = gate.features(gate.route("user-1"));
  const std::vector<std::pair<std::string, std::function<void()>>> calls = {
      {"invalid name = nullptr: promotion_gates::Gate::enable_feature",
       [&] { gate.enable_feature(none); }},
      {"invalid name = nullptr: promotion_gates::Gate::disable_feature",
       [&] { gate.disable_feature(none); }},
      {"invalid name = nullptr: promotion_gates::Gate::is_feature_enabled",
       [&] { (void)gate.is_feature_enabled(none); }},
      {"invalid reason = nullptr: promotion_gates::Gate::rollback", [&] { gate.rollback(none); }},
      {"invalid config_json = nullptr: promotion_gates::Gate::swap_config",
       [&] { gate.swap_config(none); }},
      {"invalid config_json = nullptr: promotion_gates::Gate::swap_config_from",
       [&] { gate.swap_config_from(gate.change_count(), none); }},
      {"invalid slo_json = nullptr: promotion_gates::Gate::swap_slo",
       [&] { gate.swap_slo(none); }},
      {"invalid flag = nullptr: promotion_gates::FeatureNames::contains",
       [&] { (void)names.contains(none); }},
  };
  for (const auto& [said, call] : calls) {
    try {
      call();
      ADD_FAILURE() << "no Error thrown; expected: " << said;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_ARGUMENT) << e.what();
      EXPECT_EQ(e.what(), said + " takes a string, not a null pointer");
    }
  }
  EXPECT_EQ(gate.config_json(), config);
  EXPECT_EQ(gate.slo_json(), slo);
  EXPECT_EQ(gate.change_count(), changes);
  EXPECT_EQ(gate.state().environment, Environment::Canary);
  EXPECT_TRUE(gate.is_feature_enabled("on"));
}

/// Text that converts to std::string_view only, as a string type of another library does.
struct OtherString {
  std::string text;
  operator std::string_view() const noexcept { return text; }  // NOLINT: implicit on purpose
};

// Each kind of text a caller may hold picks one overload (a compile error otherwise) and
// routes as its characters do.
TEST(NullText, EveryKindOfTextPicksOneOverload) {
  const Gate gate = Gate::create(kOverrides);
  const std::string id = "user-7";
  const std::string_view id_view = id;
  const char* id_c = id.c_str();
  char id_buf[] = "user-7";
  const OtherString id_other{id};
  const Decision d = gate.route(id);
  EXPECT_EQ(gate.route(id_view), d);
  EXPECT_EQ(gate.route(id_c), d);
  EXPECT_EQ(gate.route(id_buf), d);
  EXPECT_EQ(gate.route("user-7"), d);
  EXPECT_EQ(gate.route(id_other), d);
  EXPECT_EQ(gate.route(nullptr), gate.route(""));
  EXPECT_EQ(gate.record_by_id(id, true, 1ms), Recorded::Counted);
  EXPECT_EQ(gate.record_by_id(id_view, true, 1ms), Recorded::Counted);
  EXPECT_EQ(gate.record_by_id(id_c, true, 1ms), Recorded::Counted);
  EXPECT_EQ(gate.record_by_id("user-7", true, 1ms), Recorded::Counted);

  const std::string value = "stable";
  const std::string_view value_view = value;
  const char* value_c = value.c_str();
  const std::optional<std::string_view> value_opt = value_view;
  const Decision forced = gate.route_forced(id, value);
  EXPECT_EQ(forced.forced, Forced::Value);
  EXPECT_FALSE(forced.is_canary);
  for (const Decision& same : {
           gate.route_forced(id, value_view), gate.route_forced(id, value_c),
           gate.route_forced(id, "stable"), gate.route_forced(id, value_opt),
           gate.route_forced(id_view, value), gate.route_forced(id_view, value_c),
           gate.route_forced(id_c, value), gate.route_forced(id_c, value_view),
           gate.route_forced(id_c, value_c), gate.route_forced(id_c, value_opt),
           gate.route_forced("user-7", "stable"), gate.route_forced(id_buf, value_c),
           gate.route_forced(id_other, value_view), gate.route_forced(id_other, value_c)}) {
    EXPECT_EQ(same, forced);
  }
  for (const Decision& unforced :
       {gate.route_forced(id, std::nullopt), gate.route_forced(id_c, std::nullopt),
        gate.route_forced("user-7", std::nullopt), gate.route_forced(id, nullptr),
        gate.route_forced("user-7", nullptr), gate.route_forced(id, {})}) {
    EXPECT_EQ(unforced, d);
  }

  // A 5 s window takes the SLO's 500 ms interval, not the default SLO's 1 s one.
  const std::string config = R"({"rollback_window_seconds": 5})";
  const std::string slo = R"({"evaluation_interval_ms": 500})";
  const std::string_view config_view = config;
  const std::string_view slo_view = slo;
  const char* config_c = config.c_str();
  const char* slo_c = slo.c_str();
  const OtherString config_other{config};
  const OtherString slo_other{slo};
  using promotion_gates::document_check_slo;
  EXPECT_NO_THROW(document_check_slo(config, slo));
  EXPECT_NO_THROW(document_check_slo(config_view, slo_c));
  EXPECT_NO_THROW(document_check_slo(config_c, slo_view));
  EXPECT_NO_THROW(document_check_slo(config_c, slo_c));
  EXPECT_NO_THROW(document_check_slo(config_other, slo_c));
  EXPECT_NO_THROW(document_check_slo(config_c, slo_other));
  EXPECT_NO_THROW(document_check_slo(config_other, slo_other));
  EXPECT_NO_THROW(
      document_check_slo(R"({"rollback_window_seconds": 5})", R"({"evaluation_interval_ms": 500})"));
  EXPECT_NO_THROW(document_check_slo(nullptr, R"({"evaluation_interval_ms": 500})"));
  EXPECT_THROW(document_check_slo(config, nullptr), promotion_gates::Error) << "the default SLO";
}

}  // namespace
