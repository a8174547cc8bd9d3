// promotion_gates.hpp: the C++17 binding of promotion-gates, header-only, over the C ABI in
// promotion_gates.h (prefix pgate_).
//
// A Gate routes each request deterministically to the new (canary) or the stable version,
// records how the request went, and judges the canary: it rolls a failing canary back by itself
// and refuses a promotion the data does not support.
//
//     auto gate = promotion_gates::Gate::create(R"({"environment": {"canary": {"traffic_percent": 5}}})");
//     auto decision = gate.route("user-42");             // deterministic, lock-free, no allocation
//     forward(decision.is_canary ? new_backend : old_backend);
//     gate.record(decision, ok, std::chrono::milliseconds(12));
//
// Ownership
//   Gate owns one pgate_gate through std::unique_ptr; it is movable, not copyable. Every
//   pgate_error the library hands out is owned by a std::unique_ptr as soon as it arrives and
//   freed on every path, including when building the exception throws.
//
// Thread safety
//   One Gate may be used from many threads at once: every member function is const, because
//   the gate synchronizes itself (as the Rust API, where every method takes &self). Share it
//   by reference or through std::shared_ptr<const Gate>. Moving from, assigning to or
//   destroying a Gate while another thread uses it is not allowed (a data race on the handle,
//   as for any C++ object; a lock inside the Gate would die with it, so none is taken):
//   join the threads first, or share a std::shared_ptr<const Gate> and let the last owner
//   free it. After a move, every call on the moved-from Gate throws instead of touching the
//   gate.
//   Decision and Health are plain values. FeatureNames is a view that reads the gate: read it
//   while handling the request (it throws PGATE_STATUS_UNKNOWN_FLAG_SET once the gate forgot
//   a replaced set); the names it gave stay valid until the gate is destroyed, even across
//   moves of the Gate that owns it.
//
// Errors
//   Failures throw promotion_gates::Error (a std::runtime_error): status() is the library's
//   pgate_status code and what() its message, which names the field and value at fault.
//   The hot calls route(), record(), record_by_id() and features() do not allocate (after a
//   thread's first call of each kind on the gate: its route cache, override cache and recent
//   flag sets are each made on the first call that needs it), but for a record that judges and finds a rule fired
//   (its outcome screened, an evaluation due, or one another thread asked for): it
//   builds the judge's evidence (allocating) and may roll the canary back on the calling
//   thread (see record()); and, with a log callback at LogLevel::Debug or Trace, the route
//   and record_by_id lines (see set_log_callback()). They throw only when the Gate was moved
//   from (PGATE_STATUS_NULL_POINTER, "... moved from"), for a
//   bad latency (PGATE_STATUS_INVALID_ARGUMENT: negative, NaN, infinite or 2^64 ns or more,
//   with the words every binding uses), for a flag set the gate no longer holds (features()
//   and reading its FeatureNames: PGATE_STATUS_UNKNOWN_FLAG_SET), or if the library reports a
//   bug (PGATE_STATUS_PANIC). Check a Gate with `if (gate)` where a moved-from one may turn up.
//
// Logging
//   The library logs nothing until set_log_callback() gives it a callback; see its comment
//   for the threads it runs on and what it must not do.

#ifndef PROMOTION_GATES_HPP
#define PROMOTION_GATES_HPP

#include "promotion_gates.h"

#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <locale>
#include <memory>
#include <mutex>
#include <optional>
#include <ratio>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace promotion_gates {

/// A failed call: the library's status code and its message.
class Error : public std::runtime_error {
 public:
  Error(pgate_status status, const std::string& message)
      : std::runtime_error(message), status_(status) {}

  /// The pgate_status code, e.g. PGATE_STATUS_INVALID_JSON.
  [[nodiscard]] pgate_status status() const noexcept { return status_; }

  /// The code's name, e.g. "PGATE_STATUS_INVALID_JSON" (a static string).
  [[nodiscard]] const char* status_name() const noexcept {
    return pgate_status_str(static_cast<std::uint32_t>(status_));
  }

 private:
  pgate_status status_;
};

/// Where a gate stands.
enum class Environment : std::uint32_t {
  /// traffic_percent % of requests go to the new version.
  Canary = PGATE_ENVIRONMENT_CANARY,
  /// All requests go to the new version, every flag on.
  Staging = PGATE_ENVIRONMENT_STAGING,
  /// All requests go to the stable version.
  Production = PGATE_ENVIRONMENT_PRODUCTION,
};

/// What the judge advises.
enum class Recommendation : std::uint32_t {
  /// Enough data, no rule fired, score >= 0.9, and the canary shown not worse than the stable
  /// version beyond the tolerated limits: promotable.
  Healthy = PGATE_RECOMMENDATION_HEALTHY,
  /// Too little data, a finding that holds (the whole service breaches its SLO), a score
  /// below 0.9, or non-inferiority not yet shown; no rule fired.
  Monitor = PGATE_RECOMMENDATION_MONITOR,
  Rollback = PGATE_RECOMMENDATION_ROLLBACK,  ///< a rule fired (health_score: the score's upper bound < 0.8)
  NoData = PGATE_RECOMMENDATION_NO_DATA,     ///< no canary outcome for no_data_ms: never promotable
};

/// What happened to a recorded outcome.
enum class Recorded : std::uint32_t {
  Counted = PGATE_RECORDED_COUNTED,  ///< counted for its stage and cohort
  Late = PGATE_RECORDED_LATE,        ///< its stage had ended: dropped
  Foreign = PGATE_RECORDED_FOREIGN,  ///< its stage is newer than the gate's: dropped
  Forced = PGATE_RECORDED_FORCED,    ///< its request was forced by an override: in no cohort
};

/// Whether an override forced a decision, and by what.
enum class Forced : std::uint8_t {
  None = PGATE_FORCED_NONE,      ///< routed by its bucket
  Value = PGATE_FORCED_VALUE,    ///< by the forcing value passed to Gate::route_forced
  IdList = PGATE_FORCED_ID_LIST, ///< by the config's overrides.canary_ids or stable_ids
};

/// The judge's rules, as the bits of Health::rules_fired.
enum class Rule : std::uint32_t {
  SloCompliance = PGATE_RULE_SLO_COMPLIANCE,
  ErrorRateMax = PGATE_RULE_ERROR_RATE_MAX,
  ErrorRateVsStable = PGATE_RULE_ERROR_RATE_VS_STABLE,
  OverwhelmingErrors = PGATE_RULE_OVERWHELMING_ERRORS,
  P99VsStable = PGATE_RULE_P99_VS_STABLE,
  P99Budget = PGATE_RULE_P99_BUDGET,
  HealthScore = PGATE_RULE_HEALTH_SCORE,
  ErrorBurst = PGATE_RULE_ERROR_BURST,
  ErrorsOverStage = PGATE_RULE_ERRORS_OVER_STAGE,
  LatencyShift = PGATE_RULE_LATENCY_SHIFT,
  NoData = PGATE_RULE_NO_DATA,
};

/// "canary", "staging", "production" (or "unknown").
[[nodiscard]] constexpr std::string_view to_string(Environment environment) noexcept {
  switch (environment) {
    case Environment::Canary: return "canary";
    case Environment::Staging: return "staging";
    case Environment::Production: return "production";
  }
  return "unknown";
}

/// One routing decision. Pass it back unchanged to Gate::record, so that the outcome counts
/// for the stage and cohort the request was routed in.
struct Decision {
  bool is_canary = false;                            ///< the request goes to the new version
  Environment environment = Environment::Production; ///< the environment at routing time
  double traffic_percent = 0.0;  ///< the canary share at routing time (100 Staging, 0 Production)
  std::uint32_t bucket = 0;      ///< the request's bucket, 0 ..= 9999999
  std::uint32_t threshold = 0;   ///< buckets below this go to the new version
  std::uint64_t stage = 0;       ///< the release stage the request was routed in
  std::uint32_t flag_set = 0;    ///< the flags on for this request (read with Gate::features)
  /// Whether an override forced the request (then is_canary is the version forced to, and
  /// Gate::record counts its outcome in neither cohort: Recorded::Forced).
  Forced forced = Forced::None;

  friend bool operator==(const Decision& a, const Decision& b) noexcept {
    return a.is_canary == b.is_canary && a.environment == b.environment &&
           a.traffic_percent == b.traffic_percent && a.bucket == b.bucket &&
           a.threshold == b.threshold && a.stage == b.stage && a.flag_set == b.flag_set &&
           a.forced == b.forced;
  }
  friend bool operator!=(const Decision& a, const Decision& b) noexcept { return !(a == b); }
};

/// Where a gate stands (Gate::state): read without judging.
struct State {
  Environment environment = Environment::Production;  ///< canary, staging or production
  double traffic_percent = 0.0;  ///< the canary share (100 in Staging, 0 in Production)
  std::uint64_t stage = 0;       ///< the release stage; grows at each write that starts one (the Rust crate's StageId lists them)
};

/// Where a host reads a request's forcing value (Gate::override_names): the names the config's
/// "overrides" section gives, std::nullopt for a name it does not give.
struct OverrideNames {
  std::optional<std::string> header;  ///< overrides.header: the request header's name
  std::optional<std::string> cookie;   ///< overrides.cookie: the cookie's name
};

/// The canary's health in the current window (Gate::read_health, Gate::monitor_health).
struct Health {
  std::uint64_t stage = 0;                ///< the stage judged
  std::uint64_t canary_requests = 0;      ///< requests to the new version in the window
  std::uint64_t production_requests = 0;  ///< requests to the stable version in the window
  std::chrono::nanoseconds canary_p99{0};      ///< the new version's p99 latency
  std::chrono::nanoseconds production_p99{0};  ///< the stable version's p99 latency
  double traffic_percent = 0.0;        ///< the canary share (100 in Staging, 0 in Production)
  double canary_error_rate = 0.0;      ///< the new version's error rate
  double production_error_rate = 0.0;  ///< the stable version's error rate
  double canary_compliance = 0.0;  ///< share of the new version's requests within the SLO
  double health_score = 0.0;       ///< 1.0 minus the penalties, in 0 ..= 1
  Environment environment = Environment::Production;  ///< the environment judged
  Recommendation recommendation = Recommendation::Monitor;
  std::uint32_t rules_fired = 0;  ///< bitwise OR of Rule values
  /// Whether the new version has at least min_samples samples in the window, of its outcomes
  /// and of its latencies after the stage's warm-up (warm_up_ms), or the stage as a whole
  /// shows it not worse than the stable version (a low-traffic canary whose window never holds
  /// min_samples).
  bool sufficient_data = false;
  std::string evidence;           ///< the judge's evidence line, for logs and people

  /// Whether `rule` fired.
  [[nodiscard]] bool fired(Rule rule) const noexcept {
    return (rules_fired & static_cast<std::uint32_t>(rule)) != 0;
  }
};

/// The four outcome counters of a gate's exposition as a host of several processes counts
/// them, once for all its processes (pgate_outcome_counts; see metrics_prometheus_counted).
struct OutcomeCounts {
  /// promotion_late_outcomes_total: outcomes Gate::record dropped as Recorded::Late.
  std::uint64_t late_outcomes = 0;
  /// promotion_foreign_outcomes_total: outcomes Gate::record dropped as Recorded::Foreign.
  std::uint64_t foreign_outcomes = 0;
  /// promotion_forced_outcomes_total: outcomes Gate::record counted as Recorded::Forced, in
  /// neither cohort.
  std::uint64_t forced_outcomes = 0;
  /// promotion_ignored_override_values_total: forcing values Gate::route_forced ignored (its
  /// decision's `forced` is Forced::None).
  std::uint64_t ignored_override_values = 0;
};

namespace detail {

struct ErrorDeleter {
  void operator()(pgate_error* err) const noexcept { pgate_error_free(err); }
};
/// Owns an error object from the moment the library hands it out.
using ErrorPtr = std::unique_ptr<pgate_error, ErrorDeleter>;

struct GateDeleter {
  void operator()(pgate_gate* gate) const noexcept {
    // unique_ptr frees once, so the library refuses a free only from inside the log
    // callback: that gate is not freed (a destructor cannot report it; README, Logging). A
    // store-backed gate made before a fork and freed in the child returns PANIC, freed all
    // the same (README, Fork: end such a child with _exit).
    static_cast<void>(pgate_gate_free(gate));
  }
};

/// A status without an error object: the message is the function and the status's name.
[[noreturn]] inline void throw_status(pgate_status status, const char* function) {
  throw Error(status, std::string(function) + ": " +
                          pgate_status_str(static_cast<std::uint32_t>(status)));
}

/// A status with an error object: the message is the library's.
[[noreturn]] inline void throw_error(pgate_status status, const pgate_error* err,
                                     const char* function) {
  const char* message = pgate_error_message(err);
  if (message == nullptr || *message == '\0') {
    throw_status(status, function);
  }
  throw Error(status, message);
}

/// The library's MAX_SHOWN_VALUE_BYTES (src/error.rs): the most bytes of a refused value an
/// error message shows.
inline constexpr std::size_t kMaxShownValueBytes = 160;

/// The length of the UTF-8 sequence starting at `text[at]`, or 0 when the bytes there are not
/// one (a stray continuation byte, an overlong form, a surrogate, a code point past U+10FFFF,
/// a sequence cut short).
inline std::size_t utf8_sequence(std::string_view text, std::size_t at) noexcept {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(at);
  std::size_t length = 0;
  unsigned char low = 0x80, high = 0xBF;  // the range of the second byte
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) length = 2;
  else if (lead >= 0xE0 && lead <= 0xEF) length = 3;
  else if (lead >= 0xF0 && lead <= 0xF4) length = 4;
  else return 0;
  if (lead == 0xE0) low = 0xA0;
  if (lead == 0xED) high = 0x9F;
  if (lead == 0xF0) low = 0x90;
  if (lead == 0xF4) high = 0x8F;
  if (text.size() - at < length || byte(at + 1) < low || byte(at + 1) > high) return 0;
  for (std::size_t i = 2; i < length; ++i) {
    if ((byte(at + i) & 0xC0) != 0x80) return 0;
  }
  return length;
}

/// Unicode's format characters (general category Cf, Unicode 15.1), as first and last code
/// point: the library's list (`is_format` in src/config.rs), which it refuses in names.
inline constexpr char32_t kFormatCharacters[][2] = {
    {0x00AD, 0x00AD},   {0x0600, 0x0605},   {0x061C, 0x061C},   {0x06DD, 0x06DD},
    {0x070F, 0x070F},   {0x0890, 0x0891},   {0x08E2, 0x08E2},   {0x180E, 0x180E},
    {0x200B, 0x200F},   {0x202A, 0x202E},   {0x2060, 0x2064},   {0x2066, 0x206F},
    {0xFEFF, 0xFEFF},   {0xFFF9, 0xFFFB},   {0x110BD, 0x110BD}, {0x110CD, 0x110CD},
    {0x13430, 0x1343F}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
    {0xE0020, 0xE007F},
};

/// Whether `code` is in one of `ranges` (first and last code points).
template <std::size_t N>
inline bool in_ranges(char32_t code, const char32_t (&ranges)[N][2]) noexcept {
  for (const auto& range : ranges) {
    if (code >= range[0] && code <= range[1]) return true;
  }
  return false;
}

/// Whether `code` is a format character (in kFormatCharacters).
inline bool is_format(char32_t code) noexcept { return in_ranges(code, kFormatCharacters); }

/// The characters drawn as nothing that are not all format characters, as first and last code
/// point: Unicode's Default_Ignorable_Code_Point (15.1), the library's list (`DEFAULT_IGNORABLE`
/// in src/config/unseen.rs), which it refuses in names with U+2800 BRAILLE PATTERN BLANK.
inline constexpr char32_t kDefaultIgnorable[][2] = {
    {0x00AD, 0x00AD},   {0x034F, 0x034F},   {0x061C, 0x061C},   {0x115F, 0x1160},
    {0x17B4, 0x17B5},   {0x180B, 0x180F},   {0x200B, 0x200F},   {0x202A, 0x202E},
    {0x2060, 0x206F},   {0x3164, 0x3164},   {0xFE00, 0xFE0F},   {0xFEFF, 0xFEFF},
    {0xFFA0, 0xFFA0},   {0xFFF0, 0xFFF8},   {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A},
    {0xE0000, 0xE0FFF},
};

/// Whether `code` is drawn as nothing, as the library tells it (`is_invisible`): in
/// kDefaultIgnorable, or U+2800.
inline bool is_invisible(char32_t code) noexcept {
  return code == 0x2800 || in_ranges(code, kDefaultIgnorable);
}

/// A refused text as the library shows it in an error message (Rust's `{:?}`, as src/error.rs
/// writes it, and as the Lua binding's `quoted`): in double quotes; a quote, a backslash, the
/// characters up to U+00FF that `{:?}` escapes, the format characters (kFormatCharacters) and
/// the invisible ones (is_invisible) written as it writes them (`\"`, `\\`, `\0`, `\t`,
/// `\n`, `\r`, the other controls as `\u{1b}`, U+0080 to U+00A0 as `\u{85}`, `\u{a0}`, format
/// characters as `\u{ad}`, `\u{200b}`, `\u{202e}`, invisible ones as `\u{fe0f}`, `\u{2800}`:
/// lower-case hex, no leading zero; `{:?}` shows U+2800 and the Hangul fillers as they are);
/// bytes that are not UTF-8 as `\xNN`, so the message is UTF-8; other characters as they are,
/// those beyond U+00FF that `{:?}` escapes too (such as a combining accent, or a space other
/// than U+0020 and U+00A0) included: tests/vectors/quoted.tsv lists where the two differ. When longer than
/// kMaxShownValueBytes, its first bytes (cut before a UTF-8 continuation byte) followed by
/// "...(N bytes)", so that a huge argument never makes a huge message.
inline std::string quoted(std::string_view value) {
  std::size_t cut = value.size();
  if (cut > kMaxShownValueBytes) {
    cut = kMaxShownValueBytes;
    while (cut > 0 && (static_cast<unsigned char>(value[cut]) & 0xC0) == 0x80) --cut;
  }
  const std::string_view head = value.substr(0, cut);
  constexpr const char* hex = "0123456789abcdef";
  // `\u{...}` with the code point's hex digits, no leading zero, as Rust writes it.
  const auto escape_unicode = [&](std::string& out, char32_t code) {
    out += "\\u{";
    int shift = 20;  // a code point has at most 6 hex digits
    while (shift > 0 && (code >> shift) == 0) shift -= 4;
    for (; shift >= 0; shift -= 4) out += hex[(code >> shift) & 0xF];
    out += '}';
  };
  std::string shown = "\"";
  for (std::size_t at = 0; at < head.size();) {
    const char c = head[at];
    const auto byte = static_cast<unsigned char>(c);
    const std::size_t length = utf8_sequence(head, at);
    if (length > 1) {
      // The lead byte's bits, then 6 from each continuation byte.
      char32_t code = byte & (0x7F >> length);
      for (std::size_t i = 1; i < length; ++i) {
        code = (code << 6) | (static_cast<unsigned char>(head[at + i]) & 0x3F);
      }
      // U+0080 to U+00A0: C1 controls, no-break space
      if (code <= 0xA0 || is_format(code) || is_invisible(code)) {
        escape_unicode(shown, code);
      } else {
        shown.append(head.substr(at, length));
      }
      at += length;
      continue;
    }
    ++at;
    switch (c) {
      case '"': shown += "\\\""; break;
      case '\\': shown += "\\\\"; break;
      case '\n': shown += "\\n"; break;
      case '\r': shown += "\\r"; break;
      case '\t': shown += "\\t"; break;
      case '\0': shown += "\\0"; break;
      default:
        if (byte < 0x20 || byte == 0x7F) {
          escape_unicode(shown, byte);
        } else if (byte > 0x7F) {  // not UTF-8
          shown += "\\x";
          shown += hex[byte >> 4];
          shown += hex[byte & 0xF];
        } else {
          shown += c;
        }
    }
  }
  shown += '"';
  if (cut < value.size()) shown += "...(" + std::to_string(value.size()) + " bytes)";
  return shown;
}

/// Whether this thread is inside the log callback (set_log_callback refuses to run there).
inline thread_local bool inside_log_callback = false;

/// Throws the library's refusal of `function` from inside the log callback, in the words its
/// calls with an error object give (pgate_swap_slo's, ffi/src/log.rs), when that is why
/// `status` failed: pgate_check_slo, pgate_monitor_health, pgate_read_health and the reads of
/// the window (the Prometheus expositions, pgate_latency_histograms_json) have no error object,
/// and throw_status would say only "pgate_check_slo: PGATE_STATUS_INVALID_ARGUMENT".
inline void check_outside_log_callback(pgate_status status, const char* function) {
  if (status == PGATE_STATUS_INVALID_ARGUMENT && inside_log_callback) {
    throw Error(status, std::string(function) +
                            " was called from inside the log callback, which must call no "
                            "pgate_ function (the library may hold a lock while it logs: the "
                            "call would wait for its own thread)");
  }
}

[[noreturn]] inline void throw_moved_from(const char* member) {
  throw Error(PGATE_STATUS_NULL_POINTER,
              std::string("promotion_gates::Gate::") + member +
                  ": this Gate was moved from and holds no gate");
}

inline void check(pgate_status status, const char* function) {
  if (status != PGATE_STATUS_OK) {
    throw_status(status, function);
  }
}

/// Runs `call(pgate_error**)`; on failure throws its error, which is freed on every path.
template <class Call>
void check_with_error(const char* function, Call&& call) {
  pgate_error* raw = nullptr;
  const pgate_status status = std::forward<Call>(call)(&raw);
  const ErrorPtr err(raw);
  if (status != PGATE_STATUS_OK) {
    throw_error(status, err.get(), function);
  }
}

/// How many times read_text asks before giving up on a text that keeps growing.
inline constexpr int text_tries = 8;

/// Reads a string through a (buf, cap, len_out) call, growing the buffer while the library
/// answers PGATE_STATUS_BUFFER_TOO_SMALL (the text may grow between two calls, as another
/// process's rollbacks are applied by the sync thread: each retry takes an eighth more than
/// was needed, and 4096 bytes, so a text that keeps growing is read in a few tries, not one
/// per change). A text still growing after text_tries calls is an Error of
/// PGATE_STATUS_BUFFER_TOO_SMALL naming `function`, as the Lua and Python bindings give up.
template <class Read>
std::string read_text(const char* function, Read&& read) {
  std::string text(256, '\0');
  std::size_t len = 0;
  for (int tries = 0; tries < text_tries; ++tries) {
    len = 0;
    const pgate_status status = read(text.data(), text.size(), &len);
    if (status == PGATE_STATUS_OK) {
      text.resize(len);
      return text;
    }
    if (status != PGATE_STATUS_BUFFER_TOO_SMALL) {
      throw_status(status, function);
    }
    text.resize(len + len / 8 + 4096);
  }
  throw Error(PGATE_STATUS_BUFFER_TOO_SMALL,
              std::string(function) + ": the text kept growing: " + std::to_string(text_tries) +
                  " tries, the last asking for " + std::to_string(len) + " bytes");
}

/// A byte string for the C ABI. The empty view goes as NULL with length 0.
inline const std::uint8_t* bytes(std::string_view text) noexcept {
  return text.empty() ? nullptr : reinterpret_cast<const std::uint8_t*>(text.data());
}

// The `const char*` overloads exist because a `const char*` reaching a std::string_view
// parameter goes through string_view(const char*), which calls strlen: a NULL one (a proxy's
// lookup of a header the request lacks, getenv of an unset variable) crashed there. Each
// overload gives NULL the meaning the C ABI gives it, or refuses it.

/// A request id or a config document given as a `const char*`: NULL is the empty string, as
/// in the C ABI (NULL with length 0: the empty id, the default document).
inline std::string_view text_or_empty(const char* text) noexcept {
  return text != nullptr ? std::string_view(text) : std::string_view();
}

/// A `const char*` for which only a string means something (a flag name, a reason, a document
/// that replaces a running gate's): NULL, most likely a lookup that found nothing, is refused
/// naming `parameter` of `function`, rather than taken for the empty string.
inline std::string_view required_text(const char* text, const char* function,
                                      const char* parameter) {
  if (text == nullptr) {
    throw Error(PGATE_STATUS_INVALID_ARGUMENT, std::string("invalid ") + parameter +
                                                   " = nullptr: promotion_gates::" + function +
                                                   " takes a string, not a null pointer");
  }
  return text;
}

/// The unit a latency's value is shown in: "ns", "us", "ms", "s", "min", "h", or "s*N/D".
template <class Period>
std::string latency_unit() {
  if constexpr (std::is_same_v<Period, std::nano>) {
    return "ns";
  } else if constexpr (std::is_same_v<Period, std::micro>) {
    return "us";
  } else if constexpr (std::is_same_v<Period, std::milli>) {
    return "ms";
  } else if constexpr (std::is_same_v<Period, std::ratio<1>>) {
    return "s";
  } else if constexpr (std::is_same_v<Period, std::ratio<60>>) {
    return "min";
  } else if constexpr (std::is_same_v<Period, std::ratio<3600>>) {
    return "h";
  } else {
    return "s*" + std::to_string(Period::num) + "/" + std::to_string(Period::den);
  }
}

/// A number as an error message writes it, in the C locale: an integer in decimal (of any
/// width, __int128 too), a floating-point one as the shortest text of at least 14 significant
/// digits that reads back as the same value (the stream's default 6 showed 2^64 as
/// 1.84467e+19, a value below 2^64), "nan", "inf" or "-inf".
template <class Number>
std::string number_text(Number value) {
  if constexpr (std::is_floating_point_v<Number>) {
    if (std::isnan(value)) return "nan";
    if (std::isinf(value)) return value < 0 ? "-inf" : "inf";
    std::string text;
    constexpr int most = std::numeric_limits<Number>::max_digits10;
    for (int digits = most < 14 ? most : 14; digits <= most; ++digits) {
      std::ostringstream out;
      out.imbue(std::locale::classic());
      out.precision(digits);
      out << value;
      text = out.str();
      std::istringstream back(text);
      back.imbue(std::locale::classic());
      Number read{};
      if ((back >> read) && read == value) break;
    }
    return text;
  } else {
    // Digits from the last, as a magnitude: the most negative value has no positive twin.
    const bool negative = value < 0;
    std::string digits;
    do {
      const auto digit = static_cast<int>(value % 10);
      digits.insert(digits.begin(), static_cast<char>('0' + (negative ? -digit : digit)));
      value /= 10;
    } while (value != 0);
    return negative ? "-" + digits : digits;
  }
}

/// The error every binding gives a latency that is negative, NaN, infinite or 2^64 ns or
/// more (the same status and words in Go, Python and Lua; tests/vectors/latency.tsv holds them).
template <class Rep, class Period>
[[noreturn]] void throw_bad_latency(std::chrono::duration<Rep, Period> latency) {
  throw Error(PGATE_STATUS_INVALID_ARGUMENT,
              "invalid latency = " + number_text(latency.count()) + " " +
                  latency_unit<Period>() +
                  ": a latency must be finite, at least 0 and below 2^64 ns");
}

/// A latency of any std::chrono duration as the u64 nanoseconds of pgate_record, rounded to
/// the nearest nanosecond; throws Error PGATE_STATUS_INVALID_ARGUMENT (throw_bad_latency)
/// rather than wrap, clamp or overflow.
template <class Rep, class Period>
std::uint64_t nanos(std::chrono::duration<Rep, Period> latency) {
  static_assert(std::is_arithmetic_v<Rep>, "a latency's count must be a number");
  if constexpr (std::is_same_v<Period, std::nano> && std::is_integral_v<Rep>) {
    // The common case, exact: no floating-point round trip.
    if constexpr (std::is_signed_v<Rep>) {
      if (latency.count() < 0) {
        throw_bad_latency(latency);
      }
    }
    if constexpr (std::numeric_limits<Rep>::digits > 64) {  // __int128: 2^64 would wrap to 0
      if (latency.count() > static_cast<Rep>(std::numeric_limits<std::uint64_t>::max())) {
        throw_bad_latency(latency);
      }
    }
    return static_cast<std::uint64_t>(latency.count());
  } else {
    // long double holds every u64 exactly on x86-64; where it is a double, the checks still
    // hold and a value near 2^64 is rounded to a neighbour.
    const long double ns = static_cast<long double>(latency.count()) *
                           static_cast<long double>(Period::num) * 1e9L /
                           static_cast<long double>(Period::den);
    constexpr long double limit = 18446744073709551616.0L;  // 2^64
    if (!(std::isfinite(ns) && ns >= 0 && ns < limit)) {
      throw_bad_latency(latency);
    }
    const long double rounded = std::floor(ns + 0.5L);
    return rounded < limit ? static_cast<std::uint64_t>(rounded)
                           : std::numeric_limits<std::uint64_t>::max();
  }
}

/// How many writes a gate keeps a replaced flag set readable for (FLAG_SET_GRACE_WRITES in
/// the C header's PGATE_STATUS_UNKNOWN_FLAG_SET).
inline constexpr int kFlagSetGraceWrites = 60;

/// The error of features() and of its view (FeatureNames) for a decision whose flag set the
/// gate does not hold: the field, its value and the two ways it happens, as every binding
/// words it.
[[noreturn]] inline void throw_unknown_flag_set(std::uint32_t flag_set) {
  throw Error(PGATE_STATUS_UNKNOWN_FLAG_SET,
              "invalid flag_set = " + std::to_string(flag_set) +
                  ": not a flag set of this gate (another gate's decision, or one replaced "
                  "more than " + std::to_string(kFlagSetGraceWrites) + " writes ago)");
}

inline std::chrono::nanoseconds duration(std::uint64_t ns) noexcept {
  constexpr auto max = static_cast<std::uint64_t>(std::chrono::nanoseconds::max().count());
  return std::chrono::nanoseconds(static_cast<std::chrono::nanoseconds::rep>(ns < max ? ns : max));
}

inline Decision from_c(const pgate_decision& d) noexcept {
  Decision out;
  out.is_canary = d.is_canary;
  out.environment = static_cast<Environment>(d.environment);
  out.traffic_percent = d.traffic_percent;
  out.bucket = d.bucket;
  out.threshold = d.threshold;
  out.stage = d.stage;
  out.flag_set = d.flag_set;
  out.forced = static_cast<Forced>(d.forced);
  return out;
}

inline pgate_decision to_c(const Decision& d) noexcept {
  pgate_decision out{};
  out.stage = d.stage;
  out.traffic_percent = d.traffic_percent;
  out.bucket = d.bucket;
  out.threshold = d.threshold;
  out.flag_set = d.flag_set;
  // Every field is copied as it is, a forged one too: pgate_record reads only stage,
  // is_canary and forced, each as plain bytes (ffi/src/route.rs, decision_fields), and an
  // enum of the header has uint32_t (environment) or uint8_t (forced) beneath it in C++.
  out.environment = static_cast<pgate_environment>(d.environment);
  out.is_canary = d.is_canary;
  out.forced = static_cast<pgate_forced>(d.forced);
  return out;
}

}  // namespace detail

/// The flag names on for one decision: a lightweight view (a gate pointer, a set number and
/// a length) that reads each name from the gate when asked, without allocating. Names are in
/// byte order, UTF-8; a std::string_view read from the view stays valid as long as the gate
/// lives, even after the flag is turned off or the Gate is moved.
///
/// Read the view while handling the request. The gate keeps a replaced flag set readable for
/// at least 60 writes (enable, disable, promote, swap, or a store's sync), then forgets it:
/// from then on reading the view (operator[], contains(), iterating) throws Error
/// PGATE_STATUS_UNKNOWN_FLAG_SET rather than answer as if the set were empty. To keep the
/// names longer, copy them: `std::vector<std::string> kept(names.begin(), names.end())`.
class FeatureNames {
 public:
  class iterator {
   public:
    // The names are read on dereference, so `reference` is a value: an input iterator by
    // C++17's rules, though it may be read again from a copy.
    using iterator_category = std::input_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = std::string_view;

    iterator() = default;

    /// Throws Error PGATE_STATUS_UNKNOWN_FLAG_SET once the gate forgot the set.
    [[nodiscard]] std::string_view operator*() const {
      return FeatureNames::name(gate_, set_, index_);
    }
    iterator& operator++() noexcept {
      ++index_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator before = *this;
      ++index_;
      return before;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.gate_ == b.gate_ && a.set_ == b.set_ && a.index_ == b.index_;
    }
    friend bool operator!=(const iterator& a, const iterator& b) noexcept { return !(a == b); }

   private:
    friend class FeatureNames;
    iterator(const pgate_gate* gate, std::uint32_t set, std::size_t index) noexcept
        : gate_(gate), set_(set), index_(index) {}

    const pgate_gate* gate_ = nullptr;
    std::uint32_t set_ = 0;
    std::size_t index_ = 0;
  };

  FeatureNames() = default;

  [[nodiscard]] std::size_t size() const noexcept { return size_; }
  [[nodiscard]] bool empty() const noexcept { return size_ == 0; }
  [[nodiscard]] iterator begin() const noexcept { return {gate_, set_, 0}; }
  [[nodiscard]] iterator end() const noexcept { return {gate_, set_, size_}; }

  /// The name at `index`; an empty view if `index >= size()`. Throws Error
  /// PGATE_STATUS_UNKNOWN_FLAG_SET once the gate forgot the set.
  [[nodiscard]] std::string_view operator[](std::size_t index) const {
    return index < size_ ? name(gate_, set_, index) : std::string_view{};
  }

  /// Whether `flag` is among the names. Throws Error PGATE_STATUS_UNKNOWN_FLAG_SET once the
  /// gate forgot the set (never a false "no").
  [[nodiscard]] bool contains(std::string_view flag) const {
    for (std::string_view name : *this) {
      if (name == flag) {
        return true;
      }
    }
    return false;
  }

  /// As contains() above; a null `flag` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid flag = nullptr: ...").
  [[nodiscard]] bool contains(const char* flag) const {
    return contains(detail::required_text(flag, "FeatureNames::contains", "flag"));
  }

 private:
  friend class Gate;
  FeatureNames(const pgate_gate* gate, std::uint32_t set, std::size_t size) noexcept
      : gate_(gate), set_(set), size_(size) {}

  static std::string_view name(const pgate_gate* gate, std::uint32_t set, std::size_t index) {
    const std::uint8_t* data = nullptr;
    std::size_t len = 0;
    const pgate_status status = pgate_flag_set_name(gate, set, index, &data, &len);
    if (status == PGATE_STATUS_UNKNOWN_FLAG_SET) {  // as features() words it
      detail::throw_unknown_flag_set(set);
    }
    detail::check(status, "pgate_flag_set_name");
    return {reinterpret_cast<const char*>(data), len};
  }

  const pgate_gate* gate_ = nullptr;
  std::uint32_t set_ = 0;
  std::size_t size_ = 0;
};

/// One gate (a service or a route): routing, recording, judging, promotion, flags.
///
/// Movable, not copyable. A moved-from Gate holds no gate: its member functions throw Error
/// (PGATE_STATUS_NULL_POINTER); `if (gate)` tells. See the top of this file for threads.
class Gate {
 public:
  /// Makes a gate from a JSON PromotionConfig and a JSON SloConfig (the Rust field names;
  /// durations in milliseconds). An empty document means the defaults.
  ///
  /// Throws Error: PGATE_STATUS_INVALID_JSON (unparsable, unknown field: the message names
  /// the position and the field), PGATE_STATUS_INVALID_CONFIG (a value refused: the message
  /// names the field and the value), PGATE_STATUS_INVALID_ARGUMENT (not UTF-8).
  [[nodiscard]] static Gate create(std::string_view config_json,
                                   std::string_view slo_json = {}) {
    pgate_gate* raw = nullptr;
    detail::check_with_error("pgate_gate_new", [&](pgate_error** err) {
      return pgate_gate_new(detail::bytes(config_json), config_json.size(),
                            detail::bytes(slo_json), slo_json.size(), &raw, err);
    });
    return Gate(raw);
  }

  /// As create() above, for `const char*` documents: a null one is the empty document (the
  /// defaults), as in the C ABI.
  [[nodiscard]] static Gate create(const char* config_json, const char* slo_json = nullptr) {
    return create(detail::text_or_empty(config_json), detail::text_or_empty(slo_json));
  }
  [[nodiscard]] static Gate create(const char* config_json, std::string_view slo_json) {
    return create(detail::text_or_empty(config_json), slo_json);
  }
  [[nodiscard]] static Gate create(std::string_view config_json, const char* slo_json) {
    return create(config_json, detail::text_or_empty(slo_json));
  }

  Gate(Gate&&) noexcept = default;
  Gate& operator=(Gate&&) noexcept = default;
  Gate(const Gate&) = delete;
  Gate& operator=(const Gate&) = delete;
  ~Gate() = default;

  /// Whether this Gate holds a gate (false once moved from).
  [[nodiscard]] explicit operator bool() const noexcept { return gate_ != nullptr; }

  /// The C handle, for calls this wrapper does not cover; still owned by this Gate.
  [[nodiscard]] pgate_gate* native_handle() const noexcept { return gate_.get(); }

  /// Routes a request id (any bytes). Deterministic, lock-free, allocation-free; throws only
  /// on a moved-from Gate.
  [[nodiscard]] Decision route(std::string_view request_id) const {
    pgate_decision out;
    detail::check(pgate_route(live("route"), detail::bytes(request_id), request_id.size(), &out),
                  "pgate_route");
    return detail::from_c(out);
  }

  /// As route() above; a null `request_id` is the empty id, as in the C ABI.
  [[nodiscard]] Decision route(const char* request_id) const {
    return route(detail::text_or_empty(request_id));
  }

  /// Routes a request id with the forcing value the host read from the request (the value of
  /// the header or cookie the config's "overrides" names), std::nullopt for none. "canary" or
  /// "stable" (ASCII case ignored) force the request; any other value is ignored and counted,
  /// never an error. The config's id lists win over the value. A forced decision has
  /// Decision::forced set, and record() counts its outcome in neither cohort.
  [[nodiscard]] Decision route_forced(std::string_view request_id,
                                      std::optional<std::string_view> forcing_value) const {
    pgate_decision out;
    // NULL means "no value"; an empty value (still a value, ignored) needs a non-NULL pointer.
    const char* value = !forcing_value ? nullptr : forcing_value->empty() ? "" : forcing_value->data();
    detail::check(pgate_route_forced(live("route_forced"), detail::bytes(request_id),
                                     request_id.size(), reinterpret_cast<const std::uint8_t*>(value),
                                     forcing_value ? forcing_value->size() : 0, &out),
                  "pgate_route_forced");
    return detail::from_c(out);
  }

  /// As route_forced() above, for a `const char*` id or forcing value, as a proxy's lookup of
  /// a header or cookie returns them: a null `forcing_value` is std::nullopt (the request has
  /// none), a null `request_id` the empty id, as in the C ABI.
  [[nodiscard]] Decision route_forced(std::string_view request_id,
                                      const char* forcing_value) const {
    return route_forced(request_id, forcing_value != nullptr
                                        ? std::optional<std::string_view>(forcing_value)
                                        : std::nullopt);
  }
  [[nodiscard]] Decision route_forced(const char* request_id,
                                      std::optional<std::string_view> forcing_value) const {
    return route_forced(detail::text_or_empty(request_id), forcing_value);
  }
  [[nodiscard]] Decision route_forced(const char* request_id, const char* forcing_value) const {
    return route_forced(detail::text_or_empty(request_id), forcing_value);
  }

  /// The flag names on for `decision` (which this gate made): a view that reads them from the
  /// gate (see FeatureNames for how long it can). Lock-free, allocation-free. Throws Error
  /// PGATE_STATUS_UNKNOWN_FLAG_SET for a set the gate does not hold: "invalid flag_set = 7:
  /// not a flag set of this gate (another gate's decision, or one replaced more than 60
  /// writes ago)".
  [[nodiscard]] FeatureNames features(const Decision& decision) const {
    const pgate_gate* gate = live("features");
    std::size_t size = 0;
    const pgate_status status = pgate_flag_set_len(gate, decision.flag_set, &size);
    if (status == PGATE_STATUS_UNKNOWN_FLAG_SET) {
      detail::throw_unknown_flag_set(decision.flag_set);
    }
    detail::check(status, "pgate_flag_set_len");
    return FeatureNames(gate, decision.flag_set, size);
  }

  /// Records the outcome of a request routed by `decision`: whether it succeeded and its
  /// latency, any std::chrono duration (e.g. 12ms, or std::chrono::duration<double>(0.012)),
  /// rounded to whole nanoseconds. Lock-free; allocation-free after the thread's first record,
  /// but for a record that judges and finds a rule fired (its outcome screened after a canary
  /// error, an evaluation due, or one another thread asked for while it held the judge's
  /// window; a forced outcome too): the judge then builds its evidence (allocating)
  /// and rolls a failing canary back on this thread when no write holds the gate (its ERROR
  /// lines logged then; else the write that holds it, or the state store's thread, makes it).
  /// Throws Error PGATE_STATUS_INVALID_ARGUMENT for a latency that is negative, NaN, infinite
  /// or 2^64 ns or more ("invalid latency = -5 ms: a latency must be finite, at least 0 and
  /// below 2^64 ns", the words of every binding), and on a moved-from Gate; nothing is
  /// recorded then.
  /// The result says whether the outcome counted; most callers need not look at it, so it is
  /// not [[nodiscard]].
  template <class Rep, class Period>
  Recorded record(const Decision& decision, bool success,
                  std::chrono::duration<Rep, Period> latency) const {
    const pgate_gate* gate = live("record");  // a moved-from Gate is told first
    const std::uint64_t ns = detail::nanos(latency);
    const pgate_decision c = detail::to_c(decision);
    pgate_recorded recorded = PGATE_RECORDED_COUNTED;
    detail::check(pgate_record(gate, &c, success, ns, &recorded), "pgate_record");
    return static_cast<Recorded>(recorded);
  }

  /// Records a request routed by `decision` whose client went away before the version
  /// answered, `waited` after it was sent there (a proxy's 499, a canceled request). A wait
  /// longer than the SLO's latency_target counts as a success that missed its target, timed
  /// to the wait (a lower bound), so a canary that hangs is rolled back even when every client
  /// gives up first; a wait up to the target records nothing. Never a failure. Returns whether
  /// the request was recorded. Cold path. Throws as record().
  template <class Rep, class Period>
  bool record_abandoned(const Decision& decision, std::chrono::duration<Rep, Period> waited) const {
    const pgate_gate* gate = live("record_abandoned");
    const std::uint64_t ns = detail::nanos(waited);
    const pgate_decision c = detail::to_c(decision);
    bool recorded = false;
    detail::check(pgate_record_abandoned(gate, &c, ns, &recorded),
                  "pgate_record_abandoned");
    return recorded;
  }

  /// record_abandoned() that also says what happened to the request it recorded, as record()
  /// does (Counted, Late, Foreign or Forced), and std::nullopt when it recorded nothing (a
  /// wait up to the SLO's latency_target). For a host that counts late, foreign and forced
  /// outcomes itself (see metrics_prometheus_counted): a forced request whose client gave up
  /// after the target is Recorded::Forced. Cold path. Throws as record().
  template <class Rep, class Period>
  [[nodiscard]] std::optional<Recorded> record_abandoned_as(
      const Decision& decision, std::chrono::duration<Rep, Period> waited) const {
    const pgate_gate* gate = live("record_abandoned_as");
    const std::uint64_t ns = detail::nanos(waited);
    const pgate_decision c = detail::to_c(decision);
    bool recorded = false;
    pgate_recorded as = PGATE_RECORDED_COUNTED;
    detail::check(pgate_record_abandoned_as(gate, &c, ns, &recorded, &as),
                  "pgate_record_abandoned_as");
    if (!recorded) {
      return std::nullopt;
    }
    return static_cast<Recorded>(as);
  }

  /// Records an outcome by request id: the id is routed again under the current state.
  /// Prefer record() with the decision the request was routed by. Throws as record(). The id
  /// is routed without a forcing value: this call cannot see that a header or cookie forced
  /// the request (only that an id list does), so such a request's outcome would count in the
  /// cohort of its bucket; a host that routes with route_forced() records by id with
  /// record_by_id_forced().
  template <class Rep, class Period>
  Recorded record_by_id(std::string_view request_id, bool success,
                        std::chrono::duration<Rep, Period> latency) const {
    const pgate_gate* gate = live("record_by_id");
    const std::uint64_t ns = detail::nanos(latency);
    pgate_recorded recorded = PGATE_RECORDED_COUNTED;
    detail::check(pgate_record_by_id(gate, detail::bytes(request_id),
                                     request_id.size(), success, ns, &recorded),
                  "pgate_record_by_id");
    return static_cast<Recorded>(recorded);
  }

  /// As record_by_id() above; a null `request_id` is the empty id, as in the C ABI.
  template <class Rep, class Period>
  Recorded record_by_id(const char* request_id, bool success,
                        std::chrono::duration<Rep, Period> latency) const {
    return record_by_id(detail::text_or_empty(request_id), success, latency);
  }

  /// record_by_id() for a request routed with route_forced(): the id is routed again with the
  /// same forcing value (std::nullopt for none; an empty value is a value), so an outcome the
  /// value forced counts in neither cohort (Recorded::Forced), as record() counts it with the
  /// decision. A value that forces nothing is not counted again as ignored. Throws as
  /// record_by_id().
  template <class Rep, class Period>
  Recorded record_by_id_forced(std::string_view request_id,
                               std::optional<std::string_view> forcing_value, bool success,
                               std::chrono::duration<Rep, Period> latency) const {
    const pgate_gate* gate = live("record_by_id_forced");
    const std::uint64_t ns = detail::nanos(latency);
    // NULL means "no value"; an empty value (still a value) needs a non-NULL pointer.
    const char* value = nullptr;
    std::size_t value_len = 0;
    if (forcing_value.has_value()) {
      const std::string_view text = *forcing_value;
      value = text.empty() ? "" : text.data();
      value_len = text.size();
    }
    pgate_recorded recorded = PGATE_RECORDED_COUNTED;
    detail::check(pgate_record_by_id_forced(gate, detail::bytes(request_id), request_id.size(),
                                            reinterpret_cast<const std::uint8_t*>(value),
                                            value_len, success, ns, &recorded),
                  "pgate_record_by_id_forced");
    return static_cast<Recorded>(recorded);
  }

  /// As record_by_id_forced() above, for a `const char*` id or forcing value: a null
  /// `forcing_value` is std::nullopt, a null `request_id` the empty id, as in the C ABI.
  template <class Rep, class Period>
  Recorded record_by_id_forced(std::string_view request_id, const char* forcing_value,
                               bool success, std::chrono::duration<Rep, Period> latency) const {
    return record_by_id_forced(request_id,
                               forcing_value != nullptr
                                   ? std::optional<std::string_view>(forcing_value)
                                   : std::nullopt,
                               success, latency);
  }
  template <class Rep, class Period>
  Recorded record_by_id_forced(const char* request_id,
                               std::optional<std::string_view> forcing_value, bool success,
                               std::chrono::duration<Rep, Period> latency) const {
    return record_by_id_forced(detail::text_or_empty(request_id), forcing_value, success,
                               latency);
  }
  template <class Rep, class Period>
  Recorded record_by_id_forced(const char* request_id, const char* forcing_value, bool success,
                               std::chrono::duration<Rep, Period> latency) const {
    return record_by_id_forced(detail::text_or_empty(request_id), forcing_value, success,
                               latency);
  }

  /// Judges the canary now, with the evidence line (pgate_monitor_health). Rolls a canary back
  /// if a rule fired and auto_rollback_enabled (the health returned is the one judged: one
  /// call, never repeated, with room for PGATE_EVIDENCE_CAPACITY bytes of evidence).
  /// read_health() reads the same without judging.
  [[nodiscard]] Health monitor_health() const { return health_of(true, "monitor_health"); }

  /// The former name of monitor_health(), kept with its meaning: it judges and may roll back.
  /// Deprecated: call monitor_health(), or read_health() to read.
  [[nodiscard]] Health health() const { return health_of(true, "health"); }

  /// The canary's health over the current window, as monitor_health() judges it, read without
  /// side effects of its own (pgate_read_health): its judgement never rolls back and leaves the
  /// window as it was, so a status page or a metrics scrape may call it as often as it likes.
  /// A rule may show as fired here; the gate acts on it at its next judgement (the record path
  /// judges by itself). An evaluation the record path asked for while this read held the
  /// window is made right after it, on this thread, and may roll the canary back here (as the
  /// record path would have); so, like monitor_health(), it is refused inside the log
  /// callback.
  [[nodiscard]] Health read_health() const { return health_of(false, "read_health"); }

  /// Whether the version under judgement meets its SLO (false with too little data). May roll
  /// a failing canary back.
  [[nodiscard]] bool check_slo() const {
    bool compliant = false;
    const pgate_status status = pgate_check_slo(live("check_slo"), &compliant);
    detail::check_outside_log_callback(status, "pgate_check_slo");
    detail::check(status, "pgate_check_slo");
    return compliant;
  }

  /// Promotes to `target`; a Canary takes its `traffic_percent` (0 ..= 100), which Staging
  /// and Production do not read. Throws Error: PGATE_STATUS_INVALID_PROMOTION,
  /// PGATE_STATUS_ALREADY_THERE, PGATE_STATUS_INVALID_CONFIG (a percentage outside 0 ..= 100
  /// or NaN), PGATE_STATUS_INVALID_ARGUMENT (an unknown environment, or a Canary without a
  /// percentage), and for gated moves PGATE_STATUS_SLO_NOT_MET or
  /// PGATE_STATUS_INSUFFICIENT_DATA with the evidence (a ramp down is not gated, but the
  /// stage it ends is judged first: PGATE_STATUS_SLO_NOT_MET when a rule fired in it). A
  /// refused promotion changes nothing, unless the judge rolled a failing canary back.
  void promote(Environment target, std::optional<double> traffic_percent = std::nullopt) const {
    const pgate_gate* gate = live("promote");
    if (target == Environment::Canary && !traffic_percent.has_value()) {
      throw Error(PGATE_STATUS_INVALID_ARGUMENT,
                  "invalid traffic_percent = none: a canary takes a percentage from 0 to 100");
    }
    detail::check_with_error("pgate_promote", [&](pgate_error** err) {
      return pgate_promote(gate, static_cast<std::uint32_t>(target),
                           traffic_percent.value_or(0.0), err);
    });
  }

  /// promote(), made only if the gate is still in release stage `stage`: the stage read before
  /// deciding (state().stage, a Decision's stage, or read_health().stage, the stage judged).
  /// A ramp loop calls this one: if the judge rolled the canary back after the look, or
  /// another process moved the gate, a plain promote(Environment::Canary, 25) from Production
  /// would start a new, ungated rollout of the build just rolled back. Throws Error
  /// PGATE_STATUS_STAGE_CHANGED when the gate left `stage` (the message names the stage it is
  /// in now; nothing changed), and otherwise as promote().
  void promote_from(std::uint64_t stage, Environment target,
                    std::optional<double> traffic_percent = std::nullopt) const {
    const pgate_gate* gate = live("promote_from");
    if (target == Environment::Canary && !traffic_percent.has_value()) {
      throw Error(PGATE_STATUS_INVALID_ARGUMENT,
                  "invalid traffic_percent = none: a canary takes a percentage from 0 to 100");
    }
    detail::check_with_error("pgate_promote_from", [&](pgate_error** err) {
      return pgate_promote_from(gate, stage, static_cast<std::uint32_t>(target),
                                traffic_percent.value_or(0.0), err);
    });
  }

  /// Rolls the release back to Production. Throws Error PGATE_STATUS_ROLLBACK_REFUSED in
  /// Production, for a blank reason (no visible character) or one over 4096 bytes.
  void rollback(std::string_view reason) const {
    const pgate_gate* gate = live("rollback");
    detail::check_with_error("pgate_rollback", [&](pgate_error** err) {
      return pgate_rollback(gate, detail::bytes(reason), reason.size(), err);
    });
  }

  /// As rollback() above; a null `reason` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid reason = nullptr: ...").
  void rollback(const char* reason) const {
    rollback(detail::required_text(reason, "Gate::rollback", "reason"));
  }

  /// Turns a release flag on (idempotent). Throws Error PGATE_STATUS_INVALID_FLAG for an
  /// invalid name (empty, over 128 bytes, whitespace, control, format or invisible characters).
  void enable_feature(std::string_view name) const {
    const pgate_gate* gate = live("enable_feature");
    detail::check_with_error("pgate_enable_feature", [&](pgate_error** err) {
      return pgate_enable_feature(gate, detail::bytes(name), name.size(), err);
    });
  }

  /// As enable_feature() above; a null `name` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid name = nullptr: ...").
  void enable_feature(const char* name) const {
    enable_feature(detail::required_text(name, "Gate::enable_feature", "name"));
  }

  /// Turns a flag off and records it in the rollback history. Throws Error
  /// PGATE_STATUS_FLAG_NOT_ENABLED or PGATE_STATUS_INVALID_FLAG.
  void disable_feature(std::string_view name) const {
    const pgate_gate* gate = live("disable_feature");
    detail::check_with_error("pgate_disable_feature", [&](pgate_error** err) {
      return pgate_disable_feature(gate, detail::bytes(name), name.size(), err);
    });
  }

  /// As disable_feature() above; a null `name` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid name = nullptr: ...").
  void disable_feature(const char* name) const {
    disable_feature(detail::required_text(name, "Gate::disable_feature", "name"));
  }

  /// Whether a flag is on for the gate (as a release flag or a graduated one). For a name no
  /// flag can have, throws Error with the status enable_feature() throws for it, naming the
  /// value (`invalid name = "a b": not a flag name (...)`): PGATE_STATUS_INVALID_FLAG (empty,
  /// over 128 bytes, with whitespace, control, format or invisible characters), or
  /// PGATE_STATUS_INVALID_ARGUMENT (not UTF-8).
  [[nodiscard]] bool is_feature_enabled(std::string_view name) const {
    bool enabled = false;
    const pgate_status status = pgate_is_feature_enabled(
        live("is_feature_enabled"), detail::bytes(name), name.size(), &enabled);
    // The library's call writes no message.
    if (status == PGATE_STATUS_INVALID_FLAG || status == PGATE_STATUS_INVALID_ARGUMENT) {
      throw Error(status, "invalid name = " + detail::quoted(name) +
                              ": not a flag name (1 to 128 bytes of UTF-8, no whitespace, "
                              "control, format or invisible characters)");
    }
    detail::check(status, "pgate_is_feature_enabled");
    return enabled;
  }

  /// As is_feature_enabled() above; a null `name` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid name = nullptr: ...").
  [[nodiscard]] bool is_feature_enabled(const char* name) const {
    return is_feature_enabled(detail::required_text(name, "Gate::is_feature_enabled", "name"));
  }

  /// The current PromotionConfig as JSON.
  [[nodiscard]] std::string config_json() const {
    const pgate_gate* gate = live("config_json");
    return detail::read_text("pgate_config_json", [&](char* buf, std::size_t cap,
                                                     std::size_t* len) {
      return pgate_config_json(gate, buf, cap, len);
    });
  }

  /// Replaces the config atomically with a JSON PromotionConfig (hot reload, not gated).
  /// Throws Error PGATE_STATUS_INVALID_JSON or PGATE_STATUS_INVALID_CONFIG; the gate is then
  /// unchanged. A swap that starts a stage (a new split, environment or salt, or in Canary
  /// and Staging a flag newly on) judges the stage it ends first: PGATE_STATUS_SLO_NOT_MET
  /// when a rule fired in it, the canary rolled back and the swap not made.
  void swap_config(std::string_view config_json) const {
    const pgate_gate* gate = live("swap_config");
    detail::check_with_error("pgate_swap_config", [&](pgate_error** err) {
      return pgate_swap_config(gate, detail::bytes(config_json), config_json.size(), err);
    });
  }

  /// As swap_config() above; a null `config_json` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid config_json = nullptr: ..."), as the empty document is refused: a swap is no
  /// request for the defaults.
  void swap_config(const char* config_json) const {
    swap_config(detail::required_text(config_json, "Gate::swap_config", "config_json"));
  }

  /// swap_config(), made only if the gate has not changed since the caller read
  /// `change_count` (change_count()) before the config it edited (config_json()). A hot
  /// reload that edits the gate's config calls this one: a plain swap_config() of a config
  /// read before a rollback puts the rolled-back canary back, one read before
  /// disable_feature() (a kill switch) turns the flag on again, and two reloads overwrite each
  /// other. Every change moves the count: a rollback, a promotion, a flag turned on or off, a
  /// config swap, an SLO swap (swap_slo(): no config changes, yet it counts), and another
  /// process's write once read from the state store (after a lost compare-and-swap too, so one
  /// this gate has not synced yet refuses the swap). Read the count first: a change between
  /// the two reads then refuses the swap, never lets it through. Throws Error
  /// PGATE_STATUS_GATE_CHANGED when the count moved (the message names the count read and the
  /// count now; nothing changed: read both again), and otherwise as swap_config().
  ///
  ///     const std::uint64_t seen = gate.change_count();  // first
  ///     nlohmann::json next = nlohmann::json::parse(gate.config_json());
  ///     next["feature_flags"].push_back("dark_mode");
  ///     gate.swap_config_from(seen, next.dump());  // PGATE_STATUS_GATE_CHANGED: read again
  void swap_config_from(std::uint64_t change_count, std::string_view config_json) const {
    const pgate_gate* gate = live("swap_config_from");
    detail::check_with_error("pgate_swap_config_from", [&](pgate_error** err) {
      return pgate_swap_config_from(gate, change_count, detail::bytes(config_json),
                                    config_json.size(), err);
    });
  }

  /// As swap_config_from() above; a null `config_json` throws Error
  /// PGATE_STATUS_INVALID_ARGUMENT ("invalid config_json = nullptr: ..."), as swap_config()
  /// does.
  void swap_config_from(std::uint64_t change_count, const char* config_json) const {
    swap_config_from(change_count, detail::required_text(config_json, "Gate::swap_config_from",
                                                         "config_json"));
  }

  /// The rollback history as a JSON array, oldest first; each event has rolled_back ("release" or
  /// "flag"), feature, reason, timestamp_ms, environment and trigger ("manual", "automatic" or "flag_disabled").
  [[nodiscard]] std::string rollback_history_json() const {
    const pgate_gate* gate = live("rollback_history_json");
    return detail::read_text("pgate_rollback_history_json",
                             [&](char* buf, std::size_t cap, std::size_t* len) {
                               return pgate_rollback_history_json(gate, buf, cap, len);
                             });
  }

  /// The gate's Prometheus text exposition (format 0.0.4; serve it as "text/plain;
  /// version=0.0.4"): every series labelled gate="<name>". Judges nothing (an evaluation the
  /// record path asked for meanwhile is made after the read, and may roll back; refused inside
  /// the log callback, as read_health() is). For several gates in one exposition, the free
  /// function metrics_prometheus({&a, &b}).
  [[nodiscard]] std::string metrics_prometheus() const {
    const pgate_gate* gate = live("metrics_prometheus");
    return detail::read_text("pgate_metrics_prometheus",
                             [&](char* buf, std::size_t cap, std::size_t* len) {
                               const pgate_status status =
                                   pgate_metrics_prometheus(gate, buf, cap, len);
                               detail::check_outside_log_callback(status,
                                                                  "pgate_metrics_prometheus");
                               return status;
                             });
  }

  /// metrics_prometheus() with the host's `counts` in place of the gate's four outcome
  /// counters; every other series is the gate's own. For several gates, the free function
  /// metrics_prometheus_counted({&a, &b}, {a_counts, b_counts}), which says why a host of
  /// several processes needs it.
  [[nodiscard]] std::string metrics_prometheus_counted(const OutcomeCounts& counts) const {
    const pgate_gate* gate = live("metrics_prometheus_counted");
    const pgate_outcome_counts c{counts.late_outcomes, counts.foreign_outcomes,
                                 counts.forced_outcomes, counts.ignored_override_values};
    return detail::read_text("pgate_metrics_prometheus_counted",
                             [&](char* buf, std::size_t cap, std::size_t* len) {
                               const pgate_status status =
                                   pgate_metrics_prometheus_counted(&gate, &c, 1, buf, cap, len);
                               detail::check_outside_log_callback(
                                   status, "pgate_metrics_prometheus_counted");
                               return status;
                             });
  }

  /// The gate's name: its config's "gate" (its key in a state store, the `gate` label of its
  /// metrics; "default" when the config names none) (pgate_gate_name).
  [[nodiscard]] std::string name() const {
    char buf[PGATE_NAME_CAPACITY];  // always suffices: no retry
    std::size_t len = 0;
    detail::check(pgate_gate_name(live("name"), buf, sizeof buf, &len), "pgate_gate_name");
    return std::string(buf, len);
  }

  /// Where the host reads a forcing value for route_forced(): the header and cookie names of
  /// the config's "overrides" section, std::nullopt for a name it does not give, both from one
  /// config (pgate_override_names). A config swap may rename them; change_count() moves then.
  [[nodiscard]] OverrideNames override_names() const {
    char header[PGATE_NAME_CAPACITY];  // always suffices: no retry
    char cookie[PGATE_NAME_CAPACITY];
    std::size_t header_len = 0;
    std::size_t cookie_len = 0;
    detail::check(pgate_override_names(live("override_names"), header, sizeof header,
                                       &header_len, cookie, sizeof cookie, &cookie_len),
                  "pgate_override_names");
    OverrideNames out;
    if (header_len > 0) out.header.emplace(header, header_len);
    if (cookie_len > 0) out.cookie.emplace(cookie, cookie_len);
    return out;
  }

  /// Each cohort's latency histogram of the judged window as JSON: {"encoding":
  /// "hdrhistogram-v2-deflate-base64", "unit": "microseconds", "canary": "...", "stable":
  /// "..."}, in HdrHistogram's compressed V2 form, base64. Judges nothing (an evaluation the
  /// record path asked for meanwhile is made after the read, and may roll back; refused inside
  /// the log callback, as read_health() is).
  [[nodiscard]] std::string latency_histograms_json() const {
    const pgate_gate* gate = live("latency_histograms_json");
    return detail::read_text("pgate_latency_histograms_json",
                             [&](char* buf, std::size_t cap, std::size_t* len) {
                               const pgate_status status =
                                   pgate_latency_histograms_json(gate, buf, cap, len);
                               detail::check_outside_log_callback(
                                   status, "pgate_latency_histograms_json");
                               return status;
                             });
  }

  /// Where the gate stands now (pgate_state): read without judging, no side effect.
  [[nodiscard]] State state() const {
    pgate_environment environment = PGATE_ENVIRONMENT_PRODUCTION;
    State out;
    detail::check(pgate_state(live("state"), &environment, &out.traffic_percent, &out.stage),
                  "pgate_state");
    out.environment = static_cast<Environment>(environment);
    return out;
  }

  /// The SLO policy the gate judges with now, as JSON (an SloConfig; durations in ms).
  [[nodiscard]] std::string slo_json() const {
    const pgate_gate* gate = live("slo_json");
    return detail::read_text("pgate_slo_json", [&](char* buf, std::size_t cap, std::size_t* len) {
      return pgate_slo_json(gate, buf, cap, len);
    });
  }

  /// Replaces the SLO policy with a JSON SloConfig (missing fields take the defaults) and
  /// keeps the gate's state: its stage, environment, flags, the outcomes in the window and the
  /// rollback history (pgate_swap_slo). The judge uses the new policy from its next
  /// evaluation; outcomes already recorded keep the compliance they were counted with. A
  /// change of kind "config". With a state store the SLO stays this process's own. Throws
  /// Error PGATE_STATUS_INVALID_JSON or PGATE_STATUS_INVALID_CONFIG (the message names the
  /// field and value); the gate is then unchanged.
  void swap_slo(std::string_view slo_json) const {
    const pgate_gate* gate = live("swap_slo");
    detail::check_with_error("pgate_swap_slo", [&](pgate_error** err) {
      return pgate_swap_slo(gate, detail::bytes(slo_json), slo_json.size(), err);
    });
  }

  /// As swap_slo() above; a null `slo_json` throws Error PGATE_STATUS_INVALID_ARGUMENT
  /// ("invalid slo_json = nullptr: ..."), as the empty document is refused.
  void swap_slo(const char* slo_json) const {
    swap_slo(detail::required_text(slo_json, "Gate::swap_slo", "slo_json"));
  }

  /// The number of the gate's newest state change, 0 before the first (pgate_change_count):
  /// one atomic load, cheap enough for every request. When it moves, changes_json() says
  /// what changed. The library never calls the host for a change: read this where you like.
  [[nodiscard]] std::uint64_t change_count() const {
    std::uint64_t count = 0;
    detail::check(pgate_change_count(live("change_count"), &count), "pgate_change_count");
    return count;
  }

  /// With a state store: the gate's sync thread reads the store at once rather than at its
  /// next sync_interval_ms (pgate_sync_now), for a host told by its own means that another
  /// process wrote. Returns at once, having done no I/O; asks made before that read begins are
  /// merged into one, and change_count() moves when it found a change. False without a store.
  bool sync_now() const {
    bool asked = false;
    detail::check(pgate_sync_now(live("sync_now"), &asked), "pgate_sync_now");
    return asked;
  }

  /// Whether the gate's state store sums the outcomes every process records for the judge
  /// (the store's "fleet_judging", on unless the document turns it off); false for a gate
  /// without a store (pgate_fleet_judging). A gate keeps the store it was opened with, so the
  /// answer never changes. A host that pools its processes' outcomes itself (as the nginx
  /// module's workers do) refuses a gate that answers true: every outcome would be counted
  /// once per process.
  [[nodiscard]] bool fleet_judging() const {
    bool sums = false;
    detail::check(pgate_fleet_judging(live("fleet_judging"), &sums), "pgate_fleet_judging");
    return sums;
  }

  /// The gate's kept changes numbered above `after` (the last 64 at most), oldest first, as a
  /// JSON array (pgate_changes_json): each with sequence, kind ("rollback", "promotion",
  /// "flags" or "config"), origin ("this_gate" or "store"), stage, from, to, at_ms,
  /// flags_enabled, flags_disabled, flags_unlisted and rollback (the event, with the rules
  /// that fired, or null). A gap in the sequence numbers shows changes no longer kept.
  [[nodiscard]] std::string changes_json(std::uint64_t after) const {
    const pgate_gate* gate = live("changes_json");
    return detail::read_text("pgate_changes_json", [&](char* buf, std::size_t cap,
                                                      std::size_t* len) {
      return pgate_changes_json(gate, after, buf, cap, len);
    });
  }

  /// The library's version, e.g. "0.1.0".
  [[nodiscard]] static std::string_view version() noexcept { return pgate_version(); }

 private:
  explicit Gate(pgate_gate* gate) noexcept : gate_(gate) {}

  const pgate_gate* live(const char* member) const {
    if (!gate_) {
      detail::throw_moved_from(member);
    }
    return gate_.get();
  }

  /// The health through pgate_monitor_health (`judge`) or pgate_read_health.
  Health health_of(bool judge, const char* member) const {
    const pgate_gate* gate = live(member);
    pgate_health h;
    // One call, with the room the library says always suffices (longer lines are cut): judging
    // again would judge another window (after a rollback, a healthy Production), and a second
    // read would read the window anew (after a rollback its evaluation made, another stage's).
    const char* function = judge ? "pgate_monitor_health" : "pgate_read_health";
    std::string evidence(PGATE_EVIDENCE_CAPACITY, '\0');
    std::size_t len = 0;
    const pgate_status status =
        judge ? pgate_monitor_health(gate, &h, evidence.data(), evidence.size(), &len)
              : pgate_read_health(gate, &h, evidence.data(), evidence.size(), &len);
    detail::check_outside_log_callback(status, function);
    detail::check(status, function);
    evidence.resize(len);
    return from_c(h, std::move(evidence));
  }

  static Health from_c(const pgate_health& h, std::string evidence) {
    Health out;
    out.stage = h.stage;
    out.canary_requests = h.canary_requests;
    out.production_requests = h.production_requests;
    out.canary_p99 = detail::duration(h.canary_p99_ns);
    out.production_p99 = detail::duration(h.production_p99_ns);
    out.traffic_percent = h.traffic_percent;
    out.canary_error_rate = h.canary_error_rate;
    out.production_error_rate = h.production_error_rate;
    out.canary_compliance = h.canary_compliance;
    out.health_score = h.health_score;
    out.environment = static_cast<Environment>(h.environment);
    out.recommendation = static_cast<Recommendation>(h.recommendation);
    out.rules_fired = h.rules_fired;
    out.sufficient_data = h.sufficient_data;
    out.evidence = std::move(evidence);
    return out;
  }

  std::unique_ptr<pgate_gate, detail::GateDeleter> gate_;
};

namespace detail {

/// Explains the library's refusal of gates of one name (or one gate given twice) by their
/// positions; throws the plain status when no two are alike.
[[noreturn]] inline void throw_same_names(const std::vector<const Gate*>& gates,
                                          pgate_status status, const char* function) {
  std::vector<std::string> names;
  for (std::size_t i = 0; i < gates.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      if (gates[j] == gates[i]) {
        throw Error(status, std::string(function) + ": gates[" + std::to_string(j) +
                                "] and gates[" + std::to_string(i) + "] are the same gate");
      }
    }
    names.push_back(gates[i]->name());
    for (std::size_t j = 0; j < i; ++j) {
      if (names[j] == names[i]) {
        throw Error(status, std::string(function) + ": gates[" + std::to_string(i) +
                                "] is named " + detail::quoted(names[i]) + ", as gates[" +
                                std::to_string(j) + "] is: their series would repeat");
      }
    }
  }
  throw_status(status, function);
}

}  // namespace detail

namespace detail {

/// The exposition of `gates` with `counts` (one per gate) in place of their own outcome
/// counters, or their own (nullptr); `function` names the caller in errors.
inline std::string exposition(const std::vector<const Gate*>& gates,
                              const pgate_outcome_counts* counts, const char* function) {
  std::vector<const pgate_gate*> handles;
  handles.reserve(gates.size());
  for (std::size_t i = 0; i < gates.size(); ++i) {
    if (gates[i] == nullptr) {
      throw Error(PGATE_STATUS_INVALID_ARGUMENT,
                  std::string(function) + ": gates[" + std::to_string(i) + "] is null");
    }
    if (!*gates[i]) {
      throw Error(PGATE_STATUS_NULL_POINTER, std::string(function) + ": gates[" +
                                                 std::to_string(i) +
                                                 "] was moved from and holds no gate");
    }
    handles.push_back(gates[i]->native_handle());
  }
  return read_text(function, [&](char* buf, std::size_t cap, std::size_t* len) {
    const pgate_status status =
        counts == nullptr
            ? pgate_metrics_prometheus_gates(handles.data(), handles.size(), buf, cap, len)
            : pgate_metrics_prometheus_counted(handles.data(), counts, handles.size(), buf, cap,
                                               len);
    check_outside_log_callback(status, counts == nullptr ? "pgate_metrics_prometheus_gates"
                                                         : "pgate_metrics_prometheus_counted");
    if (status == PGATE_STATUS_INVALID_ARGUMENT) {
      throw_same_names(gates, status, function);
    }
    return status;
  });
}

}  // namespace detail

/// The Prometheus text exposition (format 0.0.4) of several gates, as a host serving one /metrics
/// for all of them needs: each metric family once, one series per gate, labelled gate="<name>"
/// (pgate_metrics_prometheus_gates). Judges nothing (an evaluation the record path asked for
/// meanwhile is made after the read, and may roll back; refused inside the log callback, as
/// Gate::read_health() is).
///
///     const std::string text = promotion_gates::metrics_prometheus({&checkout, &search});
///
/// Throws Error PGATE_STATUS_INVALID_ARGUMENT for two gates of one name (their series would
/// repeat) or one gate given twice, naming both positions, and for a null pointer;
/// PGATE_STATUS_NULL_POINTER for a moved-from Gate.
[[nodiscard]] inline std::string metrics_prometheus(const std::vector<const Gate*>& gates) {
  return detail::exposition(gates, nullptr, "promotion_gates::metrics_prometheus");
}

/// metrics_prometheus() with the host's counts `counts[i]` in place of the four outcome
/// counters of `gates[i]` (pgate_metrics_prometheus_counted); every other series is the
/// gate's own. Each process of a host of several (the workers of a pre-forking server, each
/// with its gates) has counters of its own, and a scrape reaching another process would read a
/// lower count, a counter reset to Prometheus: such a host counts each outcome once, in memory
/// its processes share, and serves those counts, so every process answers the same.
///
///     const promotion_gates::OutcomeCounts counts{
///         shared->late.load(std::memory_order_relaxed),
///         shared->foreign.load(std::memory_order_relaxed),
///         shared->forced.load(std::memory_order_relaxed),
///         shared->ignored.load(std::memory_order_relaxed),
///     };  // all four replace the gate's own: a zero here is served as 0
///     const std::string text = promotion_gates::metrics_prometheus_counted({&checkout}, {counts});
///     // "promotion_forced_outcomes_total{gate=\"checkout\"} 7" when shared->forced is 7
///
/// Throws Error PGATE_STATUS_INVALID_ARGUMENT when `counts` does not hold one OutcomeCounts
/// per gate ("invalid counts.size() = 1: one OutcomeCounts per gate (gates: 2)"), before the
/// library is called; the gates as metrics_prometheus() throws.
[[nodiscard]] inline std::string metrics_prometheus_counted(
    const std::vector<const Gate*>& gates, const std::vector<OutcomeCounts>& counts) {
  constexpr const char* function = "promotion_gates::metrics_prometheus_counted";
  if (counts.size() != gates.size()) {
    throw Error(PGATE_STATUS_INVALID_ARGUMENT,
                std::string(function) + ": invalid counts.size() = " +
                    std::to_string(counts.size()) + ": one OutcomeCounts per gate (gates: " +
                    std::to_string(gates.size()) + ")");
  }
  std::vector<pgate_outcome_counts> c;
  c.reserve(counts.size());
  for (const OutcomeCounts& n : counts) {
    c.push_back({n.late_outcomes, n.foreign_outcomes, n.forced_outcomes,
                 n.ignored_override_values});
  }
  return detail::exposition(gates, c.data(), function);
}

/// Where a config document's state store keeps the gate's state, read from the document
/// alone: nothing is opened or created (pgate_store_location). "sqlite:" and the file path as
/// the document writes it (a relative path is opened against the working directory of the
/// process that opens the gate), "etcd:" and the key prefix, or "" for a document without a
/// store (its gate's state lives and dies with the gate). A host that resolves paths itself,
/// or refuses a relative one, asks before Gate::create would create the file; a host that
/// shares memory between the processes of one gate keys it by this and the gate's name.
///
///     promotion_gates::store_location(R"({"store": {"sqlite": {"path": "/var/lib/pg/a.db"}}})")
///         == "sqlite:/var/lib/pg/a.db"
///
/// The document is read and validated as Gate::create reads it, and refused with the same
/// Error (PGATE_STATUS_INVALID_JSON, PGATE_STATUS_INVALID_CONFIG naming the field and value,
/// PGATE_STATUS_INVALID_ARGUMENT), all but one check that depends on the SLO, which this
/// function does not take: rollback_window_seconds against the SLO's evaluation_interval_ms
/// (at most a tenth of the window), which Gate::create checks for the SLO it is given (and
/// document_check_slo() before any gate is made). So
/// {"rollback_window_seconds": 5} is read here, and Gate::create refuses it with the default
/// SLO (a 1 s interval), accepts it with an interval of 500 ms or less. An empty document is
/// the defaults: "".
[[nodiscard]] inline std::string store_location(std::string_view config_json) {
  constexpr const char* function = "pgate_store_location";
  return detail::read_text(function, [&](char* buf, std::size_t cap, std::size_t* len) {
    pgate_error* raw = nullptr;
    const pgate_status status = pgate_store_location(
        detail::bytes(config_json), config_json.size(), buf, cap, len, &raw);
    const detail::ErrorPtr err(raw);
    if (status != PGATE_STATUS_OK && status != PGATE_STATUS_BUFFER_TOO_SMALL) {
      detail::throw_error(status, err.get(), function);
    }
    return status;
  });
}

/// As store_location() above; a null `config_json` is the empty document, as in the C ABI.
[[nodiscard]] inline std::string store_location(const char* config_json) {
  return store_location(detail::text_or_empty(config_json));
}

/// The gate name of a config document (its "gate", or "default" without one), read from the
/// document alone: nothing is opened or created (pgate_document_gate_name). What Gate::name
/// answers for the gate Gate::create makes from it: a host that refuses two gates of one name
/// (they would share one state in a store) asks before Gate::create writes the second's state
/// there.
///
///     promotion_gates::document_gate_name(R"({"gate": "checkout"})") == "checkout"
///
/// The document is read and validated as Gate::create reads it, and refused with the same
/// Error, all but the window against the SLO's evaluation_interval_ms, which depends on the
/// SLO Gate::create is given and Gate::create checks (see store_location()). An empty
/// document is the defaults: "default".
[[nodiscard]] inline std::string document_gate_name(std::string_view config_json) {
  char buf[PGATE_NAME_CAPACITY];  // always suffices: no retry
  std::size_t len = 0;
  detail::check_with_error("pgate_document_gate_name", [&](pgate_error** err) {
    return pgate_document_gate_name(detail::bytes(config_json), config_json.size(), buf,
                                    sizeof buf, &len, err);
  });
  return std::string(buf, len);
}

/// As document_gate_name() above; a null `config_json` is the empty document, as in the C ABI.
[[nodiscard]] inline std::string document_gate_name(const char* config_json) {
  return document_gate_name(detail::text_or_empty(config_json));
}

/// Whether a config document's state store sums the outcomes of every process on it for the
/// judge (its store's "fleet_judging", on unless the document turns it off; false without a
/// store), read from the document alone: nothing is opened or created
/// (pgate_document_fleet_judging). What Gate::fleet_judging answers for the gate Gate::create
/// makes from it: a host that pools its processes' outcomes itself refuses the document
/// before Gate::create writes its state into the store.
///
/// The document is read and validated as Gate::create reads it, and refused with the same
/// Error, all but the window against the SLO's evaluation_interval_ms, which depends on the
/// SLO Gate::create is given and Gate::create checks (see store_location()). An empty
/// document is the defaults: false.
[[nodiscard]] inline bool document_fleet_judging(std::string_view config_json) {
  bool sums = false;
  detail::check_with_error("pgate_document_fleet_judging", [&](pgate_error** err) {
    return pgate_document_fleet_judging(detail::bytes(config_json), config_json.size(), &sums,
                                        err);
  });
  return sums;
}

/// As document_fleet_judging() above; a null `config_json` is the empty document, as in the C
/// ABI.
[[nodiscard]] inline bool document_fleet_judging(const char* config_json) {
  return document_fleet_judging(detail::text_or_empty(config_json));
}

/// Checks an SLO document against a config document as Gate::create checks the pair, read
/// from the documents alone: nothing is opened or created (pgate_document_check_slo). Both
/// documents are validated, and the SLO's evaluation_interval_ms against the config's
/// rollback_window_seconds (at most a tenth of the window), the one check store_location(),
/// document_gate_name() and document_fleet_judging() leave out, as they take no SLO. A host
/// that reads its configuration before it makes its gates asks this first, so a pair
/// Gate::create would refuse fails before any gate writes its state into a store.
///
///     // an hour's window, a minute's interval: passes
///     promotion_gates::document_check_slo(R"({"rollback_window_seconds": 3600})",
///                                         R"({"evaluation_interval_ms": 60000})");
///     // the default SLO's 1 s interval in a 5 s window: throws Error
///     // (PGATE_STATUS_INVALID_CONFIG, "invalid evaluation_interval_ms = 1000: at most a
///     // tenth of rollback_window_seconds = 5, 500 ms: ...")
///     promotion_gates::document_check_slo(R"({"rollback_window_seconds": 5})", "");
///
/// A refused pair throws the Error Gate::create throws for it (PGATE_STATUS_INVALID_JSON,
/// PGATE_STATUS_INVALID_CONFIG naming the field and value, PGATE_STATUS_INVALID_ARGUMENT). An
/// empty document is the defaults, so ("", "") passes.
inline void document_check_slo(std::string_view config_json, std::string_view slo_json) {
  detail::check_with_error("pgate_document_check_slo", [&](pgate_error** err) {
    return pgate_document_check_slo(detail::bytes(config_json), config_json.size(),
                                    detail::bytes(slo_json), slo_json.size(), err);
  });
}

/// As document_check_slo() above, for `const char*` documents: a null one is the empty
/// document (the defaults), as in the C ABI.
inline void document_check_slo(const char* config_json, const char* slo_json) {
  document_check_slo(detail::text_or_empty(config_json), detail::text_or_empty(slo_json));
}
inline void document_check_slo(const char* config_json, std::string_view slo_json) {
  document_check_slo(detail::text_or_empty(config_json), slo_json);
}
inline void document_check_slo(std::string_view config_json, const char* slo_json) {
  document_check_slo(config_json, detail::text_or_empty(slo_json));
}

/// The level of a log line, most severe first (pgate_log_level; the numbers are fixed).
enum class LogLevel : std::uint32_t {
  Error = PGATE_LOG_LEVEL_ERROR,  ///< a rollback, an SLO violation
  Warn = PGATE_LOG_LEVEL_WARN,    ///< a canary below the healthy score; a risky config change
  Info = PGATE_LOG_LEVEL_INFO,    ///< a promotion, a flag change
  Debug = PGATE_LOG_LEVEL_DEBUG,  ///< a line per route, forced route and record by id
  Trace = PGATE_LOG_LEVEL_TRACE,  ///< finer detail
};

/// "error", "warn", "info", "debug", "trace" (or "unknown").
[[nodiscard]] constexpr std::string_view to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::Error: return "error";
    case LogLevel::Warn: return "warn";
    case LogLevel::Info: return "info";
    case LogLevel::Debug: return "debug";
    case LogLevel::Trace: return "trace";
  }
  return "unknown";
}

/// Receives one log line: its level, its target (the Rust module that wrote it) and its
/// message (the text, then " key=value" for each field). Both views live only during the call.
using LogCallback =
    std::function<void(LogLevel level, std::string_view target, std::string_view message)>;

namespace detail {

/// The callback the library holds, and the lock that orders its replacements. At exit (static
/// destruction) the callback is taken back from the library before it is destroyed: threads
/// still logging then call no destroyed std::function.
struct LogCallbackSlot {
  std::mutex replacing;
  std::unique_ptr<LogCallback> current;

  LogCallbackSlot() = default;
  LogCallbackSlot(const LogCallbackSlot&) = delete;
  LogCallbackSlot& operator=(const LogCallbackSlot&) = delete;
  ~LogCallbackSlot() {
    if (current && pgate_set_log_callback(nullptr, nullptr, PGATE_LOG_LEVEL_ERROR, nullptr) !=
                       PGATE_STATUS_OK) {
      static_cast<void>(current.release());  // still in the library's hands: never freed
    }
  }
};

inline LogCallbackSlot& log_callback_slot() {
  static LogCallbackSlot slot;
  return slot;
}

/// The pgate_log_callback the library calls: runs the LogCallback passed as user data. An
/// exception must not cross into the library (it would be undefined behaviour): it is dropped.
inline void log_line(void* user_data, pgate_log_level level, const char* target,
                     const char* message, std::size_t message_len) noexcept {
  struct Inside {
    Inside() noexcept { inside_log_callback = true; }
    ~Inside() { inside_log_callback = false; }
    Inside(const Inside&) = delete;
    Inside& operator=(const Inside&) = delete;
  } inside;
  try {
    (*static_cast<const LogCallback*>(user_data))(
        static_cast<LogLevel>(level), target != nullptr ? target : "",
        std::string_view(message != nullptr ? message : "", message_len));
  } catch (...) {
    // Dropped: the line's caller is a library thread that cannot take it.
  }
}

}  // namespace detail

/// Sends the library's log lines up to `max_level` to `callback` (pgate_set_log_callback); an
/// empty callback (nullptr, or a default-constructed LogCallback) stops them. Without a
/// callback the library logs nothing. The binding keeps its own copy of `callback` until it is
/// replaced, and destroys it only once the library calls it no more.
///
///     promotion_gates::set_log_callback([](auto level, auto target, auto message) {
///       queue.push(std::string(to_string(level)) + " " + std::string(message));  // copy, return
///     }, promotion_gates::LogLevel::Info);
///     ...
///     promotion_gates::set_log_callback(nullptr);  // before what the callback uses is destroyed
///
/// The callback runs on the thread that logs: any thread using a gate (inside route() and
/// record() at the debug level, inside promote(), rollback(), the flag calls and the judge at
/// every level), or a state store's own thread, possibly on many threads at once, and
/// sometimes while a gate holds its writer lock, which is not reentrant. So it must:
///   - call no promotion_gates function, Gate members included: a call back into that gate
///     would wait forever; lines logged on its thread while it runs are dropped, and
///     set_log_callback called from it throws Error PGATE_STATUS_INVALID_ARGUMENT;
///   - return quickly (the thread may be recording, and set_log_callback waits for it): copy
///     the line and write it elsewhere; and never wait for a thread that is calling
///     set_log_callback, which waits for it;
///   - not let an exception out: one that does is dropped (it cannot cross the C ABI).
///
/// Returns only once no thread still runs the callback it replaced, which is then destroyed
/// (outside the binding's lock, so what it captured may itself set the callback as it goes):
/// after set_log_callback(nullptr), the old callback is never called again and what it uses
/// may be freed. At exit, the binding takes the callback back from the library when its own
/// static storage is destroyed; a callback that uses objects of static storage duration made
/// after its first call (destroyed before) is stopped by the host first.
///
/// Throws Error PGATE_STATUS_INVALID_ARGUMENT for a max_level that is no LogLevel (the message
/// names it) or a call from inside the callback, and PGATE_STATUS_ALREADY_THERE when the
/// process (a Rust host) installed another `tracing` subscriber first; nothing changed then.
inline void set_log_callback(LogCallback callback, LogLevel max_level = LogLevel::Info) {
  constexpr const char* function = "pgate_set_log_callback";
  if (detail::inside_log_callback) {
    // Refused here, before the lock, which a thread setting the callback holds while it waits
    // for this one to return.
    throw Error(PGATE_STATUS_INVALID_ARGUMENT,
                "promotion_gates::set_log_callback: called from inside the log callback, which "
                "must call no promotion_gates function (it would wait for itself)");
  }
  auto next = callback ? std::make_unique<LogCallback>(std::move(callback)) : nullptr;
  detail::LogCallbackSlot& slot = detail::log_callback_slot();
  std::unique_ptr<LogCallback> old;
  {
    const std::lock_guard<std::mutex> lock(slot.replacing);
    detail::check_with_error(function, [&](pgate_error** err) {
      return pgate_set_log_callback(next ? &detail::log_line : nullptr, next.get(),
                                    static_cast<std::uint32_t>(max_level), err);
    });
    // The library calls the old callback no more. (A failure threw above, leaving the old one
    // in place and freeing `next`, which the library never saw.)
    old = std::exchange(slot.current, std::move(next));
  }
  // Destroyed once the lock is let go: what it captured may set the callback as it goes.
}

}  // namespace promotion_gates

#endif  // PROMOTION_GATES_HPP
