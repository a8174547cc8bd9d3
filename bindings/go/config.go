package promotiongates

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"reflect"
	"strconv"
	"time"
)

// Config is a PromotionConfig: where the release stands, its flags and its rollback policy.
// It marshals to the JSON the library reads, with the Rust field names (environment,
// feature_flags, auto_rollback_enabled, slo_threshold, rollback_window_seconds, gate, salt,
// graduated_flags, max_rollback_history, store, overrides), and reads every field of
// Gate.Config's document, so a config read, changed and swapped back keeps them all. Start
// from DefaultConfig: the zero Config is not valid (a zero window, threshold and history
// bound).
type Config struct {
	Environment           Environment // where the release stands
	TrafficPercent        float64     // canary share, 0..=100; only for Canary
	FeatureFlags          []string    // release flags: on for the new version's requests
	AutoRollbackEnabled   bool        // roll back by itself when the canary breaks its SLO
	SLOThreshold          float64     // share of requests that must meet the SLO, 0..=1
	RollbackWindowSeconds uint64      // the judge's sliding window, 1 ..= 604800 s, at least 10 x the SLO's EvaluationInterval
	Gate                  string      // the gate's name; the default salt
	Salt                  string      // the routing salt; "" means none (Gate is used)
	GraduatedFlags        []string    // stable flags: on for every request
	MaxRollbackHistory    uint64      // events the history keeps, 1 ..= 100000
	Store                 *Store      // the state store shared by every process; nil keeps state in this one
	Overrides             *Overrides  // requests forced to a version; nil forces nothing
}

// Overrides is the config's overrides section: where a host reads a forcing value ("canary"
// or "stable"), and request ids forced by list. Empty fields are left out of the JSON.
type Overrides struct {
	Header    string   `json:"header,omitempty" pgate:"optional"` // request header holding a forcing value
	Cookie    string   `json:"cookie,omitempty" pgate:"optional"` // cookie holding a forcing value
	CanaryIDs []string `json:"canary_ids,omitempty"`              // ids always sent to the new version
	StableIDs []string `json:"stable_ids,omitempty"`              // ids always sent to the stable version
}

// DefaultConfig returns the library's defaults: Production, no flags, automatic rollback on,
// slo_threshold 0.95, a 300 s window, gate "default", 100 history events.
func DefaultConfig() Config {
	return Config{
		Environment:           Production,
		AutoRollbackEnabled:   true,
		SLOThreshold:          0.95,
		RollbackWindowSeconds: 300,
		Gate:                  "default",
		MaxRollbackHistory:    100,
	}
}

// configJSON is the wire form of Config, a PromotionConfig.
type configJSON struct {
	Environment           environmentJSON `json:"environment"`
	FeatureFlags          []string        `json:"feature_flags"`
	AutoRollbackEnabled   bool            `json:"auto_rollback_enabled"`
	SLOThreshold          float64         `json:"slo_threshold"`
	RollbackWindowSeconds uint64          `json:"rollback_window_seconds"`
	Gate                  string          `json:"gate"`
	Salt                  *string         `json:"salt"`
	GraduatedFlags        []string        `json:"graduated_flags"`
	MaxRollbackHistory    uint64          `json:"max_rollback_history" pgate:"usize"`
	Store                 *Store          `json:"store,omitempty"`
	Overrides             *Overrides      `json:"overrides,omitempty"`
}

// MarshalJSON writes the library's JSON form (nil flag lists as [], "" salt as null). A NaN
// or infinite TrafficPercent (of a Canary) or SLOThreshold, which JSON cannot carry, is an
// ErrInvalidConfig naming its JSON field and value, as the library names a value it refuses.
func (c Config) MarshalJSON() ([]byte, error) {
	percent := 0.0 // written only for a Canary
	if c.Environment == Canary {
		percent = c.TrafficPercent
	}
	if err := finite(namedFloat{"environment.canary.traffic_percent", percent},
		namedFloat{"slo_threshold", c.SLOThreshold}); err != nil {
		return nil, err
	}
	w := configJSON{
		Environment:           environmentJSON{c.Environment, c.TrafficPercent},
		FeatureFlags:          nonNil(c.FeatureFlags),
		AutoRollbackEnabled:   c.AutoRollbackEnabled,
		SLOThreshold:          c.SLOThreshold,
		RollbackWindowSeconds: c.RollbackWindowSeconds,
		Gate:                  c.Gate,
		GraduatedFlags:        nonNil(c.GraduatedFlags),
		MaxRollbackHistory:    c.MaxRollbackHistory,
		Store:                 c.Store,
		Overrides:             c.Overrides,
	}
	if c.Salt != "" {
		w.Salt = &c.Salt
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the library's JSON form (Gate.Config's output) as the library reads it.
// Missing fields take the library's defaults, as in the library. What the library refuses to
// read is refused (rather than read otherwise, or dropped): a key not in its exact case, a
// field Config does not know, a field given twice, a canary without its traffic_percent, a
// store without its path (SQLite) or endpoints and prefix (etcd), an environment or a store
// naming two, null for a field that is not optional, a value of another type. The error is
// an ErrInvalidJSON in the library's words, naming the field's path and the value, without
// the position the library adds: "invalid JSON config: environment.canary: unknown field
// `trafic_percent`, expected `traffic_percent`". A value the library reads but refuses
// (a traffic_percent of 150) is New's to refuse, but for a salt, override header or cookie
// given as "": the binding's "" means none, so it would be written back as none; it is an
// ErrInvalidConfig in the library's words (invalid salt = "": a name must not be empty).
// So is a document longer than the library's MAX_DOCUMENT_BYTES (8 MiB), unread ("invalid
// document = a PromotionConfig of 9437207 bytes: at most 8388608 bytes (MAX_DOCUMENT_BYTES)").
// Bytes that are not UTF-8 (encoding/json reads each as U+FFFD, without an error) are refused
// as New refuses them, an ErrInvalidArgument naming New's argument ("invalid config_json =
// "{\"salt\": \"caf\xe9\"}": config is not valid UTF-8 (invalid byte at offset 13)"), and a
// \u escape that is no character (a lone surrogate, "\udc00") in serde_json's words ("invalid
// JSON config: salt: lone leading surrogate in hex escape"). A refused document leaves c as
// it was.
//
// json.Unmarshal checks the whole input's syntax itself, then passes UnmarshalJSON the value
// alone, without the whitespace around it. Through json.Unmarshal, a syntax error, a byte
// order mark and a byte that is not UTF-8 outside a string are therefore its
// *json.SyntaxError, not an ErrInvalidJSON or ErrInvalidArgument, and whitespace around the
// value is not counted against MAX_DOCUMENT_BYTES. Call UnmarshalJSON on a whole document
// (from a file) to have each refused as New refuses it:
//
//	var cfg promotiongates.Config
//	err := cfg.UnmarshalJSON(data) // data: the file's bytes
func (c *Config) UnmarshalJSON(data []byte) error {
	d := DefaultConfig()
	w := configJSON{
		Environment:           environmentJSON{d.Environment, d.TrafficPercent},
		AutoRollbackEnabled:   d.AutoRollbackEnabled,
		SLOThreshold:          d.SLOThreshold,
		RollbackWindowSeconds: d.RollbackWindowSeconds,
		Gate:                  d.Gate,
		MaxRollbackHistory:    d.MaxRollbackHistory,
	}
	if err := readDocument(data, configDocument, "PromotionConfig", &w); err != nil {
		return err
	}
	var given struct { // read strictly above: its keys are exact, none given twice
		Salt      *string     `json:"salt"`
		Overrides *givenNames `json:"overrides"`
	}
	_ = json.Unmarshal(data, &given)
	if given.Salt != nil && *given.Salt == "" {
		return emptyName("salt")
	}
	if err := given.Overrides.refused("overrides"); err != nil {
		return err
	}
	*c = Config{
		Environment:           w.Environment.Environment,
		TrafficPercent:        w.Environment.TrafficPercent,
		FeatureFlags:          w.FeatureFlags,
		AutoRollbackEnabled:   w.AutoRollbackEnabled,
		SLOThreshold:          w.SLOThreshold,
		RollbackWindowSeconds: w.RollbackWindowSeconds,
		Gate:                  w.Gate,
		GraduatedFlags:        w.GraduatedFlags,
		MaxRollbackHistory:    w.MaxRollbackHistory,
		Store:                 w.Store,
		Overrides:             w.Overrides,
	}
	if w.Salt != nil {
		c.Salt = *w.Salt
	}
	return nil
}

func (*configJSON) libraryForm() (string, bool) { return "struct PromotionConfig", false }

func (*Overrides) libraryForm() (string, bool) { return "struct Overrides", false }

// UnmarshalJSON reads the section overrides alone as the library reads it inside a config
// (see Config.UnmarshalJSON): a key not in its exact case, a field Overrides does not know, a
// field given twice, null for an id list, a value of another type are refused with an
// ErrInvalidJSON in the library's words, the path starting at overrides ("invalid JSON config:
// overrides.cokie: unknown field `cokie`, expected one of `header`, `cookie`, `canary_ids`,
// `stable_ids`"), and so is a header or cookie named "" (see Config.UnmarshalJSON). A refused
// document leaves o as it was.
func (o *Overrides) UnmarshalJSON(data []byte) error {
	var read Overrides
	if err := readSection(data, "overrides", &read, Overrides{}); err != nil {
		return err
	}
	var given givenNames // read strictly above: its keys are exact, none given twice
	_ = json.Unmarshal(data, &given)
	if err := given.refused("overrides"); err != nil {
		return err
	}
	*o = read
	return nil
}

// givenNames are the override names a document gives, nil for one it leaves out or gives as
// null.
type givenNames struct {
	Header *string `json:"header"`
	Cookie *string `json:"cookie"`
}

// refused is the refusal of a name given as "" in the overrides section at path at (nil n:
// no section).
func (n *givenNames) refused(at string) error {
	if n == nil {
		return nil
	}
	for _, name := range []struct {
		field string
		value *string
	}{{"header", n.Header}, {"cookie", n.Cookie}} {
		if name.value != nil && *name.value == "" {
			return emptyName(within(at, name.field))
		}
	}
	return nil
}

// emptyName refuses a name given as "" where the binding's "" means none (Config.Salt,
// Overrides.Header and Cookie), as the library refuses it: read as none, it would be written
// back as none, a document the library takes in place of one it refuses.
func emptyName(field string) error {
	return &Error{Status: StatusInvalidConfig, Message: "invalid " + field + ` = "": a name must not be empty`}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// environmentJSON is the wire form of an environment: {"canary":{"traffic_percent":10.0}},
// "staging" or "production".
type environmentJSON struct {
	Environment    Environment
	TrafficPercent float64
}

func (e environmentJSON) MarshalJSON() ([]byte, error) {
	switch e.Environment {
	case Canary:
		return json.Marshal(map[string]map[string]float64{"canary": {"traffic_percent": e.TrafficPercent}})
	case Staging, Production:
		return json.Marshal(e.Environment.String())
	}
	return nil, &Error{Status: StatusInvalidConfig, Message: fmt.Sprintf(
		"invalid environment = %d: Canary, Staging or Production (0, 1 or 2)", uint32(e.Environment))}
}

// environmentForms are the forms an environment takes, as its errors list them.
const environmentForms = `"staging", "production" or {"canary": {"traffic_percent": P}}`

// readAt reads an environment as the library does (src/config/environment_wire.rs): its name,
// or the map form naming one, {"canary": {"traffic_percent": P}} or {"staging": null}.
func (e *environmentJSON) readAt(data []byte, at string) error {
	named := func(name string) error {
		switch name {
		case "staging":
			*e = environmentJSON{Environment: Staging}
		case "production":
			*e = environmentJSON{Environment: Production}
		case "canary":
			return refuse(at, "invalid value: string %s, expected %s", strconv.Quote(name), environmentForms)
		default:
			return refuse(at, "unknown variant `%s`, expected %s", name, oneOf([]string{"canary", "staging", "production"}))
		}
		return nil
	}
	switch data[0] {
	case '"':
		name, err := readString(data, at)
		if err != nil {
			return err
		}
		return named(name)
	case '{':
	default:
		return invalidType(at, data, environmentForms)
	}
	name, written, value, ok, second, more := variant(data)
	if err := strictString(written, at); ok && err != nil {
		return err
	}
	switch {
	case !ok:
		return refuse(at, "invalid length 0, expected %s", environmentForms)
	case name == "canary":
		var canary canaryJSON
		if err := readValue(value, within(at, name), reflect.ValueOf(&canary).Elem()); err != nil {
			return err
		}
		*e = environmentJSON{Environment: Canary, TrafficPercent: canary.TrafficPercent}
	case (name == "staging" || name == "production") && value[0] != 'n':
		return invalidType(within(at, name), value, `nothing (null): or write the name alone, "staging" or "production"`)
	default:
		if err := named(name); err != nil {
			return err
		}
	}
	if more {
		if err := strictString(second, at); err != nil {
			return err
		}
		return refuse(at, "invalid length 2, expected %s", environmentForms)
	}
	return nil
}

// UnmarshalJSON reads an environment in a document of the library's other than a config (a
// change's from and to, a rollback event's), as readAt reads it.
func (e *environmentJSON) UnmarshalJSON(data []byte) error {
	return readJSON(data, "", environmentDocument, func(data []byte) error { return e.readAt(data, "") })
}

// canaryJSON is the canary's fields, {"traffic_percent": P}.
type canaryJSON struct {
	TrafficPercent float64 `json:"traffic_percent" pgate:"required"`
}

func (*canaryJSON) libraryForm() (string, bool) { return `{"traffic_percent": P}`, true }

// SLO is an SloConfig: what a compliant request is, and when a canary is rolled back. It
// marshals to the library's JSON (latency_target_ms, max_error_rate, error_rate_ratio_limit,
// p99_ratio_limit, p99_budget_ms, min_samples, significance, overwhelming_significance,
// evaluation_interval_ms, error_rate_tolerance, latency_shift_limit, latency_tolerance_ms,
// warm_up_ms, no_data_ms, promotion_significance, promotion_evidence), durations as
// fractional milliseconds. Start from DefaultSLO.
type SLO struct {
	LatencyTarget            time.Duration // success within this is compliant (0 < x <= 60 s)
	MaxErrorRate             float64       // roll back above this error rate, 0..=1
	ErrorRateRatioLimit      float64       // roll back above production's error rate x this, >= 1
	P99RatioLimit            float64       // roll back above production's p99 x this, >= 1
	P99Budget                time.Duration // roll back above this p99 (below the histogram's last bucket, about 60 s); 0 means no budget (null)
	MinSamples               uint64        // canary samples before an ordinary rule may fire, 5..=10 000 000
	Significance             float64       // one-sided level of each rule's test, [2.2250738585072014e-308 (the least normal float64; 2.2e-308 is refused), 0.5); at 0.1 %, one failure in MinSamples must not reach it
	OverwhelmingSignificance float64       // level that may act before MinSamples, >= 2.2250738585072014e-308 (as Significance), <= Significance
	EvaluationInterval       time.Duration // least time between automatic evaluations (<= 1 h, and <= a tenth of the gate's RollbackWindowSeconds)
	ErrorRateTolerance       float64       // absolute tolerance beside ErrorRateRatioLimit, [0.0001, 1]
	LatencyShiftLimit        float64       // tolerated whole-distribution slowdown (Mann-Whitney), >= 1
	LatencyTolerance         time.Duration // absolute tolerance beside the latency ratios (below the histogram's last bucket)
	WarmUp                   time.Duration // latency rules skip this first part of a stage (<= 1 h)
	NoDataAfter              time.Duration // no canary outcome this long: NO_DATA (1 s..=24 h)
	PromotionSignificance    float64       // level of the promotion's confidence bounds, [2.2250738585072014e-308 (as Significance), 0.5)
	PromotionEvidence        bool          // promotion needs the canary shown not worse than stable
}

// DefaultSLO returns the library's defaults: 500 ms target, 5 % errors, ratios 1.5, no p99
// budget, 100 samples, significance 0.001 and 1e-9, evaluation every second, tolerances 0.05
// points and 1 ms, latency shift 1.1, 30 s warm-up, NO_DATA after 120 s, promotion evidence at 0.05.
func DefaultSLO() SLO {
	return SLO{
		LatencyTarget:            500 * time.Millisecond,
		MaxErrorRate:             0.05,
		ErrorRateRatioLimit:      1.5,
		P99RatioLimit:            1.5,
		MinSamples:               100,
		Significance:             0.001,
		OverwhelmingSignificance: 1e-9,
		EvaluationInterval:       time.Second,
		ErrorRateTolerance:       0.0005,
		LatencyShiftLimit:        1.1,
		LatencyTolerance:         time.Millisecond,
		WarmUp:                   30 * time.Second,
		NoDataAfter:              120 * time.Second,
		PromotionSignificance:    0.05,
		PromotionEvidence:        true,
	}
}

// sloJSON is the wire form of SLO, an SloConfig.
type sloJSON struct {
	LatencyTargetMS          millisJSON  `json:"latency_target_ms"`
	MaxErrorRate             float64     `json:"max_error_rate"`
	ErrorRateRatioLimit      float64     `json:"error_rate_ratio_limit"`
	P99RatioLimit            float64     `json:"p99_ratio_limit"`
	P99BudgetMS              *millisJSON `json:"p99_budget_ms"`
	MinSamples               uint64      `json:"min_samples"`
	Significance             float64     `json:"significance"`
	OverwhelmingSignificance float64     `json:"overwhelming_significance"`
	EvaluationIntervalMS     millisJSON  `json:"evaluation_interval_ms"`
	ErrorRateTolerance       float64     `json:"error_rate_tolerance"`
	LatencyShiftLimit        float64     `json:"latency_shift_limit"`
	LatencyToleranceMS       millisJSON  `json:"latency_tolerance_ms"`
	WarmUpMS                 millisJSON  `json:"warm_up_ms"`
	NoDataMS                 millisJSON  `json:"no_data_ms"`
	PromotionSignificance    float64     `json:"promotion_significance"`
	PromotionEvidence        bool        `json:"promotion_evidence"`
}

// millisJSON is the wire form of a duration: milliseconds, a float, read as the library reads
// one (src/slo/millis.rs): a number, not negative, within a Rust Duration (about 1.8e22 ms),
// and not above 0 yet below its nanosecond, each refused in the library's words. What a
// time.Duration cannot hold (above about 9.2e12 ms, which the library reads and its
// validation refuses) is left to duration.
type millisJSON float64

// readAt reads a duration in milliseconds at path at.
func (m *millisJSON) readAt(data []byte, at string) error {
	var ms float64
	if err := readValue(data, at, reflect.ValueOf(&ms).Elem()); err != nil {
		return err
	}
	switch {
	case ms < 0:
		return refuse(at, "%s is not a duration in milliseconds (finite, not negative)", shownNumber(ms))
	case ms/1e3 >= 0x1p64: // a Rust Duration's seconds are a u64
		return refuse(at, "%s is not a duration in milliseconds (longer than a duration holds (about 1.8e22 ms))", shownNumber(ms))
	case ms > 0 && nanoseconds(ms).Sign() == 0:
		return refuse(at, "%s is not a duration in milliseconds: above 0 but below the shortest duration, "+
			"1 nanosecond (0.000001 ms), it would be read as 0", shownNumber(ms))
	}
	*m = millisJSON(ms)
	return nil
}

// duration is m as a time.Duration (see nanoseconds), or an ErrInvalidConfig naming field
// and m when a Duration cannot hold it (the library reads it, then refuses it: no duration of
// an SloConfig may be that long), in the library's words for a value it refuses: "invalid
// warm_up_ms = 10000000000000: ...".
func (m millisJSON) duration(field string) (time.Duration, error) {
	ns := nanoseconds(float64(m))
	if !ns.IsInt64() {
		return 0, &Error{Status: StatusInvalidConfig, Message: "invalid " + field + " = " +
			shownNumber(float64(m)) + ": longer than a time.Duration holds (about 9.2e12 ms)"}
	}
	return time.Duration(ns.Int64()), nil
}

// nanoseconds is ms milliseconds (finite, not negative) in whole nanoseconds as the library
// reads them: ms / 1000 seconds, a float, taken exactly and rounded to the nearest
// nanosecond, ties to even (Rust's Duration::try_from_secs_f64: 0.0000015 ms is 1 ns, where
// ms * 1e6 rounded would be 2).
func nanoseconds(ms float64) *big.Int {
	exact := new(big.Float).SetPrec(256).SetFloat64(ms / 1e3) // a float64 is exact in 256 bits
	exact.Mul(exact, big.NewFloat(1e9))
	ns, _ := exact.Int(nil) // toward zero
	rest := new(big.Float).SetPrec(256).Sub(exact, new(big.Float).SetInt(ns))
	if c := rest.Cmp(big.NewFloat(0.5)); c > 0 || c == 0 && ns.Bit(0) == 1 {
		ns.Add(ns, big.NewInt(1))
	}
	return ns
}

func (*sloJSON) libraryForm() (string, bool) { return "struct SloConfig", false }

func millis(d time.Duration) millisJSON { return millisJSON(float64(d) / float64(time.Millisecond)) }

// MarshalJSON writes the library's JSON form. A NaN or infinite ratio, rate or level, which
// JSON cannot carry, is an ErrInvalidConfig naming its JSON field and value (durations are
// always finite).
func (s SLO) MarshalJSON() ([]byte, error) {
	if err := finite(
		namedFloat{"max_error_rate", s.MaxErrorRate},
		namedFloat{"error_rate_ratio_limit", s.ErrorRateRatioLimit},
		namedFloat{"p99_ratio_limit", s.P99RatioLimit},
		namedFloat{"significance", s.Significance},
		namedFloat{"overwhelming_significance", s.OverwhelmingSignificance},
		namedFloat{"error_rate_tolerance", s.ErrorRateTolerance},
		namedFloat{"latency_shift_limit", s.LatencyShiftLimit},
		namedFloat{"promotion_significance", s.PromotionSignificance},
	); err != nil {
		return nil, err
	}
	w := sloJSON{
		LatencyTargetMS:          millis(s.LatencyTarget),
		MaxErrorRate:             s.MaxErrorRate,
		ErrorRateRatioLimit:      s.ErrorRateRatioLimit,
		P99RatioLimit:            s.P99RatioLimit,
		MinSamples:               s.MinSamples,
		Significance:             s.Significance,
		OverwhelmingSignificance: s.OverwhelmingSignificance,
		EvaluationIntervalMS:     millis(s.EvaluationInterval),
		ErrorRateTolerance:       s.ErrorRateTolerance,
		LatencyShiftLimit:        s.LatencyShiftLimit,
		LatencyToleranceMS:       millis(s.LatencyTolerance),
		WarmUpMS:                 millis(s.WarmUp),
		NoDataMS:                 millis(s.NoDataAfter),
		PromotionSignificance:    s.PromotionSignificance,
		PromotionEvidence:        s.PromotionEvidence,
	}
	if s.P99Budget != 0 {
		ms := millis(s.P99Budget)
		w.P99BudgetMS = &ms
	}
	return json.Marshal(w)
}

// namedFloat is a float field of a config with its JSON name.
type namedFloat struct {
	field string
	value float64
}

// finite returns an ErrInvalidConfig naming the first field that is NaN or infinite (JSON
// has neither), in the library's words: "invalid max_error_rate = NaN: ...".
func finite(fields ...namedFloat) error {
	for _, f := range fields {
		if math.IsNaN(f.value) || math.IsInf(f.value, 0) {
			return &Error{Status: StatusInvalidConfig, Message: "invalid " + f.field + " = " +
				strconv.FormatFloat(f.value, 'g', -1, 64) + ": a finite number (JSON has no NaN or infinity)"}
		}
	}
	return nil
}

// NewFromConfig creates a gate from typed configs (see New for the errors). A NaN or
// infinite float is refused before the library is called, with ErrInvalidConfig naming its
// JSON field and value (see Config.MarshalJSON and SLO.MarshalJSON).
func NewFromConfig(cfg Config, slo SLO) (*Gate, error) {
	c, err := json.Marshal(cfg)
	if err != nil {
		return nil, marshalError(err)
	}
	s, err := json.Marshal(slo)
	if err != nil {
		return nil, marshalError(err)
	}
	return New(string(c), string(s))
}

// marshalError is the error of a typed config that did not marshal: the *Error a MarshalJSON
// returned (json.Marshal wraps it), else an ErrInvalidConfig with json's message.
func marshalError(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return pe
	}
	return &Error{Status: StatusInvalidConfig, Message: err.Error()}
}
