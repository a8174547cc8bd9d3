package promotiongates

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMetricsPrometheusNamesEachGateAndCountsARollback(t *testing.T) {
	web := newGate(t, `{"gate": "web", "environment": {"canary": {"traffic_percent": 50}}}`, "")
	api := newGate(t, `{"gate": "api"}`, "")
	before, err := MetricsPrometheus(web, api)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(before, "# TYPE promotion_health_score gauge"); n != 1 {
		t.Fatalf("health score family declared %d times", n)
	}
	for _, name := range []string{"web", "api"} {
		if !strings.Contains(before, fmt.Sprintf("promotion_health_score{gate=%q}", name)) {
			t.Fatalf("no health score of %s in\n%s", name, before)
		}
	}
	manual := `promotion_rollbacks_total{gate="web",trigger="manual",rule="none"}`
	if !strings.Contains(before, manual+" 0\n") {
		t.Fatalf("no %s 0", manual)
	}
	if err := web.Rollback("bad deploy"); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	MetricsHandler(web).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != PrometheusContentType {
		t.Fatalf("status %d, content type %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if !strings.Contains(rec.Body.String(), manual+" 1\n") {
		t.Fatalf("no %s 1 after the rollback", manual)
	}
	if err := api.Close(); err != nil {
		t.Fatal(err)
	}
	// A closed or nil gate is refused with its position, as the other refusals name theirs.
	if _, err := MetricsPrometheus(web, api); !errors.Is(err, ErrClosed) || err.Error() != "promotiongates: gates[1] is closed (PGATE_STATUS_INVALID_HANDLE)" {
		t.Fatalf("a closed gate: %v", err)
	}
	if _, err := MetricsPrometheus(web, nil); !errors.Is(err, ErrClosed) || err.Error() != "promotiongates: gates[1] is nil (PGATE_STATUS_INVALID_HANDLE)" {
		t.Fatalf("a nil gate: %v", err)
	}
	// The refused calls released every call they counted on web (the gate before the closed
	// one was acquired first): none is left in flight, for which Close would wait for ever.
	if !web.guard.idle() {
		t.Fatal("a refused exposition left a call counted in flight on web")
	}
	rec = httptest.NewRecorder()
	MetricsHandler(api).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 503 {
		t.Fatalf("a closed gate served %d", rec.Code)
	}
	if _, err := web.MetricsPrometheus(); err != nil {
		t.Fatal(err)
	}
}

// A gate passed twice is refused (its series would repeat), and the gates' order is the
// caller's whatever order they are held in.
func TestMetricsPrometheusRefusesAGatePassedTwice(t *testing.T) {
	web := newGate(t, `{"gate": "web"}`, "")
	api := newGate(t, `{"gate": "api"}`, "")
	_, err := MetricsPrometheus(api, web, api)
	// Worded as every binding words it.
	if pe := wantErr(t, err, ErrInvalidArgument); pe.Message != "gates[0] and gates[2] are the same gate" {
		t.Fatalf("a gate passed twice: %v", err)
	}
	// Refused before any call was counted: none is left in flight.
	if !api.guard.idle() || !web.guard.idle() {
		t.Fatal("a refused exposition left a call counted in flight")
	}
	// A handler of such gates finds it when it is built and answers 500 (no request mends
	// it), not 503.
	serveRefusal(t, MetricsHandler(api, web, api), "gates[0] and gates[2] are the same gate")
	names := map[*Gate]string{web: "web", api: "api"}
	for _, gates := range [][]*Gate{{web, api}, {api, web}} {
		text, err := MetricsPrometheus(gates...)
		if err != nil {
			t.Fatal(err)
		}
		first := strings.Index(text, fmt.Sprintf("promotion_health_score{gate=%q}", names[gates[0]]))
		second := strings.Index(text, fmt.Sprintf("promotion_health_score{gate=%q}", names[gates[1]]))
		if first < 0 || second < first {
			t.Fatalf("series not in the order given:\n%s", text)
		}
	}
}

// Two gates of one name would repeat each other's series: the library refuses them, and the
// binding names their positions.
func TestMetricsPrometheusRefusesTwoGatesOfOneName(t *testing.T) {
	web := newGate(t, `{"gate": "web"}`, "")
	api := newGate(t, `{"gate": "api"}`, "")
	twin := newGate(t, `{"gate": "web", "environment": {"canary": {"traffic_percent": 5}}}`, "")
	if name, err := twin.Name(); err != nil || name != "web" {
		t.Fatalf("Name: %q, %v", name, err)
	}
	_, err := MetricsPrometheus(web, api, twin)
	pe := wantErr(t, err, ErrInvalidArgument)
	if pe.Message != `gates[2] is named "web", as gates[0] is: their series would repeat` {
		t.Fatalf("two gates named web: %v", err)
	}
	// The library refused the three gates, all acquired: every call counted was released.
	for i, g := range []*Gate{web, api, twin} {
		if !g.guard.idle() {
			t.Fatalf("gates[%d]: the refused exposition left a call counted in flight", i)
		}
	}
	serveRefusal(t, MetricsHandler(web, api, twin), `gates[2] is named "web", as gates[0] is: their series would repeat`)
	if _, err := MetricsPrometheus(web, api); err != nil {
		t.Fatal(err)
	}
	// The handler serves the gates as given at its build: a later write to the caller's slice
	// (a reloaded gate swapped in) neither escapes the build's check nor races its reads.
	gs := []*Gate{web, api}
	h := MetricsHandler(gs...)
	gs[1] = twin
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); rec.Code != 200 || !strings.Contains(body, `gate="api"`) {
		t.Fatalf("after the caller's slice changed: served %d %q, want 200 with api's series", rec.Code, body)
	}
}

// serveRefusal checks that h answers a scrape 500 Internal Server Error, its body the refusal
// want names.
func serveRefusal(t *testing.T, h http.Handler, want string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); rec.Code != 500 || !strings.Contains(body, want) {
		t.Fatalf("served %d %q, want 500 and %q", rec.Code, body, want)
	}
}

// sample is one line of an exposition: its family, its series (name and labels) and value.
type sample struct {
	family, series string
	value          float64
}

// parsed splits an exposition into its # lines and its samples.
func parsed(t *testing.T, text string) (families []string, samples []sample) {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "#") {
			families = append(families, line)
		} else if line != "" {
			at := strings.LastIndexByte(line, ' ')
			value, err := strconv.ParseFloat(line[at+1:], 64)
			if err != nil {
				t.Fatalf("%q: %v", line, err)
			}
			family, _, _ := strings.Cut(line[:at], "{")
			samples = append(samples, sample{family, line[:at], value})
		}
	}
	return families, samples
}

// The host's counts replace the four outcome counters in the exposition, and nothing else
// changes (as the Rust test a_hosts_counts_replace_the_four_outcome_counters_and_nothing_else).
func TestMetricsPrometheusCountedReplacesTheFourOutcomeCountersAndNothingElse(t *testing.T) {
	web := newGate(t, `{"gate": "web", "environment": {"canary": {"traffic_percent": 50}},
		"overrides": {"header": "X-Canary", "canary_ids": ["tester"]}}`, "")
	api := newGate(t, `{"gate": "api", "environment": "staging"}`, "")
	// The gate's own counts: one forced outcome, one foreign (a decision of a gate further
	// along), one forcing value ignored.
	tester, err := web.RouteString("tester")
	ok(t, err)
	if r, err := web.Record(tester, true, time.Millisecond); r != Forced || err != nil {
		t.Fatalf("Record(tester) = %v, %v", r, err)
	}
	further := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, "")
	for _, p := range []float64{40, 30, 20} {
		ok(t, further.Promote(Canary, p))
	}
	alien, err := further.RouteString("u")
	ok(t, err)
	if r, err := web.Record(alien, true, time.Millisecond); r != Foreign || err != nil {
		t.Fatalf("Record(alien) = %v, %v", r, err)
	}
	if d, err := web.RouteForcedString("u", "nope", true); d.ForcedBy() != NotForced || err != nil {
		t.Fatalf("RouteForcedString(nope) = %v, %v", d.ForcedBy(), err)
	}
	four := map[string][2]float64{ // family: the host's count, the gate's own
		"promotion_late_outcomes_total":           {11, 0},
		"promotion_foreign_outcomes_total":        {12, 1},
		"promotion_forced_outcomes_total":         {13, 1},
		"promotion_ignored_override_values_total": {14, 1},
	}
	host := OutcomeCounts{LateOutcomes: 11, ForeignOutcomes: 12, ForcedOutcomes: 13, IgnoredOverrideValues: 14}
	counted, err := MetricsPrometheusCounted([]OutcomeCounts{host, {}}, web, api)
	ok(t, err)
	own, err := MetricsPrometheus(web, api)
	ok(t, err)
	families, samples := parsed(t, counted)
	ownFamilies, ownSamples := parsed(t, own)
	if strings.Join(families, "\n") != strings.Join(ownFamilies, "\n") {
		t.Fatalf("the families differ:\n%s\n%s", counted, own)
	}
	if len(samples) != len(ownSamples) {
		t.Fatalf("%d samples, %d of the gates' own", len(samples), len(ownSamples))
	}
	for i, s := range samples {
		o := ownSamples[i]
		if s.series != o.series {
			t.Fatalf("sample %d: %s, the gates' own %s", i, s.series, o.series)
		}
		want, isCounter := four[s.family]
		switch {
		case isCounter && strings.Contains(s.series, `gate="web"`):
			if [2]float64{s.value, o.value} != want {
				t.Errorf("%s: %v and own %v, want %v", s.series, s.value, o.value, want)
			}
		case isCounter:
			if s.value != 0 || o.value != 0 {
				t.Errorf("%s: %v and own %v, want 0 and 0", s.series, s.value, o.value)
			}
		// no series here reads the clock: the rest is the gates' own, unchanged
		case s.value != o.value && !(math.IsNaN(s.value) && math.IsNaN(o.value)):
			t.Errorf("%s: %v, the gates' own %v", s.series, s.value, o.value)
		}
	}
	// The largest count is taken, and served as a float, as Prometheus reads it.
	one, err := web.MetricsPrometheusCounted(OutcomeCounts{LateOutcomes: math.MaxUint64})
	ok(t, err)
	_, served := parsed(t, one)
	found := false
	for _, s := range served {
		if s.series == `promotion_late_outcomes_total{gate="web"}` {
			found = s.value == float64(math.MaxUint64)
		}
	}
	if !found {
		t.Fatalf("the largest count is not served:\n%s", one)
	}
	_, err = MetricsPrometheusCounted([]OutcomeCounts{host, host}, web, web)
	if pe := wantErr(t, err, ErrInvalidArgument); pe.Message != "gates[0] and gates[1] are the same gate" {
		t.Fatalf("a gate passed twice: %v", err)
	}
	for _, counts := range [][]OutcomeCounts{{host}, {host, host, host}, nil} {
		_, err = MetricsPrometheusCounted(counts, web, api)
		want := fmt.Sprintf("invalid len(counts) = %d: one OutcomeCounts per gate (gates: 2)", len(counts))
		if pe := wantErr(t, err, ErrInvalidArgument); pe.Message != want {
			t.Fatalf("%d counts for 2 gates: %v", len(counts), err)
		}
	}
	if text, err := MetricsPrometheusCounted(nil); text != "" || err != nil {
		t.Fatalf("no gates: %q, %v", text, err)
	}
	ok(t, api.Close())
	if _, err := MetricsPrometheusCounted([]OutcomeCounts{host, {}}, web, api); !errors.Is(err, ErrClosed) || !strings.Contains(err.Error(), "gates[1] is closed") {
		t.Fatalf("a closed gate: %v", err)
	}
}

// v2TotalCount decodes a compressed V2 histogram by hand (zlib, the 40-byte header, ZigZag
// LEB128 counts where a negative one is a run of empty buckets) and returns its sample count.
func v2TotalCount(t *testing.T, encoded string) int64 {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		t.Fatal(err)
	}
	if cookie := binary.BigEndian.Uint32(raw[:4]); cookie != 0x1c849314 {
		t.Fatalf("compressed cookie %#x", cookie)
	}
	zr, err := zlib.NewReader(bytes.NewReader(raw[8:]))
	if err != nil {
		t.Fatal(err)
	}
	inner, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if cookie := binary.BigEndian.Uint32(inner[:4]); cookie != 0x1c849313 {
		t.Fatalf("V2 cookie %#x", cookie)
	}
	payload := inner[40 : 40+binary.BigEndian.Uint32(inner[4:8])]
	var total int64
	for r := bytes.NewReader(payload); r.Len() > 0; {
		v, err := binary.ReadVarint(r) // ZigZag LEB128
		if err != nil {
			t.Fatal(err)
		}
		total += max(v, 0)
	}
	return total
}

func TestLatencyHistogramsHoldWhatWasRecorded(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`, "")
	const n = 250
	for i := range n {
		if _, err := g.RecordByID([]byte(fmt.Sprintf("user-%d", i)), true, time.Duration(1+i%20)*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	h, err := g.LatencyHistograms()
	if err != nil {
		t.Fatal(err)
	}
	if h.Encoding != "hdrhistogram-v2-deflate-base64" || h.Unit != "microseconds" {
		t.Fatalf("%+v", h)
	}
	canary, stable := v2TotalCount(t, h.Canary), v2TotalCount(t, h.Stable)
	if canary+stable != n || canary == 0 || stable == 0 {
		t.Fatalf("canary %d + stable %d samples, want %d", canary, stable, n)
	}
}

// A histograms document the binding cannot read (a library newer than it, a field of another
// type) is an ErrInvalidJSON naming what failed, as a changes document is, not a bare
// encoding/json error that errors.Is(err, ErrInvalidJSON) misses.
func TestLatencyHistogramsRefuseADocumentTheyCannotRead(t *testing.T) {
	for doc, want := range map[string]string{
		`{"encoding": 5}`: "latency histograms: json: cannot unmarshal number into Go struct field LatencyHistograms.encoding of type string",
		`{"canary": "`:    "latency histograms: unexpected end of JSON input",
	} {
		h, err := parseHistograms(doc)
		if pe := wantErr(t, err, ErrInvalidJSON); pe.Message != want || h != (LatencyHistograms{}) {
			t.Errorf("%s: %q, %+v; want %q", doc, pe.Message, h, want)
		}
	}
}
