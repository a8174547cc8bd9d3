// The C++ binding's telemetry: the Prometheus exposition and the latency histograms.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using promotion_gates::Gate;

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
