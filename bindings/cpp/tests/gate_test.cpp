// The C++ binding's behaviour: errors, flags, recording, the judge, history, moves.
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

std::string_view header_alone_version();

namespace {

using namespace std::chrono_literals;
using nlohmann::json;
using promotion_gates::Decision;
using promotion_gates::Environment;
using promotion_gates::Error;
using promotion_gates::Gate;
using promotion_gates::Recommendation;
using promotion_gates::Recorded;
using promotion_gates::Rule;

constexpr std::string_view kCanary50 =
    R"({"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["new_api"], "gate": "checkout"})";
constexpr std::string_view kCanary100 = R"({"environment": {"canary": {"traffic_percent": 100}}})";

/// Runs `body`, which must throw Error with `status`, and returns the error's message.
template <class Body>
std::string expect_error(pgate_status status, Body&& body) {
  try {
    body();
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), status) << e.status_name() << ": " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "no Error thrown; expected " << pgate_status_str(status);
  return {};
}

TEST(Gate, TypeRules) {
  static_assert(!std::is_copy_constructible_v<Gate>);
  static_assert(!std::is_copy_assignable_v<Gate>);
  static_assert(std::is_nothrow_move_constructible_v<Gate>);
  static_assert(std::is_nothrow_move_assignable_v<Gate>);
  static_assert(!std::is_default_constructible_v<Gate>);
  static_assert(std::is_base_of_v<std::runtime_error, Error>);
  static_assert(std::is_trivially_copyable_v<Decision>);
}

TEST(Gate, VersionAndTheHeaderAlone) {
  EXPECT_FALSE(Gate::version().empty());
  EXPECT_NE(Gate::version().find('.'), std::string_view::npos);
  EXPECT_EQ(header_alone_version(), Gate::version());
}

TEST(Gate, DefaultsRouteEveryoneToStable) {
  const Gate gate = Gate::create("");
  ASSERT_TRUE(gate);
  const Decision d = gate.route("user-1");
  EXPECT_FALSE(d.is_canary);
  EXPECT_EQ(d.environment, Environment::Production);
  EXPECT_EQ(d.traffic_percent, 0.0);
  EXPECT_EQ(d.threshold, 0u);
  EXPECT_TRUE(gate.features(d).empty());
  EXPECT_NE(gate.config_json().find(R"("environment":"production")"), std::string::npos)
      << gate.config_json();
}

TEST(Gate, RoutesBytesAndEmptyIds) {
  const Gate gate = Gate::create(kCanary50);
  const std::string with_nul("a\0b", 3);
  EXPECT_NE(gate.route(with_nul).bucket, gate.route("a").bucket);
  EXPECT_EQ(gate.route(std::string_view{}), gate.route(""));
  const Decision d = gate.route("user-12345");
  EXPECT_EQ(d.threshold, 5'000'000u);
  EXPECT_EQ(d.is_canary, d.bucket < d.threshold);
  EXPECT_EQ(d.environment, Environment::Canary);
  EXPECT_EQ(d.traffic_percent, 50.0);
}

TEST(Errors, InvalidJsonNamesTheField) {
  std::string message = expect_error(PGATE_STATUS_INVALID_JSON,
                                     [] { (void)Gate::create(R"({"slo_treshold": 0.9})"); });
  EXPECT_NE(message.find("slo_treshold"), std::string::npos) << message;

  message = expect_error(PGATE_STATUS_INVALID_JSON, [] {
    (void)Gate::create("{}", R"({"latency_target": 250})");
  });
  EXPECT_NE(message.find("latency_target"), std::string::npos) << message;

  message = expect_error(PGATE_STATUS_INVALID_JSON, [] { (void)Gate::create("{not json"); });
  EXPECT_NE(message.find("line 1"), std::string::npos) << message;

  try {
    (void)Gate::create("42");
    ADD_FAILURE() << "no Error";
  } catch (const std::runtime_error& e) {  // catchable as the standard base
    EXPECT_STREQ(dynamic_cast<const Error&>(e).status_name(), "PGATE_STATUS_INVALID_JSON");
  }
}

TEST(Errors, InvalidConfigNamesFieldAndValue) {
  std::string message = expect_error(PGATE_STATUS_INVALID_CONFIG,
                                     [] { (void)Gate::create(R"({"slo_threshold": 7})"); });
  EXPECT_NE(message.find("slo_threshold"), std::string::npos) << message;
  EXPECT_NE(message.find('7'), std::string::npos) << message;

  message = expect_error(PGATE_STATUS_INVALID_CONFIG, [] {
    (void)Gate::create("", R"({"max_error_rate": 1.5})");
  });
  EXPECT_NE(message.find("max_error_rate"), std::string::npos) << message;

  message = expect_error(PGATE_STATUS_INVALID_ARGUMENT,
                         [] { (void)Gate::create("{\"gate\": \"\xff\"}"); });
  EXPECT_NE(message.find("UTF-8"), std::string::npos) << message;
}

TEST(Errors, Promotions) {
  const Gate gate = Gate::create("");
  std::string message =
      expect_error(PGATE_STATUS_INVALID_PROMOTION, [&] { gate.promote(Environment::Staging); });
  EXPECT_NE(message.find("canary"), std::string::npos) << message;
  expect_error(PGATE_STATUS_ALREADY_THERE, [&] { gate.promote(Environment::Production); });

  message = expect_error(PGATE_STATUS_INVALID_CONFIG, [&] {
    gate.promote(Environment::Canary, std::numeric_limits<double>::quiet_NaN());
  });
  EXPECT_NE(message.find("environment.canary.traffic_percent"), std::string::npos) << message;
  expect_error(PGATE_STATUS_INVALID_CONFIG, [&] { gate.promote(Environment::Canary, 100.5); });
  message = expect_error(PGATE_STATUS_INVALID_ARGUMENT,
                         [&] { gate.promote(static_cast<Environment>(7)); });
  EXPECT_NE(message.find("invalid environment = 7"), std::string::npos) << message;
  message = expect_error(PGATE_STATUS_INVALID_ARGUMENT, [&] { gate.promote(Environment::Canary); });
  EXPECT_NE(message.find("invalid traffic_percent = none"), std::string::npos) << message;
  EXPECT_EQ(gate.route("u").environment, Environment::Production) << "refusals change nothing";

  gate.promote(Environment::Canary, 1.0);    // a new rollout: not gated
  gate.promote(Environment::Canary, 0.5);    // ramping down: not gated
  message = expect_error(PGATE_STATUS_INSUFFICIENT_DATA,
                         [&] { gate.promote(Environment::Canary, 5.0); });  // ramping up: gated
  EXPECT_NE(message.find("canary samples needed"), std::string::npos) << message;
  expect_error(PGATE_STATUS_INSUFFICIENT_DATA, [&] { gate.promote(Environment::Staging); });
  const Decision d = gate.route("u");
  EXPECT_EQ(d.environment, Environment::Canary);
  EXPECT_EQ(d.traffic_percent, 0.5);
}

// A ramp loop's look, then a rollback before its promotion: promote_from refuses it rather
// than start a new rollout of the build rolled back; from the current stage it promotes.
TEST(Errors, PromoteFromAStageTheGateLeft) {
  const Gate gate = Gate::create(R"({"environment": {"canary": {"traffic_percent": 10}}})");
  const std::uint64_t looked = gate.state().stage;
  gate.rollback("the judge, another thread or another process");
  std::string message = expect_error(PGATE_STATUS_STAGE_CHANGED, [&] {
    gate.promote_from(looked, Environment::Canary, 25.0);
  });
  EXPECT_NE(message.find("the gate left stage " + std::to_string(looked) + ": "),
            std::string::npos)
      << message;
  EXPECT_NE(message.find("nothing was promoted"), std::string::npos) << message;
  const auto now = gate.state();
  EXPECT_EQ(now.environment, Environment::Production) << "no new rollout";
  EXPECT_NE(now.stage, looked);

  gate.promote_from(now.stage, Environment::Canary, 25.0);
  const Decision d = gate.route("u");
  EXPECT_EQ(d.environment, Environment::Canary);
  EXPECT_EQ(d.traffic_percent, 25.0);
  EXPECT_NE(d.stage, now.stage);
  gate.promote_from(d.stage, Environment::Canary, 5.0);  // a decision's stage; down: not gated
  expect_error(PGATE_STATUS_STAGE_CHANGED,
               [&] { gate.promote_from(d.stage, Environment::Canary, 1.0); });

  // From the stage it is in, its other refusals are promote()'s (a bad argument is refused first).
  const std::uint64_t stage = gate.state().stage;
  expect_error(PGATE_STATUS_INSUFFICIENT_DATA,
               [&] { gate.promote_from(stage, Environment::Canary, 50.0); });
  message = expect_error(PGATE_STATUS_INVALID_CONFIG, [&] {
    gate.promote_from(stage, Environment::Canary, std::numeric_limits<double>::quiet_NaN());
  });
  EXPECT_NE(message.find("environment.canary.traffic_percent"), std::string::npos) << message;
  message = expect_error(PGATE_STATUS_INVALID_ARGUMENT,
                         [&] { gate.promote_from(stage, Environment::Canary); });
  EXPECT_NE(message.find("invalid traffic_percent = none"), std::string::npos) << message;
  EXPECT_EQ(gate.state().stage, stage) << "refusals change nothing";
}

TEST(Errors, FlagsAndRollback) {
  const Gate gate = Gate::create("");
  for (std::string_view bad : {"", "has space", "tab\there"}) {
    const std::string message =
        expect_error(PGATE_STATUS_INVALID_FLAG, [&] { gate.enable_feature(bad); });
    EXPECT_FALSE(message.empty());
  }
  expect_error(PGATE_STATUS_INVALID_FLAG, [&] { gate.enable_feature(std::string(129, 'x')); });
  expect_error(PGATE_STATUS_INVALID_ARGUMENT, [&] { gate.enable_feature("\xff\xfe"); });
  expect_error(PGATE_STATUS_FLAG_NOT_ENABLED, [&] { gate.disable_feature("never_on"); });

  std::string message =
      expect_error(PGATE_STATUS_ROLLBACK_REFUSED, [&] { gate.rollback("bad deploy"); });
  EXPECT_NE(message.find("roduction"), std::string::npos) << message;
  gate.promote(Environment::Canary, 10.0);
  expect_error(PGATE_STATUS_ROLLBACK_REFUSED, [&] { gate.rollback(""); });
  gate.rollback("bad deploy");
  EXPECT_EQ(gate.route("u").environment, Environment::Production);
}

// Refused with the status enable_feature refuses the name with: INVALID_FLAG, or
// INVALID_ARGUMENT for bytes that are not UTF-8 (is_feature_enabled threw INVALID_ARGUMENT
// for every name).
TEST(Features, ANameNoFlagCanHaveIsNamedInTheError) {
  const Gate gate = Gate::create("");
  const std::string why =
      ": not a flag name (1 to 128 bytes of UTF-8, no whitespace, control, format or invisible characters)";
  const std::string long_name =
      std::string(159, 'n') + "\xC3\xA9" + std::string(40, 'n');  // é spans bytes 160-161
  constexpr pgate_status kFlag = PGATE_STATUS_INVALID_FLAG;
  constexpr pgate_status kNotUtf8 = PGATE_STATUS_INVALID_ARGUMENT;
  for (const auto& [name, shown, status] :
       std::vector<std::tuple<std::string, std::string, pgate_status>>{
           {"a b", R"("a b")", kFlag},
           {"", R"("")", kFlag},
           {"tab\there\x01", R"("tab\there\u{1}")", kFlag},
           // Bytes that are not UTF-8 escaped, so that the message is UTF-8; é as it is.
           {"bad\xFF", R"("bad\xff")", kNotUtf8},
           {"ab\xC3", R"("ab\xc3")", kNotUtf8},
           {"caf\xC3\xA9 x", "\"caf\xC3\xA9 x\"", kFlag},
           // Characters drawn as nothing, which the library refuses for them: U+2800, U+FE0F.
           {"beta\xE2\xA0\x80\xEF\xB8\x8F", R"("beta\u{2800}\u{fe0f}")", kFlag},
           {long_name, "\"" + std::string(159, 'n') + "\"...(201 bytes)", kFlag},
       }) {
    EXPECT_EQ(expect_error(status, [&] { (void)gate.is_feature_enabled(name); }),
              "invalid name = " + shown + why);
    expect_error(status, [&] { gate.enable_feature(name); });
  }
}

// The library writes enable_feature's refusal; the binding writes is_feature_enabled's (the C
// call has no error object). Both show the name the same way: Rust's {:?} (\u{1b}, \u{a0},
// \0), and the characters drawn as nothing escaped too (U+2800 and the Hangul fillers, which
// {:?} shows as they are: tests/vectors/quoted.tsv), bytes that are not UTF-8 as \xNN.
TEST(Features, ANameIsShownAsTheLibraryShowsIt) {
  const Gate gate = Gate::create("");
  const std::string why =
      ": not a flag name (1 to 128 bytes of UTF-8, no whitespace, control, format or invisible characters)";
  for (const std::string& name : std::vector<std::string>{
           "a\x1b" "b",                // ESC
           "a\x01",                    // a control character below \t
           "a\x7f" "b",                // DEL
           std::string("a\0b", 3),     // NUL
           "a\n\r\tb",                 // the controls {:?} writes with a letter
           "a\xC2\x85" "b",            // U+0085, a C1 control
           "a\xC2\xA0" "b",            // U+00A0, a no-break space
           // U+00AD (refused here for the space), U+0080, U+009F; a quote, a backslash and an
           // apostrophe (not escaped in a string); U+00A1 and U+00FF as they are.
           "a\xC2\xAD\"\\' \xC2\x80\xC2\x9F\xC2\xA1\xC3\xBF" "b",
           "caf\xC3\xA9 x",
           "beta\xE2\xA0\x80",          // U+2800, drawn as nothing: escaped by both
           "beta\xE3\x85\xA4",          // U+3164 HANGUL FILLER
           "",
           "bad\xFF\xFE",              // not UTF-8: the library refuses it before the flag rules
           "ab\xC3 x",
       }) {
    std::string library;
    pgate_status status = PGATE_STATUS_OK;
    try {
      gate.enable_feature(name);
      ADD_FAILURE() << "enable_feature took " << name;
    } catch (const Error& e) {
      library = e.what();
      status = e.status();
    }
    // "invalid feature flag name <shown>: <why>" (a flag rule) or "invalid name = <shown>:
    // <why>" (not UTF-8); neither reason holds ": ".
    std::string shown;
    for (std::string_view prefix : {"invalid feature flag name ", "invalid name = "}) {
      if (library.compare(0, prefix.size(), prefix) == 0) {
        shown = library.substr(prefix.size(), library.rfind(": ") - prefix.size());
      }
    }
    ASSERT_FALSE(shown.empty()) << library;
    EXPECT_EQ(expect_error(status, [&] { (void)gate.is_feature_enabled(name); }),
              "invalid name = " + shown + why)
        << "the library's: " << library;
  }
}

TEST(Features, ViewOfTheDecisionsFlags) {
  Gate gate = Gate::create(
      R"({"environment": "staging", "feature_flags": ["new_api", "fast_path"]})");
  EXPECT_TRUE(gate.is_feature_enabled("new_api"));
  EXPECT_FALSE(gate.is_feature_enabled("nope"));
  const Decision d = gate.route("user-1");
  ASSERT_TRUE(d.is_canary);
  const auto names = gate.features(d);
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "fast_path");  // byte order
  EXPECT_EQ(names[1], "new_api");
  EXPECT_EQ(names[2], "");
  EXPECT_TRUE(names.contains("new_api"));
  EXPECT_FALSE(names.contains("new"));
  std::vector<std::string_view> seen(names.begin(), names.end());
  EXPECT_EQ(seen, (std::vector<std::string_view>{"fast_path", "new_api"}));
  seen.clear();
  for (std::string_view name : gate.features(d)) seen.push_back(name);
  EXPECT_EQ(seen.size(), 2u);

  // Names stay valid as long as the gate lives: after the flag is turned off, after a config
  // swap, after the Gate is moved.
  gate.disable_feature("new_api");
  gate.enable_feature("dark_mode");
  EXPECT_FALSE(gate.is_feature_enabled("new_api"));
  const Decision after = gate.route("user-1");
  EXPECT_EQ(gate.features(after).size(), 2u);
  EXPECT_TRUE(gate.features(after).contains("dark_mode"));
  EXPECT_FALSE(gate.features(after).contains("new_api"));
  gate.swap_config(R"({"environment": "staging"})");
  const Gate moved = std::move(gate);
  EXPECT_EQ(names[1], "new_api");
  EXPECT_EQ(seen[0], "fast_path");
  EXPECT_TRUE(moved.features(moved.route("user-1")).empty());
}

// The gate keeps a replaced flag set for at least 60 writes, then forgets it: a view read
// after that throws UNKNOWN_FLAG_SET, never answers "not there", and the names it gave stay.
TEST(Features, AViewOfAForgottenSetThrowsInsteadOfAnsweringEmpty) {
  const Gate gate = Gate::create(R"({"environment": "staging", "feature_flags": ["first"]})");
  const Decision d = gate.route("u");
  const auto names = gate.features(d);
  const std::string_view first = names[0];
  ASSERT_EQ(first, "first");
  int writes = 0;
  for (; writes < 1000; ++writes) {
    gate.enable_feature("f" + std::to_string(writes));
    // Read two other sets, as a host routing requests does, so this thread forgets it.
    (void)gate.features(gate.route("u")).size();
    (void)gate.features(gate.route("v")).size();
    try {
      if (!names.contains("first")) {
        ADD_FAILURE() << "contains() answered false after " << writes << " writes";
        break;
      }
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), PGATE_STATUS_UNKNOWN_FLAG_SET) << e.what();
      EXPECT_NE(std::string(e.what()).find(std::to_string(d.flag_set)), std::string::npos)
          << e.what();
      break;
    }
  }
  EXPECT_GE(writes, 60) << "the set is kept for at least 60 writes";
  EXPECT_LT(writes, 1000) << "the set was never forgotten";
  // The view words it as features() does, and as every binding does.
  const std::string forgotten = "invalid flag_set = " + std::to_string(d.flag_set) +
                                ": not a flag set of this gate (another gate's decision, or "
                                "one replaced more than 60 writes ago)";
  EXPECT_EQ(expect_error(PGATE_STATUS_UNKNOWN_FLAG_SET, [&] { (void)names[0]; }), forgotten);
  EXPECT_EQ(expect_error(PGATE_STATUS_UNKNOWN_FLAG_SET, [&] { (void)*names.begin(); }),
            forgotten);
  EXPECT_EQ(expect_error(PGATE_STATUS_UNKNOWN_FLAG_SET, [&] { (void)names.contains("first"); }),
            forgotten);
  EXPECT_EQ(expect_error(PGATE_STATUS_UNKNOWN_FLAG_SET, [&] { (void)gate.features(d); }),
            forgotten);
  EXPECT_EQ(names[1], "") << "past the end reads nothing";
  EXPECT_EQ(first, "first") << "a name read stays valid while the gate lives";
}

// A decision whose set the gate never gave out (another gate's, or a forged number) is
// refused with the field and the value, as the later read of a forgotten set is.
TEST(Features, AnotherGatesDecisionIsRefusedNamingTheFlagSet) {
  const Gate gate = Gate::create(R"({"environment": "staging", "feature_flags": ["a"]})");
  const Gate other = Gate::create(R"({"environment": "staging", "feature_flags": ["b"]})");
  Decision forged = gate.route("u");
  forged.flag_set ^= 0x80000000u;  // gates number their sets from random starts, one by one
  for (const Decision& d : {forged, other.route("u")}) {
    const std::string message =
        expect_error(PGATE_STATUS_UNKNOWN_FLAG_SET, [&] { (void)gate.features(d); });
    EXPECT_EQ(message, "invalid flag_set = " + std::to_string(d.flag_set) +
                           ": not a flag set of this gate (another gate's decision, or one "
                           "replaced more than 60 writes ago)");
  }
  EXPECT_TRUE(gate.features(gate.route("u")).contains("a")) << "the gate is unchanged";
}

TEST(Features, CanaryRequestsSeeReleaseFlagsStableOnesDoNot) {
  const Gate gate = Gate::create(kCanary50);
  int canary = 0;
  int stable = 0;
  for (int i = 0; i < 200; ++i) {
    const Decision d = gate.route("user-" + std::to_string(i));
    const auto names = gate.features(d);
    if (d.is_canary) {
      ++canary;
      ASSERT_EQ(names.size(), 1u);
      EXPECT_EQ(*names.begin(), "new_api");
    } else {
      ++stable;
      EXPECT_TRUE(names.empty());
      EXPECT_EQ(names.begin(), names.end());
    }
  }
  EXPECT_GT(canary, 50);
  EXPECT_GT(stable, 50);
}

TEST(Record, AClientGoneIsASlowSuccessAfterTheLatencyTargetElseNothing) {
  const Gate gate = Gate::create(kCanary50);
  const Decision d = gate.route("user-1");
  EXPECT_FALSE(gate.record_abandoned(d, 100ms));  // before the default 500 ms target
  EXPECT_TRUE(gate.record_abandoned(d, 2s));
  const auto health = gate.read_health();
  EXPECT_EQ(health.canary_requests + health.production_requests, 1u);
  EXPECT_EQ(health.canary_error_rate + health.production_error_rate, 0.0);
  expect_error(PGATE_STATUS_INVALID_ARGUMENT, [&] { (void)gate.record_abandoned(d, -1ms); });
}

TEST(Record, CountedLateAndForeign) {
  const Gate gate = Gate::create(kCanary50);
  const Decision before = gate.route("user-1");
  EXPECT_EQ(gate.record(before, true, 1500us), Recorded::Counted);
  EXPECT_EQ(gate.record_by_id("user-2", false, 3ms), Recorded::Counted);

  gate.promote(Environment::Canary, 10.0);  // ramping down starts a new stage
  const Decision after = gate.route("user-1");
  EXPECT_GT(after.stage, before.stage);
  EXPECT_EQ(after.traffic_percent, 10.0);
  EXPECT_EQ(gate.record(after, true, 2ms), Recorded::Counted);
  // The old stage has ended on this thread: its outcome must not pollute the new one.
  EXPECT_EQ(gate.record(before, true, 2ms), Recorded::Late);

  Decision forged = after;
  forged.stage += 1000;
  forged.environment = static_cast<Environment>(42);  // copied as it is: the library reads no enum
  EXPECT_EQ(gate.record(forged, true, 1ms), Recorded::Foreign);
}

/// One line of tests/vectors/latency.tsv: KIND (int or float), NS, EXPECT (the nanoseconds
/// recorded, or the exact error message).
struct LatencyVector {
  std::string kind, ns, expect;
  bool recorded() const { return expect.find_first_not_of("0123456789") == std::string::npos; }
};

std::vector<LatencyVector> latency_vectors() {
  std::ifstream file(PGATE_LATENCY_VECTORS);
  EXPECT_TRUE(file.good()) << PGATE_LATENCY_VECTORS;
  std::vector<LatencyVector> cases;
  for (std::string line; std::getline(file, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t a = line.find('\t');
    const std::size_t b = line.find('\t', a + 1);
    EXPECT_NE(b, std::string::npos) << line;
    cases.push_back({line.substr(0, a), line.substr(a + 1, b - a - 1), line.substr(b + 1)});
  }
  EXPECT_FALSE(cases.empty());
  return cases;
}

/// ": " and the rule after the value, as the shared vectors write it.
std::string latency_rule() {
  for (const LatencyVector& c : latency_vectors()) {
    if (!c.recorded()) return c.expect.substr(c.expect.find(" ns: ") + 3);
  }
  return "latency.tsv holds no refusal";
}

TEST(Record, TheSharedLatencyVectors) {
  // tests/vectors/latency.tsv, which Go, Python and Lua read too.
  const Gate gate = Gate::create(kCanary50);
  const Decision d = gate.route("user-1");
  for (const LatencyVector& c : latency_vectors()) {
    const auto check = [&](auto latency) {
      if (c.recorded()) {
        EXPECT_EQ(promotion_gates::detail::nanos(latency), std::stoull(c.expect)) << c.ns;
        EXPECT_EQ(gate.record(d, true, latency), Recorded::Counted) << c.ns;
      } else {
        EXPECT_EQ(expect_error(PGATE_STATUS_INVALID_ARGUMENT,
                               [&] { gate.record(d, true, latency); }),
                  c.expect);
      }
    };
    if (c.kind == "int") {
      check(std::chrono::nanoseconds(std::stoll(c.ns)));
    } else {
      ASSERT_EQ(c.kind, "float") << c.ns;
      check(std::chrono::duration<double, std::nano>(std::stod(c.ns)));
    }
  }
}

TEST(Record, ABadLatencyIsTheOneLatencyError) {
  // The status and words every binding gives a bad latency (the shared vectors' rule).
  const Gate gate = Gate::create(kCanary50);
  const Decision d = gate.route("user-1");
  const std::string rule = latency_rule();
  const auto expect_refused = [&](auto latency, const std::string& shown) {
    for (int by_id = 0; by_id < 2; ++by_id) {
      const std::string message = expect_error(PGATE_STATUS_INVALID_ARGUMENT, [&] {
        if (by_id == 1) {
          gate.record_by_id("user-1", true, latency);
        } else {
          gate.record(d, true, latency);
        }
      });
      EXPECT_EQ(message, "invalid latency = " + shown + rule);
    }
  };
  using seconds_f = std::chrono::duration<double>;
  constexpr double nan = std::numeric_limits<double>::quiet_NaN();
  constexpr double inf = std::numeric_limits<double>::infinity();
  expect_refused(-1ns, "-1 ns");
  expect_refused(-5ms, "-5 ms");
  expect_refused(std::chrono::nanoseconds::min(), "-9223372036854775808 ns");
  expect_refused(seconds_f(-1.0), "-1 s");
  expect_refused(seconds_f(nan), "nan s");
  expect_refused(seconds_f(inf), "inf s");
  expect_refused(seconds_f(-inf), "-inf s");
  expect_refused(seconds_f(1e300), "1e+300 s");
  expect_refused(seconds_f(18446744074.0), "18446744074 s");  // just past 2^64 ns
  // The value refused, not a rounding of it (6 digits showed 2^64 ns as 1.84467e+19, which
  // reads as a value below 2^64, and -1.0000001 s as -1 s).
  using nanoseconds_f = std::chrono::duration<double, std::nano>;
  expect_refused(nanoseconds_f(18446744073709551616.0), "1.8446744073709552e+19 ns");
  expect_refused(nanoseconds_f(-1234567.5), "-1234567.5 ns");
  expect_refused(seconds_f(-1.0000001), "-1.0000001 s");
  expect_refused(nanoseconds_f(-(0.1 + 0.2)), "-0.30000000000000004 ns");
  expect_refused(nanoseconds_f(-nan), "nan ns");  // not "-nan"
  expect_refused(std::chrono::hours(6000000), "6000000 h");   // 2.16e22 ns: would overflow
  const promotion_gates::Health h = gate.health();
  EXPECT_EQ(h.canary_requests + h.production_requests, 0u) << "a refused latency is not recorded";

  EXPECT_EQ(gate.record(d, true, 0ns), Recorded::Counted);
  EXPECT_EQ(gate.record(d, true, std::chrono::nanoseconds::max()), Recorded::Counted);
  EXPECT_EQ(gate.record(d, true, seconds_f(0.012)), Recorded::Counted);
  EXPECT_EQ(gate.record(d, true, std::chrono::duration<std::uint64_t, std::nano>(
                                     std::numeric_limits<std::uint64_t>::max())),
            Recorded::Counted);
}

TEST(Judge, HealthAndEvidence) {
  const Gate gate = Gate::create(kCanary100);
  for (int i = 0; i < 20; ++i) {
    const Decision d = gate.route("user-" + std::to_string(i));
    ASSERT_TRUE(d.is_canary);
    (void)gate.record(d, true, std::chrono::milliseconds(10 + i));
  }
  const auto h = gate.health();
  EXPECT_EQ(h.environment, Environment::Canary);
  EXPECT_EQ(h.canary_requests, 20u);
  EXPECT_EQ(h.production_requests, 0u);
  EXPECT_EQ(h.traffic_percent, 100.0);
  EXPECT_EQ(h.canary_error_rate, 0.0);
  EXPECT_EQ(h.canary_compliance, 1.0);
  EXPECT_GE(h.canary_p99, 25ms);
  EXPECT_LE(h.canary_p99, 35ms);
  EXPECT_FALSE(h.sufficient_data);  // min_samples is 100
  EXPECT_EQ(h.recommendation, Recommendation::Monitor);
  EXPECT_EQ(h.rules_fired, 0u);
  EXPECT_GE(h.health_score, 0.0);
  EXPECT_LE(h.health_score, 1.0);
  EXPECT_NE(h.evidence.find("canary 20 req"), std::string::npos) << h.evidence;
  EXPECT_NE(h.evidence.find("no rule fired"), std::string::npos) << h.evidence;
  EXPECT_EQ(h.evidence.find('\0'), std::string::npos);
  EXPECT_FALSE(gate.check_slo()) << "too little data";
}

TEST(Judge, EnoughHealthyDataPassesTheGate) {
  const Gate gate = Gate::create(kCanary100, R"({"warm_up_ms": 0})");
  for (int i = 0; i < 150; ++i) {
    (void)gate.record(gate.route("user-" + std::to_string(i)), true, 5ms);
  }
  EXPECT_TRUE(gate.check_slo());
  const auto h = gate.health();
  EXPECT_TRUE(h.sufficient_data);
  EXPECT_EQ(h.recommendation, Recommendation::Healthy);
  gate.promote(Environment::Staging);
  EXPECT_EQ(gate.route("x").environment, Environment::Staging);
}

TEST(Judge, ACanaryFailingEveryRequestRollsItselfBack) {
  const Gate gate = Gate::create(R"({"environment": {"canary": {"traffic_percent": 100}},
                                     "feature_flags": ["risky"]})");
  int failures = 0;
  for (; failures < 100; ++failures) {
    const Decision d = gate.route("user-" + std::to_string(failures));
    if (d.environment != Environment::Canary) break;
    (void)gate.record(d, false, 1ms);
  }
  EXPECT_LT(failures, 20) << "the judge should act on overwhelming evidence";
  const Decision d = gate.route("user-x");
  EXPECT_EQ(d.environment, Environment::Production);
  EXPECT_FALSE(d.is_canary);
  EXPECT_FALSE(gate.is_feature_enabled("risky")) << "a rollback turns release flags off";

  const auto history = json::parse(gate.rollback_history_json());
  ASSERT_TRUE(history.is_array());
  ASSERT_EQ(history.size(), 1u) << history.dump();
  const json& event = history[0];
  EXPECT_EQ(event.at("trigger"), "automatic");
  EXPECT_EQ(event.at("feature"), "Canary{100}");
  EXPECT_NE(event.at("reason").get<std::string>().find("overwhelming_errors"), std::string::npos)
      << event.dump();
  EXPECT_EQ(event.at("environment"), json::parse(R"({"canary": {"traffic_percent": 100.0}})"));
  EXPECT_GT(event.at("timestamp_ms").get<std::uint64_t>(), 1'600'000'000'000u);

  const auto h = gate.health();
  EXPECT_EQ(h.environment, Environment::Production);
  EXPECT_EQ(h.recommendation == Recommendation::Rollback, h.rules_fired != 0);
}

TEST(Judge, RuleBits) {
  promotion_gates::Health h;
  h.rules_fired = PGATE_RULE_OVERWHELMING_ERRORS | PGATE_RULE_P99_BUDGET;
  EXPECT_TRUE(h.fired(Rule::OverwhelmingErrors));
  EXPECT_TRUE(h.fired(Rule::P99Budget));
  EXPECT_FALSE(h.fired(Rule::SloCompliance));
}

TEST(History, ManualRollbackAndDisabledFlags) {
  const Gate gate = Gate::create(R"({"max_rollback_history": 2})");
  EXPECT_EQ(gate.rollback_history_json(), "[]");
  gate.enable_feature("dark_mode");
  gate.disable_feature("dark_mode");
  gate.promote(Environment::Canary, 30.0);
  const std::string long_reason(600, 'r');  // longer than the first read's buffer
  gate.rollback(long_reason);
  auto history = json::parse(gate.rollback_history_json());
  ASSERT_EQ(history.size(), 2u) << history.dump();
  EXPECT_EQ(history[0].at("feature"), "dark_mode");
  EXPECT_EQ(history[0].at("trigger"), "flag_disabled");
  EXPECT_EQ(history[0].at("environment"), "production");
  EXPECT_EQ(history[1].at("feature"), "Canary{30}");
  EXPECT_EQ(history[1].at("reason"), long_reason);
  EXPECT_EQ(history[1].at("trigger"), "manual");
  EXPECT_LE(history[0].at("timestamp_ms"), history[1].at("timestamp_ms"));

  gate.promote(Environment::Canary, 1.0);
  gate.rollback("third");  // the bound is 2: the oldest goes
  history = json::parse(gate.rollback_history_json());
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].at("reason"), "third");
}

TEST(Config, ReadAndSwap) {
  const Gate gate = Gate::create(kCanary50);
  const json config = json::parse(gate.config_json());
  EXPECT_EQ(config.at("gate"), "checkout");
  EXPECT_EQ(config.at("feature_flags"), json::array({"new_api"}));
  EXPECT_EQ(config.at("environment").at("canary").at("traffic_percent"), 50.0);

  json next = config;
  next["environment"]["canary"]["traffic_percent"] = 30.0;
  gate.swap_config(next.dump());
  EXPECT_EQ(gate.route("u").traffic_percent, 30.0);
  EXPECT_EQ(json::parse(gate.config_json()), next);

  std::string message = expect_error(PGATE_STATUS_INVALID_CONFIG,
                                     [&] { gate.swap_config(R"({"slo_threshold": 7})"); });
  EXPECT_NE(message.find("slo_threshold"), std::string::npos) << message;
  expect_error(PGATE_STATUS_INVALID_JSON, [&] { gate.swap_config("{"); });
  expect_error(PGATE_STATUS_INVALID_JSON, [&] { gate.swap_config(""); });
  EXPECT_EQ(json::parse(gate.config_json()), next) << "a refused swap changes nothing";
}

// A hot reload's read: the change count first, then the config, with the flag wide_layout on.
std::pair<std::uint64_t, std::string> read_to_edit(const Gate& gate) {
  const std::uint64_t seen = gate.change_count();
  json next = json::parse(gate.config_json());
  next["feature_flags"].push_back("wide_layout");
  return {seen, next.dump()};
}

// swap_config_from(read) throws PGATE_STATUS_GATE_CHANGED, naming the count read and the count
// now, and changes nothing.
void expect_refused_as_changed(const Gate& gate, const std::pair<std::uint64_t, std::string>& read) {
  const std::string before = gate.config_json();
  std::string message = expect_error(PGATE_STATUS_GATE_CHANGED,
                                     [&] { gate.swap_config_from(read.first, read.second); });
  const std::uint64_t now = gate.change_count();
  EXPECT_GT(now, read.first);
  EXPECT_EQ(message.rfind("the gate changed since change " + std::to_string(read.first) +
                              " (now " + std::to_string(now) + ": ",
                          0),
            0u)
      << message;
  EXPECT_NE(message.find("read its config again"), std::string::npos) << message;
  EXPECT_EQ(gate.config_json(), before) << "a refused swap changes nothing";
  EXPECT_FALSE(gate.is_feature_enabled("wide_layout"));
}

// A hot reload reads the change count, then the config, and edits it; a rollback comes before
// its swap: swap_config_from refuses it rather than put the rolled-back canary back; from the
// current count it swaps.
TEST(Config, SwapFromACountBeforeARollback) {
  const Gate gate = Gate::create(R"({"environment": {"canary": {"traffic_percent": 10}}})");
  const auto read = read_to_edit(gate);
  gate.rollback("the judge, another thread or another process");
  expect_refused_as_changed(gate, read);
  EXPECT_EQ(gate.state().environment, Environment::Production) << "the rollback stays";

  const auto again = read_to_edit(gate);
  gate.swap_config_from(again.first, again.second);
  EXPECT_TRUE(gate.is_feature_enabled("wide_layout"));
  EXPECT_EQ(gate.state().environment, Environment::Production);
  gate.swap_config_from(gate.change_count(), gate.config_json().c_str());  // const char*

  // From the count it is at, its other refusals are swap_config()'s.
  const std::uint64_t seen = gate.change_count();
  const std::string swapped = gate.config_json();
  std::string message = expect_error(PGATE_STATUS_INVALID_CONFIG, [&] {
    gate.swap_config_from(seen, R"({"slo_threshold": 7})");
  });
  EXPECT_NE(message.find("slo_threshold"), std::string::npos) << message;
  expect_error(PGATE_STATUS_INVALID_JSON, [&] { gate.swap_config_from(seen, "{"); });
  expect_error(PGATE_STATUS_INVALID_JSON, [&] { gate.swap_config_from(seen, ""); });
  EXPECT_EQ(gate.change_count(), seen);
  EXPECT_EQ(gate.config_json(), swapped) << "refusals change nothing";
}

// A kill switch begins no stage (in Canary, where a flag turned on begins one), and a config
// read before it does not turn the flag on again.
TEST(Config, SwapFromACountBeforeAKillSwitch) {
  const Gate gate = Gate::create(
      R"({"environment": {"canary": {"traffic_percent": 10}}, "feature_flags": ["dark_mode"]})");
  const auto read = read_to_edit(gate);
  const std::uint64_t stage = gate.state().stage;
  gate.disable_feature("dark_mode");
  EXPECT_EQ(gate.state().stage, stage);
  expect_refused_as_changed(gate, read);
  EXPECT_FALSE(gate.is_feature_enabled("dark_mode")) << "the flag stays off";
  try {
    gate.swap_config_from(read.first, read.second);
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_STREQ(e.status_name(), "PGATE_STATUS_GATE_CHANGED");
  }
}

TEST(Move, AMovedFromGateThrowsAClearError) {
  Gate a = Gate::create(kCanary50);
  const Decision d = a.route("user-1");
  const auto names = a.features(d);
  Gate b = std::move(a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): the point of the test
  EXPECT_TRUE(b);
  EXPECT_EQ(a.native_handle(), nullptr);
  EXPECT_EQ(b.route("user-1"), d);
  EXPECT_EQ(names.size(), b.features(d).size()) << "views survive the move";

  const std::string message = expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.route("u"); });
  EXPECT_NE(message.find("moved from"), std::string::npos) << message;
  EXPECT_NE(message.find("route"), std::string::npos) << message;
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.record(d, true, 1ms); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.record_by_id("u", true, 1ms); });
  // The moved-from Gate is the error, whatever else is wrong with the call.
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.record(d, true, -1ms); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.record_by_id("u", true, -1ms); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.record_abandoned(d, -1ms); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.features(d); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.health(); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.check_slo(); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.promote(Environment::Staging); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.promote_from(d.stage, Environment::Staging); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.rollback("x"); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.enable_feature("x"); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.disable_feature("x"); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.is_feature_enabled("x"); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.config_json(); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.swap_config("{}"); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { a.swap_config_from(0, "{}"); });
  expect_error(PGATE_STATUS_NULL_POINTER, [&] { (void)a.rollback_history_json(); });

  a = std::move(b);  // a moved-from Gate can be assigned again
  EXPECT_TRUE(a);
  EXPECT_FALSE(b);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(a.route("user-1"), d);
  Gate c = Gate::create("");
  c = std::move(a);  // frees c's own gate first
  EXPECT_EQ(c.route("user-1"), d);
}

TEST(Names, EnvironmentsHaveNames) {
  EXPECT_EQ(promotion_gates::to_string(Environment::Staging), "staging");
  EXPECT_EQ(promotion_gates::to_string(Environment::Production), "production");
  EXPECT_EQ(promotion_gates::to_string(static_cast<Environment>(9)), "unknown");
}

}  // namespace
