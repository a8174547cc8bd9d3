// Change notifications (change_count, changes_json) and the parity reads: the read-only
// health, the state, the SLO and its swap.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <thread>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using promotion_gates::Environment;
using promotion_gates::Error;
using promotion_gates::Gate;
using promotion_gates::Recommendation;

/// Records a failure for each canary request until the gate stops routing there.
void fail_the_canary(const Gate& gate) {
  for (int i = 0; i < 1000; ++i) {
    const auto d = gate.route("user-" + std::to_string(i));
    if (!d.is_canary) {
      return;
    }
    gate.record(d, false, 1ms);
  }
  FAIL() << "a canary failing every request was not rolled back";
}

TEST(Changes, CountAndJsonSayWhatChangedWithTheRollbackEvidence) {
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 100}}, "feature_flags": ["new_api"]})");
  EXPECT_EQ(gate.change_count(), 0u);
  EXPECT_EQ(json::parse(gate.changes_json(0)), json::array());
  gate.enable_feature("dark_mode");
  EXPECT_EQ(gate.change_count(), 1u);
  fail_the_canary(gate);
  EXPECT_EQ(gate.change_count(), 2u);
  const json changes = json::parse(gate.changes_json(0));
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0]["sequence"], 1);
  EXPECT_EQ(changes[0]["kind"], "flags");
  EXPECT_EQ(changes[0]["flags_enabled"], json::array({"dark_mode"}));
  EXPECT_TRUE(changes[0]["rollback"].is_null());
  const json& rollback = changes[1];
  EXPECT_EQ(rollback["kind"], "rollback");
  EXPECT_EQ(rollback["origin"], "this_gate");
  EXPECT_EQ(rollback["from"], json({{"canary", {{"traffic_percent", 100.0}}}}));
  EXPECT_EQ(rollback["to"], "production");
  EXPECT_EQ(rollback["rollback"]["trigger"], "automatic");
  EXPECT_NE(rollback["rollback"]["rules"].dump().find("overwhelming_errors"), std::string::npos)
      << rollback.dump();
  const json later = json::parse(gate.changes_json(1));
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0]["sequence"], 2);
  EXPECT_EQ(json::parse(gate.changes_json(2)), json::array());

  // A new rollout from Production: a promotion, in the stage after the rollback's.
  gate.promote(Environment::Canary, 25.0);
  EXPECT_EQ(gate.change_count(), 3u);
  const json promoted = json::parse(gate.changes_json(2));
  ASSERT_EQ(promoted.size(), 1u);
  const json& promotion = promoted[0];
  EXPECT_EQ(promotion["sequence"], 3);
  EXPECT_EQ(promotion["kind"], "promotion");
  EXPECT_EQ(promotion["origin"], "this_gate");
  EXPECT_EQ(promotion["from"], "production");
  EXPECT_EQ(promotion["to"], json({{"canary", {{"traffic_percent", 25.0}}}}));
  EXPECT_EQ(promotion["stage"], rollback["stage"].get<std::uint64_t>() + 1);
  EXPECT_EQ(promotion["stage"], gate.state().stage);
  EXPECT_TRUE(promotion["rollback"].is_null());
}

TEST(Parity, ReadHealthNeverRollsBackMonitorHealthDoes) {
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 100}}, "auto_rollback_enabled": false})");
  for (int i = 0; i < 50; ++i) {
    gate.record_by_id("user-" + std::to_string(i), false, 1ms);
  }
  // Same environment and salt: same stage, same data; rolling back allowed from now on.
  gate.swap_config(
      R"({"environment": {"canary": {"traffic_percent": 100}}, "auto_rollback_enabled": true})");
  for (int i = 0; i < 3; ++i) {
    const auto h = gate.read_health();
    EXPECT_EQ(h.recommendation, Recommendation::Rollback);
    EXPECT_EQ(h.canary_requests, 50u);
    EXPECT_NE(h.evidence.find("FIRED"), std::string::npos) << h.evidence;
  }
  EXPECT_EQ(gate.state().environment, Environment::Canary);
  EXPECT_EQ(gate.monitor_health().recommendation, Recommendation::Rollback);
  EXPECT_EQ(gate.state().environment, Environment::Production);
}

// With every rule firing the evidence line is over 1 KiB. monitor_health judges once: judging
// again after the rollback would return Production's health and hide the rollback.
TEST(Parity, MonitorHealthReturnsTheRollbackItJudgedWhateverTheEvidenceLength) {
  constexpr std::string_view slo = R"({"p99_budget_ms": 10, "warm_up_ms": 0, "min_samples": 10})";
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 50}}, "auto_rollback_enabled": false})",
      slo);
  for (int i = 0; i < 5000; ++i) {
    const auto d = gate.route("user-" + std::to_string(i));
    if (d.is_canary) {  // a third fail, all slow
      gate.record(d, i % 3 != 0, std::chrono::milliseconds(900 + (i % 7) * 100));
    } else {
      gate.record(d, true, 1ms);
    }
  }
  gate.swap_config(
      R"({"environment": {"canary": {"traffic_percent": 50}}, "auto_rollback_enabled": true})");
  const auto read = gate.read_health();
  ASSERT_GT(read.evidence.size(), 1024u) << "the case needs a long evidence line";
  const auto h = gate.monitor_health();
  EXPECT_EQ(h.recommendation, Recommendation::Rollback) << h.evidence;
  EXPECT_EQ(h.environment, Environment::Canary);
  EXPECT_EQ(h.rules_fired, read.rules_fired);
  EXPECT_TRUE(h.fired(promotion_gates::Rule::ErrorRateMax));
  EXPECT_TRUE(h.fired(promotion_gates::Rule::P99Budget));
  EXPECT_EQ(h.evidence, read.evidence);
  EXPECT_EQ(gate.state().environment, Environment::Production);
}

TEST(Parity, ASwappedSloKeepsTheStageAndTheRecordedCounts) {
  const Gate gate = Gate::create(R"({"environment": {"canary": {"traffic_percent": 50}}})",
                                 R"({"min_samples": 40, "warm_up_ms": 0})");
  EXPECT_EQ(json::parse(gate.slo_json())["min_samples"], 40);
  for (int i = 0; i < 300; ++i) {
    gate.record_by_id("user-" + std::to_string(i), true, 20ms);
  }
  const auto before = gate.read_health();
  const auto state = gate.state();
  EXPECT_EQ(state.environment, Environment::Canary);
  EXPECT_EQ(state.traffic_percent, 50.0);
  const auto seen = gate.change_count();
  gate.swap_slo(R"({"min_samples": 1000, "latency_target_ms": 250})");
  const auto after = gate.read_health();
  EXPECT_EQ(after.canary_requests, before.canary_requests);
  EXPECT_EQ(after.production_requests, before.production_requests);
  EXPECT_EQ(after.stage, before.stage);
  EXPECT_TRUE(before.sufficient_data);
  EXPECT_FALSE(after.sufficient_data);
  EXPECT_EQ(gate.state().stage, state.stage);
  const json slo = json::parse(gate.slo_json());
  EXPECT_EQ(slo["min_samples"], 1000);
  EXPECT_EQ(slo["latency_target_ms"], 250.0);
  const json changes = json::parse(gate.changes_json(seen));
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0]["kind"], "config");
  try {
    gate.swap_slo(R"({"max_error_rate": 2.5})");
    FAIL() << "an invalid SLO was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_CONFIG);
    EXPECT_NE(std::string(e.what()).find("max_error_rate"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("2.5"), std::string::npos) << e.what();
  }
  EXPECT_EQ(json::parse(gate.slo_json())["min_samples"], 1000);
}

}  // namespace

namespace {

TEST(Changes, SyncNowReadsAnotherGatesRollbackAtOnce) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("pgate-cpp-sync-now-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto document = [&](int sync_ms) {
    return json{{"environment", {{"canary", {{"traffic_percent", 10}}}}},
                {"store", {{"sqlite", {{"path", (dir / "gate.db").string()},
                                       {"sync_interval_ms", sync_ms}}}}}}
        .dump();
  };
  {
    // Reads the store once a minute: here only when asked.
    const Gate slow = Gate::create(document(60000));
    const Gate other = Gate::create(document(20));
    const auto seen = slow.change_count();
    other.rollback("bad deploy");
    EXPECT_TRUE(slow.sync_now());
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (slow.change_count() == seen) {
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "the rollback was not read";
      std::this_thread::sleep_for(1ms);
    }
    EXPECT_EQ(slow.state().environment, Environment::Production);
  }
  EXPECT_FALSE(Gate::create("{}").sync_now()) << "no store: nothing to read";
  std::filesystem::remove_all(dir);
}

}  // namespace
