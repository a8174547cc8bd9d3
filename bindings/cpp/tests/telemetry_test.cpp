// The C++ binding's telemetry: the Prometheus exposition and the latency histograms.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>
#include <map>
#include <optional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using promotion_gates::Decision;
using promotion_gates::Forced;
using promotion_gates::Gate;
using promotion_gates::OutcomeCounts;
using promotion_gates::Recorded;

TEST(Telemetry, TheExpositionNamesTheGateAndCountsARollback) {
  const Gate gate = Gate::create(R"({"gate": "edge", "environment": "staging"})");
  const std::string manual = R"(promotion_rollbacks_total{gate="edge",trigger="manual",rule="none"})";
  const std::string before = gate.metrics_prometheus();
  EXPECT_NE(before.find("# TYPE promotion_health_score gauge\npromotion_health_score{gate=\"edge\"} "),
            std::string::npos);
  EXPECT_NE(before.find(manual + " 0\n"), std::string::npos) << before;
  gate.rollback("bad deploy");
  EXPECT_NE(gate.metrics_prometheus().find(manual + " 1\n"), std::string::npos);
}

TEST(Telemetry, TheGatesNameIsTheConfigs) {
  EXPECT_EQ(Gate::create(R"({"gate": "checkout"})").name(), "checkout");
  EXPECT_EQ(Gate::create("").name(), "default");
  const std::string longest(128, 'g');  // the longest name the library takes
  EXPECT_EQ(Gate::create(R"({"gate": ")" + longest + R"("})").name(), longest);
}

TEST(Telemetry, OneExpositionForSeveralGates) {
  const Gate web = Gate::create(R"({"gate": "web", "environment": {"canary": {"traffic_percent": 50}}})");
  const Gate api = Gate::create(R"({"gate": "api"})");
  web.rollback("bad deploy");
  const std::string text = promotion_gates::metrics_prometheus({&web, &api});
  std::size_t families = 0;
  for (auto at = text.find("# TYPE promotion_health_score gauge"); at != std::string::npos;
       at = text.find("# TYPE promotion_health_score gauge", at + 1)) {
    ++families;
  }
  EXPECT_EQ(families, 1u) << "each family once";
  EXPECT_NE(text.find("promotion_health_score{gate=\"web\"} "), std::string::npos) << text;
  EXPECT_NE(text.find("promotion_health_score{gate=\"api\"} "), std::string::npos) << text;
  const auto manual = [](const std::string& gate) {
    return "promotion_rollbacks_total{gate=\"" + gate + R"(",trigger="manual",rule="none"})";
  };
  EXPECT_NE(text.find(manual("web") + " 1\n"), std::string::npos) << text;
  EXPECT_NE(text.find(manual("api") + " 0\n"), std::string::npos) << text;
  EXPECT_EQ(promotion_gates::metrics_prometheus({&web}), web.metrics_prometheus());
  EXPECT_EQ(promotion_gates::metrics_prometheus({}).find("gate=\""), std::string::npos);
}

TEST(Telemetry, TwoGatesOfOneNameAreRefusedByPosition) {
  const Gate web = Gate::create(R"({"gate": "web"})");
  const Gate api = Gate::create(R"({"gate": "api"})");
  const Gate twin = Gate::create(R"({"gate": "web", "environment": "staging"})");
  const auto refused = [](const std::vector<const Gate*>& gates, pgate_status status) {
    try {
      (void)promotion_gates::metrics_prometheus(gates);
    } catch (const promotion_gates::Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      return std::string(e.what());
    }
    ADD_FAILURE() << "not refused";
    return std::string();
  };
  EXPECT_EQ(refused({&web, &api, &twin}, PGATE_STATUS_INVALID_ARGUMENT),
            "promotion_gates::metrics_prometheus: gates[2] is named \"web\", as gates[0] is: "
            "their series would repeat");
  // A name is shown escaped, as the library shows it.
  const Gate quote = Gate::create(R"({"gate": "we\"b", "environment": "staging"})");
  const Gate quote_twin = Gate::create(R"({"gate": "we\"b", "environment": "staging"})");
  EXPECT_EQ(refused({&quote, &quote_twin}, PGATE_STATUS_INVALID_ARGUMENT),
            R"(promotion_gates::metrics_prometheus: gates[1] is named "we\"b", as gates[0] is: )"
            "their series would repeat");
  EXPECT_EQ(refused({&api, &web, &web}, PGATE_STATUS_INVALID_ARGUMENT),
            "promotion_gates::metrics_prometheus: gates[1] and gates[2] are the same gate");
  EXPECT_EQ(refused({&web, nullptr}, PGATE_STATUS_INVALID_ARGUMENT),
            "promotion_gates::metrics_prometheus: gates[1] is null");
  Gate moved = Gate::create(R"({"gate": "moved"})");
  const Gate keeper = std::move(moved);
  EXPECT_NE(refused({&keeper, &moved}, PGATE_STATUS_NULL_POINTER).find("gates[1] was moved from"),
            std::string::npos);
}

/// One line of an exposition: its family, its series (name and labels) and its value.
struct Sample {
  std::string family;
  std::string series;
  double value = 0.0;
};

/// An exposition's # lines (one string) and its samples.
std::pair<std::string, std::vector<Sample>> parsed(const std::string& text) {
  std::string families;
  std::vector<Sample> samples;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind('#', 0) == 0) {
      families += line + "\n";
    } else if (!line.empty()) {
      const auto space = line.rfind(' ');
      const std::string series = line.substr(0, space);
      samples.push_back({series.substr(0, series.find('{')), series,
                         std::stod(line.substr(space + 1))});
    }
  }
  return {families, samples};
}

// The host's counts replace the four outcome counters in the exposition, and nothing else
// changes (as the Rust test a_hosts_counts_replace_the_four_outcome_counters_and_nothing_else).
TEST(Telemetry, AHostsCountsReplaceTheFourOutcomeCountersAndNothingElse) {
  const Gate web = Gate::create(R"({"gate": "web", "environment": {"canary": {"traffic_percent": 50}},
      "overrides": {"header": "X-Canary", "canary_ids": ["tester"]}})");
  const Gate api = Gate::create(R"({"gate": "api", "environment": "staging"})");
  // The gate's own counts: one forced outcome, one foreign, one forcing value ignored.
  EXPECT_EQ(web.record(web.route("tester"), true, 1ms), Recorded::Forced);
  Decision foreign = web.route("u");
  foreign.stage += 1;
  EXPECT_EQ(web.record(foreign, true, 1ms), Recorded::Foreign);
  EXPECT_EQ(web.route_forced("u", "nope").forced, Forced::None);
  const std::map<std::string, std::pair<double, double>> four{
      // family: the host's count, the gate's own
      {"promotion_late_outcomes_total", {11, 0}},
      {"promotion_foreign_outcomes_total", {12, 1}},
      {"promotion_forced_outcomes_total", {13, 1}},
      {"promotion_ignored_override_values_total", {14, 1}},
  };
  const OutcomeCounts host{11, 12, 13, 14};
  const auto [families, samples] =
      parsed(promotion_gates::metrics_prometheus_counted({&web, &api}, {host, {}}));
  const auto [own_families, own_samples] = parsed(promotion_gates::metrics_prometheus({&web, &api}));
  EXPECT_EQ(families, own_families);
  ASSERT_EQ(samples.size(), own_samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    const Sample& s = samples[i];
    const Sample& own = own_samples[i];
    ASSERT_EQ(s.series, own.series);
    const auto counter = four.find(s.family);
    if (counter != four.end() && s.series.find("gate=\"web\"") != std::string::npos) {
      EXPECT_EQ(std::make_pair(s.value, own.value), counter->second) << s.series;
    } else if (counter != four.end()) {
      EXPECT_EQ(std::make_pair(s.value, own.value), std::make_pair(0.0, 0.0)) << s.series;
    } else {  // no series here reads the clock: the rest is the gates' own, unchanged
      EXPECT_TRUE(s.value == own.value || (std::isnan(s.value) && std::isnan(own.value)))
          << s.series << " " << s.value << ", own " << own.value;
    }
  }
  // The largest count is taken, and served as a float, as Prometheus reads it.
  OutcomeCounts most;
  most.late_outcomes = std::numeric_limits<std::uint64_t>::max();
  bool served = false;
  for (const Sample& s : parsed(web.metrics_prometheus_counted(most)).second) {
    if (s.series == R"(promotion_late_outcomes_total{gate="web"})") {
      served = s.value == static_cast<double>(most.late_outcomes);
    }
  }
  EXPECT_TRUE(served);
  EXPECT_EQ(promotion_gates::metrics_prometheus_counted({}, {}), "");
  const auto refused = [](const std::vector<const Gate*>& gates,
                          const std::vector<OutcomeCounts>& counts, pgate_status status) {
    try {
      (void)promotion_gates::metrics_prometheus_counted(gates, counts);
    } catch (const promotion_gates::Error& e) {
      EXPECT_EQ(e.status(), status) << e.what();
      return std::string(e.what());
    }
    ADD_FAILURE() << "not refused";
    return std::string();
  };
  const std::string function = "promotion_gates::metrics_prometheus_counted: ";
  EXPECT_EQ(refused({&web, &api}, {host}, PGATE_STATUS_INVALID_ARGUMENT),
            function + "invalid counts.size() = 1: one OutcomeCounts per gate (gates: 2)");
  EXPECT_EQ(refused({&web}, {host, host, host}, PGATE_STATUS_INVALID_ARGUMENT),
            function + "invalid counts.size() = 3: one OutcomeCounts per gate (gates: 1)");
  EXPECT_EQ(refused({&web, &web}, {host, host}, PGATE_STATUS_INVALID_ARGUMENT),
            function + "gates[0] and gates[1] are the same gate");
  EXPECT_EQ(refused({&web, nullptr}, {host, host}, PGATE_STATUS_INVALID_ARGUMENT),
            function + "gates[1] is null");
  Gate moved = Gate::create(R"({"gate": "moved"})");
  const Gate keeper = std::move(moved);
  EXPECT_NE(refused({&keeper, &moved}, {host, host}, PGATE_STATUS_NULL_POINTER)
                .find("gates[1] was moved from"),
            std::string::npos);
  EXPECT_THROW((void)moved.metrics_prometheus_counted(host), promotion_gates::Error);
}

// A host counting outcomes itself could not tell what record_abandoned() did with a request
// (a bool): the gate counted a forced request whose client left after the latency target as
// forced, and the host's shared counter stayed 0.
TEST(Telemetry, AHostCountsAForcedAbandonedRequestAsTheGateDoes) {
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 10}}, "overrides": {"header": "X-Canary"}})",
      R"({"latency_target_ms": 250})");
  const Decision d = gate.route_forced("u", "canary");
  ASSERT_EQ(d.forced, Forced::Value);
  EXPECT_EQ(gate.record_abandoned_as(d, 100ms), std::nullopt);  // within the target
  const std::optional<Recorded> as = gate.record_abandoned_as(d, 10s);
  ASSERT_EQ(as, Recorded::Forced);
  OutcomeCounts host;
  ++host.forced_outcomes;  // the host's shared counter
  const std::string forced = R"(promotion_forced_outcomes_total{gate="default"} 1)" "\n";
  EXPECT_NE(gate.metrics_prometheus().find(forced), std::string::npos);
  EXPECT_NE(gate.metrics_prometheus_counted(host).find(forced), std::string::npos);
  // Counted, late and foreign too, as record() says them.
  EXPECT_EQ(gate.record_abandoned_as(gate.route_forced("u", nullptr), 10s), Recorded::Counted);
  Decision late = d;
  late.forced = Forced::None;
  gate.enable_feature("next");  // a new stage: the decision's has ended
  EXPECT_EQ(gate.record_abandoned_as(late, 10s), Recorded::Late);
  Decision foreign = late;
  foreign.stage += 10;
  EXPECT_EQ(gate.record_abandoned_as(foreign, 10s), Recorded::Foreign);
}

TEST(Telemetry, TheHistogramsAreHdrHistogramV2InBase64) {
  const Gate gate = Gate::create(R"({"environment": {"canary": {"traffic_percent": 50}}})");
  for (int i = 0; i < 100; ++i) {
    (void)gate.record_by_id("user-" + std::to_string(i), true, 2ms);
  }
  const auto doc = nlohmann::json::parse(gate.latency_histograms_json());
  EXPECT_EQ(doc.at("encoding"), "hdrhistogram-v2-deflate-base64");
  EXPECT_EQ(doc.at("unit"), "microseconds");
  for (const char* cohort : {"canary", "stable"}) {
    // The compressed V2 cookie 0x1c849314, in base64.
    EXPECT_EQ(doc.at(cohort).get<std::string>().rfind("HISTFA", 0), 0U) << cohort;
  }
}

}  // namespace
