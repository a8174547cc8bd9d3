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
	defer func() { healthStub = nil }()
	calls := 0
	healthStub = func(_ *Gate, buf []byte, judge bool) (Health, int, Status, error) {
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

// TestOutputsStayOnTheStack: the calls that read an answer into memory the binding declares
// keep it on the goroutine's stack (the C calls are declared noescape), so they allocate
// only the strings they return. ReadHealth and MonitorHealth read the evidence into 4 KiB on
// the stack and allocate the Evidence string alone (the buffer, passed through a function
// variable, escaped: 4 KiB more per call); CheckSLO, SyncNow and FleetJudging allocate
// nothing (their bool, written through a function value's parameter, escaped); OverrideNames
// allocates its two names (its buffers, read by C.GoStringN, escaped).
func TestOutputsStayOnTheStack(t *testing.T) {
	if debugGC {
		t.Skip("the GC hammer of -tags pgatedebug makes allocation counts meaningless")
	}
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 25}},
		"overrides": {"header": "X-Canary", "cookie": "pgate_version"}}`, "")
	var failed error
	check := func(err error) {
		if err != nil && failed == nil {
			failed = err
		}
	}
	var evidence, header, cookie string
	var answer bool
	for _, c := range []struct {
		name string
		call func()
		want float64
	}{
		{"ReadHealth", func() { h, err := g.ReadHealth(); evidence = h.Evidence; check(err) }, 1},
		{"MonitorHealth", func() { h, err := g.MonitorHealth(); evidence = h.Evidence; check(err) }, 1},
		{"CheckSLO", func() { var err error; answer, err = g.CheckSLO(); check(err) }, 0},
		{"SyncNow", func() { var err error; answer, err = g.SyncNow(); check(err) }, 0},
		{"FleetJudging", func() { var err error; answer, err = g.FleetJudging(); check(err) }, 0},
		{"OverrideNames", func() { var err error; header, cookie, err = g.OverrideNames(); check(err) }, 2},
	} {
		evidence = ""
		allocs := testing.AllocsPerRun(100, c.call)
		if failed != nil {
			t.Fatalf("%s: %v", c.name, failed)
		}
		if allocs != c.want {
			t.Errorf("%s: %v allocations per call, want %v", c.name, allocs, c.want)
		}
		if c.want == 1 && evidence == "" {
			t.Errorf("%s: no evidence", c.name)
		}
	}
	if answer || header != "X-Canary" || cookie != "pgate_version" {
		t.Fatalf("FleetJudging %v (no store), names %q, %q", answer, header, cookie)
	}
}
