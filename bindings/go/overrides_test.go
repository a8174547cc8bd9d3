package promotiongates

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// forcingValue reads a VALUE field of tests/vectors/overrides.tsv: "-" none (nil), "hex:" and
// the bytes in hex, or the field's own bytes (an empty field is an empty, non-nil value).
func forcingValue(t *testing.T, field string) []byte {
	if field == "-" {
		return nil
	}
	if digits, found := strings.CutPrefix(field, "hex:"); found {
		value, err := hex.DecodeString(digits)
		ok(t, err)
		return value
	}
	return append([]byte{}, field...)
}

// TestOverrideVectors: the shared cases of tests/vectors/overrides.tsv (read by every
// language): each route's version and ForcedBy, and what recording it does, by its Decision,
// by id with its value and by id alone.
func TestOverrideVectors(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "tests", "vectors", "overrides.tsv"))
	ok(t, err)
	gates := map[string]*Gate{}
	cases := 0
	for _, line := range strings.Split(string(raw), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "\t")
		if f[0] == "config" && len(f) == 3 {
			gates[f[1]] = newGate(t, f[2], "")
			continue
		}
		if f[0] != "route" || len(f) != 6 {
			t.Fatalf("overrides.tsv: malformed line %q", line)
		}
		g := gates[f[1]]
		if g == nil {
			t.Fatalf("overrides.tsv: no config %q", f[1])
		}
		id, value := []byte(f[2]), forcingValue(t, f[3])
		d, err := g.RouteForced(id, value)
		ok(t, err)
		if d.IsCanary() != (f[4] == "1") || d.ForcedBy().String() != f[5] {
			t.Errorf("%q: is_canary %v forced %v", line, d.IsCanary(), d.ForcedBy())
		}
		want := func(forced bool) Recorded {
			if forced {
				return Forced
			}
			return Counted
		}
		r, err := g.Record(d, true, time.Microsecond)
		ok(t, err)
		if r != want(f[5] != "none") {
			t.Errorf("%q: recorded %v", line, r)
		}
		r, err = g.RecordByIDForced(id, value, true, time.Microsecond)
		ok(t, err)
		if r != want(f[5] != "none") {
			t.Errorf("%q: recorded by id with the value %v", line, r)
		}
		r, err = g.RecordByIDForcedString(f[2], string(value), value != nil, true, time.Microsecond)
		ok(t, err)
		if r != want(f[5] != "none") {
			t.Errorf("%q: recorded by id with the value (strings) %v", line, r)
		}
		r, err = g.RecordByID(id, true, time.Microsecond)
		ok(t, err)
		if r != want(f[5] == "id_list") {
			t.Errorf("%q: recorded by id alone %v", line, r)
		}
		cases++
	}
	if cases < 45 || len(gates) < 5 {
		t.Fatalf("overrides.tsv: only %d cases, %d configs", cases, len(gates))
	}
}

// TestRecordByIDForced: a request forced by value and recorded by id with its value counts in
// neither cohort, where RecordByID counts it in the cohort of its bucket; an ignored value is
// not counted again; a closed gate and a bad latency are refused.
func TestRecordByIDForced(t *testing.T) {
	g := newGate(t, `{"gate": "g", "environment": {"canary": {"traffic_percent": 0}},
		"overrides": {"header": "X-Canary"}}`, "")
	r, err := g.RecordByIDForced([]byte("tester"), []byte("canary"), false, time.Millisecond)
	if r != Forced || err != nil {
		t.Fatalf("RecordByIDForced = %v, %v", r, err)
	}
	r, err = g.RecordByIDForcedString("tester", "", true, false, time.Millisecond)
	if r != Counted || err != nil {
		t.Fatalf("RecordByIDForcedString with an empty value = %v, %v", r, err)
	}
	r, err = g.RecordByID([]byte("tester"), false, time.Millisecond)
	if r != Counted || err != nil {
		t.Fatalf("RecordByID = %v, %v", r, err)
	}
	h, err := g.ReadHealth()
	ok(t, err)
	if h.CanaryRequests != 0 || h.ProductionRequests != 2 {
		t.Errorf("cohorts %+v", h)
	}
	metrics, err := g.MetricsPrometheus()
	ok(t, err)
	if !strings.Contains(metrics, `promotion_ignored_override_values_total{gate="g"} 0`) {
		t.Errorf("an ignored value counted by a record:\n%s", metrics)
	}
	_, err = g.RecordByIDForced([]byte("tester"), nil, true, -time.Millisecond)
	wantErr(t, err, ErrInvalidArgument)
	ok(t, g.Close())
	_, err = g.RecordByIDForcedString("tester", "canary", true, true, time.Millisecond)
	wantErr(t, err, ErrClosed)
}

// TestForcedRequestsStayOutOfTheCohorts: a forced request reaches its version, its failures
// count in neither cohort, and the config's overrides round-trip through Config.
func TestForcedRequestsStayOutOfTheCohorts(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Environment, cfg.TrafficPercent = Canary, 0
	cfg.Overrides = &Overrides{Header: "X-Canary", CanaryIDs: []string{"tester-1"}}
	g, err := NewFromConfig(cfg, DefaultSLO())
	ok(t, err)
	defer func() { ok(t, g.Close()) }()
	for i := 0; i < 200; i++ {
		d, err := g.RouteForced([]byte(fmt.Sprintf("user-%d", i)), []byte("canary"))
		ok(t, err)
		if !d.IsCanary() || d.ForcedBy() != ForcedByValue {
			t.Fatalf("user-%d: is_canary %v forced %v", i, d.IsCanary(), d.ForcedBy())
		}
		r, err := g.Record(d, false, 5*time.Second)
		ok(t, err)
		if r != Forced {
			t.Fatalf("recorded %v, want forced", r)
		}
	}
	tester, err := g.RouteString("tester-1") // Route checks the id lists too
	ok(t, err)
	if !tester.IsCanary() || tester.ForcedBy() != ForcedByIDList {
		t.Errorf("tester-1: is_canary %v forced %v", tester.IsCanary(), tester.ForcedBy())
	}
	h, err := g.Health()
	ok(t, err)
	if h.CanaryRequests+h.ProductionRequests != 0 {
		t.Errorf("forced outcomes were counted: %+v", h)
	}
	metrics, err := g.MetricsPrometheus()
	ok(t, err)
	if !strings.Contains(metrics, `promotion_forced_outcomes_total{gate="default"} 200`) {
		t.Errorf("no forced count in:\n%s", metrics)
	}
	// nil is no value; an empty slice is a value, ignored.
	none, err := g.RouteForced([]byte("user-1"), nil)
	ok(t, err)
	empty, err := g.RouteForced([]byte("user-1"), []byte{})
	ok(t, err)
	if none != empty || none.ForcedBy() != NotForced || none.IsCanary() {
		t.Errorf("none %+v, empty %+v", none, empty)
	}
	text, err := g.Config()
	ok(t, err)
	var back Config
	ok(t, json.Unmarshal([]byte(text), &back))
	if back.Overrides == nil || back.Overrides.Header != "X-Canary" || back.Overrides.CanaryIDs[0] != "tester-1" {
		t.Errorf("overrides lost in %s", text)
	}
}

// TestOverrideNames: the config's override header and cookie names, "" for one it does not
// give; a SwapConfig that renames them moves the change counter and OverrideNames follows.
func TestOverrideNames(t *testing.T) {
	g := newGate(t, `{"overrides": {"header": "X-Canary", "cookie": "pgate_version"}}`, "")
	header, cookie, err := g.OverrideNames()
	ok(t, err)
	if header != "X-Canary" || cookie != "pgate_version" {
		t.Fatalf("names %q, %q", header, cookie)
	}
	before, err := g.ChangeCount()
	ok(t, err)
	ok(t, g.SwapConfig(`{"overrides": {"cookie": "beta"}}`))
	after, err := g.ChangeCount()
	ok(t, err)
	header, cookie, err = g.OverrideNames()
	ok(t, err)
	if after == before || header != "" || cookie != "beta" {
		t.Fatalf("after the swap: count %d -> %d, names %q, %q", before, after, header, cookie)
	}
	ok(t, g.Close())
	_, _, err = g.OverrideNames()
	wantErr(t, err, ErrClosed)
}
