package promotiongates

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOverrideVectors: the shared cases of tests/vectors/overrides.tsv (read by every
// language): each route's version and ForcedBy, and what recording it does.
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
		d, err := g.RouteForcedString(f[2], f[3], f[3] != "-")
		ok(t, err)
		if d.IsCanary() != (f[4] == "1") || d.ForcedBy().String() != f[5] {
			t.Errorf("%q: is_canary %v forced %v", line, d.IsCanary(), d.ForcedBy())
		}
		want := Counted
		if f[5] != "none" {
			want = Forced
		}
		r, err := g.Record(d, true, time.Microsecond)
		ok(t, err)
		if r != want {
			t.Errorf("%q: recorded %v, want %v", line, r, want)
		}
		cases++
	}
	if cases < 30 || len(gates) < 5 {
		t.Fatalf("overrides.tsv: only %d cases, %d configs", cases, len(gates))
	}
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
