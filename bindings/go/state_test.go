package promotiongates

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestStateAndSLOAreReadWithoutJudging(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 25}}}`, `{"min_samples": 40}`)
	s, err := g.State()
	ok(t, err)
	if s != (State{Environment: Canary, TrafficPercent: 25, Stage: 1}) {
		t.Fatalf("state %+v", s)
	}
	slo, err := g.SLO()
	ok(t, err)
	want := DefaultSLO()
	want.MinSamples = 40
	if slo != want {
		t.Fatalf("SLO %+v, want %+v", slo, want)
	}
	// A field SLO does not know (a newer library's) is refused, not dropped: the SLO would be
	// swapped back without it.
	if err := json.Unmarshal([]byte(`{"min_samples": 40, "later_field": 1}`), &slo); err == nil ||
		!strings.Contains(err.Error(), "later_field: unknown field `later_field`") {
		t.Fatalf("an unknown SLO field: %v", err)
	}
	closed, err := New("", "")
	ok(t, err)
	ok(t, closed.Close())
	_, err = closed.State()
	wantErr(t, err, ErrClosed)
	_, err = closed.SLO()
	wantErr(t, err, ErrClosed)
	wantErr(t, closed.SwapSLO(""), ErrClosed)
	_, err = closed.ReadHealth()
	wantErr(t, err, ErrClosed)
}

// TestReadHealthNeverRollsBack: a failing canary recorded with automatic rollback off, then
// allowed: ReadHealth shows ROLLBACK and leaves the canary, MonitorHealth rolls it back.
func TestReadHealthNeverRollsBack(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Environment, cfg.TrafficPercent, cfg.AutoRollbackEnabled = Canary, 100, false
	g := newGate(t, mustJSON(t, cfg), "")
	for i := range 50 {
		_, err := g.RecordByIDString(fmt.Sprint("user-", i), false, time.Millisecond)
		ok(t, err)
	}
	cfg.AutoRollbackEnabled = true // same environment and salt: same stage, same data
	ok(t, g.SwapConfig(mustJSON(t, cfg)))
	for range 3 {
		h, err := g.ReadHealth()
		ok(t, err)
		if h.Recommendation != Rollback || h.CanaryRequests != 50 || !strings.Contains(h.Evidence, "FIRED") {
			t.Fatalf("read health %+v", h)
		}
	}
	if s, _ := g.State(); s.Environment != Canary {
		t.Fatalf("a read rolled back: %+v", s)
	}
	h, err := g.MonitorHealth()
	ok(t, err)
	if h.Recommendation != Rollback {
		t.Fatalf("judged health %+v", h)
	}
	if s, _ := g.State(); s.Environment != Production {
		t.Fatalf("MonitorHealth did not roll back: %+v", s)
	}
}

// TestSwapSLOKeepsTheStageAndTheRecordedCounts: the counts are kept, and judged by the new SLO
// (enough for 40 samples, not for 1000).
func TestSwapSLOKeepsTheStageAndTheRecordedCounts(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, `{"min_samples": 40, "warm_up_ms": 0}`)
	for i := range 300 {
		_, err := g.RecordByIDString(fmt.Sprint("user-", i), true, 20*time.Millisecond)
		ok(t, err)
	}
	before, err := g.ReadHealth()
	ok(t, err)
	if !before.SufficientData {
		t.Fatalf("300 requests at 50%% are enough for 40 samples a side: %+v", before)
	}
	state, err := g.State()
	ok(t, err)
	seen, err := g.ChangeCount()
	ok(t, err)

	ok(t, g.SwapSLO(`{"min_samples": 1000, "latency_target_ms": 250}`))
	after, err := g.ReadHealth()
	ok(t, err)
	if after.CanaryRequests != before.CanaryRequests || after.ProductionRequests != before.ProductionRequests ||
		after.Stage != before.Stage || after.SufficientData {
		t.Fatalf("before %+v, after %+v", before, after)
	}
	if s, _ := g.State(); s != state {
		t.Fatalf("state %+v, was %+v", s, state)
	}
	slo, err := g.SLO()
	ok(t, err)
	if slo.MinSamples != 1000 || slo.LatencyTarget != 250*time.Millisecond {
		t.Fatalf("SLO %+v", slo)
	}
	changes, err := g.ChangesSince(seen)
	ok(t, err)
	if len(changes) != 1 || changes[0].Kind != ChangeConfig || changes[0].Stage != state.Stage {
		t.Fatalf("changes %+v", changes)
	}

	e := wantErr(t, g.SwapSLO(`{"max_error_rate": 2.5}`), ErrInvalidConfig)
	if !strings.Contains(e.Message, "max_error_rate") || !strings.Contains(e.Message, "2.5") {
		t.Fatalf("message %q", e.Message)
	}
	wantErr(t, g.SwapSLO(`{"max_eror_rate": 0.1}`), ErrInvalidJSON)
	// An empty document is refused, not read as New reads it (the defaults): a swap's empty
	// text is taken for a mistake, and the message says so (the library's words are the JSON
	// parser's, "EOF while parsing a value at line 1 column 0").
	e = wantErr(t, g.SwapSLO(""), ErrInvalidJSON)
	if want := "invalid JSON SLO config: empty document (pass {} for the defaults)"; e.Message != want {
		t.Fatalf("SwapSLO(\"\"): message %q, want %q", e.Message, want)
	}
	if slo2, _ := g.SLO(); slo2 != slo {
		t.Fatalf("a refused swap changed the SLO: %+v", slo2)
	}
	ok(t, g.SwapSLO("{}"))
	if slo3, _ := g.SLO(); slo3 != DefaultSLO() {
		t.Fatalf("SwapSLO({}) swapped in %+v, not the defaults %+v", slo3, DefaultSLO())
	}
}

// mustJSON marshals a config for New and SwapConfig.
func mustJSON(t *testing.T, cfg Config) string {
	t.Helper()
	doc, err := json.Marshal(cfg)
	ok(t, err)
	return string(doc)
}

// TestTheEvidenceBufferIsTheHeadersCapacity: MonitorHealth reads the evidence into a buffer
// of PGATE_EVIDENCE_CAPACITY bytes, which the header promises always holds it, and judges
// once: a longer line would be an ErrBufferTooSmall naming both lengths, not a second call
// that judges again (the binding made one, with a buffer of the length asked for).
func TestTheEvidenceBufferIsTheHeadersCapacity(t *testing.T) {
	if evidenceCapacity != 4096 {
		t.Fatalf("evidenceCapacity %d", evidenceCapacity)
	}
	// A library that asks for 5000 bytes is called once, and its answer refused.
	defer func(library func(*Gate, []byte, bool) (Health, int, Status, error)) { healthCall = library }(healthCall)
	calls := 0
	healthCall = func(_ *Gate, buf []byte, judge bool) (Health, int, Status, error) {
		calls++
		if len(buf) != evidenceCapacity || !judge {
			t.Errorf("a buffer of %d bytes, judge %v", len(buf), judge)
		}
		return Health{}, 5000, StatusBufferTooSmall, nil
	}
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 25}}}`, "")
	_, err := g.MonitorHealth()
	pe := wantErr(t, err, ErrBufferTooSmall)
	if calls != 1 {
		t.Fatalf("%d calls: the evidence was asked for again, which judges again", calls)
	}
	if !strings.Contains(pe.Message, "pgate_monitor_health: an evidence line of 5000 bytes, longer than PGATE_EVIDENCE_CAPACITY (4096 bytes)") {
		t.Fatalf("message %q", pe.Message)
	}
}
