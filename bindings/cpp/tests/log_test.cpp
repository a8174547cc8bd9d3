// The log callback: the lines it receives, its refusals, and its lifetime against the
// threads that log (replacing it while they log, exiting while they log).
#include "promotion_gates.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using promotion_gates::Error;
using promotion_gates::Gate;
using promotion_gates::LogLevel;
using promotion_gates::OutcomeCounts;
using promotion_gates::set_log_callback;

struct Line {
  LogLevel level;
  std::string target;
  std::string message;
};

/// Keeps the lines a callback receives; its callback() copies each line and returns.
class Lines {
 public:
  promotion_gates::LogCallback callback() {
    return [this](LogLevel level, std::string_view target, std::string_view message) {
      const std::lock_guard<std::mutex> lock(mutex_);
      lines_.push_back({level, std::string(target), std::string(message)});
    };
  }

  std::vector<Line> taken() {
    const std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }

  /// The first line whose message holds `text`, or nullptr.
  std::unique_ptr<Line> find(std::string_view text) {
    for (Line& line : taken()) {
      if (line.message.find(text) != std::string::npos) return std::make_unique<Line>(line);
    }
    return nullptr;
  }

 private:
  std::mutex mutex_;
  std::vector<Line> lines_;
};

/// Stops the callback when a test ends, passed or failed, before its captures are destroyed.
struct Stop {
  Stop() = default;
  Stop(const Stop&) = delete;
  Stop& operator=(const Stop&) = delete;
  ~Stop() { set_log_callback(nullptr); }
};

constexpr std::string_view kCanary50 = R"({"environment": {"canary": {"traffic_percent": 50}}})";

TEST(Log, LinesReachTheCallbackUpToItsLevelUntilItIsStopped) {
  Lines lines;
  const Stop stop;
  const Gate gate = Gate::create(kCanary50);
  set_log_callback(lines.callback(), LogLevel::Info);
  gate.enable_feature("dark_mode");
  (void)gate.route("user-1");  // a debug line, above Info: not sent
  gate.rollback("bad deploy");

  const auto enabled = lines.find("Feature flag enabled: dark_mode");
  ASSERT_NE(enabled, nullptr);
  EXPECT_EQ(enabled->level, LogLevel::Info);
  EXPECT_EQ(enabled->target.rfind("promotion_gates", 0), 0u) << enabled->target;
  const auto rollback = lines.find("promotion.rollback");
  ASSERT_NE(rollback, nullptr);
  EXPECT_EQ(rollback->level, LogLevel::Error);
  EXPECT_NE(rollback->message.find("reason=\"bad deploy\""), std::string::npos) << rollback->message;
  for (const Line& line : lines.taken()) {
    EXPECT_LE(line.level, LogLevel::Info) << line.message;
  }

  set_log_callback(nullptr);
  const std::size_t before = lines.taken().size();
  gate.enable_feature("after_stop");
  EXPECT_EQ(lines.taken().size(), before) << "no line after set_log_callback(nullptr)";
  EXPECT_EQ(promotion_gates::to_string(LogLevel::Warn), "warn");
}

TEST(Log, ALevelOutsideTheLevelsIsRefusedAndChangesNothing) {
  Lines kept;
  Lines refused;
  const Stop stop;
  set_log_callback(kept.callback(), LogLevel::Error);
  for (const auto level : {static_cast<LogLevel>(0), static_cast<LogLevel>(9)}) {
    try {
      set_log_callback(refused.callback(), level);
      ADD_FAILURE() << "max_level " << static_cast<unsigned>(level) << " was taken";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_ARGUMENT) << e.what();
      EXPECT_NE(std::string(e.what()).find("max_level " + std::to_string(static_cast<unsigned>(level))),
                std::string::npos)
          << e.what();
    }
  }
  Gate::create(R"({"environment": "staging"})").rollback("bad deploy");
  EXPECT_NE(kept.find("promotion.rollback"), nullptr) << "the first callback is still set";
  EXPECT_TRUE(refused.taken().empty());
}

TEST(Log, TheCallbackCannotSetTheCallbackNorWriteAndItsExceptionsAreDropped) {
  std::atomic<int> calls{0};
  std::atomic<pgate_status> inner{PGATE_STATUS_OK};
  std::atomic<pgate_status> inner_write{PGATE_STATUS_OK};
  std::atomic<const Gate*> target{nullptr};
  const Stop stop;
  set_log_callback(
      [&](LogLevel, std::string_view, std::string_view) {
        ++calls;
        try {
          set_log_callback(nullptr);
        } catch (const Error& e) {
          inner = e.status();
        }
        if (const Gate* gate = target.load()) {
          try {
            gate->enable_feature("from_inside");
          } catch (const Error& e) {
            inner_write = e.status();
          }
        }
        throw std::runtime_error("a callback that throws");  // dropped, not across the C ABI
      },
      LogLevel::Info);
  const Gate gate = Gate::create(kCanary50);
  target = &gate;
  gate.enable_feature("a");
  EXPECT_TRUE(gate.is_feature_enabled("a")) << "the write whose line threw took effect";
  gate.rollback("bad deploy");
  target = nullptr;
  EXPECT_GE(calls.load(), 2);
  EXPECT_EQ(inner.load(), PGATE_STATUS_INVALID_ARGUMENT);
  EXPECT_EQ(inner_write.load(), PGATE_STATUS_INVALID_ARGUMENT) << "a write from inside is refused";
  EXPECT_FALSE(gate.is_feature_enabled("from_inside"));
}

// pgate_check_slo, pgate_monitor_health, pgate_read_health and the reads of the window (the
// Prometheus expositions, pgate_latency_histograms_json) have no error object: the binding
// words their refusal from inside the callback as the library words swap_slo's, which it writes
// itself.
TEST(Log, AJudgementFromInsideTheCallbackIsRefusedInTheLibrarysWords) {
  std::mutex mutex;
  std::vector<std::pair<std::string, std::string>> refused;  // (member, message)
  std::atomic<const Gate*> target{nullptr};
  const Stop stop;
  set_log_callback(
      [&](LogLevel, std::string_view, std::string_view) {
        const Gate* gate = target.exchange(nullptr);  // the first line only
        if (gate == nullptr) return;
        const std::vector<std::pair<std::string, std::function<void()>>> calls = {
            {"swap_slo", [&] { gate->swap_slo("{}"); }},
            {"check_slo", [&] { (void)gate->check_slo(); }},
            {"monitor_health", [&] { (void)gate->monitor_health(); }},
            {"health", [&] { (void)gate->health(); }},
            {"read_health", [&] { (void)gate->read_health(); }},
            {"metrics_prometheus", [&] { (void)gate->metrics_prometheus(); }},
            {"metrics_prometheus_counted",
             [&] { (void)gate->metrics_prometheus_counted(OutcomeCounts{}); }},
            {"latency_histograms_json", [&] { (void)gate->latency_histograms_json(); }},
            {"promotion_gates::metrics_prometheus",
             [&] { (void)promotion_gates::metrics_prometheus({gate}); }},
            {"promotion_gates::metrics_prometheus_counted",
             [&] { (void)promotion_gates::metrics_prometheus_counted({gate}, {OutcomeCounts{}}); }},
        };
        for (const auto& [member, call] : calls) {
          try {
            call();
          } catch (const Error& e) {
            const std::lock_guard<std::mutex> lock(mutex);
            refused.emplace_back(member, std::string(e.status_name()) + ": " + e.what());
          }
        }
      },
      LogLevel::Info);
  const Gate gate = Gate::create(kCanary50);
  target = &gate;
  gate.enable_feature("a");  // logs one line
  set_log_callback(nullptr);
  const std::lock_guard<std::mutex> lock(mutex);
  ASSERT_EQ(refused.size(), 10u);
  const std::string swap = refused[0].second;
  const std::string name = "pgate_swap_slo";
  ASSERT_EQ(swap.rfind("PGATE_STATUS_INVALID_ARGUMENT: " + name + " was called from inside", 0),
            0u)
      << swap;
  const auto words = [&](const std::string& function) {
    return std::string(swap).replace(swap.find(name), name.size(), function);
  };
  EXPECT_EQ(refused[1].second, words("pgate_check_slo"));
  EXPECT_EQ(refused[2].second, words("pgate_monitor_health"));
  EXPECT_EQ(refused[3].second, words("pgate_monitor_health"));
  EXPECT_EQ(refused[4].second, words("pgate_read_health"));
  EXPECT_EQ(refused[5].second, words("pgate_metrics_prometheus"));
  EXPECT_EQ(refused[6].second, words("pgate_metrics_prometheus_counted"));
  EXPECT_EQ(refused[7].second, words("pgate_latency_histograms_json"));
  EXPECT_EQ(refused[8].second, words("pgate_metrics_prometheus_gates"));
  EXPECT_EQ(refused[9].second, words("pgate_metrics_prometheus_counted"));
}

/// Routes at the debug level (one line per route) on `workers` threads until stopped.
class Routing {
 public:
  Routing(const Gate& gate, int workers) {
    for (int w = 0; w < workers; ++w) {
      threads_.emplace_back([this, &gate, w] {
        for (int n = 0; !stop_; ++n) {
          const auto d = gate.route("user-" + std::to_string(n * 31 + w));
          gate.record(d, n % 5 != 0, std::chrono::microseconds(n % 1000));
        }
      });
    }
  }
  Routing(const Routing&) = delete;
  Routing& operator=(const Routing&) = delete;
  ~Routing() {
    stop_ = true;
    for (auto& t : threads_) t.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// The library may call the old callback until set_log_callback returns; the binding destroys
// it only then. Each callback owns heap memory, so the sanitizer build sees a late call.
TEST(Log, ReplacingTheCallbackWhileThreadsLogIsSafe) {
  const Stop stop;
  const Gate gate = Gate::create(kCanary50);
  const Routing routing(gate, 3);
  constexpr int kRounds = 200;
  for (int round = 0; round < kRounds; ++round) {
    auto used = std::make_shared<std::atomic<bool>>(false);
    set_log_callback(
        [used, owned = std::vector<int>(16, round)](LogLevel, std::string_view, std::string_view) {
          *used = owned.size() == 16;
        },
        LogLevel::Debug);
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    while (!*used && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
    ASSERT_TRUE(*used) << "round " << round << ": the callback was never called";
  }
  auto calls = std::make_shared<std::atomic<int>>(0);
  set_log_callback([calls](LogLevel, std::string_view, std::string_view) { ++*calls; },
                   LogLevel::Debug);
  set_log_callback(nullptr);
  const int stopped_at = calls->load();
  std::this_thread::sleep_for(20ms);
  EXPECT_EQ(calls->load(), stopped_at) << "called after set_log_callback(nullptr) returned";
}

// A replaced callback is destroyed after the binding's lock is let go, so what it captured may
// set the callback as it is destroyed (a logger whose destructor stops the lines). It waited
// for its own thread before.
TEST(LogDeathTest, AReplacedCallbackWhoseCaptureSetsTheCallbackDoesNotHang) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        alarm(10);  // a hang ends the child with SIGALRM, which fails the test
        struct StopsOnDestruction {
          StopsOnDestruction() = default;
          StopsOnDestruction(const StopsOnDestruction&) = delete;
          StopsOnDestruction& operator=(const StopsOnDestruction&) = delete;
          ~StopsOnDestruction() { set_log_callback(nullptr); }
        };
        auto owned = std::make_shared<StopsOnDestruction>();
        set_log_callback([owned](LogLevel, std::string_view, std::string_view) {});
        owned.reset();              // the callback holds the last reference
        set_log_callback(nullptr);  // destroys it: its capture sets the callback
        std::exit(0);
      },
      testing::ExitedWithCode(0), "");
}

// At exit the binding takes the callback back from the library before destroying it, while
// threads still log.
TEST(LogDeathTest, ExitingWhileThreadsLogIsClean) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(
      {
        static const Gate* gate = new Gate(Gate::create(kCanary50));  // lives until the end
        static std::atomic<bool> used{false};
        set_log_callback(
            [owned = std::string(64, 'x')](LogLevel, std::string_view, std::string_view) {
              used = owned.size() == 64;
            },
            LogLevel::Debug);
        for (int w = 0; w < 2; ++w) {
          std::thread([w] {
            for (int n = 0;; ++n) (void)gate->route("user-" + std::to_string(n * 2 + w));
          }).detach();
        }
        while (!used) std::this_thread::yield();
        std::exit(0);
      },
      testing::ExitedWithCode(0), "");
}

}  // namespace
