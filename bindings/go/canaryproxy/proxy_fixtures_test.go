package canaryproxy

import (
	"bufio"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
	"github.com/promotion-gates/promotion-gates/bindings/go/internal/fnvsplit"
)

// newGate makes a gate that the test closes when it ends.
func newGate(t testing.TB, config string) *promotiongates.Gate {
	t.Helper()
	g, err := promotiongates.New(config, "")
	if err != nil {
		t.Fatalf("New(%s): %v", config, err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return g
}

// upstream starts a server that answers every request with status and its name as the body.
func upstream(t testing.TB, name string, status int) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte(name))
	}))
	t.Cleanup(s.Close)
	return s
}

func mustURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// newProxy builds a Proxy over gate and the two upstream URLs with opts' other fields; the
// upstream errors the tests provoke are logged nowhere unless opts names an ErrorLog.
func newProxy(t testing.TB, opts Options, gate *promotiongates.Gate, stable, canary string) *Proxy {
	t.Helper()
	opts.Gate, opts.Stable, opts.Canary = gate, mustURL(t, stable), mustURL(t, canary)
	if opts.ErrorLog == nil {
		opts.ErrorLog = quietLog()
	}
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// metric reads a series of the gate's Prometheus exposition: the value of the first line of
// family name whose labels contain every one of labels (e.g. `cohort="canary"`).
func metric(t testing.TB, g *promotiongates.Gate, name string, labels ...string) float64 {
	t.Helper()
	text, err := g.MetricsPrometheus()
	if err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(strings.NewReader(text))
lines:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		series, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(series, l) {
				continue lines
			}
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		return v
	}
	t.Fatalf("no series %s%v in:\n%s", name, labels, text)
	return 0
}

// newFNVProxy is the baseline of the benchmarks and of the allocation test (fnvsplit, which
// bindings/go/bench.sh measures against too): ReverseProxies configured the same, the same key,
// split by FNV-1a of the key at the same share, recording nothing.
func newFNVProxy(stable, canary *url.URL, transport http.RoundTripper, percent float64) *fnvsplit.Proxy {
	return fnvsplit.New(stable, canary, transport, percent, DefaultKeyHeader, ClientAddress)
}

// withDeadline is h under a deadline of the host's own: each request's context ends d after
// the request came.
func withDeadline(h http.Handler, d time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
