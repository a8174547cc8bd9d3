// The C++ binding's telemetry: the Prometheus exposition and the latency histograms.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>

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
