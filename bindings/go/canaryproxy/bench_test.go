package canaryproxy

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// benchKeys are routing keys of a typical length (a session id), cycled by the benchmarks.
var benchKeys = func() []string {
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("user-%06d-session-7f3a9c", i)
	}
	return keys
}()

// cpuTime is the process's user plus system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkProxyHTTP sends requests, one at a time, from a client through the proxy to two
// upstreams, all httptest servers on loopback in this process, with a 10% canary: "gate" is
// this package's Proxy (routes by the gate, records every outcome), "fnv" the same two
// ReverseProxies split by FNV-1a of the same key, recording nothing. cpu-ns/req is the
// process's CPU time (user + system, from getrusage) per request: client, proxy and
// upstreams together. It is not the proxy's CPU per request: the client's and upstreams'
// share, the same in both variants, is in both the numerator and the denominator, so the
// gate/fnv ratio understates what the gate adds to the proxy. BenchmarkProxyInMemory is the
// proxy-only figure.
func BenchmarkProxyHTTP(b *testing.B) {
	stable, canary := upstream(b, "stable", 200), upstream(b, "canary", 200)
	g := newGate(b, `{"environment": {"canary": {"traffic_percent": 10}}}`)
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"gate", newProxy(b, Options{}, g, stable.URL, canary.URL)},
		{"fnv", newFNVProxy(mustURL(b, stable.URL), mustURL(b, canary.URL), nil, 10)},
	}
	for _, tc := range handlers {
		b.Run(tc.name, func(b *testing.B) {
			front := httptest.NewServer(tc.h)
			defer front.Close()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			defer client.CloseIdleConnections()
			req, err := http.NewRequest(http.MethodGet, front.URL, nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			i := 0
			start := cpuTime(b)
			for b.Loop() {
				req.Header.Set(DefaultKeyHeader, benchKeys[i%len(benchKeys)])
				res, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				i++
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/req")
		})
	}
}

// BenchmarkProxyInMemory is the proxies alone, the proxy-only figure: ServeHTTP on a
// recorder, upstreams answered at once by staticTransport (no network, no servers, no
// client), so cpu-ns/req is the proxy's CPU per request (plus the benchmark loop and the
// garbage collector, which run in the same process) and routing and recording are a larger
// part of what is measured.
func BenchmarkProxyInMemory(b *testing.B) {
	g := newGate(b, `{"environment": {"canary": {"traffic_percent": 10}}}`)
	stable, canary := mustURL(b, "http://stable.invalid"), mustURL(b, "http://canary.invalid")
	handlers := []struct {
		name string
		h    http.Handler
	}{
		{"gate", newProxy(b, Options{Transport: staticTransport{}}, g, stable.String(), canary.String())},
		{"fnv", newFNVProxy(stable, canary, staticTransport{}, 10)},
	}
	for _, tc := range handlers {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			i := 0
			start := cpuTime(b)
			for b.Loop() {
				req.Header.Set(DefaultKeyHeader, benchKeys[i%len(benchKeys)])
				w.Body.Reset()
				tc.h.ServeHTTP(w, req)
				i++
			}
			b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/req")
		})
	}
}
