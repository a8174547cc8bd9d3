package canaryproxy_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
	"github.com/promotion-gates/promotion-gates/bindings/go/canaryproxy"
)

func Example() {
	gate, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	// Two upstreams; in production, the URLs of the stable and the canary deployments.
	stableServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "stable") }))
	defer stableServer.Close()
	canaryServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "canary") }))
	defer canaryServer.Close()
	stable, _ := url.Parse(stableServer.URL)
	canary, _ := url.Parse(canaryServer.URL)

	proxy, err := canaryproxy.New(canaryproxy.Options{
		Gate: gate, Stable: stable, Canary: canary,
		KeyHeader: "X-Request-Id", KeyCookie: "session", // else the client's IP address
	})
	if err != nil {
		log.Fatal(err)
	}
	// An admin listener of its own, on loopback: the status shows the override names, the
	// allow-lists and the store's path.
	admin := http.NewServeMux()
	admin.Handle("GET /metrics", proxy.MetricsHandler())      // judges nothing (see MetricsHandler)
	admin.Handle("GET /canary/status", proxy.StatusHandler()) // read-only: config and upstreams
	adminServer := httptest.NewServer(admin)                  // http.ListenAndServe("127.0.0.1:9090", admin)
	defer adminServer.Close()
	front := httptest.NewServer(proxy) // http.ListenAndServe(":8080", proxy)
	defer front.Close()

	req, _ := http.NewRequest(http.MethodGet, front.URL+"/api", nil)
	req.Header.Set("X-Request-Id", "user-12345-session")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()

	res, err = http.Get(adminServer.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(string(body), strings.Contains(string(metrics), `promotion_window_requests{gate="default",cohort="stable"} 1`))
	// Output: stable true
}

// A host of several processes (the workers of a pre-forking server) counts the four outcome
// counters once for all of them and serves those counts in place of each gate's own: each
// outcome OnRecorded tells, and each forcing value the gate ignored, which
// OnIgnoredOverrideValue tells as the request is routed. Here the shared counts are atomics of
// one process; a real host keeps them in memory its processes share.
func Example_sharedCounts() {
	gate, err := promotiongates.New(`{"gate": "checkout", "overrides": {"header": "X-Canary"}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "ok") }))
	defer upstream.Close()
	stable, _ := url.Parse(upstream.URL)
	canary, _ := url.Parse(upstream.URL)

	var shared struct{ late, foreign, forced, ignored atomic.Uint64 }
	proxy, err := canaryproxy.New(canaryproxy.Options{
		Gate: gate, Stable: stable, Canary: canary,
		OnRecorded: func(r promotiongates.Recorded) {
			switch r {
			case promotiongates.Late:
				shared.late.Add(1)
			case promotiongates.Foreign:
				shared.foreign.Add(1)
			case promotiongates.Forced:
				shared.forced.Add(1)
			}
		},
		OnIgnoredOverrideValue: func() { shared.ignored.Add(1) },
	})
	if err != nil {
		log.Fatal(err)
	}
	front := httptest.NewServer(proxy)
	defer front.Close()
	req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
	req.Header.Set("X-Canary", "yes") // neither canary nor stable: ignored, and counted
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()

	// The /metrics handler, whichever process serves it: all four replace the gate's own.
	text, err := gate.MetricsPrometheusCounted(promotiongates.OutcomeCounts{
		LateOutcomes:          shared.late.Load(),
		ForeignOutcomes:       shared.foreign.Load(),
		ForcedOutcomes:        shared.forced.Load(),
		IgnoredOverrideValues: shared.ignored.Load(),
	})
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "promotion_ignored_override_values_total{") {
			fmt.Println(line)
		}
	}
	// Output: promotion_ignored_override_values_total{gate="checkout"} 1
}

// statusLog is a host's middleware writer, between http.TimeoutHandler and the Proxy: it keeps
// the final status for an access log. Its Unwrap is what lets the Proxy find TimeoutHandler's
// writer under it, and drop the upstream's 103 Early Hints, which that writer would take for
// the final status. A wrapper that cannot unwrap (one that holds the writes it is given)
// drops informational statuses in its own WriteHeader instead:
//
//	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
//		return
//	}
type statusLog struct {
	http.ResponseWriter
	status int
}

func (s *statusLog) WriteHeader(code int) {
	if code >= 200 && s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

// Unwrap returns the writer statusLog wraps (as http.ResponseController asks too).
func (s *statusLog) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// A host's writer between http.TimeoutHandler and the Proxy must unwrap: without Unwrap, the
// upstream's 103 reaches TimeoutHandler's writer, which takes it for the final status, and
// the client gets 200 with the upstream's error body in place of its 500.
func Example_hostWriterUnderTimeoutHandler() {
	gate, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 100}}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusInternalServerError)
		fmt.Fprint(w, "upstream error")
	}))
	defer failing.Close()
	upstream, _ := url.Parse(failing.URL)
	proxy, err := canaryproxy.New(canaryproxy.Options{Gate: gate, Stable: upstream, Canary: upstream})
	if err != nil {
		log.Fatal(err)
	}
	logged := make(chan int, 1) // the access log's status
	withLog := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &statusLog{ResponseWriter: w}
		proxy.ServeHTTP(s, r)
		logged <- s.status
	})
	front := httptest.NewServer(http.TimeoutHandler(withLog, 5*time.Second, "timed out"))
	defer front.Close()

	res, err := http.Get(front.URL)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(res.StatusCode, string(body), <-logged)
	// Output: 500 upstream error 500
}
