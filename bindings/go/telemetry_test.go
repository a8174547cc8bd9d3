package promotiongates

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
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
	if _, err := MetricsPrometheus(web, api); !errors.Is(err, ErrClosed) {
		t.Fatalf("a closed gate: %v", err)
	}
	rec = httptest.NewRecorder()
	MetricsHandler(api).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 503 {
		t.Fatalf("a closed gate served %d", rec.Code)
	}
	// web is still usable: the failed call released every lock it took.
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
	// Still usable: nothing was left locked.
	if err := api.Close(); err != nil {
		t.Fatal(err)
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
	if _, err := MetricsPrometheus(web, api); err != nil {
		t.Fatal(err)
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
