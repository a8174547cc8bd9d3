// A config document's state store, gate name and fleet-wide judging, read before a gate is
// made (store_location, document_gate_name, document_fleet_judging), an SLO document checked
// against a config document (document_check_slo), and a gate's fleet-wide judging
// (Gate::fleet_judging).
#include "promotion_gates.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <iterator>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <unistd.h>

namespace {

using promotion_gates::document_check_slo;
using promotion_gates::document_fleet_judging;
using promotion_gates::document_gate_name;
using promotion_gates::Error;
using promotion_gates::Gate;
using promotion_gates::store_location;

/// A fresh directory under the system's temporary one, removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const auto* test = testing::UnitTest::GetInstance()->current_test_info();
    path_ = std::filesystem::temp_directory_path() /
            ("pgate-cpp-" + std::string(test->name()) + "-" + std::to_string(::getpid()));
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

std::string sqlite_config(const std::string& path, const std::string& more = "") {
  return R"({"gate": "checkout", "store": {"sqlite": {"path": ")" + path + "\"" + more + "}}}";
}

TEST(StoreLocation, IsReadFromTheDocumentAloneAndCreatesNothing) {
  const TempDir dir;
  const std::string db = dir.file("checkout.db");
  EXPECT_EQ(store_location(sqlite_config(db)), "sqlite:" + db);
  EXPECT_FALSE(std::filesystem::exists(db)) << "nothing is opened or created";
  EXPECT_EQ(store_location(sqlite_config("gates/checkout.db")), "sqlite:gates/checkout.db")
      << "a relative path as the document writes it";
  EXPECT_EQ(store_location(
                R"({"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/pg/checkout"}}})"),
            "etcd:/pg/checkout");
  EXPECT_EQ(store_location(R"({"gate": "checkout"})"), "") << "no store";
  EXPECT_EQ(store_location(""), "") << "the defaults";
  const std::string deep = "/" + std::string(600, 'd') + "/a.db";  // longer than a first guess
  EXPECT_EQ(store_location(sqlite_config(deep)), "sqlite:" + deep);
}

TEST(StoreLocation, ARefusedDocumentIsRefusedAsGateCreateRefusesIt) {
  try {
    (void)store_location(sqlite_config("a.db", R"(, "sync_interval_ms": 5)"));
    ADD_FAILURE() << "a sync interval of 5 ms was taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_CONFIG) << e.what();
    EXPECT_NE(std::string(e.what()).find("store.sqlite.sync_interval_ms"), std::string::npos)
        << e.what();
  }
  try {
    (void)store_location(R"({"store": {"sqlite": {"pth": "a.db"}}})");
    ADD_FAILURE() << "an unknown field was taken";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_JSON) << e.what();
    EXPECT_NE(std::string(e.what()).find("pth"), std::string::npos) << e.what();
  }
}

TEST(FleetJudging, IsTheStoresSettingAndFalseWithoutAStore) {
  const TempDir dir;
  EXPECT_FALSE(Gate::create(R"({"gate": "checkout"})").fleet_judging());
  EXPECT_TRUE(Gate::create(sqlite_config(dir.file("on.db"))).fleet_judging()) << "the default";
  EXPECT_FALSE(Gate::create(sqlite_config(dir.file("off.db"), R"(, "fleet_judging": false)"))
                   .fleet_judging());
  Gate moved = Gate::create("");
  const Gate keeper = std::move(moved);
  try {
    (void)moved.fleet_judging();
    ADD_FAILURE() << "a moved-from Gate answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.status(), PGATE_STATUS_NULL_POINTER) << e.what();
  }
}

TEST(DocumentReads, AnswerAsTheGateMadeFromTheDocumentAndCreateNothing) {
  const TempDir dir;
  for (const std::string& config :
       {std::string(), std::string(R"({"gate": "search"})"), sqlite_config(dir.file("on.db")),
        sqlite_config(dir.file("off.db"), R"(, "fleet_judging": false)")}) {
    const auto files = [&dir] {
      const std::filesystem::directory_iterator entries(dir.file(""));
      return std::distance(begin(entries), end(entries));
    };
    const auto before = files();
    const std::string name = document_gate_name(config);
    const bool sums = document_fleet_judging(config);
    EXPECT_EQ(files(), before) << "nothing created: " << config;
    const Gate gate = Gate::create(config);
    EXPECT_EQ(name, gate.name()) << config;
    EXPECT_EQ(sums, gate.fleet_judging()) << config;
  }
  EXPECT_EQ(document_gate_name(""), "default");
  EXPECT_FALSE(document_fleet_judging(""));
  const std::string longest(PGATE_NAME_CAPACITY - 1, 'n');
  EXPECT_EQ(document_gate_name(R"({"gate": ")" + longest + "\"}"), longest);
}

TEST(DocumentReads, ARefusedDocumentIsRefusedAsGateCreateRefusesIt) {
  for (const bool fleet : {false, true}) {
    const auto read = [fleet](const std::string& config) {
      return fleet ? std::to_string(document_fleet_judging(config)) : document_gate_name(config);
    };
    try {
      (void)read(R"({"gate": ""})");
      ADD_FAILURE() << "an empty gate name was taken";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_CONFIG) << e.what();
      EXPECT_NE(std::string(e.what()).find(R"(invalid gate = "")"), std::string::npos)
          << e.what();
    }
    try {
      (void)read(R"({"gate": )");
      ADD_FAILURE() << "a malformed document was taken";
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), PGATE_STATUS_INVALID_JSON) << e.what();
      EXPECT_NE(std::string(e.what()).find("invalid JSON config"), std::string::npos)
          << e.what();
    }
  }
}

TEST(DocumentCheckSlo, AcceptsWhatGateCreateAcceptsAndCreatesNothing) {
  const TempDir dir;
  const std::string db = dir.file("checkout.db");
  // A minute's interval fits an hour's window (not the default config's 300 s one).
  const std::string hour = R"({"rollback_window_seconds": 3600, "store": {"sqlite": {"path": ")" +
                           db + "\"}}}";
  const std::string five = R"({"rollback_window_seconds": 5})";
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {hour, R"({"evaluation_interval_ms": 60000})"},
      {five, R"({"evaluation_interval_ms": 500, "min_samples": 20})"},
      {"", R"({"min_samples": 20})"},
      {"", ""},
  };
  for (const auto& [config, slo] : pairs) {
    EXPECT_NO_THROW(document_check_slo(config, slo)) << config << " with " << slo;
  }
  EXPECT_FALSE(std::filesystem::exists(db)) << "nothing is opened or created";
  // The header's example.
  EXPECT_NO_THROW(document_check_slo(R"({"rollback_window_seconds": 3600})",
                                     R"({"evaluation_interval_ms": 60000})"));
  for (const auto& [config, slo] : pairs) {
    EXPECT_NO_THROW((void)Gate::create(config, slo)) << config << " with " << slo;
  }
}

TEST(DocumentCheckSlo, RefusesWhatGateCreateRefusesNamingTheFieldAndValue) {
  const TempDir dir;
  const std::string db = dir.file("checkout.db");
  const std::string hour = R"({"rollback_window_seconds": 3600, "store": {"sqlite": {"path": ")" +
                           db + "\"}}}";
  struct Refused {
    std::string config, slo;
    pgate_status status;
    std::string message;  // how the error's message starts
  };
  const std::vector<Refused> refused = {
      {R"({"rollback_window_seconds": 5})", "", PGATE_STATUS_INVALID_CONFIG,
       "invalid evaluation_interval_ms = 1000: at most a tenth of rollback_window_seconds = 5, "
       "500 ms: "},
      {"", R"({"evaluation_interval_ms": 60000})", PGATE_STATUS_INVALID_CONFIG,
       "invalid evaluation_interval_ms = 60000: at most a tenth of rollback_window_seconds = "
       "300, 30000 ms: "},
      {hour, R"({"min_samples": 1})", PGATE_STATUS_INVALID_CONFIG, "invalid min_samples = 1: "},
      {R"({"rollback_window_seconds": 0})", "", PGATE_STATUS_INVALID_CONFIG,
       "invalid rollback_window_seconds = 0: "},
      {"", R"({"min_sample": 20})", PGATE_STATUS_INVALID_JSON,
       "invalid JSON SLO config: min_sample: unknown field"},
      {"", "\xff", PGATE_STATUS_INVALID_ARGUMENT,
       R"(invalid slo_json = "\xff": SLO config is not valid UTF-8)"},
  };
  for (const Refused& r : refused) {
    std::string message;
    try {
      document_check_slo(r.config, r.slo);
      ADD_FAILURE() << "taken: " << r.config << " with " << r.slo;
      continue;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), r.status) << e.what();
      message = e.what();
      EXPECT_EQ(message.rfind(r.message, 0), 0u) << message;
    }
    try {
      (void)Gate::create(r.config, r.slo);
      ADD_FAILURE() << "Gate::create took " << r.config << " with " << r.slo;
    } catch (const Error& e) {
      EXPECT_EQ(e.status(), r.status) << e.what();
      EXPECT_EQ(e.what(), message) << "refused in other words than Gate::create's";
    }
  }
  // The header's example.
  EXPECT_THROW(document_check_slo(R"({"rollback_window_seconds": 5})", ""), Error);
  EXPECT_FALSE(std::filesystem::exists(db)) << "nothing is opened or created";
}

}  // namespace
