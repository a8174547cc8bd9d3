package canaryproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

// get sends a GET through front with the given header and cookie (either may be empty) and
// returns the status and body.
func get(t testing.TB, front string, header, cookie string) (int, string) {
	t.Helper()
	return send(t, front, map[string]string{"X-Request-Id": header}, map[string]string{"session": cookie})
}

// send sends a GET to front with the non-empty headers and cookies; returns the status and
// the body.
func send(t testing.TB, front string, headers, cookies map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, front, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if v != "" {
			req.Header.Set(k, v)
		}
	}
	for k, v := range cookies {
		if v != "" {
			req.AddCookie(&http.Cookie{Name: k, Value: v})
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(body)
}

// want is the upstream's name for the gate's decision on key.
func want(t testing.TB, g *promotiongates.Gate, key string) string {
	t.Helper()
	d, err := g.RouteString(key)
	if err != nil {
		t.Fatal(err)
	}
	if d.IsCanary() {
		return "canary"
	}
	return "stable"
}

// TestRoutesByHeaderCookieAndFallback: every request reaches the upstream the gate decides
// for its key: the header, else the cookie, else the client's address.
func TestRoutesByHeaderCookieAndFallback(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`)
	stable, canary := upstream(t, "stable", 200), upstream(t, "canary", 200)
	front := httptest.NewServer(newProxy(t, Options{KeyCookie: "session"}, g, stable.URL, canary.URL))
	defer front.Close()

	seen := map[string]int{}
	for i := range 100 {
		key := fmt.Sprint("user-", i)
		other := fmt.Sprint("other-", i)
		if _, body := get(t, front.URL, key, ""); body != want(t, g, key) {
			t.Fatalf("header %s went to %s, the gate says %s", key, body, want(t, g, key))
		}
		if _, body := get(t, front.URL, "", key); body != want(t, g, key) {
			t.Fatalf("cookie %s went to %s, the gate says %s", key, body, want(t, g, key))
		}
		if _, body := get(t, front.URL, key, other); body != want(t, g, key) {
			t.Fatalf("header %s and cookie %s went to %s: the header wins", key, other, body)
		}
		_, body := get(t, front.URL, "", "")
		if body != want(t, g, "127.0.0.1") {
			t.Fatalf("no key went to %s, the gate says %s for the client address", body, want(t, g, "127.0.0.1"))
		}
		seen[want(t, g, key)]++
	}
	if seen["canary"] == 0 || seen["stable"] == 0 {
		t.Fatalf("50%% canary, yet %v", seen)
	}
	if n := metric(t, g, "promotion_window_requests", `cohort="canary"`) + metric(t, g, "promotion_window_requests", `cohort="stable"`); n != 400 {
		t.Fatalf("400 requests proxied, %v recorded", n)
	}
}

// TestKeyOptions: NoKeyHeader ignores the header; Fallback gives the key of a request
// without one.
func TestKeyOptions(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`)
	p := newProxy(t, Options{NoKeyHeader: true, Fallback: func(*http.Request) string { return "fallback" }}, g,
		"http://127.0.0.1:1", "http://127.0.0.1:2")
	r := httptest.NewRequest(http.MethodGet, "http://front/", nil)
	r.Header.Set("X-Request-Id", "ignored")
	if key := p.Key(r); key != "fallback" {
		t.Fatalf("NoKeyHeader: key %q", key)
	}
	p = newProxy(t, Options{KeyHeader: "x-user"}, g, "http://127.0.0.1:1", "http://127.0.0.1:2")
	r.Header.Set("X-User", "u1")
	if key := p.Key(r); key != "u1" {
		t.Fatalf("KeyHeader x-user: key %q", key)
	}
	r.Header.Del("X-User")
	if key := p.Key(r); key != "192.0.2.1" { // httptest.NewRequest's RemoteAddr, 192.0.2.1:1234
		t.Fatalf("fallback: key %q", key)
	}
	d, err := p.Route(r)
	if want, _ := g.RouteString("192.0.2.1"); err != nil || d != want {
		t.Fatalf("Route: %+v, %v; want %+v", d, err, want)
	}
}

// TestTheHostHeaderIsReadFromRequestHost: net/http moves a request's Host header (HTTP/2's
// :authority too) out of Header into Request.Host, so a KeyHeader named Host (in any case) is
// read there: a build reading Header alone keyed every request by the client's address. The
// library refuses Host as the override header (each host reads the authority its own way).
func TestTheHostHeaderIsReadFromRequestHost(t *testing.T) {
	if _, err := promotiongates.New(`{"overrides": {"header": "host"}}`, ""); err == nil || !strings.Contains(err.Error(), `invalid overrides.header = "host"`) {
		t.Fatalf("an override header named host: %v", err)
	}
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}, "overrides": {"header": "X-Canary"}}`)
	p := newProxy(t, Options{KeyHeader: "HOST"}, g, "http://127.0.0.1:1", "http://127.0.0.1:2")
	type read struct {
		key, forcing string
		present      bool
	}
	got := make(chan read, 1)
	front := h2cServer(t, http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		value, present := p.ForcingValue(r)
		got <- read{p.Key(r), value, present}
	}))
	for _, h2 := range []bool{false, true} {
		transport := http.RoundTripper(http.DefaultTransport)
		if h2 {
			transport = h2cTransport()
		}
		for _, host := range []string{"tenant-a.example", "canary"} {
			req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
			req.Host = host
			res, err := (&http.Client{Transport: transport}).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if r := <-got; r != (read{host, "", false}) || res.ProtoMajor != map[bool]int{false: 1, true: 2}[h2] {
				t.Errorf("Host %q over HTTP/%d: key %q, forcing value %q (present %v)", host, res.ProtoMajor, r.key, r.forcing, r.present)
			}
		}
	}
	r := httptest.NewRequest(http.MethodGet, "http://front/", nil)
	r.Host = ""
	if key := p.Key(r); key != "192.0.2.1" {
		t.Errorf("without a Host: key %q, want the fallback", key)
	}
	d, err := p.Route(r)
	if want, _ := g.RouteString("192.0.2.1"); err != nil || d != want {
		t.Errorf("Route without a Host: %+v, %v; want %+v", d, err, want)
	}
}

// TestFailingCanaryIsRolledBack: a canary answering 500 to every request is rolled back by
// the outcomes the proxy records, and then every request goes to the stable upstream.
func TestFailingCanaryIsRolledBack(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}}`)
	stable, canary := upstream(t, "stable", 200), upstream(t, "canary", 500)
	front := httptest.NewServer(newProxy(t, Options{}, g, stable.URL, canary.URL))
	defer front.Close()

	canaryServed := 0
	for i := 0; i < 2000; i++ {
		if history, _ := g.RollbackHistory(); len(history) > 0 {
			break
		}
		status, body := get(t, front.URL, fmt.Sprint("user-", i), "")
		if body == "canary" {
			canaryServed++
			if status != 500 {
				t.Fatalf("canary status %d", status)
			}
		}
	}
	history, err := g.RollbackHistory()
	if err != nil || len(history) != 1 || !strings.Contains(history[0].Reason, "automatic rollback") {
		t.Fatalf("after %d canary failures: history %+v, %v", canaryServed, history, err)
	}
	for i := range 200 {
		if status, body := get(t, front.URL, fmt.Sprint("user-", i), ""); body != "stable" || status != 200 {
			t.Fatalf("after the rollback, user-%d went to %s (%d)", i, body, status)
		}
	}
	status := httptest.NewServer(newProxy(t, Options{}, g, stable.URL, canary.URL).StatusHandler())
	defer status.Close()
	if code, body := get(t, status.URL, "", ""); code != 200 || !strings.Contains(body, `"environment":"production"`) ||
		!strings.Contains(body, `"canary":"`+canary.URL+`"`) {
		t.Fatalf("status after the rollback: %d %s", code, body)
	}
	// An upstream's password is not shown.
	withPassword := strings.Replace(canary.URL, "http://", "http://u:s3cret@", 1)
	status = httptest.NewServer(newProxy(t, Options{}, g, stable.URL, withPassword).StatusHandler())
	defer status.Close()
	if code, body := get(t, status.URL, "", ""); code != 200 || strings.Contains(body, "s3cret") ||
		!strings.Contains(body, `"canary":"`+strings.Replace(withPassword, "s3cret", "xxxxx", 1)+`"`) {
		t.Fatalf("status with a password in the canary's URL: %d %s", code, body)
	}
}

// TestIsFailureConfigurable: with IsFailure 4xx-or-5xx, a 404 counts as a failure; by
// default it does not.
func TestIsFailureConfigurable(t *testing.T) {
	for _, tc := range []struct {
		isFailure func(int) bool
		errors    float64
	}{{nil, 0}, {func(s int) bool { return s >= 400 }, 1}} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		notFound := upstream(t, "canary", 404)
		front := httptest.NewServer(newProxy(t, Options{IsFailure: tc.isFailure}, g, notFound.URL, notFound.URL))
		if status, _ := get(t, front.URL, "k", ""); status != 404 {
			t.Fatalf("status %d", status)
		}
		front.Close()
		if n := metric(t, g, "promotion_window_errors", `cohort="canary"`); n != tc.errors {
			t.Fatalf("404 recorded as %v errors, want %v", n, tc.errors)
		}
		if n := metric(t, g, "promotion_window_requests", `cohort="canary"`); n != 1 {
			t.Fatalf("%v requests recorded, want 1", n)
		}
	}
}

// TestClientCancellationIsNotAFailure: a client that goes away while the canary upstream
// works makes ReverseProxy's error handler run. The gate counts no failure: nothing when the
// client left before the SLO's latency target, and a slow success, timed to when it left,
// when it waited longer (a hung canary is rolled back even when its clients give up first).
func TestClientCancellationIsNotAFailure(t *testing.T) {
	early := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`) // target 500 ms
	cancelWhileUpstreamWorks(t, early, 0, Options{}, "")
	for _, cohort := range []string{`cohort="canary"`, `cohort="stable"`} {
		if n := metric(t, early, "promotion_window_requests", cohort); n != 0 {
			t.Fatalf("an early client cancellation was recorded: %v requests %s", n, cohort)
		}
	}
	late, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 100}}}`,
		`{"latency_target_ms": 50}`)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	cancelWhileUpstreamWorks(t, late, 120*time.Millisecond, Options{}, "")
	canary := `cohort="canary"`
	if n := metric(t, late, "promotion_window_requests", canary); n != 1 {
		t.Fatalf("a client that waited past the target: %v requests recorded, want 1", n)
	}
	if n := metric(t, late, "promotion_window_errors", canary); n != 0 {
		t.Fatalf("a client that went away was recorded as %v errors", n)
	}
	if n := metric(t, late, "promotion_window_latency_seconds_bucket", canary, `le="0.1"`); n != 0 {
		t.Fatalf("the request that waited 120 ms was timed under 100 ms")
	}
}

// cancelWhileUpstreamWorks sends one request through a Proxy over g (and opts) to an upstream
// that never answers, with X-Canary: forcing unless forcing is empty, and cancels it after the
// upstream has held it for wait.
func cancelWhileUpstreamWorks(t *testing.T, g *promotiongates.Gate, wait time.Duration, opts Options, forcing string) {
	t.Helper()
	arrived := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-r.Context().Done() // the proxy hung up: its client went away
	}))
	defer slow.Close()
	var handlerErr atomic.Value
	opts.ErrorHandler = func(w http.ResponseWriter, r *http.Request, err error) {
		handlerErr.Store(err)
		w.WriteHeader(http.StatusBadGateway)
	}
	p := newProxy(t, opts, g, slow.URL, slow.URL)
	done := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		p.ServeHTTP(w, r)
	}))
	defer front.Close()

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, front.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	if forcing != "" {
		req.Header.Set("X-Canary", forcing)
	}
	go func() { <-arrived; time.Sleep(wait); cancel() }()
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the canceled request answered %d", res.StatusCode)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the proxy did not finish the canceled request")
	}
	if err, _ := handlerErr.Load().(error); !errors.Is(err, context.Canceled) {
		t.Fatalf("ReverseProxy's error handler got %v, want context.Canceled", err)
	}
}

// TestOnRecordedHearsEveryOutcome: OnRecorded is told what the gate did with each outcome,
// that of a request abandoned after the latency target included (a forced one is Forced), so
// that a host of several processes counts them for MetricsPrometheusCounted; nothing for a
// request abandoned before the target.
func TestOnRecordedHearsEveryOutcome(t *testing.T) {
	g, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 0}},
		"overrides": {"header": "X-Canary"}}`, `{"latency_target_ms": 50}`)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	heard := make(chan promotiongates.Recorded, 16)
	opts := Options{OnRecorded: func(r promotiongates.Recorded) { heard <- r }}
	// took waits for want (a request's outcome is recorded once its answer was copied, as
	// its client may already read it), then requires that nothing else was heard.
	took := func(want ...promotiongates.Recorded) {
		t.Helper()
		for _, w := range want {
			select {
			case r := <-heard:
				if r != w {
					t.Fatalf("OnRecorded heard %v, want %v", r, w)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("OnRecorded did not hear %v", w)
			}
		}
		select {
		case r := <-heard:
			t.Fatalf("OnRecorded heard %v, more than %v", r, want)
		default:
		}
	}
	cancelWhileUpstreamWorks(t, g, 0, opts, "canary")
	took()
	cancelWhileUpstreamWorks(t, g, 120*time.Millisecond, opts, "canary")
	took(promotiongates.Forced)
	cancelWhileUpstreamWorks(t, g, 120*time.Millisecond, opts, "")
	took(promotiongates.Counted)
	stable := upstream(t, "stable", 200)
	front := httptest.NewServer(newProxy(t, opts, g, stable.URL, stable.URL))
	defer front.Close()
	send(t, front.URL, map[string]string{"X-Canary": "canary"}, nil)
	send(t, front.URL, nil, nil)
	took(promotiongates.Forced, promotiongates.Counted)
}

// TestOnIgnoredOverrideValueHearsEachIgnoredValue: a forcing value the gate ignores (neither
// canary nor stable) is told to OnIgnoredOverrideValue as its request is routed, so that a
// host of several processes counts promotion_ignored_override_values_total as it counts the
// outcomes OnRecorded hears: for one process its counts are the gate's own, and
// MetricsPrometheusCounted serves them. A value the config's id lists overrule, one
// TrustForcing refused and a value that forces are not ignored. A build told nothing of it,
// and a host following the docs served the counter as 0.
func TestOnIgnoredOverrideValueHearsEachIgnoredValue(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}},
		"overrides": {"header": "X-Canary", "canary_ids": ["tester"]}}`)
	var late, foreign, forced, ignored atomic.Uint64 // the memory the processes would share
	opts := Options{
		OnRecorded: func(r promotiongates.Recorded) {
			switch r {
			case promotiongates.Late:
				late.Add(1)
			case promotiongates.Foreign:
				foreign.Add(1)
			case promotiongates.Forced:
				forced.Add(1)
			}
		},
		OnIgnoredOverrideValue: func() { ignored.Add(1) },
		TrustForcing:           func(r *http.Request) bool { return r.Header.Get("X-Untrusted") == "" },
	}
	up := upstream(t, "up", http.StatusOK)
	front := httptest.NewServer(newProxy(t, opts, g, up.URL, up.URL))
	defer front.Close()
	cases := []struct {
		name    string
		headers map[string]string
		ignored bool
	}{
		{"X-Canary: bogus", map[string]string{"X-Canary": "bogus"}, true},
		{"X-Canary: canary", map[string]string{"X-Canary": "canary"}, false},
		{"X-Canary: STABLE", map[string]string{"X-Canary": "STABLE"}, false},
		{"no X-Canary", nil, false},
		{"X-Canary: maybe", map[string]string{DefaultKeyHeader: "user-7", "X-Canary": "maybe"}, true},
		{"the listed tester's X-Canary: bogus", map[string]string{DefaultKeyHeader: "tester", "X-Canary": "bogus"}, false},
		{"an untrusted X-Canary: bogus", map[string]string{"X-Canary": "bogus", "X-Untrusted": "1"}, false},
	}
	for _, c := range cases {
		before := ignored.Load()
		if status, _ := send(t, front.URL, c.headers, nil); status != http.StatusOK {
			t.Fatalf("%s: answered %d", c.name, status)
		}
		if heard := ignored.Load() - before; (heard == 1) != c.ignored || heard > 1 {
			t.Errorf("%s: OnIgnoredOverrideValue heard %d times, want ignored %v", c.name, heard, c.ignored)
		}
	}
	if n := metric(t, g, "promotion_ignored_override_values_total"); n != 2 || ignored.Load() != 2 {
		t.Fatalf("the gate counted %v ignored values, the host %d; want 2, 2", n, ignored.Load())
	}
	// Outcomes are recorded once their answer was copied, as the client may already read it.
	own := func() promotiongates.OutcomeCounts {
		return promotiongates.OutcomeCounts{
			LateOutcomes:          uint64(metric(t, g, "promotion_late_outcomes_total")),
			ForeignOutcomes:       uint64(metric(t, g, "promotion_foreign_outcomes_total")),
			ForcedOutcomes:        uint64(metric(t, g, "promotion_forced_outcomes_total")),
			IgnoredOverrideValues: uint64(metric(t, g, "promotion_ignored_override_values_total")),
		}
	}
	counted := func() promotiongates.OutcomeCounts {
		return promotiongates.OutcomeCounts{LateOutcomes: late.Load(), ForeignOutcomes: foreign.Load(),
			ForcedOutcomes: forced.Load(), IgnoredOverrideValues: ignored.Load()}
	}
	eventually(t, "the 3 forced outcomes recorded", func() bool { return own().ForcedOutcomes == 3 && forced.Load() == 3 })
	if own, counted := own(), counted(); own != counted {
		t.Fatalf("the host counted %+v, the gate %+v", counted, own)
	}
	text, err := g.MetricsPrometheusCounted(counted())
	if err != nil {
		t.Fatal(err)
	}
	if line := `promotion_ignored_override_values_total{gate="default"} 2` + "\n"; !strings.Contains(text, line) {
		t.Fatalf("the host's counts served without %q:\n%s", line, text)
	}
}

// TestAProxyNotMadeByNewAnswers500: a zero Proxy (or a nil one) used as a handler panicked on
// its first request (a nil pointer, its override names never read). It answers 500 and logs
// that the Proxy was not made by New, its Route returns an error matching ErrClosed (as a
// zero Gate's calls do), and a zero one's other methods answer as for a closed gate.
func TestAProxyNotMadeByNewAnswers500(t *testing.T) {
	var logged strings.Builder
	log.SetOutput(&logged)
	defer log.SetOutput(os.Stderr)
	for _, p := range []*Proxy{{}, nil} {
		name := fmt.Sprintf("%#v", p)
		req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, req)
		if rec.Code != http.StatusInternalServerError || !strings.Contains(rec.Body.String(), "not made by New") {
			t.Errorf("%s: answered %d %q, want 500 saying it was not made by New", name, rec.Code, rec.Body.String())
		}
		if _, err := p.Route(req); !errors.Is(err, promotiongates.ErrClosed) || !strings.Contains(err.Error(), "canaryproxy.New") {
			t.Errorf("%s: Route: %v, want an ErrClosed naming canaryproxy.New", name, err)
		}
		if p == nil {
			continue
		}
		if key := p.Key(req); key != "192.0.2.1" {
			t.Errorf("%s: Key %q, want the client's address", name, key)
		}
		if value, present := p.ForcingValue(req); value != "" || present {
			t.Errorf("%s: ForcingValue %q, %v", name, value, present)
		}
		for _, h := range []http.Handler{p.MetricsHandler(), p.StatusHandler()} {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "http://admin/", nil))
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("%s: an admin handler answered %d, want 503 as for a closed gate", name, rec.Code)
			}
		}
	}
	if n := strings.Count(logged.String(), "not made by New"); n != 2 {
		t.Errorf("logged %d times that the Proxy was not made by New, want 2:\n%s", n, logged.String())
	}
}

// TestForwardingHeadersAndQuery: by default the upstream sees this hop alone (the client's
// forwarding headers dropped, a query with a semicolon re-encoded away); TrustForwarded keeps
// a trusted proxy's X-Forwarded-For chain and X-Forwarded-Proto, but not the Forwarded and
// X-Forwarded-Host a balancer may pass on from the client, and the Rewrite line of
// Options.Rewrite's doc keeps the query.
func TestForwardingHeadersAndQuery(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 0}}}`)
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
			fmt.Fprintf(w, "%s=%s\n", h, strings.Join(r.Header[h], "|"))
		}
		fmt.Fprintf(w, "query=%s\n", r.URL.RawQuery)
	}))
	defer echo.Close()
	// What a balancer sets (For, Proto) and what a client forged through it (Host, Forwarded).
	inbound := map[string]string{
		"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Host": "evil.example",
		"X-Forwarded-Proto": "https", "Forwarded": "for=6.6.6.6;proto=https",
	}
	through := func(opts Options) (body, host string) {
		t.Helper()
		front := httptest.NewServer(newProxy(t, opts, g, echo.URL, echo.URL))
		defer front.Close()
		_, body = send(t, front.URL+"/p?a=1;b=2", inbound, nil)
		return body, strings.TrimPrefix(front.URL, "http://")
	}
	peer := "127.0.0.1"
	got, host := through(Options{})
	for _, want := range []string{"X-Forwarded-For=" + peer + "\n", "X-Forwarded-Host=" + host + "\n",
		"X-Forwarded-Proto=http\n", "Forwarded=\n", "query=\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("by default the upstream got\n%swant %q", got, want)
		}
	}
	if strings.Contains(got, "evil.example") || strings.Contains(got, "203.0.113.7") {
		t.Fatalf("a client's forwarding headers went on by default:\n%s", got)
	}
	trust := func(r *http.Request) bool { return ClientAddress(r) == peer }
	got, host = through(Options{TrustForwarded: trust,
		Rewrite: func(pr *httputil.ProxyRequest, _ bool) { pr.Out.URL.RawQuery = pr.In.URL.RawQuery }})
	for _, want := range []string{"X-Forwarded-For=203.0.113.7, " + peer + "\n",
		"X-Forwarded-Host=" + host + "\n", "X-Forwarded-Proto=https\n", "Forwarded=\n",
		"query=a=1;b=2\n"} {
		if !strings.Contains(got, want) {
			t.Fatalf("trusted, the upstream got\n%swant %q", got, want)
		}
	}
	if strings.Contains(got, "evil.example") || strings.Contains(got, "6.6.6.6") {
		t.Fatalf("trusted, a client's forged Forwarded or X-Forwarded-Host went on:\n%s", got)
	}
	// A request TrustForwarded refuses is forwarded as by default.
	got, _ = through(Options{TrustForwarded: func(*http.Request) bool { return false }})
	if strings.Contains(got, "203.0.113.7") || !strings.Contains(got, "X-Forwarded-Proto=http\n") {
		t.Fatalf("an untrusted request's forwarding headers went on:\n%s", got)
	}
}

// TestUpstreamDialFailureIsCounted: an upstream that refuses connections fails the requests
// routed to it, which answer 502.
func TestUpstreamDialFailureIsCounted(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	// Port 9 (discard): nothing listens there. A port freed by closing a test server could be
	// handed to the next server this test starts, which would then answer for the canary.
	const refusing = "http://127.0.0.1:9"
	stable := upstream(t, "stable", 200)
	front := httptest.NewServer(newProxy(t, Options{}, g, stable.URL, refusing))
	defer front.Close()
	for i := range 3 {
		if status, _ := get(t, front.URL, fmt.Sprint("user-", i), ""); status != http.StatusBadGateway {
			t.Fatalf("status %d, want 502", status)
		}
	}
	if n := metric(t, g, "promotion_window_errors", `cohort="canary"`); n != 3 {
		t.Fatalf("3 dial failures, %v canary errors recorded", n)
	}
}

// TestDeadlineIsCounted: a request whose context ends by a deadline (a server's limit) while
// the upstream is slow is a failure of that upstream, not a client that went away.
func TestDeadlineIsCounted(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	}))
	defer slow.Close()
	front := httptest.NewServer(withDeadline(newProxy(t, Options{}, g, slow.URL, slow.URL), 20*time.Millisecond))
	defer front.Close()
	if status, _ := get(t, front.URL, "k", ""); status != http.StatusBadGateway {
		t.Fatalf("status %d, want 502", status)
	}
	if n := metric(t, g, "promotion_window_errors", `cohort="canary"`); n != 1 {
		t.Fatalf("a deadline recorded as %v errors, want 1", n)
	}
}

// TestConcurrentRequests: many clients at once (run with -race): every request is routed by
// the gate and recorded once.
func TestConcurrentRequests(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 30}}}`)
	stable, canary := upstream(t, "stable", 200), upstream(t, "canary", 200)
	front := httptest.NewServer(newProxy(t, Options{}, g, stable.URL, canary.URL))
	defer front.Close()
	const workers, each = 8, 50
	var wg sync.WaitGroup
	var wrong atomic.Int64
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("w%d-%d", w, i)
				if _, body := get(t, front.URL, key, ""); body != want(t, g, key) {
					wrong.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if wrong.Load() != 0 {
		t.Fatalf("%d requests reached the wrong upstream", wrong.Load())
	}
	if n := metric(t, g, "promotion_window_requests", `cohort="canary"`) + metric(t, g, "promotion_window_requests", `cohort="stable"`); n != workers*each {
		t.Fatalf("%d requests, %v recorded", workers*each, n)
	}
}

// TestClosedGateServesStable: a gate closed under the proxy routes nothing and records
// nothing; the requests go to the stable upstream.
func TestClosedGateServesStable(t *testing.T) {
	g, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 100}}}`, "")
	if err != nil {
		t.Fatal(err)
	}
	stable, canary := upstream(t, "stable", 200), upstream(t, "canary", 200)
	front := httptest.NewServer(newProxy(t, Options{}, g, stable.URL, canary.URL))
	defer front.Close()
	if _, body := get(t, front.URL, "k", ""); body != "canary" {
		t.Fatalf("open gate at 100%%: %s", body)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	if _, body := get(t, front.URL, "k", ""); body != "stable" {
		t.Fatalf("closed gate: %s", body)
	}
}

// An informational answer reaches the client where its writer takes one, and never stands for
// the final status: under http.TimeoutHandler (directly, or through a host's wrapper that
// unwraps to its writer), whose writer takes the first status written for the final one, an
// upload sent with Expect: 100-continue (curl's, for a body over 1 KiB) and an upstream's 103
// Early Hints reached the client as 200 with the canary's 500 body. 100 Continue is the
// client's server's own, sent when the body is first read; a 103 goes through where the writer
// takes it.
func TestAnInformationalAnswerNeverStandsForTheStatus(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // the upstream's server sends 100 Continue
		if r.Method == http.MethodGet {
			w.Header().Set("Link", "</app.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
		}
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("upstream error"))
	}))
	defer failing.Close()
	for _, host := range []struct {
		name       string
		wrap       func(http.Handler) http.Handler
		earlyHints bool // the client gets the 103
	}{
		{"the server's writer", func(h http.Handler) http.Handler { return h }, true},
		{"TimeoutHandler", func(h http.Handler) http.Handler { return http.TimeoutHandler(h, 5*time.Second, "slow") }, false},
		{"TimeoutHandler around an unwrapping wrapper", func(h http.Handler) http.Handler {
			return http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h.ServeHTTP(unwrappingWriter{w}, r)
			}), 5*time.Second, "slow")
		}, false},
	} {
		for _, upload := range []bool{true, false} {
			name := fmt.Sprintf("%s, upload %v", host.name, upload)
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			front := httptest.NewServer(host.wrap(newProxy(t, Options{}, g, failing.URL, failing.URL)))
			var informational []int
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
				informational = append(informational, code)
				return nil
			}}
			var body io.Reader
			if upload {
				body = strings.NewReader(strings.Repeat("x", 2000))
			}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodGet, front.URL, body)
			if err != nil {
				t.Fatal(err)
			}
			want := []int{}
			if upload {
				req.Method = http.MethodPost
				req.Header.Set("Expect", "100-continue")
				want = append(want, http.StatusContinue)
			} else if host.earlyHints {
				want = append(want, http.StatusEarlyHints)
			}
			client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 5 * time.Second}}
			res, err := client.Do(req)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			got, _ := io.ReadAll(res.Body)
			res.Body.Close()
			client.CloseIdleConnections()
			front.Close()
			if res.StatusCode != http.StatusInternalServerError || string(got) != "upstream error" ||
				fmt.Sprint(informational) != fmt.Sprint(want) {
				t.Errorf("%s: the client got %v then %d %q, want %v then 500", name, informational, res.StatusCode, got, want)
			}
			if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != 1 {
				t.Errorf("%s: %v canary requests, %v failures recorded; want 1 failure", name, requests, errors)
			}
		}
	}
}

// unwrappingWriter is a host's wrapper that passes every write on and unwraps, as
// http.ResponseController asks.
type unwrappingWriter struct{ http.ResponseWriter }

func (u unwrappingWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }

func TestNewRefusesMissingParts(t *testing.T) {
	g := newGate(t, "")
	u := mustURL(t, "http://127.0.0.1:1")
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{Stable: u, Canary: u}, "Options.Gate is nil"},
		{Options{Gate: g, Canary: u}, "Options.Stable = <nil>"},
		{Options{Gate: g, Stable: u, Canary: mustURL(t, "/relative")}, "Options.Canary = /relative"},
		{Options{Gate: g, Stable: mustURL(t, "ftp://127.0.0.1:1"), Canary: u}, "Options.Stable = ftp://127.0.0.1:1: an upstream needs the scheme http or https"},
		{Options{Gate: g, Stable: u, Canary: u, KeyHeader: "X-Id\nX-Other"}, `Options.KeyHeader = "X-Id\nX-Other": a header or cookie name is an HTTP token`},
		{Options{Gate: g, Stable: u, Canary: u, KeyCookie: "a b"}, `Options.KeyCookie = "a b"`},
		// a character drawn as nothing is escaped: strconv.Quote left U+2800 as it is
		{Options{Gate: g, Stable: u, Canary: u, KeyCookie: "user\u2800"}, `Options.KeyCookie = "user\u2800": a header`},
		// NoKeyHeader would ignore the KeyHeader.
		{Options{Gate: g, Stable: u, Canary: u, KeyHeader: "X-User", NoKeyHeader: true}, `Options.KeyHeader = "X-User" with Options.NoKeyHeader: NoKeyHeader reads no header`},
	} {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New: %v, want %q", err, tc.want)
		}
	}
	// A hand-built URL that url.Parse would refuse: every request would fail to dial, and be
	// recorded as the version's failure.
	// The message gives url.Parse's reason.
	for _, tc := range []struct {
		url  *url.URL
		want string
	}{
		{&url.URL{Scheme: "http", Host: "a b:80"}, `= http://a%20b:80: url.Parse refuses its text: invalid URL escape "%20"`},
		{&url.URL{Scheme: "http", Host: "a\nb"}, `= http://a%0Ab: url.Parse refuses its text: invalid URL escape "%0A"`},
		{&url.URL{Scheme: "http", Host: "a:xyz"}, `url.Parse refuses its text: invalid port ":xyz" after host`},
		{&url.URL{Scheme: "http", Host: "a", RawQuery: "q=\x7f"}, "url.Parse refuses its text: net/url: invalid control character in URL"},
		{&url.URL{Scheme: "http", User: url.UserPassword("u", "s3cret"), Host: "a b"}, `Options.Canary = http://u:xxxxx@a%20b: url.Parse refuses its text: invalid URL escape "%20"`},
	} {
		_, err := New(Options{Gate: g, Stable: u, Canary: tc.url})
		if err == nil || !strings.Contains(err.Error(), "Options.Canary = ") ||
			!strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%#v: %v, want %q", tc.url, err, tc.want)
		}
	}
	// A refused upstream's password is not shown.
	_, err := New(Options{Gate: g, Stable: mustURL(t, "ftp://user:s3cret@host"), Canary: u})
	if err == nil || strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "ftp://user:xxxxx@host") {
		t.Errorf("an upstream with a password: %v", err)
	}
	// A huge name is refused with a short message; a name past 128 bytes is refused.
	_, err = New(Options{Gate: g, Stable: u, Canary: u, KeyHeader: strings.Repeat("\x01", 10<<20)})
	if err == nil || len(err.Error()) > 1000 || !strings.Contains(err.Error(), `\x01"...(10485760 bytes):`) {
		t.Errorf("a 10 MiB header name: %d bytes of message: %.300s", len(err.Error()), err)
	}
	_, err = New(Options{Gate: g, Stable: u, Canary: u, KeyCookie: strings.Repeat("a", 129)})
	if err == nil || !strings.Contains(err.Error(), "of at most 128 bytes") {
		t.Errorf("a 129-byte cookie name: %v", err)
	}
	if _, err = New(Options{Gate: g, Stable: u, Canary: u, KeyCookie: strings.Repeat("a", 128)}); err != nil {
		t.Errorf("a 128-byte cookie name: %v", err)
	}
}

// staticTransport answers every request at once with an empty 200, without a network: the
// allocation test counts the proxies' own allocations only.
type staticTransport struct{}

// reached counts the requests staticTransport answered.
var reached atomic.Int64

func (staticTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	reached.Add(1)
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
}

// statusCounter is the allocation test's ResponseWriter, one for every request: it counts the
// requests answered 200 and the others. An httptest.ResponseRecorder shared so keeps the first
// status written, and saw the warm-up request's alone; one made per request would add its
// allocations to both proxies' counts. It allocates nothing per request (next clears the
// header map, keeping its room).
type statusCounter struct {
	header    http.Header
	wrote     bool // this request's status was written
	ok, other int  // requests answered 200, and otherwise
}

// next readies the writer for the next request.
func (s *statusCounter) next() {
	clear(s.header)
	s.wrote = false
}

func (s *statusCounter) Header() http.Header { return s.header }

func (s *statusCounter) WriteHeader(code int) {
	if s.wrote || code >= 100 && code < 200 {
		return
	}
	s.wrote = true
	if code == http.StatusOK {
		s.ok++
	} else {
		s.other++
	}
}

func (s *statusCounter) Write(b []byte) (int, error) {
	s.WriteHeader(http.StatusOK)
	return len(b), nil
}

// TestAllocatesNoMoreThanAnFNVProxy: routing and recording add no allocation to what the
// same ReverseProxies split by FNV-1a allocate.
func TestAllocatesNoMoreThanAnFNVProxy(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 10}}}`)
	stable, canary := mustURL(t, "http://stable.invalid"), mustURL(t, "http://canary.invalid")
	p := newProxy(t, Options{Transport: staticTransport{}}, g, stable.String(), canary.String())
	f := newFNVProxy(stable, canary, staticTransport{}, 10)
	w := &statusCounter{header: http.Header{}}
	// Every request must reach the upstream and be answered 200: an error path (a 502)
	// allocates less and would pass for cheap. AllocsPerRun runs once more to warm up.
	allocs := func(label string, h http.Handler, req *http.Request) float64 {
		t.Helper()
		before := reached.Load()
		n := testing.AllocsPerRun(200, func() { w.next(); h.ServeHTTP(w, req) })
		if got := reached.Load() - before; got != 201 || w.ok != 201 || w.other != 0 {
			t.Fatalf("%s: %d of 201 requests reached the upstream; %d answered 200, %d otherwise", label, got, w.ok, w.other)
		}
		w.ok, w.other = 0, 0
		return n
	}
	// A body that is none (not nil, of Content-Length 0: an HTTP/2 server gives every request
	// one), which the ReverseProxy drops: no watch of an upload that never comes (a build
	// made one).
	empty := httptest.NewRequest(http.MethodGet, "http://front/", strings.NewReader(""))
	if empty.Body == nil || empty.Body == http.NoBody || empty.ContentLength != 0 {
		t.Fatalf("the empty body is %T of length %d: want one not nil nor NoBody, of length 0", empty.Body, empty.ContentLength)
	}
	for _, c := range []struct {
		name  string
		req   *http.Request
		extra float64 // objects the gate proxy may allocate more
	}{
		{"a GET", httptest.NewRequest(http.MethodGet, "http://front/", nil), 0},
		{"a GET with an empty body", empty, 0},
		// A request with a body: one object more, the watch of its upload.
		{"a POST with a body", httptest.NewRequest(http.MethodPost, "http://front/", strings.NewReader("body")), 1},
	} {
		c.req.Header.Set("X-Request-Id", "user-000042-session-7f3a9c")
		gateAllocs := allocs("gate proxy, "+c.name, p, c.req)
		fnvAllocs := allocs("FNV proxy, "+c.name, f, c.req)
		if gateAllocs > fnvAllocs+c.extra {
			t.Fatalf("%s: the gate proxy allocates %v per request, the FNV proxy %v", c.name, gateAllocs, fnvAllocs)
		}
		t.Logf("%s: allocations per request: gate proxy %v, FNV proxy %v", c.name, gateAllocs, fnvAllocs)
	}
}

// TestOverridesReachTheForcedVersion: the override header and cookie named by the gate's
// config (or by Options) force a request; forced requests are recorded in neither cohort.
func TestOverridesReachTheForcedVersion(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 0}},
		"overrides": {"header": "X-Canary", "cookie": "canary", "canary_ids": ["tester-1"]}}`)
	stable, canary := upstream(t, "stable", 200), upstream(t, "canary", 500)
	front := httptest.NewServer(newProxy(t, Options{}, g, stable.URL, canary.URL))
	defer front.Close()
	through := func(key string, header, cookie string) string {
		_, body := send(t, front.URL, map[string]string{DefaultKeyHeader: key, "X-Canary": header},
			map[string]string{"canary": cookie})
		return body
	}
	for i := range 50 {
		key := fmt.Sprint("user-", i)
		for _, c := range []struct{ header, cookie, want string }{
			{"", "", "stable"},
			{"canary", "", "canary"},
			{"", "Canary", "canary"},
			{"stable", "canary", "stable"}, // the header wins
			{"maybe", "", "stable"},        // ignored
		} {
			if got := through(key, c.header, c.cookie); got != c.want {
				t.Fatalf("%s with header %q cookie %q went to %s, want %s", key, c.header, c.cookie, got, c.want)
			}
		}
	}
	if got := through("tester-1", "", ""); got != "canary" {
		t.Fatalf("tester-1 went to %s", got)
	}
	// 150 forced requests (100 of them failing canary requests) and 100 ordinary ones.
	if n := metric(t, g, "promotion_forced_outcomes_total"); n != 151 {
		t.Fatalf("151 forced requests, %v counted as forced", n)
	}
	if n := metric(t, g, "promotion_window_requests", `cohort="canary"`); n != 0 {
		t.Fatalf("forced canary requests reached the judge: %v", n)
	}
	if n := metric(t, g, "promotion_window_requests", `cohort="stable"`); n != 100 {
		t.Fatalf("100 ordinary stable requests, %v counted", n)
	}
	if n := metric(t, g, "promotion_ignored_override_values_total"); n != 50 {
		t.Fatalf("50 ignored values, %v counted", n)
	}
}

// TestOverrideRenamesAreFollowed: a Proxy that reads its gate's override names follows a
// rename, by a SwapConfig of this process or by another process's write applied from the
// state store (here a second gate on the same SQLite file).
func TestOverrideRenamesAreFollowed(t *testing.T) {
	store := fmt.Sprintf(`"gate": "renames", "store": {"sqlite": {"path": %q, "sync_interval_ms": 10}}`,
		filepath.Join(t.TempDir(), "gate.db"))
	config := func(header string) string {
		return fmt.Sprintf(`{"environment": {"canary": {"traffic_percent": 0}}, "overrides": {"header": %q}, %s}`,
			header, store)
	}
	g := newGate(t, config("X-Canary"))
	other := newGate(t, config("X-Canary")) // another process sharing the store
	p := newProxy(t, Options{}, g, "http://stable.invalid", "http://canary.invalid")
	if by := forcedBy(t, p, "X-Canary"); by != promotiongates.ForcedByValue {
		t.Fatalf("X-Canary: forced by %v", by)
	}

	// rename has writer rename the header from to to, and waits for p to read the new name.
	rename := func(writer *promotiongates.Gate, from, to, what string) {
		t.Helper()
		if err := writer.SwapConfig(config(to)); err != nil {
			t.Fatal(err)
		}
		eventually(t, to+" forcing after "+what, func() bool {
			return forcedBy(t, p, to) == promotiongates.ForcedByValue
		})
		if by := forcedBy(t, p, from); by != promotiongates.NotForced {
			t.Fatalf("the old name %s still read after the rename: forced by %v", from, by)
		}
	}
	rename(g, "X-Canary", "X-Force", "this process's SwapConfig")
	rename(other, "X-Force", "X-Beta", "another process's write through the store")
}

// forcedBy routes a request carrying "canary" in header through p and says what forced it.
func forcedBy(t testing.TB, p *Proxy, header string) promotiongates.ForcedBy {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(DefaultKeyHeader, "user-1")
	req.Header.Set(header, "canary")
	d, err := p.Route(req)
	if err != nil {
		t.Fatal(err)
	}
	return d.ForcedBy()
}

// eventually fails the test unless cond becomes true within 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFollowingEndsWithTheProxyOrTheGate: the goroutine that follows the gate's override
// names ends when its Proxy is collected, and when the gate is closed, and not before.
// Counted exactly (following), from none: a count of every goroutine of the process was
// lowered by other tests' ending meanwhile, and passed with a goroutine that kept its Proxy.
func TestFollowingEndsWithTheProxyOrTheGate(t *testing.T) {
	eventually(t, "the follow goroutines of earlier tests end", func() bool {
		runtime.GC()
		return following.Load() == 0
	})
	g := newGate(t, `{"overrides": {"header": "X-Canary"}}`)
	p := newProxy(t, Options{}, g, "http://stable.invalid", "http://canary.invalid")
	dropped := newProxy(t, Options{}, g, "http://stable.invalid", "http://canary.invalid")
	if n := following.Load(); n != 2 {
		t.Fatalf("%d follow goroutines for 2 Proxies", n)
	}
	runtime.KeepAlive(dropped) // and dropped here
	eventually(t, "the goroutine of a dropped Proxy ends", func() bool {
		runtime.GC()
		return following.Load() == 1
	})
	for range 4 { // several looks and collections: the live Proxy's goroutine stays
		runtime.GC()
		time.Sleep(overridesRefresh)
	}
	if n := following.Load(); n != 1 {
		t.Fatalf("%d follow goroutines for 1 live Proxy", n)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the goroutine of a Proxy on a closed gate ends", func() bool {
		return following.Load() == 0
	})
	runtime.KeepAlive(p)
}

// TestTrustForcing: a request Options.TrustForcing does not trust is routed as one without a
// forcing value (its bucket, and the id lists still apply), and its value is not counted as
// ignored; a trusted one is forced.
func TestTrustForcing(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 0}},
		"overrides": {"header": "X-Canary", "cookie": "canary", "canary_ids": ["tester-1"]}}`)
	stable, canary := upstream(t, "stable", 200), upstream(t, "canary", 200)
	trusted := func(r *http.Request) bool { return r.Header.Get("X-Trusted") == "yes" }
	front := httptest.NewServer(newProxy(t, Options{TrustForcing: trusted}, g, stable.URL, canary.URL))
	defer front.Close()
	for _, c := range []struct{ key, trust, header, cookie, want string }{
		{"user-1", "yes", "canary", "", "canary"},
		{"user-1", "yes", "", "canary", "canary"},
		{"user-1", "no", "canary", "", "stable"},
		{"user-1", "no", "", "canary", "stable"},
		{"user-1", "no", "maybe", "", "stable"},
		{"tester-1", "no", "stable", "", "canary"}, // the id list still applies
	} {
		_, body := send(t, front.URL, map[string]string{DefaultKeyHeader: c.key, "X-Canary": c.header,
			"X-Trusted": c.trust}, map[string]string{"canary": c.cookie})
		if body != c.want {
			t.Errorf("%s, trusted %s, header %q, cookie %q: went to %s, want %s", c.key, c.trust, c.header, c.cookie, body, c.want)
		}
	}
	if n := metric(t, g, "promotion_ignored_override_values_total"); n != 0 {
		t.Fatalf("an untrusted value was counted as ignored: %v", n)
	}
}
