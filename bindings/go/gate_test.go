package promotiongates

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"
)

func TestVersionAndNames(t *testing.T) {
	if v := Version(); v == "" || strings.Count(v, ".") != 2 {
		t.Fatalf("Version() = %q", v)
	}
	for s, want := range map[Status]string{
		StatusOK:                "PGATE_STATUS_OK",
		StatusInsufficientData:  "PGATE_STATUS_INSUFFICIENT_DATA",
		StatusIndexOutOfRange:   "PGATE_STATUS_INDEX_OUT_OF_RANGE",
		StatusUnknownFlagSet:    "PGATE_STATUS_UNKNOWN_FLAG_SET",
		StatusFlagSetsExhausted: "PGATE_STATUS_FLAG_SETS_EXHAUSTED",
		StatusStore:             "PGATE_STATUS_STORE",
		StatusStageChanged:      "PGATE_STATUS_STAGE_CHANGED",
		StatusGateChanged:       "PGATE_STATUS_GATE_CHANGED",
		StatusGateChanged + 1:   "PGATE_STATUS_UNKNOWN(21)",
	} {
		if s.String() != want {
			t.Fatalf("status %d: %q, want %q", s, s, want)
		}
	}
	for s := StatusOK; s <= StatusGateChanged; s++ {
		if !strings.HasPrefix(s.String(), "PGATE_STATUS_") || strings.HasPrefix(s.String(), "PGATE_STATUS_UNKNOWN(") {
			t.Fatalf("status %d has no name: %q", s, s)
		}
	}
	if Staging.String() != "staging" || Environment(9).String() != "Environment(9)" ||
		Late.String() != "late" || Rollback.String() != "ROLLBACK" {
		t.Fatal("enum names")
	}
	if (RuleErrorRateMax|RuleP99Budget).String() != "error_rate_max|p99_budget" || Rules(0).String() != "none" {
		t.Fatalf("rules %q", RuleErrorRateMax|RuleP99Budget)
	}
}

func TestErrorMatching(t *testing.T) {
	err := error(&Error{Status: StatusSLONotMet, Message: "compliance 90% < 95%"})
	if !errors.Is(err, ErrSLONotMet) || errors.Is(err, ErrInsufficientData) {
		t.Fatal("errors.Is should match the status only")
	}
	wrapped := fmt.Errorf("promote: %w", err)
	if pe := wantErr(t, wrapped, ErrSLONotMet); pe.Message != "compliance 90% < 95%" {
		t.Fatalf("message %q", pe.Message)
	}
	if got := err.Error(); got != "promotiongates: compliance 90% < 95% (PGATE_STATUS_SLO_NOT_MET)" {
		t.Fatalf("Error() = %q", got)
	}
	if ErrClosed != ErrInvalidHandle {
		t.Fatal("ErrClosed is ErrInvalidHandle")
	}
}

func TestDefaultsMatchTheLibrary(t *testing.T) {
	g := newGate(t, "", "")
	doc, err := g.Config()
	ok(t, err)
	var got Config
	ok(t, json.Unmarshal([]byte(doc), &got))
	want := DefaultConfig()
	want.FeatureFlags, want.GraduatedFlags = []string{}, []string{}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("library defaults %+v, DefaultConfig %+v", got, want)
	}
	// DefaultConfig and DefaultSLO marshal to documents the library accepts, field by field.
	g2, err := NewFromConfig(DefaultConfig(), DefaultSLO())
	ok(t, err)
	ok(t, g2.Close())
	slo, err := json.Marshal(DefaultSLO())
	ok(t, err)
	for _, field := range []string{"latency_target_ms", "max_error_rate", "error_rate_ratio_limit",
		"p99_ratio_limit", "p99_budget_ms", "min_samples", "significance",
		"overwhelming_significance", "evaluation_interval_ms", "error_rate_tolerance",
		"latency_shift_limit", "latency_tolerance_ms", "warm_up_ms", "no_data_ms",
		"promotion_significance", "promotion_evidence"} {
		if !strings.Contains(string(slo), `"`+field+`":`) {
			t.Fatalf("SLO JSON %s lacks %s", slo, field)
		}
	}
}

func TestConfigRoundTrip(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Environment, cfg.TrafficPercent = Canary, 12.5
	cfg.FeatureFlags = []string{"new_api", "fast_path"}
	cfg.GraduatedFlags = []string{"dark_mode"}
	cfg.AutoRollbackEnabled = false
	cfg.SLOThreshold = 0.9
	cfg.RollbackWindowSeconds = 60
	cfg.Gate, cfg.Salt = "checkout", "checkout-v2"
	cfg.MaxRollbackHistory = 7
	slo := DefaultSLO()
	slo.LatencyTarget = 250 * time.Millisecond
	slo.P99Budget = 1500 * time.Microsecond
	slo.MinSamples = 10
	g, err := NewFromConfig(cfg, slo)
	ok(t, err)
	defer g.Close()
	doc, err := g.Config()
	ok(t, err)
	var back Config
	ok(t, json.Unmarshal([]byte(doc), &back))
	if fmt.Sprint(back) != fmt.Sprint(cfg) {
		t.Fatalf("round trip\n got %+v\nwant %+v", back, cfg)
	}

	// SwapConfig: a valid document replaces the config, an invalid one changes nothing.
	cfg.Environment, cfg.TrafficPercent = Staging, 0
	next, err := json.Marshal(cfg)
	ok(t, err)
	ok(t, g.SwapConfig(string(next)))
	d, err := g.RouteString("u")
	ok(t, err)
	if d.Environment() != Staging || !d.IsCanary() || d.TrafficPercent() != 100 {
		t.Fatalf("after swap to staging: %+v", d)
	}
	pe := wantErr(t, g.SwapConfig(`{"slo_threshold": 7}`), ErrInvalidConfig)
	if !strings.Contains(pe.Message, "slo_threshold") {
		t.Fatalf("message should name the field: %q", pe.Message)
	}
	wantEmptyRefused(t, g.SwapConfig(""))
	if d2, _ := g.RouteString("u"); d2.Environment() != Staging {
		t.Fatal("a refused swap changed the gate")
	}
}

// wantEmptyRefused checks a swap's refusal of an empty document (New reads "" as the
// defaults): ErrInvalidJSON saying the document is empty (the library's words are the JSON
// parser's, "EOF while parsing a value at line 1 column 0").
func wantEmptyRefused(t *testing.T, err error) {
	t.Helper()
	pe := wantErr(t, err, ErrInvalidJSON)
	if want := "invalid JSON config: empty document (a swap takes a whole config, such as Config returns)"; pe.Message != want {
		t.Fatalf("an empty document: message %q, want %q", pe.Message, want)
	}
}

func mustConfig(t *testing.T, g *Gate) string {
	t.Helper()
	doc, err := g.Config()
	ok(t, err)
	return doc
}

func TestConstructionErrors(t *testing.T) {
	cases := []struct {
		config, slo string
		target      error
		mentions    string
	}{
		{`{not json`, ``, ErrInvalidJSON, "line 1"},
		{`{"slo_thresold": 0.9}`, ``, ErrInvalidJSON, "slo_thresold"},
		{`{"slo_threshold": 1.5}`, ``, ErrInvalidConfig, "slo_threshold"},
		{`{"environment": {"canary": {"traffic_percent": 150}}}`, ``, ErrInvalidConfig, "environment.canary.traffic_percent"},
		{`{"environment": "nowhere"}`, ``, ErrInvalidJSON, "nowhere"},
		{`{"feature_flags": ["ok", "has space"]}`, ``, ErrInvalidConfig, "feature_flags[1]"},
		{`{"max_rollback_history": 0}`, ``, ErrInvalidConfig, "max_rollback_history"},
		{``, `{"min_samples": 0}`, ErrInvalidConfig, "min_samples"},
		{``, `{"latency_target_ms": -1}`, ErrInvalidJSON, ""},
		{``, `{"max_error_rate": 2}`, ErrInvalidConfig, "max_error_rate"},
		{``, `{"significance": 0.1, "overwhelming_significance": 0.2}`, ErrInvalidConfig, "overwhelming_significance"},
		{``, `{"unknown": 1}`, ErrInvalidJSON, "unknown"},
		{"\xff", ``, ErrInvalidArgument, "UTF-8"},
	}
	for _, c := range cases {
		g, err := New(c.config, c.slo)
		if g != nil {
			t.Fatalf("New(%q, %q) made a gate", c.config, c.slo)
		}
		pe := wantErr(t, err, c.target)
		if !strings.Contains(pe.Message, c.mentions) {
			t.Fatalf("New(%q, %q): message %q should mention %q", c.config, c.slo, pe.Message, c.mentions)
		}
	}
	// The zero SLO is refused by name (its latency target is 0).
	_, err := NewFromConfig(DefaultConfig(), SLO{})
	if pe := wantErr(t, err, ErrInvalidConfig); !strings.Contains(pe.Message, "latency_target_ms") {
		t.Fatalf("message %q", pe.Message)
	}
}

// TestNonFiniteFloatsAreNamed: a NaN or infinite float of a typed config, which JSON cannot
// carry, is refused by NewFromConfig (and json.Marshal) naming its JSON field and value.
func TestNonFiniteFloatsAreNamed(t *testing.T) {
	fields := map[string]func(*Config, *SLO, float64){
		"environment.canary.traffic_percent": func(c *Config, _ *SLO, v float64) { c.Environment, c.TrafficPercent = Canary, v },
		"slo_threshold":                      func(c *Config, _ *SLO, v float64) { c.SLOThreshold = v },
		"max_error_rate":                     func(_ *Config, s *SLO, v float64) { s.MaxErrorRate = v },
		"error_rate_ratio_limit":             func(_ *Config, s *SLO, v float64) { s.ErrorRateRatioLimit = v },
		"p99_ratio_limit":                    func(_ *Config, s *SLO, v float64) { s.P99RatioLimit = v },
		"significance":                       func(_ *Config, s *SLO, v float64) { s.Significance = v },
		"overwhelming_significance":          func(_ *Config, s *SLO, v float64) { s.OverwhelmingSignificance = v },
		"error_rate_tolerance":               func(_ *Config, s *SLO, v float64) { s.ErrorRateTolerance = v },
		"latency_shift_limit":                func(_ *Config, s *SLO, v float64) { s.LatencyShiftLimit = v },
		"promotion_significance":             func(_ *Config, s *SLO, v float64) { s.PromotionSignificance = v },
	}
	for field, set := range fields {
		for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
			cfg, slo := DefaultConfig(), DefaultSLO()
			set(&cfg, &slo, v)
			want := fmt.Sprintf("invalid %s = %v: a finite number (JSON has no NaN or infinity)", field, v)
			g, err := NewFromConfig(cfg, slo)
			if g != nil {
				t.Fatalf("%s = %v made a gate", field, v)
			}
			if pe := wantErr(t, err, ErrInvalidConfig); pe.Message != want {
				t.Fatalf("%s = %v: message %q, want %q", field, v, pe.Message, want)
			}
			_, errConfig := json.Marshal(cfg)
			_, errSLO := json.Marshal(slo)
			if err := errors.Join(errConfig, errSLO); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("json.Marshal with %s = %v: %v", field, v, err)
			}
		}
	}
	// Outside a Canary the percentage is not written, so it is not read.
	cfg := DefaultConfig()
	cfg.TrafficPercent = math.NaN()
	g, err := NewFromConfig(cfg, DefaultSLO())
	ok(t, err)
	ok(t, g.Close())
}

func TestPromotionErrors(t *testing.T) {
	g := newGate(t, "", "")
	wantErr(t, g.Promote(Staging, 0), ErrInvalidPromotion)
	wantErr(t, g.Promote(Production, 0), ErrAlreadyThere)
	for _, bad := range []float64{math.NaN(), math.Inf(1), -1, 100.5} {
		pe := wantErr(t, g.Promote(Canary, bad), ErrInvalidConfig)
		if !strings.Contains(pe.Message, "environment.canary.traffic_percent") {
			t.Fatalf("percent %v: message %q should name the field", bad, pe.Message)
		}
	}
	pe := wantErr(t, g.Promote(Environment(7), 0), ErrInvalidArgument)
	if !strings.Contains(pe.Message, "7") {
		t.Fatalf("message %q", pe.Message)
	}
	// In a typed config: the field and the value, not json's wrapping of the marshaller.
	cfg := DefaultConfig()
	cfg.Environment = Environment(7)
	_, err := NewFromConfig(cfg, DefaultSLO())
	pe = wantErr(t, err, ErrInvalidConfig)
	if pe.Message != "invalid environment = 7: Canary, Staging or Production (0, 1 or 2)" {
		t.Fatalf("an unknown environment in a typed config: %q", pe.Message)
	}
	// Read back from JSON, the library's refusal: TestDocumentsAreReadAsTheLibraryReadsThem.

	// A new rollout and ramping down are not gated; ramping up without data is refused.
	ok(t, g.Promote(Canary, 1))
	ok(t, g.Promote(Canary, 0.5))
	pe = wantErr(t, g.Promote(Canary, 5), ErrInsufficientData)
	if !strings.Contains(pe.Message, "canary samples needed") {
		t.Fatalf("message %q should carry the evidence", pe.Message)
	}
	wantErr(t, g.Promote(Staging, 0), ErrInsufficientData)
	if d, _ := g.RouteString("u"); d.Environment() != Canary || d.TrafficPercent() != 0.5 {
		t.Fatalf("a refused promotion changed the gate: %v %v", d.Environment(), d.TrafficPercent())
	}
}

// TestPromoteFromAStageThatChanged is a ramp loop's look, then a rollback before its promotion:
// PromoteFrom refuses the promotion rather than start a new rollout from Production.
func TestPromoteFromAStageThatChanged(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	looked, err := g.State()
	ok(t, err)
	ok(t, g.Rollback("the judge, another goroutine or another process"))
	pe := wantErr(t, g.PromoteFrom(looked.Stage, Canary, 25), ErrStageChanged)
	if want := fmt.Sprintf("the gate left stage %d", looked.Stage); !strings.Contains(pe.Message, want) ||
		!strings.Contains(pe.Message, "nothing was promoted") {
		t.Fatalf("message %q should name stage %d", pe.Message, looked.Stage)
	}
	now, err := g.State()
	ok(t, err)
	if now.Environment != Production || now.Stage == looked.Stage {
		t.Fatalf("a refused PromoteFrom changed the gate: %+v (looked at %+v)", now, looked)
	}

	// From the stage it is in, PromoteFrom is Promote; a decision's stage serves as well.
	ok(t, g.PromoteFrom(now.Stage, Canary, 25))
	d, err := g.RouteString("u")
	ok(t, err)
	if d.Environment() != Canary || d.TrafficPercent() != 25 || d.Stage() == now.Stage {
		t.Fatalf("PromoteFrom the current stage: %v %v stage %d", d.Environment(), d.TrafficPercent(), d.Stage())
	}
	ok(t, g.PromoteFrom(d.Stage(), Canary, 5)) // ramping down is not gated
	wantErr(t, g.PromoteFrom(d.Stage(), Canary, 1), ErrStageChanged)
	// From the stage it is in, its other errors are Promote's (a bad argument is refused first).
	after, _ := g.State()
	wantErr(t, g.PromoteFrom(after.Stage, Canary, 50), ErrInsufficientData)
	wantErr(t, g.PromoteFrom(after.Stage, Canary, math.NaN()), ErrInvalidConfig)
	wantErr(t, g.PromoteFrom(after.Stage, Environment(7), 0), ErrInvalidArgument)
}

// readToEdit is a hot reload's read of g: the change count first, then the config, with the
// flag wide_layout added.
func readToEdit(t *testing.T, g *Gate) (uint64, string) {
	t.Helper()
	seen, err := g.ChangeCount()
	ok(t, err)
	var cfg Config
	ok(t, json.Unmarshal([]byte(mustConfig(t, g)), &cfg))
	cfg.FeatureFlags = append(cfg.FeatureFlags, "wide_layout")
	return seen, mustJSON(t, cfg)
}

// refusedAsChanged checks that SwapConfigFrom(seen, next) is refused with ErrGateChanged,
// naming the count read and the count now, and changes nothing.
func refusedAsChanged(t *testing.T, g *Gate, seen uint64, next string) {
	t.Helper()
	before := mustConfig(t, g)
	pe := wantErr(t, g.SwapConfigFrom(seen, next), ErrGateChanged)
	now, err := g.ChangeCount()
	ok(t, err)
	if want := fmt.Sprintf("the gate changed since change %d (now %d: ", seen, now); now <= seen ||
		!strings.Contains(pe.Message, want) || !strings.HasSuffix(pe.Message, "read its config again") {
		t.Fatalf("message %q should name changes %d and %d", pe.Message, seen, now)
	}
	if after := mustConfig(t, g); after != before {
		t.Fatalf("a refused SwapConfigFrom changed the config:\n got %s\nwant %s", after, before)
	}
	if on, err := g.IsFeatureEnabled("wide_layout"); err != nil || on {
		t.Fatalf("wide_layout after a refused swap: %v %v", on, err)
	}
}

// TestSwapConfigFromACountBeforeARollback is a hot reload that reads the change count, then
// the config, and edits it; a rollback comes before its swap: SwapConfigFrom refuses the swap
// rather than put the rolled-back canary back.
func TestSwapConfigFromACountBeforeARollback(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	seen, next := readToEdit(t, g)
	ok(t, g.Rollback("the judge, another goroutine or another process"))
	refusedAsChanged(t, g, seen, next)
	if now, _ := g.State(); now.Environment != Production {
		t.Fatalf("a refused SwapConfigFrom undid the rollback: %+v", now)
	}

	// From the count it is at, SwapConfigFrom is SwapConfig.
	seen, next = readToEdit(t, g)
	ok(t, g.SwapConfigFrom(seen, next))
	if on, err := g.IsFeatureEnabled("wide_layout"); err != nil || !on {
		t.Fatalf("wide_layout after SwapConfigFrom the current count: %v %v", on, err)
	}
	if st, _ := g.State(); st.Environment != Production {
		t.Fatalf("SwapConfigFrom the current count: %+v", st)
	}
	// From the count it is at, its other errors are SwapConfig's (the gate unchanged).
	seen, err := g.ChangeCount()
	ok(t, err)
	swapped := mustConfig(t, g)
	pe := wantErr(t, g.SwapConfigFrom(seen, `{"slo_threshold": 7}`), ErrInvalidConfig)
	if !strings.Contains(pe.Message, "slo_threshold") {
		t.Fatalf("message should name the field: %q", pe.Message)
	}
	wantEmptyRefused(t, g.SwapConfigFrom(seen, ""))
	wantErr(t, g.SwapConfigFrom(seen, "["), ErrInvalidJSON)
	if now, _ := g.ChangeCount(); now != seen || mustConfig(t, g) != swapped {
		t.Fatal("a refused SwapConfigFrom changed the gate")
	}
}

// TestSwapConfigFromACountBeforeAKillSwitch: a flag turned off after the read (a kill switch,
// which begins no stage) stays off. In Canary, where turning a flag on begins a stage.
func TestSwapConfigFromACountBeforeAKillSwitch(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	initial, _ := g.State()
	ok(t, g.EnableFeature("dark_mode"))
	if on, _ := g.State(); on.Stage == initial.Stage {
		t.Fatalf("in Canary a flag turned on begins a stage: %+v, %+v", initial, on)
	}
	seen, next := readToEdit(t, g)
	before, _ := g.State()
	ok(t, g.DisableFeature("dark_mode"))
	if after, _ := g.State(); after.Stage != before.Stage {
		t.Fatalf("a kill switch began a stage: %+v, %+v", before, after)
	}
	refusedAsChanged(t, g, seen, next)
	if on, err := g.IsFeatureEnabled("dark_mode"); err != nil || on {
		t.Fatalf("dark_mode is on again after a refused swap: %v %v", on, err)
	}
}

// Every character for which the library refuses a flag name is escaped in IsFeatureEnabled's
// message, which the binding writes (the library's call writes none): control, space and
// format characters by strconv.Quote, and those drawn as nothing, which it leaves as they are
// (U+2800, the variation selectors, the Hangul fillers...), by the binding. A build quoting
// with strconv.Quote alone showed "beta⠀" as "beta⠀", the reason invisible. Each code
// point after a letter, against the library's own refusal; characters it takes are not asked.
func TestARefusedFlagNameShowsItsUnseenCharactersEscaped(t *testing.T) {
	if debugGC {
		t.Skip("1.1 million calls of one gate, which the GC hammer of -tags pgatedebug slows 25 s and tests nothing more in")
	}
	g := newGate(t, "", "")
	refused := 0
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if utf16.IsSurrogate(r) {
			continue
		}
		name := "a" + string(r)
		_, err := g.IsFeatureEnabled(name)
		if err == nil {
			continue
		}
		refused++
		pe := wantErr(t, err, ErrInvalidFlag)
		if strings.ContainsRune(pe.Message, r) {
			t.Errorf("U+%04X: the message shows it as it is: %s", r, pe.Message)
		}
	}
	if refused < 4000 {
		t.Errorf("the library refused %d characters in a flag name; Default_Ignorable_Code_Point alone has over 4000", refused)
	}
}

func TestFlagAndRollbackErrors(t *testing.T) {
	g := newGate(t, "", "")
	for _, bad := range []string{"", "has space", "tab\there", strings.Repeat("x", 129)} {
		wantErr(t, g.EnableFeature(bad), ErrInvalidFlag)
	}
	pe := wantErr(t, g.EnableFeature("bad\xffutf8"), ErrInvalidArgument)
	if !strings.Contains(pe.Message, "UTF-8") {
		t.Fatalf("message %q", pe.Message)
	}
	wantErr(t, g.DisableFeature("never_on"), ErrFlagNotEnabled)
	// A name no flag can have is named in the error, a long one shortened as the library does,
	// with the status EnableFeature refuses it with: ErrInvalidArgument for one not UTF-8.
	why := ": not a flag name (1 to 128 bytes of UTF-8, no whitespace, control, format or invisible characters)"
	long := strings.Repeat("n", 159) + "é" + strings.Repeat("n", 40) // é spans bytes 160-161
	for name, want := range map[string]string{
		"bad\xff": `invalid name = "bad\xff"` + why,
		"":        `invalid name = ""` + why,
		"a b":     `invalid name = "a b"` + why,
		long:      `invalid name = "` + strings.Repeat("n", 159) + `"...(201 bytes)` + why,
		// characters drawn as nothing, escaped so that the message shows why
		"beta\u2800":     `invalid name = "beta\u2800"` + why,
		"beta\ufe0f":     `invalid name = "beta\ufe0f"` + why,
		"\u3164":         `invalid name = "\u3164"` + why,
		"a\u034fb":       `invalid name = "a\u034fb"` + why,
		"x\U000e0100":    `invalid name = "x\U000e0100"` + why,
		"a\u200bb\u202e": `invalid name = "a\u200bb\u202e"` + why,
	} {
		on, err := g.IsFeatureEnabled(name)
		status := ErrInvalidFlag
		if !utf8.ValidString(name) {
			status = ErrInvalidArgument
		}
		if pe := wantErr(t, err, status); on || pe.Message != want {
			t.Fatalf("IsFeatureEnabled(%q) = %v, %q; want %q", name, on, pe.Message, want)
		}
	}
	pe = wantErr(t, g.Rollback("drill"), ErrRollbackRefused)
	if !strings.Contains(pe.Message, "production") {
		t.Fatalf("message %q", pe.Message)
	}
	ok(t, g.Promote(Canary, 10))
	wantErr(t, g.Rollback(""), ErrRollbackRefused)
	wantErr(t, g.Rollback("   "), ErrRollbackRefused)
	ok(t, g.Rollback("bad deploy"))
}

// latencyVector is one whole-nanosecond line of tests/vectors/latency.tsv (a Duration holds
// no fraction: the file's float lines are the other bindings').
type latencyVector struct {
	latency time.Duration
	expect  string // the nanoseconds recorded, or the exact error message
}

func loadLatencyVectors(t *testing.T) []latencyVector {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "..", "tests", "vectors", "latency.tsv"))
	ok(t, err)
	var cases []latencyVector
	for _, line := range strings.Split(string(raw), "\n") {
		fields := strings.Split(line, "\t")
		if line == "" || strings.HasPrefix(line, "#") || fields[0] != "int" {
			continue
		}
		if len(fields) != 3 {
			t.Fatalf("latency.tsv: %q is not KIND, NS, EXPECT", line)
		}
		ns, err := strconv.ParseInt(fields[1], 10, 64)
		ok(t, err)
		cases = append(cases, latencyVector{time.Duration(ns), fields[2]})
	}
	if len(cases) == 0 {
		t.Fatal("latency.tsv holds no int cases")
	}
	return cases
}

// TestNegativeLatencyIsTheOneLatencyError: the error every binding gives a bad latency (the
// shared vectors of tests/vectors/latency.tsv, which C++, Python and Lua read too), and
// nothing is recorded.
func TestNegativeLatencyIsTheOneLatencyError(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, "")
	d, err := g.RouteString("user-1")
	ok(t, err)
	refused := 0
	for _, c := range loadLatencyVectors(t) {
		if _, err := strconv.ParseUint(c.expect, 10, 64); err == nil {
			continue // recorded: checked below, after nothing refused was
		}
		refused++
		_, err := g.Record(d, true, c.latency)
		_, errByID := g.RecordByIDString("user-1", true, c.latency)
		for _, err := range []error{err, errByID} {
			pe := wantErr(t, err, ErrInvalidArgument)
			if pe.Message != c.expect {
				t.Fatalf("message %q, want %q", pe.Message, c.expect)
			}
		}
	}
	if refused == 0 {
		t.Fatal("latency.tsv holds no refused int case")
	}
	h, err := g.Health()
	ok(t, err)
	if h.CanaryRequests+h.ProductionRequests != 0 {
		t.Fatalf("a refused latency was recorded: %+v", h)
	}
	if r, err := g.Record(d, true, 0); err != nil || r != Counted {
		t.Fatalf("a zero latency: %v, %v", r, err)
	}
	for _, c := range loadLatencyVectors(t) {
		want, err := strconv.ParseUint(c.expect, 10, 64)
		if err != nil {
			continue // refused: checked above
		}
		if ns, err := latencyNanos(c.latency); err != nil || uint64(ns) != want {
			t.Fatalf("latency %d: %d ns, %v; want %d ns", c.latency, ns, err, want)
		}
		if r, err := g.Record(d, true, c.latency); err != nil || r != Counted {
			t.Fatalf("latency %d: %v, %v", c.latency, r, err)
		}
	}
}

// TestFlagCacheIgnoresAnotherGatesNumbers: a decision of another gate asks this gate about a
// set number it has not given out. The library refuses it, and the refusal is not kept: had
// it been kept, the number would read wrong once this gate gave it out.
func TestFlagCacheIgnoresAnotherGatesNumbers(t *testing.T) {
	first := newGate(t, `{"environment": "staging", "feature_flags": ["a"]}`, "")
	second := newGate(t, `{"environment": "staging"}`, "")
	theirs, err := first.RouteString("user-1")
	ok(t, err)
	if theirs.FlagSet() == 0 {
		t.Fatal("the first gate's staging decision has no flag set")
	}
	// Each gate numbers its sets from its own random start, so the library refuses the number.
	cacheLen := func() int {
		if m := second.flagSets.Load(); m != nil {
			return len(*m)
		}
		return 0
	}
	cached := cacheLen()
	names, err := second.Features(theirs)
	if !errors.Is(err, ErrUnknownFlagSet) {
		t.Fatalf("another gate's number read as %v, %v; want ErrUnknownFlagSet", names, err)
	}
	want := fmt.Sprintf("promotiongates: invalid flag_set = %d: not a flag set of this gate "+
		"(another gate's decision, or one replaced more than 60 writes ago) "+
		"(PGATE_STATUS_UNKNOWN_FLAG_SET)", theirs.FlagSet())
	if err.Error() != want {
		t.Fatalf("another gate's number: %q, want %q", err, want)
	}
	if n := cacheLen(); n != cached {
		t.Fatalf("the refused number was cached: %d sets, %d before", n, cached)
	}
	if has, err := second.HasFeature(theirs, "a"); has {
		t.Fatalf("HasFeature(another gate's decision) = %v, %v", has, err)
	}
	ok(t, second.EnableFeature("b"))
	ours, err := second.RouteString("user-1")
	ok(t, err)
	names, err = second.Features(ours)
	ok(t, err)
	if !slices.Equal(names, []string{"b"}) {
		t.Fatalf("the second gate's own set reads %v, want [b]", names)
	}
	if has, err := second.HasFeature(ours, "b"); !has || err != nil {
		t.Fatalf("HasFeature(b) = %v, %v", has, err)
	}
	// The first gate is unaffected, and a closed gate answers ErrClosed, cached or not.
	if has, err := first.HasFeature(theirs, "a"); !has || err != nil {
		t.Fatalf("first HasFeature(a) = %v, %v", has, err)
	}
	ok(t, first.Close())
	if _, err := first.Features(theirs); !errors.Is(err, ErrClosed) {
		t.Fatalf("Features after Close: %v", err)
	}
}

// TestFlagCacheIsBounded: a gate asked about more sets than flagCacheSize, or about sets
// holding more than flagCacheNames names in all, starts its cache afresh and still answers
// every set right.
func TestFlagCacheIsBounded(t *testing.T) {
	for _, names := range []int{flagCacheNames, 5_000} {
		t.Run(fmt.Sprintf("names=%d", names), func(t *testing.T) {
			kept := flagCacheNames
			flagCacheNames = names
			t.Cleanup(func() { flagCacheNames = kept })
			checkFlagCacheBound(t)
		})
	}
}

// flagSetSlots is the library's FLAG_SET_SLOTS (src/flags.rs): the sets a gate holds at once.
// A set retired by a write, whose slot joins the back of a queue of fewer, is reclaimed once
// flagSetSlots more writes have each taken a slot.
const flagSetSlots = 128

func checkFlagCacheBound(t *testing.T) {
	// A thread remembers the two sets it read last, and reads them even once reclaimed: kept
	// on one thread, the reads below ask for a reclaimed set after other ones.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	g := newGate(t, `{"environment": "staging"}`, "")
	var decisions []Decision
	restarts := 0
	for i := range flagCacheSize + 10 {
		ok(t, g.EnableFeature(fmt.Sprintf("f%03d", i)))
		d, err := g.RouteString("user-1")
		ok(t, err)
		before := g.flagSets.Load()
		if _, err := g.HasFeature(d, "f000"); err != nil {
			t.Fatal(err)
		}
		m := g.flagSets.Load()
		if len(*m) > flagCacheSize {
			t.Fatalf("the cache holds %d sets, more than %d", len(*m), flagCacheSize)
		}
		total := 0
		for _, v := range *m {
			total += len(v)
		}
		if total > flagCacheNames {
			t.Fatalf("the cache holds %d names, more than %d", total, flagCacheNames)
		}
		if before != nil && len(*m) == 1 {
			restarts++
		}
		decisions = append(decisions, d)
	}
	// Set i holds i+1 names: 266 sets hold 35,511, so a budget of 5,000 names starts afresh
	// several times, and the set count's bound once.
	if restarts == 0 {
		t.Fatal("the cache never started afresh")
	}
	// A set the gate still keeps reads right through the cache; one it has reclaimed since (the
	// library keeps a replaced set for at least flagSetGraceWrites later writes, and reclaims
	// it within flagSetSlots) is refused as unknown, as the library refuses it, cached or not
	// (a cache that answered it made the answer depend on what was asked before), and never
	// reads as another set. Set i is replaced by write i+1, so writes i+2 .. len-1 come later:
	// len-2-i of them.
	refused := 0
	for i, d := range decisions {
		names, err := g.Features(d)
		_, hasErr := g.HasFeature(d, "f000")
		later := len(decisions) - 2 - i
		if later > flagSetSlots && (!errors.Is(err, ErrUnknownFlagSet) || !errors.Is(hasErr, ErrUnknownFlagSet)) {
			t.Fatalf("set %d, replaced %d writes ago: Features %v, HasFeature %v; want ErrUnknownFlagSet",
				i, later, err, hasErr)
		}
		if errors.Is(err, ErrUnknownFlagSet) && later > flagSetGraceWrites {
			refused++
			continue
		}
		ok(t, err)
		ok(t, hasErr)
		if len(names) != i+1 || names[i] != fmt.Sprintf("f%03d", i) {
			t.Fatalf("set %d reads %d names ending %q", i, len(names), names[len(names)-1])
		}
	}
	if refused == 0 {
		t.Fatal("no set was reclaimed: the test no longer reaches the refusal")
	}
}

// TestAReclaimedSetIsRefusedCachedOrNot: a set asked about once (so cached) and reclaimed
// since is refused as one never asked about is: the library is asked on every read. The
// cache answered it from memory, so the answer depended on what was asked before.
func TestAReclaimedSetIsRefusedCachedOrNot(t *testing.T) {
	runtime.LockOSThread() // see checkFlagCacheBound: the thread's two recent sets
	defer runtime.UnlockOSThread()
	g := newGate(t, `{"environment": "staging"}`, "")
	ok(t, g.EnableFeature("cached"))
	cached, err := g.RouteString("user-1")
	ok(t, err)
	ok(t, g.EnableFeature("asked-never"))
	never, err := g.RouteString("user-1")
	ok(t, err)
	// Asked on a thread of its own, which ends with its goroutine (locked, never unlocked): the
	// library answers a thread the two sets it read last even once reclaimed, and this one
	// must not be the test's.
	asked := make(chan error)
	go func() {
		runtime.LockOSThread()
		on, err := g.HasFeature(cached, "cached")
		if err == nil && !on {
			err = errors.New("the flag is off")
		}
		asked <- err
	}()
	ok(t, <-asked)
	for i := range flagSetSlots + 2 {
		ok(t, g.EnableFeature(fmt.Sprintf("f%03d", i)))
	}
	for _, d := range []Decision{never, cached} {
		if _, err := g.HasFeature(d, "cached"); !errors.Is(err, ErrUnknownFlagSet) {
			t.Fatalf("set %d, reclaimed: HasFeature %v, want ErrUnknownFlagSet", d.FlagSet(), err)
		}
		if _, err := g.Features(d); !errors.Is(err, ErrUnknownFlagSet) {
			t.Fatalf("set %d, reclaimed: Features %v, want ErrUnknownFlagSet", d.FlagSet(), err)
		}
	}
}

func TestFlags(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["new_api", "fast_path"], "graduated_flags": ["dark_mode"]}`, "")
	var canary, stable Decision
	for i := 0; canary.Stage() == 0 || stable.Stage() == 0; i++ {
		d, err := g.RouteString(fmt.Sprint("user-", i))
		ok(t, err)
		if d.IsCanary() {
			canary = d
		} else {
			stable = d
		}
	}
	names, err := g.Features(canary)
	ok(t, err)
	if want := []string{"dark_mode", "fast_path", "new_api"}; !slices.Equal(names, want) {
		t.Fatalf("canary flags %v, want %v (byte order)", names, want)
	}
	names[0] = "mutated" // the caller owns the slice; the cache must not change
	if again, _ := g.Features(canary); again[0] != "dark_mode" {
		t.Fatal("Features must return a copy")
	}
	if names, _ := g.Features(stable); !slices.Equal(names, []string{"dark_mode"}) {
		t.Fatalf("stable flags %v, want only the graduated one", names)
	}
	for _, c := range []struct {
		d    Decision
		name string
		want bool
	}{{canary, "new_api", true}, {canary, "nope", false}, {stable, "new_api", false}, {stable, "dark_mode", true}} {
		if has, err := g.HasFeature(c.d, c.name); err != nil || has != c.want {
			t.Fatalf("HasFeature(%s) = %v, %v", c.name, has, err)
		}
	}
	if names, _ := g.Features(Decision{}); len(names) != 0 {
		t.Fatalf("the zero decision has no flags: %v", names)
	}

	ok(t, g.EnableFeature("beta"))
	ok(t, g.EnableFeature("beta")) // idempotent
	if on, err := g.IsFeatureEnabled("beta"); !on || err != nil {
		t.Fatalf("IsFeatureEnabled(beta) = %v, %v", on, err)
	}
	d, _ := g.Route(nil)
	for !d.IsCanary() {
		d, _ = g.RouteString(fmt.Sprint(d.Bucket()))
	}
	if has, _ := g.HasFeature(d, "beta"); !has {
		t.Fatal("a flag enabled on a canary reaches canary decisions")
	}
	ok(t, g.DisableFeature("beta"))
	if on, _ := g.IsFeatureEnabled("beta"); on {
		t.Fatal("disabled flag still on")
	}
	// A decision keeps the flag set it was routed with, even after the flag is turned off.
	if has, _ := g.HasFeature(d, "beta"); !has {
		t.Fatal("flag sets are immutable")
	}
}

func TestRecordCountedLateForeign(t *testing.T) {
	// Late is decided by the gate's newest stage on any thread; locking this goroutine to
	// its thread keeps every call on one recorder, so the counts below are one recorder's.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, "")
	old, err := g.RouteString("user-1")
	ok(t, err)
	if r, err := g.Record(old, true, 3*time.Millisecond); r != Counted || err != nil {
		t.Fatalf("Record = %v, %v", r, err)
	}
	if r, err := g.RecordByIDString("user-2", false, time.Millisecond); r != Counted || err != nil {
		t.Fatalf("RecordByIDString = %v, %v", r, err)
	}
	if r, err := g.RecordByID([]byte{0xff, 0x00}, true, 0); r != Counted || err != nil {
		t.Fatalf("RecordByID = %v, %v", r, err)
	}
	ok(t, g.Promote(Canary, 20)) // ramping down starts a new stage
	fresh, err := g.RouteString("user-1")
	ok(t, err)
	if fresh.Stage() <= old.Stage() {
		t.Fatalf("stage %d after promotion, was %d", fresh.Stage(), old.Stage())
	}
	if r, _ := g.Record(fresh, true, time.Millisecond); r != Counted {
		t.Fatalf("fresh outcome: %v", r)
	}
	if r, _ := g.Record(old, true, time.Millisecond); r != Late {
		t.Fatalf("an outcome of an ended stage: %v, want late", r)
	}

	// A decision of another gate that is further along is foreign here.
	other := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, "")
	for _, p := range []float64{40, 30, 20, 10} {
		ok(t, other.Promote(Canary, p))
	}
	alien, _ := other.RouteString("user-1")
	if r, _ := g.Record(alien, true, time.Millisecond); r != Foreign {
		t.Fatalf("a decision of another gate: %v, want foreign", r)
	}
	for _, r := range []Recorded{Counted, Late, Foreign} {
		if strings.HasPrefix(r.String(), "Recorded(") {
			t.Fatalf("%d has no name", r)
		}
	}
}

// TestRecordAbandonedAsSaysWhatHappened: an abandoned request recorded comes back as Record
// would say (Forced, Late, Foreign, Counted), so a host counting those itself counts it; a
// wait up to the SLO's latency target records nothing.
func TestRecordAbandonedAsSaysWhatHappened(t *testing.T) {
	runtime.LockOSThread() // one recorder, as TestRecordCountedLateForeign
	defer runtime.UnlockOSThread()

	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}},
		"overrides": {"header": "X-Canary"}}`, "")
	plain, err := g.RouteString("user-1")
	ok(t, err)
	forced, err := g.RouteForcedString("user-1", "canary", true)
	ok(t, err)
	if forced.ForcedBy() != ForcedByValue {
		t.Fatalf("not forced: %v", forced.ForcedBy())
	}
	short, long := time.Millisecond, 2*time.Second // either side of the default latency target
	if as, recorded, err := g.RecordAbandonedAs(plain, short); err != nil || recorded || as != Counted {
		t.Fatalf("a short wait: %v, %v, %v; want nothing recorded", as, recorded, err)
	}
	if as, recorded, err := g.RecordAbandonedAs(plain, long); err != nil || !recorded || as != Counted {
		t.Fatalf("a long wait: %v, %v, %v; want counted", as, recorded, err)
	}
	if as, recorded, err := g.RecordAbandonedAs(forced, long); err != nil || !recorded || as != Forced {
		t.Fatalf("a forced request: %v, %v, %v; want forced", as, recorded, err)
	}
	ok(t, g.Promote(Canary, 20)) // a new stage: plain is of an ended one
	if as, recorded, err := g.RecordAbandonedAs(plain, long); err != nil || !recorded || as != Late {
		t.Fatalf("an ended stage: %v, %v, %v; want late", as, recorded, err)
	}
	other := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, "")
	for _, p := range []float64{40, 30, 20, 10} {
		ok(t, other.Promote(Canary, p))
	}
	alien, err := other.RouteString("user-1")
	ok(t, err)
	if as, recorded, err := g.RecordAbandonedAs(alien, long); err != nil || !recorded || as != Foreign {
		t.Fatalf("another gate's decision: %v, %v, %v; want foreign", as, recorded, err)
	}
	// RecordAbandoned says the same, the classification set aside.
	if recorded, err := g.RecordAbandoned(alien, long); err != nil || !recorded {
		t.Fatalf("RecordAbandoned: %v, %v", recorded, err)
	}
	_, _, err = g.RecordAbandonedAs(plain, -time.Nanosecond)
	if pe := wantErr(t, err, ErrInvalidArgument); pe.Message != "invalid latency = -1 ns: "+latencyRule {
		t.Fatalf("message %q", pe.Message)
	}
}

// TestHealthyCanaryIsPromoted feeds a healthy canary and walks it to Production.
func TestHealthyCanaryIsPromoted(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["new_api"]}`, `{"min_samples": 50, "warm_up_ms": 0, "promotion_evidence": false}`)
	feed := func(n int, success bool, latency time.Duration) {
		for i := range n { // no collection per request here: the GC hammer covers bulk loops
			d, err := g.RouteString(fmt.Sprint("user-", i))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := g.Record(d, success, latency); err != nil {
				t.Fatal(err)
			}
		}
	}
	h, err := g.Health()
	ok(t, err)
	if h.SufficientData || h.Recommendation != Monitor || !strings.Contains(h.Evidence, "min_samples 50") {
		t.Fatalf("no data yet: %+v", h)
	}
	if compliant, err := g.CheckSLO(); compliant || err != nil {
		t.Fatalf("CheckSLO without data = %v, %v", compliant, err)
	}
	feed(400, true, 5*time.Millisecond)
	h, err = g.Health()
	ok(t, err)
	if !h.SufficientData || h.Recommendation != Healthy || h.RulesFired != 0 || h.HealthScore < 0.9 ||
		h.CanaryRequests+h.ProductionRequests != 400 || h.CanaryErrorRate != 0 || h.CanaryCompliance != 1 ||
		h.Environment != Canary || h.TrafficPercent != 50 || h.CanaryP99 <= 0 || h.CanaryP99 > 10*time.Millisecond {
		t.Fatalf("healthy canary: %+v", h)
	}
	if !strings.Contains(h.Evidence, "no rule fired") || !strings.HasPrefix(h.Evidence, fmt.Sprintf("stage %d ", h.Stage)) {
		t.Fatalf("evidence %q", h.Evidence)
	}
	if compliant, err := g.CheckSLO(); !compliant || err != nil {
		t.Fatalf("CheckSLO = %v, %v", compliant, err)
	}
	ok(t, g.Promote(Canary, 60)) // gated ramp-up passes on evidence
	feed(400, true, 5*time.Millisecond)
	ok(t, g.Promote(Staging, 0))
	feed(200, true, 5*time.Millisecond)
	ok(t, g.Promote(Production, 0))
	if on, _ := g.IsFeatureEnabled("new_api"); !on {
		t.Fatal("promotion to production graduates the release's flags")
	}
	var back Config
	ok(t, json.Unmarshal([]byte(mustConfig(t, g)), &back))
	if back.Environment != Production || !slices.Equal(back.GraduatedFlags, []string{"new_api"}) || len(back.FeatureFlags) != 0 {
		t.Fatalf("after promotion to production: %+v", back)
	}
}

// TestFailingCanaryRollsBackByItself sends every request to a canary that fails them all.
func TestFailingCanaryRollsBackByItself(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}, "feature_flags": ["new_api"]}`, "")
	var first Decision
	rolledBack := false
	for i := 0; i < 1000 && !rolledBack; i++ {
		d, err := g.RouteString(fmt.Sprint("user-", i))
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			first = d
		}
		if !d.IsCanary() {
			rolledBack = true // routed by the stable version: the gate has rolled back
			break
		}
		if _, err := g.Record(d, false, 20*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	if !rolledBack {
		t.Fatal("a canary failing every request was not rolled back")
	}
	d, _ := g.RouteString("user-0")
	if d.Environment() != Production || d.IsCanary() || d.Stage() <= first.Stage() {
		t.Fatalf("after the automatic rollback: %+v", d)
	}
	if on, _ := g.IsFeatureEnabled("new_api"); on {
		t.Fatal("a rollback turns the release's flags off")
	}
	history, err := g.RollbackHistory()
	ok(t, err)
	if len(history) != 1 {
		t.Fatalf("history %+v", history)
	}
	e := history[0]
	if e.Trigger != TriggerAutomatic || e.RolledBack != RolledBackRelease || e.Environment != Canary || e.TrafficPercent != 100 || e.Feature != "Canary{100}" ||
		!strings.Contains(e.Reason, "automatic rollback") || !strings.Contains(e.Reason, "FIRED") ||
		time.Since(e.Time) > time.Minute || time.Since(e.Time) < 0 {
		t.Fatalf("event %+v", e)
	}
	// The judge of the new stage sees no canary.
	h, err := g.Health()
	ok(t, err)
	if h.Environment != Production || h.CanaryRequests != 0 || h.Stage != d.Stage() {
		t.Fatalf("health after rollback: %+v", h)
	}
}

// TestHealthRollsBackAFailingCanary: with automatic rollback off, the record path leaves a
// failing canary alone; once it is on, Health judges, rolls back and reports what it judged.
func TestHealthRollsBackAFailingCanary(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Environment, cfg.TrafficPercent, cfg.AutoRollbackEnabled = Canary, 100, false
	doc, _ := json.Marshal(cfg)
	// No warm-up: its 200 latencies count towards min_samples (SufficientData).
	g := newGate(t, string(doc), `{"warm_up_ms": 0}`)
	for i := range 200 {
		if _, err := g.RecordByIDString(fmt.Sprint("user-", i), false, time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	h, err := g.Health()
	ok(t, err)
	if h.Recommendation != Rollback || !h.RulesFired.Has(RuleErrorRateMax) || h.CanaryErrorRate != 1 ||
		h.CanaryRequests != 200 || !h.SufficientData || !strings.Contains(h.Evidence, "FIRED") {
		t.Fatalf("failing canary: %+v", h)
	}
	if h.RulesFired.String() == "none" || !strings.Contains(h.RulesFired.String(), "error_rate_max") {
		t.Fatalf("rules %q", h.RulesFired)
	}
	if compliant, _ := g.CheckSLO(); compliant {
		t.Fatal("a failing canary is not compliant")
	}
	if history, _ := g.RollbackHistory(); len(history) != 0 {
		t.Fatalf("auto_rollback_enabled false, yet %+v", history)
	}
	wantErr(t, g.Promote(Staging, 0), ErrSLONotMet)

	cfg.AutoRollbackEnabled = true // same environment and salt: same stage, same data
	doc, _ = json.Marshal(cfg)
	ok(t, g.SwapConfig(string(doc)))
	h, err = g.Health()
	ok(t, err)
	if h.Recommendation != Rollback || h.Environment != Canary || h.CanaryRequests != 200 {
		t.Fatalf("the health returned is the one judged: %+v", h)
	}
	history, _ := g.RollbackHistory()
	if len(history) != 1 || history[0].Trigger != TriggerAutomatic {
		t.Fatalf("history %+v", history)
	}
	if d, _ := g.RouteString("u"); d.Environment() != Production {
		t.Fatalf("not rolled back: %+v", d)
	}
}

func TestRollbackHistory(t *testing.T) {
	g := newGate(t, `{"max_rollback_history": 3}`, "")
	if history, err := g.RollbackHistory(); err != nil || len(history) != 0 {
		t.Fatalf("empty history: %v, %v", history, err)
	}
	before := time.Now().Add(-time.Second)
	ok(t, g.EnableFeature("flag_a"))
	ok(t, g.DisableFeature("flag_a"))
	for i, p := range []float64{10, 20, 30} {
		ok(t, g.Promote(Canary, p))
		ok(t, g.Rollback(fmt.Sprintf("reason %d with \"quotes\" and ünïcode", i)))
	}
	history, err := g.RollbackHistory()
	ok(t, err)
	if len(history) != 3 {
		t.Fatalf("bound 3 keeps the newest 3: %+v", history)
	}
	for i, e := range history {
		p := []float64{10, 20, 30}[i]
		if e.Trigger != TriggerManual || e.Environment != Canary || e.TrafficPercent != p ||
			e.Reason != fmt.Sprintf("reason %d with \"quotes\" and ünïcode", i) || e.Time.Before(before) {
			t.Fatalf("event %d: %+v", i, e)
		}
	}
	ok(t, g.EnableFeature("flag_b"))
	ok(t, g.DisableFeature("flag_b"))
	history, _ = g.RollbackHistory()
	last := history[len(history)-1]
	if last.Trigger != TriggerFlagDisabled || last.RolledBack != RolledBackFlag || last.Feature != "flag_b" || last.Environment != Production {
		t.Fatalf("flag event %+v", last)
	}
}

func TestCloseAndUseAfterClose(t *testing.T) {
	g, err := New(`{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["x"]}`, "")
	ok(t, err)
	d, err := g.RouteString("u")
	ok(t, err)
	ok(t, g.Close())
	ok(t, g.Close()) // idempotent
	checks := map[string]error{}
	checks["Route"] = second(g.Route([]byte("u")))
	checks["RouteString"] = second(g.RouteString("u"))
	checks["Record"] = second(g.Record(d, true, time.Millisecond))
	checks["RecordByID"] = second(g.RecordByID([]byte("u"), true, 0))
	_, _, checks["RecordAbandonedAs"] = g.RecordAbandonedAs(d, time.Second)
	checks["RecordAbandoned"] = second(g.RecordAbandoned(d, time.Second))
	checks["RecordByIDString"] = second(g.RecordByIDString("u", true, 0))
	checks["Features"] = second(g.Features(d))
	checks["HasFeature"] = second(g.HasFeature(d, "x"))
	checks["Health"] = second(g.Health())
	checks["CheckSLO"] = second(g.CheckSLO())
	checks["Promote"] = g.Promote(Canary, 10)
	checks["PromoteFrom"] = g.PromoteFrom(d.Stage(), Canary, 10)
	checks["Rollback"] = g.Rollback("r")
	checks["EnableFeature"] = g.EnableFeature("y")
	checks["DisableFeature"] = g.DisableFeature("x")
	checks["IsFeatureEnabled"] = second(g.IsFeatureEnabled("x"))
	checks["Config"] = second(g.Config())
	checks["SwapConfig"] = g.SwapConfig("{}")
	checks["SwapConfigFrom"] = g.SwapConfigFrom(0, "{}")
	checks["RollbackHistory"] = second(g.RollbackHistory())
	for name, err := range checks {
		if !errors.Is(err, ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
	var nilGate *Gate
	if _, err := nilGate.RouteString("u"); !errors.Is(err, ErrClosed) {
		t.Fatalf("nil gate: %v", err)
	}
	if err := nilGate.Close(); err != nil {
		t.Fatal(err)
	}
	// A zero Gate (not made by New) is closed too: a call left its in-flight count behind,
	// so Close waited for ever (then closed a nil channel).
	var zero Gate
	if _, err := zero.RouteString("u"); !errors.Is(err, ErrClosed) {
		t.Fatalf("zero gate: %v", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- zero.Close() }()
	select {
	case err := <-closed:
		ok(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close of a zero Gate that was called did not return")
	}
}

func second[T any](_ T, err error) error { return err }

// TestUnclosedGatesAreFreed drops gates without Close and waits for their cleanups.
func TestUnclosedGatesAreFreed(t *testing.T) {
	base := cleanedGates.Load()
	func() {
		for range 20 {
			g, err := New("", "")
			ok(t, err)
			if _, err := g.RouteString("u"); err != nil {
				t.Fatal(err)
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for cleanedGates.Load() < base+20 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of 20 unclosed gates freed by their cleanup", cleanedGates.Load()-base)
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	// Closed gates are not freed again by a cleanup.
	before := cleanedGates.Load()
	func() {
		for range 10 {
			g, err := New("", "")
			ok(t, err)
			ok(t, g.Close())
		}
	}()
	for range 5 {
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
	if n := cleanedGates.Load() - before; n != 0 {
		t.Fatalf("%d closed gates freed again by a cleanup", n)
	}
}

// TestHotCallsDoNotAllocate: Route, RouteString, RouteForced, RouteForcedString, Record and
// HasFeature allocate nothing (a forcing value honoured or ignored alike).
func TestHotCallsDoNotAllocate(t *testing.T) {
	if debugGC {
		t.Skip("the GC hammer of -tags pgatedebug makes allocation counts meaningless")
	}
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["x"],
		"overrides": {"header": "X-Canary"}}`, "")
	id := []byte("user-12345-session")
	d, err := g.Route(id)
	if err != nil {
		t.Fatal(err)
	}
	// Every call must succeed: a call failing at once (an error path) would count its own
	// allocations, or none. The first error of a run is kept (no allocation: it is the
	// library's error value, assigned once).
	var failed error
	check := func(e error) {
		if e != nil && failed == nil {
			failed = e
		}
	}
	_, err = g.HasFeature(d, "x") // fills the flag-set cache
	check(err)
	_, err = g.Record(d, true, time.Millisecond)
	check(err)
	for name, f := range map[string]func(){
		"Route":       func() { d, err = g.Route(id); check(err) },
		"RouteString": func() { d, err = g.RouteString("user-12345-session"); check(err) },
		"RouteForced": func() { d, err = g.RouteForced(id, []byte("canary")); check(err) },
		"RouteForcedString, ignored value": func() {
			d, err = g.RouteForcedString("user-12345-session", "bogus", true)
			check(err)
		},
		"Record":     func() { _, err = g.Record(d, true, time.Millisecond); check(err) },
		"RecordByID": func() { _, err = g.RecordByID(id, true, time.Millisecond); check(err) },
		"HasFeature": func() { _, err = g.HasFeature(d, "x"); check(err) },
	} {
		if n := testing.AllocsPerRun(200, f); n != 0 {
			t.Errorf("%s: %v allocations per call", name, n)
		}
		if failed != nil {
			t.Fatalf("%s failed: %v", name, failed)
		}
	}
}
