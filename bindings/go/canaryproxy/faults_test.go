package canaryproxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

// What a client or the host causes is not the upstream's failure, and what the upstream
// causes is, however the ReverseProxy reports it.

// canaryOutcomes reads the canary cohort's requests and errors in the gate's window.
func canaryOutcomes(t *testing.T, g *promotiongates.Gate) (requests, errors float64) {
	t.Helper()
	return metric(t, g, "promotion_window_requests", `cohort="canary"`),
		metric(t, g, "promotion_window_errors", `cohort="canary"`)
}

// rawRequest writes raw to addr and returns the status line the server answered ("" if it
// closed without one), waiting 2 s at most.
func rawRequest(t *testing.T, addr, raw string) string {
	t.Helper()
	return rawExchange(t, addr, raw, false)
}

// rawExchange is rawRequest, which closes its side of the connection after raw when
// closeWrite is true (a client whose request ends there).
func rawExchange(t *testing.T, addr, raw string, closeWrite bool) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	if closeWrite {
		_ = c.(*net.TCPConn).CloseWrite()
	}
	answer, _ := io.ReadAll(c)
	line, _, _ := bytes.Cut(answer, []byte("\r\n"))
	return string(line)
}

// A request the ReverseProxy refuses before sending it, or whose body the client fails to
// send, was charged to the version the client's own key chose: a client could roll back a
// healthy canary (18 requests with a tab in their Upgrade header did).
func TestWhatTheClientCausesIsNoFailure(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	var hits atomic.Int64
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	p := newProxy(t, Options{}, g, up.URL, up.URL)
	front := httptest.NewServer(p)
	defer front.Close()
	limited := httptest.NewServer(http.MaxBytesHandler(p, 10))
	defer limited.Close()
	addr := front.Listener.Addr().String()

	for i := 0; i < 30; i++ {
		status := rawRequest(t, addr, fmt.Sprintf("GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k%d\r\n"+
			"Connection: Upgrade\r\nUpgrade: web\tsocket\r\nConnection: close\r\n\r\n", i))
		if status != "HTTP/1.1 502 Bad Gateway" {
			t.Fatalf("an invalid Upgrade: %q", status)
		}
	}
	if status := rawRequest(t, addr, "POST / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k\r\n"+
		"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\nZZ\r\n"); status == "" {
		t.Fatal("a malformed chunk: no answer")
	}
	req, _ := http.NewRequest(http.MethodPost, limited.URL, bytes.NewReader(make([]byte, 1<<20)))
	req.Header.Set("X-Request-Id", "k")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("a body over MaxBytesHandler's limit: %d, want 413", res.StatusCode)
	}
	if requests, errors := canaryOutcomes(t, g); requests != 0 || errors != 0 {
		t.Errorf("the client's faults recorded as %v canary requests, %v failures", requests, errors)
	}
	if state, _ := g.State(); state.Environment != promotiongates.Canary {
		t.Errorf("rolled back by the client's faults: %v", state.Environment)
	}
}

// A body the client malformed (an invalid chunk) or cut short (5 of its 10 bytes, then the end
// of its side of the connection), also a gRPC call's, is answered 400 Bad Request, as net/http's server answers bad
// framing in a request's head (a build answering 502 told the client the upstream failed), is
// given to an ErrorHandler as ErrBadRequestBody, and is not recorded.
func TestABadRequestBodyIsAnswered400(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	front := httptest.NewServer(newProxy(t, Options{}, g, up.URL, up.URL))
	defer front.Close()
	handled := make(chan error, 1)
	custom := httptest.NewServer(newProxy(t, Options{ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
		handled <- err
		w.WriteHeader(http.StatusTeapot)
	}}, g, up.URL, up.URL))
	defer custom.Close()
	for _, tc := range []struct {
		name, body string
		closeWrite bool
	}{
		{"an invalid chunk", "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n", false},
		{"a body cut short", "Content-Length: 10\r\n\r\nhello", true},
		// A gRPC call's body (an upload unless Options.Duplex says otherwise).
		{"a gRPC stream's invalid chunk", "Content-Type: application/grpc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nZZ\r\n", false},
		{"a gRPC stream cut short", "Content-Type: application/grpc\r\nContent-Length: 10\r\n\r\nhello", true},
	} {
		raw := "POST / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k\r\nConnection: close\r\n" + tc.body
		if status := rawExchange(t, front.Listener.Addr().String(), raw, tc.closeWrite); status != "HTTP/1.1 400 Bad Request" {
			t.Errorf("%s: %q, want 400", tc.name, status)
		}
		rawExchange(t, custom.Listener.Addr().String(), raw, tc.closeWrite)
		select {
		case err := <-handled:
			if !errors.Is(err, ErrBadRequestBody) {
				t.Errorf("%s: the ErrorHandler got %v, not ErrBadRequestBody", tc.name, err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("%s: the ErrorHandler was not called", tc.name)
		}
	}
	if requests, errors := canaryOutcomes(t, g); requests != 0 || errors != 0 {
		t.Errorf("bad request bodies recorded as %v canary requests, %v failures", requests, errors)
	}
}

// An HTTP/2 upstream that resets its stream (its handler panics) while an HTTP/2 client's
// body is still arriving (its next bytes 300 ms later) fails the request, answered 502, and
// is not taken for a malformed body. Where the ReverseProxy hands the client's body to the
// Transport as it is, the HTTP/2 Transport's Close fails the read waiting for the client
// ("body closed by handler"; see TestAReadTheTransportBrokeByClosingTheBodyIsNotTheClients);
// the ReverseProxy of Go 1.26 hides that Close from the body (its noopCloseReader), and the
// Transport waits for the read to return the client's bytes.
func TestAnUpstreamResetDuringAnHTTP2UploadIsItsFailure(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = r.Body.Read(make([]byte, 1))
		panic(http.ErrAbortHandler) // over HTTP/2: RST_STREAM INTERNAL_ERROR
	}))
	up.EnableHTTP2 = true
	up.Config.ErrorLog = quietLog()
	up.StartTLS()
	defer up.Close()
	front := http2Front(t, newProxy(t, Options{Transport: up.Client().Transport}, g, up.URL, up.URL))
	body, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("a"))
		time.Sleep(300 * time.Millisecond)
		_, _ = pw.Write([]byte("b"))
		_ = pw.Close()
	}()
	req, _ := http.NewRequest(http.MethodPost, front.URL, body)
	req.Header.Set("X-Request-Id", "k")
	res, err := front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.ProtoMajor != 2 || res.StatusCode != http.StatusBadGateway {
		t.Errorf("the upstream's reset was answered %s %s, want HTTP/2.0 502", res.Proto, res.Status)
	}
	if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != 1 {
		t.Errorf("the upstream's reset recorded as %v canary requests, %v failures; want 1 failure", requests, errors)
	}
}

// A read of the client's body that fails because the Transport closed the body (an HTTP/2
// server's body fails a pending read when closed, "body closed by handler"; the HTTP/2
// Transport closes the body from another goroutine when the upstream resets the stream) is
// neither malformed nor a cut body while the request's context lives (the upstream's failure:
// a build taking every failed read for the client's answered it 400 and recorded nothing);
// once the context has ended (a deadline) it is a cut body, still not malformed.
func TestAReadTheTransportBrokeByClosingTheBodyIsNotTheClients(t *testing.T) {
	for _, ended := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		if ended {
			cancel()
		}
		pr, pw := io.Pipe()
		u := &uploadWatch{ReadCloser: closingBody{pr}, ctx: ctx, start: sinceEpoch()}
		read := make(chan error, 1)
		go func() {
			_, err := u.Read(make([]byte, 1))
			read <- err
		}()
		time.Sleep(20 * time.Millisecond) // the read waits for the client
		_ = u.Close()
		if err := <-read; err == nil {
			t.Fatalf("context ended %v: the read did not fail", ended)
		}
		if u.malformed.Load() || u.cut.Load() != ended {
			t.Errorf("context ended %v: malformed %v, cut %v; want not malformed, cut %v",
				ended, u.malformed.Load(), u.cut.Load(), ended)
		}
		cancel()
		pw.Close()
	}
}

// bodyReader starts an upstream that reads a request's whole body, then answers 200 "ok",
// over HTTP/2 (with TLS) when h2, and returns it with the Transport that reaches it (nil: the
// default one). protocols, when not nil, gets the protocol of each request it serves. The
// caller closes it.
func bodyReader(h2 bool, protocols *sync.Map) (*httptest.Server, http.RoundTripper) {
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if protocols != nil {
			protocols.Store(r.Proto, true)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	if !h2 {
		up.Start()
		return up, nil
	}
	up.EnableHTTP2 = true
	up.StartTLS()
	return up, up.Client().Transport
}

// closingBody is a client's body whose Close fails a pending read, as an HTTP/2 server's does.
type closingBody struct{ *io.PipeReader }

func (b closingBody) Close() error {
	return b.CloseWithError(errors.New("body closed by handler"))
}

// A deadline of the host's (200 ms) that ends an HTTP/2 client's upload while the client
// trickles its body (a byte every 150 ms), sent over HTTP/1 and over HTTP/2 to the upstream,
// is not a malformed body: answered 502, not 400, and not recorded (the client's time). Where
// the ReverseProxy passes the Transport's Close on to the client's body, the HTTP/2 Transport
// closes it at the deadline, which fails the read waiting for the client (a build taking that
// for the client's doing answered 400); Go 1.26's ReverseProxy does not, and no read fails.
func TestADeadlineEndingAnHTTP2UploadIsNotMalformed(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		up, transport := bodyReader(h2, nil)
		limited := http2Front(t, withDeadline(newProxy(t, Options{Transport: transport}, g, up.URL, up.URL), 200*time.Millisecond))
		body, pw := io.Pipe()
		go func() { // the Transport waits for a read in flight to return before it gives up
			for range 4 {
				if _, err := pw.Write([]byte("x")); err != nil {
					return
				}
				time.Sleep(150 * time.Millisecond)
			}
			_ = pw.Close()
		}()
		req, _ := http.NewRequest(http.MethodPost, limited.URL, body)
		req.Header.Set("X-Request-Id", "k")
		res, err := limited.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		pw.Close()
		if res.ProtoMajor != 2 || res.StatusCode != http.StatusBadGateway {
			t.Errorf("HTTP/2 upstream %v: an upload the host's deadline ended was answered %s %s, want HTTP/2.0 502", h2, res.Proto, res.Status)
		}
		if requests, errors := canaryOutcomes(t, g); requests != 0 || errors != 0 {
			t.Errorf("HTTP/2 upstream %v: an upload the host's deadline ended recorded as %v canary requests, %v failures", h2, requests, errors)
		}
		limited.Close()
		up.Close()
	}
}

// http2Front starts h as a front server that its Client reaches over HTTP/2, closed when the
// test ends.
func http2Front(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.EnableHTTP2 = true
	s.Config.ErrorLog = quietLog()
	s.StartTLS()
	t.Cleanup(s.Close)
	return s
}

// A client that never sends the body it announced, then leaves: the upstream waited on the
// client, so nothing is recorded (it was an abandoned request that waited 0.6 s).
func TestAClientThatNeverSendsItsBodyIsNotRecorded(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}, "gate": "stalled"}`)
	if err := g.SwapSLO(`{"latency_target_ms": 100}`); err != nil {
		t.Fatal(err)
	}
	up := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer up.Close()
	served := make(chan struct{}, 1)
	p := newProxy(t, Options{}, g, up.URL, up.URL)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() { served <- struct{}{} }()
		p.ServeHTTP(w, r)
	}))
	defer front.Close()
	c, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k\r\nContent-Length: 10\r\n\r\n")
	time.Sleep(300 * time.Millisecond)
	c.Close()
	<-served
	if requests, _ := canaryOutcomes(t, g); requests != 0 {
		t.Errorf("a body never sent recorded as %v canary request(s)", requests)
	}
}

// A client uploading its body slowly (0.7 s) to an upstream that answers once it has read
// it: the upload is not the upstream's latency.
func TestASlowUploadIsNotTheUpstreamsLatency(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = w.Write([]byte("ok"))
	}))
	defer up.Close()
	front := httptest.NewServer(newProxy(t, Options{}, g, up.URL, up.URL))
	defer front.Close()
	c, err := net.Dial("tcp", front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k\r\nContent-Length: 10\r\nConnection: close\r\n\r\n")
	for i := 0; i < 10; i++ {
		time.Sleep(70 * time.Millisecond)
		_, _ = c.Write([]byte("x"))
	}
	if answer, _ := io.ReadAll(c); !bytes.HasPrefix(answer, []byte("HTTP/1.1 200")) {
		t.Fatalf("answer: %q", answer)
	}
	eventually(t, "the request is recorded", func() bool {
		requests, _ := canaryOutcomes(t, g)
		return requests == 1
	})
	fast := metric(t, g, "promotion_window_latency_seconds_bucket", `cohort="canary"`, `le="0.1"`)
	if fast != 1 {
		t.Errorf("a 0.7 s upload to an upstream answering at once: %v of 1 latencies within 0.1 s", fast)
	}
}

// An upstream slow to take a large body (64 KiB, then 20 ms, again and again) from a client
// that sends it at once: the Transport waits on the upstream, not on the client, and that wait
// is the upstream's latency (a build subtracting the whole upload, up to its last byte read,
// recorded almost none of it).
func TestAnUpstreamSlowToReadTheBodyIsCharged(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	up := slowReader(t, 64<<10)
	front := httptest.NewServer(newProxy(t, Options{}, g, up.URL, up.URL))
	defer front.Close()
	body := bytes.Repeat([]byte("x"), 4<<20) // 64 reads of 64 KiB: at least 1.28 s
	started := time.Now()
	req, err := http.NewRequest(http.MethodPost, front.URL, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-Request-Id", "k")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(started)
	eventually(t, "the request is recorded", func() bool {
		requests, _ := canaryOutcomes(t, g)
		return requests == 1
	})
	// The client waited at least 1.28 s; the latency recorded must be more than 1 s.
	if fast := metric(t, g, "promotion_window_latency_seconds_bucket", `cohort="canary"`, `le="1"`); fast != 0 {
		t.Errorf("an upstream that took %v to read a 4 MiB body sent at once: recorded within 1 s", took)
	}
}

// An upstream whose status net/http refuses (below 100: the server panics writing it), or a
// Transport that panics or gives no response: the request failed, and is recorded so, though
// the ReverseProxy never reached the headers.
func TestAnUpstreamThatBreaksTheProxyIsAFailure(t *testing.T) {
	odd := rawUpstream(t, "HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n", 0)
	for _, tc := range []struct {
		name      string
		transport http.RoundTripper
		upstream  string
	}{
		{"status 099", nil, odd.URL},
		{"no response", roundTripper(func(*http.Request) (*http.Response, error) { return nil, nil }), "http://127.0.0.1:9"},
		{"a panic", roundTripper(func(*http.Request) (*http.Response, error) { panic("broken transport") }), "http://127.0.0.1:9"},
	} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		front := httptest.NewUnstartedServer(newProxy(t, Options{Transport: tc.transport}, g, tc.upstream, tc.upstream))
		front.Config.ErrorLog = quietLog()
		front.Start()
		req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
		req.Header.Set("X-Request-Id", "k")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
		front.Close()
		if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != 1 {
			t.Errorf("%s: %v canary requests, %v failures recorded; want 1 failure", tc.name, requests, errors)
		}
	}
}

// An upgrade the upstream granted (101) that the host's writer cannot take (http.TimeoutHandler's
// cannot hijack, and the ReverseProxy reports an error) is not recorded.
func TestAnUpgradeIsNotRecordedThroughAWriterThatCannotHijack(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	ws := rawUpstream(t, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		50*time.Millisecond)
	front := httptest.NewServer(http.TimeoutHandler(newProxy(t, Options{}, g, ws.URL, ws.URL), time.Second, "slow"))
	defer front.Close()
	rawRequest(t, front.Listener.Addr().String(),
		"GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if requests, errors := canaryOutcomes(t, g); requests != 0 || errors != 0 {
		t.Errorf("a granted upgrade recorded as %v canary requests, %v failures", requests, errors)
	}
}

// A granted upgrade is a success, timed at the 101, and a refused one a failure: a build that
// recorded only the refusals saw a canary refusing 1 upgrade in 10 at a 100 % error rate, as
// one refusing them all, and the ratio rules never told it from a stable refusing 1 %.
func TestAnUpgradeIsRecordedOnceGranted(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	var served atomic.Int64
	ws := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if served.Add(1) > 9 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhi")
		_ = brw.Flush()
		time.Sleep(150 * time.Millisecond) // the upgraded exchange, not timed
	}))
	defer ws.Close()
	front := httptest.NewServer(newProxy(t, Options{}, g, ws.URL, ws.URL))
	defer front.Close()
	for i := 1; i <= 10; i++ {
		want := "HTTP/1.1 101 Switching Protocols"
		if i == 10 {
			want = "HTTP/1.1 503 Service Unavailable"
		}
		if status := rawRequest(t, front.Listener.Addr().String(), fmt.Sprintf("GET / HTTP/1.1\r\nHost: x\r\n"+
			"X-Request-Id: k%d\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n", i)); status != want {
			t.Fatalf("upgrade %d: %q, want %q", i, status, want)
		}
	}
	if requests, errors := canaryOutcomes(t, g); requests != 10 || errors != 1 {
		t.Errorf("9 granted upgrades and a refused one recorded as %v canary requests, %v failures; want 10, 1", requests, errors)
	}
	if fast := metric(t, g, "promotion_window_latency_seconds_bucket", `cohort="canary"`, `le="0.1"`); fast != 10 {
		t.Errorf("%v of 10 upgrades recorded within 0.1 s: a grant is timed at its 101, not at the end of the 150 ms exchange", fast)
	}
}

// switchingUpstream answers every request with a 101 carrying the header lines answer (each
// ending in CRLF), then gives its side of the connection to then (nil: none), and closes it.
func switchingUpstream(answer string, then func(net.Conn)) *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		defer c.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\n" + answer + "\r\n")
		_ = brw.Flush()
		if then != nil {
			then(c)
		}
	}))
}

// awaitClose reads c until its peer closes it (nil) or 5 s passed (the deadline's error).
func awaitClose(c net.Conn) error {
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	return err
}

// A 101 the ReverseProxy does not switch to leaves its body, the upstream's connection, open
// (nothing closes it until a GC finds it): the Proxy closes it, whether the host's writer
// cannot hijack (http.TimeoutHandler's) or the upstream switched to another protocol than the
// one asked, or to an invalid one (those two the upstream's failures). GC is off meanwhile: no
// finalizer closes the connection in the Proxy's place.
func TestAnUpgradeNotTakenClosesTheUpstreamsConnection(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, tc := range []struct {
		name, upgrade string
		timeout       bool
		failures      float64
	}{
		{"under TimeoutHandler", "websocket", true, 0},
		{"another protocol", "h2c", false, 1},
		{"an invalid protocol", "web\tsocket", false, 1},
	} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		ended := make(chan error, 1)
		ws := switchingUpstream("Connection: Upgrade\r\nUpgrade: "+tc.upgrade+"\r\n", func(c net.Conn) {
			ended <- awaitClose(c) // nil: the proxy closed the connection
		})
		var h http.Handler = newProxy(t, Options{}, g, ws.URL, ws.URL)
		if tc.timeout {
			h = http.TimeoutHandler(h, 5*time.Second, "slow")
		}
		front := httptest.NewServer(h)
		rawRequest(t, front.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\nX-Request-Id: k\r\n"+
			"Connection: Upgrade\r\nUpgrade: websocket\r\nConnection: close\r\n\r\n")
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("%s: the upstream's connection ended with %v, want EOF", tc.name, err)
			}
		case <-time.After(time.Second):
			t.Errorf("%s: the upstream's connection still open 1 s after the request ended", tc.name)
		}
		if requests, errors := canaryOutcomes(t, g); requests != tc.failures || errors != tc.failures {
			t.Errorf("%s: %v canary requests, %v failures recorded; want %v of each", tc.name, requests, errors, tc.failures)
		}
		front.Close()
		ws.Close()
	}
}

// A 101 is a granted upgrade only when the request asked one and the 101 names that protocol,
// the rule of the ReverseProxy (its upgradeType): each side's protocol is its first Upgrade
// header's value when a Connection header lists the token "upgrade" (case-insensitively,
// among others), none otherwise, and the two must be equal as whole values, ASCII
// case-insensitively. A 101 to a request that asked no upgrade (no Upgrade header, or one
// without Connection: upgrade), or one naming no protocol, or one of the protocols asked, is a
// failure, timed to the 101 (the upstream then holds its connection open, unread, for 5 s); a
// 101 naming the asked protocol in other case is a grant. (Connection: close, a token of its
// own, ends each exchange.) The nginx module copies the rule: its test.sh checks
// the same cases.
func TestA101IsAGrantOnlyOfTheUpgradeAsked(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // no finalizer closes the upstream's side
	for _, tc := range []struct {
		name, request, answer string
		granted               bool
	}{
		{"no upgrade asked", "", "Connection: Upgrade\r\nUpgrade: websocket\r\n", false},
		{"an Upgrade header without Connection: upgrade", "Upgrade: websocket\r\n",
			"Connection: Upgrade\r\nUpgrade: websocket\r\n", false},
		{"no upgrade asked nor named", "", "", false},
		{"the protocol asked, in other case", "Connection: keep-alive, upgrade\r\nUpgrade: websocket\r\n",
			"Connection: upgrade\r\nUpgrade: WebSocket\r\n", true},
		{"one of the protocols asked", "Connection: Upgrade\r\nUpgrade: websocket, h2c\r\n",
			"Connection: Upgrade\r\nUpgrade: websocket\r\n", false},
	} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		hold := func(c net.Conn) { _ = awaitClose(c) }
		if tc.granted {
			hold = nil // a grant ends at once: the upgraded exchange is not timed
		}
		ws := switchingUpstream(tc.answer, hold)
		front := httptest.NewServer(newProxy(t, Options{}, g, ws.URL, ws.URL))
		want := "HTTP/1.1 502 Bad Gateway"
		if tc.granted {
			want = "HTTP/1.1 101 Switching Protocols"
		}
		if status := rawRequest(t, front.Listener.Addr().String(), "GET / HTTP/1.1\r\nHost: x\r\n"+
			"X-Request-Id: k\r\n"+tc.request+"Connection: close\r\n\r\n"); status != want {
			t.Errorf("%s: %q, want %q", tc.name, status, want)
		}
		failures := 1.0
		if tc.granted {
			failures = 0
		}
		if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != failures {
			t.Errorf("%s: %v canary requests, %v failures recorded; want 1, %v", tc.name, requests, errors, failures)
		}
		if fast := metric(t, g, "promotion_window_latency_seconds_bucket", `cohort="canary"`, `le="0.1"`); fast != 1 {
			t.Errorf("%s: %v of 1 recorded within 0.1 s: a 101 is timed at its header", tc.name, fast)
		}
		front.Close()
		ws.Close()
	}
}

// A canary that answers 200 and closes after 10 of its 100000 bytes fails the request (a
// build recording at the headers called it a success), and a client that leaves while a body
// streams is no failure: the upstream answered.
func TestABodyTheUpstreamCutsShortIsAFailure(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	cut := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789", 0)
	front := httptest.NewUnstartedServer(newProxy(t, Options{}, g, cut.URL, cut.URL))
	front.Config.ErrorLog = quietLog()
	front.Start()
	defer front.Close()
	req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
	req.Header.Set("X-Request-Id", "k")
	// The proxy aborts the response (the client sees it cut, or no answer at all when the
	// headers were still buffered).
	if res, err := http.DefaultClient.Do(req); err == nil {
		if _, err := io.Copy(io.Discard, res.Body); err == nil {
			t.Error("the client read the cut body without an error")
		}
		res.Body.Close()
	}
	eventually(t, "one failure", func() bool {
		requests, errors := canaryOutcomes(t, g)
		return requests == 1 && errors == 1
	})

	left := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	streaming := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte("x"), 1<<10))
		_ = http.NewResponseController(w).Flush()
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	defer streaming.Close()
	front2 := httptest.NewUnstartedServer(newProxy(t, Options{}, left, streaming.URL, streaming.URL))
	front2.Config.ErrorLog = quietLog()
	front2.Start()
	defer front2.Close()
	req, _ = http.NewRequest(http.MethodGet, front2.URL, nil)
	req.Header.Set("X-Request-Id", "k")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.ReadFull(res.Body, make([]byte, 1<<10))
	res.Body.Close() // leaves mid-body
	eventually(t, "one success", func() bool {
		requests, _ := canaryOutcomes(t, left)
		return requests == 1
	})
	if _, errors := canaryOutcomes(t, left); errors != 0 {
		t.Errorf("a client leaving mid-body recorded as %v failures", errors)
	}
}

// A canary that answers its headers at once, then does not send its body before the host's
// TimeoutHandler deadline (200 ms), fails the request, as it would before the headers: every
// client gets the TimeoutHandler's 503 (a build taking a deadline during the body's copy for
// the client's recorded fast successes). Whether the deadline ends the copy in a read of the
// upstream's body or, when the read came back after it, in the write to TimeoutHandler's
// writer (http.ErrHandlerTimeout, which a build took for a client refusing a write); and
// whether the Proxy writes to TimeoutHandler's writer or to a host's wrapper around it, one
// that hides Flush or one that has Flush whatever it wraps (a build taking any writer that
// can flush for one that streams to the client recorded a success through that one).
func TestABodyNotSentBeforeADeadlineIsAFailure(t *testing.T) {
	stalled := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789", 2*time.Second)
	late := roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, ContentLength: 100000,
			Body: io.NopCloser(&lateReader{ctx: r.Context()}), Request: r}, nil
	})
	for _, writer := range hostWriters {
		for _, tc := range []struct {
			name      string
			upstream  string
			transport http.RoundTripper
		}{
			{"ended in a read", stalled.URL, nil},
			{"ended in a write", "http://127.0.0.1:9", late},
		} {
			name := tc.name + ", " + writer.name
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			p := newProxy(t, Options{Transport: tc.transport}, g, tc.upstream, tc.upstream)
			front := httptest.NewServer(http.TimeoutHandler(writer.wrap(p), 200*time.Millisecond, "slow"))
			if status, _ := get(t, front.URL, "k", ""); status != http.StatusServiceUnavailable {
				t.Errorf("%s: the client got %d, not the TimeoutHandler's 503", name, status)
			}
			eventually(t, name+": the request is recorded", func() bool {
				requests, _ := canaryOutcomes(t, g)
				return requests == 1
			})
			if _, errors := canaryOutcomes(t, g); errors != 1 {
				t.Errorf("%s: a body not sent before the deadline recorded as %v failures, want 1", name, errors)
			}
			front.Close()
		}
	}
}

// A deadline of the host's own context (a limit on every request, 300 ms) that ends the copy
// of a healthy canary's body to the client is no failure, the status decides: a stream (the
// host's limit on it) and a fast download read by a slow client (the client's pace), through
// the server's writer and through the logging wrapper hosts commonly write, which hides Flush
// (a build charging every deadline failed the stream; one charging a deadline into any writer
// that cannot flush, taken for TimeoutHandler's buffer, failed both through the wrapper).
func TestAHostsDeadlineEndingABodyIsNoFailure(t *testing.T) {
	tick := append(append([]byte("data: "), bytes.Repeat([]byte("x"), 4<<10)...), "\n\n"...)
	stream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for i := 0; i < 100 && r.Context().Err() == nil; i++ { // 2 s, 20 ms a tick
			_, _ = w.Write(tick)
			_ = http.NewResponseController(w).Flush()
			time.Sleep(20 * time.Millisecond)
		}
	}))
	defer stream.Close()
	download := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		w.Header().Set("Content-Length", fmt.Sprint(1000*len(chunk)))
		for i := 0; i < 1000 && r.Context().Err() == nil; i++ { // 64 MiB, at once
			_, _ = w.Write(chunk)
		}
	}))
	defer download.Close()
	for _, writer := range hostWriters {
		for _, tc := range []struct{ name, upstream string }{
			{"a stream", stream.URL},
			{"a download read slowly", download.URL},
		} {
			name := tc.name + ", " + writer.name
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			limited := httptest.NewUnstartedServer(withDeadline(writer.wrap(newProxy(t, Options{}, g, tc.upstream, tc.upstream)), 300*time.Millisecond))
			limited.Config.ErrorLog = quietLog()
			limited.Start()
			res, err := http.Get(limited.URL)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			var got int64
			for slow := time.Now().Add(500 * time.Millisecond); time.Now().Before(slow); {
				n, err := io.CopyN(io.Discard, res.Body, 4<<10) // 4 KiB every 10 ms, past the deadline
				if got += n; err != nil {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			n, _ := io.Copy(io.Discard, res.Body) // what the sockets held when the deadline cut it
			got += n
			res.Body.Close()
			if res.StatusCode != http.StatusOK || got == 0 {
				t.Errorf("%s: %s, %d bytes", name, res.Status, got)
			}
			eventually(t, name+": the request is recorded", func() bool {
				requests, _ := canaryOutcomes(t, g)
				return requests == 1
			})
			if _, errors := canaryOutcomes(t, g); errors != 0 {
				t.Errorf("%s, ended by the host's deadline: recorded as %v failures", name, errors)
			}
			limited.Close()
		}
	}
}

// hostWriters are the writers the Proxy is given under a host's middleware: the server's own
// (or TimeoutHandler's), the logging wrapper hosts commonly write, which keeps the status and
// hides every other method (no Flush, no Unwrap), and a wrapper whose Flush is there whether
// the writer it wraps can flush or not.
var hostWriters = []struct {
	name string
	wrap func(http.Handler) http.Handler
}{
	{"the server's writer", func(h http.Handler) http.Handler { return h }},
	{"a wrapper hiding Flush", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(&statusWriter{ResponseWriter: w}, r)
		})
	}},
	{"a wrapper with Flush", func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			h.ServeHTTP(flushingWriter{w}, r)
		})
	}},
}

// statusWriter is a host's logging wrapper: it keeps the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(status int) {
	s.status = status
	s.ResponseWriter.WriteHeader(status)
}

// flushingWriter is a host's wrapper that flushes the writer it wraps when that can flush.
type flushingWriter struct{ http.ResponseWriter }

func (f flushingWriter) Flush() { _ = http.NewResponseController(f.ResponseWriter).Flush() }

// lateReader is a response body that gives 10 bytes, then waits for its request's context to
// end and gives 10 more 50 ms later (a body that does not heed its context).
type lateReader struct {
	ctx   context.Context
	reads int
}

func (l *lateReader) Read(b []byte) (int, error) {
	if l.reads++; l.reads > 1 {
		<-l.ctx.Done()
		time.Sleep(50 * time.Millisecond)
	}
	return copy(b, "0123456789"), nil
}

// Called without an http.Server (an httptest.ResponseRecorder), the ReverseProxy swallows the
// error of a body the upstream cut short, and the status decides (a success, as the package doc
// says); with an *http.Server in the context under http.ServerContextKey and
// http.ErrAbortHandler recovered, as the package doc tells an adapter, it is a failure.
func TestABrokenBodyOutsideAServerIsToldByTheServerContextKey(t *testing.T) {
	cut := rawUpstream(t, "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n0123456789", 0)
	for _, withServer := range []bool{false, true} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		p := newProxy(t, Options{}, g, cut.URL, cut.URL)
		req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
		req.Header.Set("X-Request-Id", "k")
		if withServer {
			req = req.WithContext(context.WithValue(req.Context(), http.ServerContextKey, &http.Server{}))
		}
		func() {
			defer func() {
				if v := recover(); v != nil && v != http.ErrAbortHandler {
					panic(v)
				}
			}()
			p.ServeHTTP(httptest.NewRecorder(), req)
		}()
		want := map[bool]float64{false: 0, true: 1}[withServer]
		if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != want {
			t.Errorf("with the server in the context %v: %v canary requests, %v failures; want 1, %v failures",
				withServer, requests, errors, want)
		}
	}
}

// slowReader starts an upstream that reads a request's body chunk bytes at a time, 20 ms
// apart, then answers 200 "ok".
func slowReader(t *testing.T, chunk int) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, chunk)
		for {
			if _, err := io.ReadFull(r.Body, buf); err != nil {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(s.Close)
	return s
}

// rawUpstream starts an upstream that answers every request with raw, bytes net/http's own
// writer would not send, then closes the connection after linger.
func rawUpstream(t *testing.T, raw string, linger time.Duration) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(err)
		}
		_, _ = brw.WriteString(raw)
		_ = brw.Flush()
		time.Sleep(linger)
		c.Close()
	}))
	t.Cleanup(s.Close)
	return s
}

// quietLog is a server's error log that drops the panics a test provokes.
func quietLog() *log.Logger { return log.New(io.Discard, "", 0) }

// roundTripper is a function as an http.RoundTripper.
type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A client that trickles its body past the host's TimeoutHandler deadline (10 bytes, 70 ms
// apart, against 200 ms) to a canary that reads it at once, over HTTP/1 and over HTTP/2 (whose
// Transport returns while the read still waits for the client): the deadline falls while the
// Transport waits for the client's bytes, and the canary is charged nothing (a build charging
// every deadline failed the canary 5 times out of 5, and one that looked only at the reads that
// returned did over HTTP/2). An upstream that never reads a large body under the same kind of
// deadline is still charged, 5 failures out of 5.
func TestADeadlineOnASlowUploadIsNotTheUpstreamsFailure(t *testing.T) {
	for _, h2 := range []bool{false, true} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		var protocols sync.Map
		up, transport := bodyReader(h2, &protocols)
		front := httptest.NewServer(http.TimeoutHandler(newProxy(t, Options{Transport: transport}, g, up.URL, up.URL), 200*time.Millisecond, "slow"))
		for i := range 5 {
			c, err := net.Dial("tcp", front.Listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			_, _ = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nX-Request-Id: slow-%d\r\nContent-Length: 10\r\n\r\n", i)
			for range 10 {
				time.Sleep(70 * time.Millisecond)
				_, _ = c.Write([]byte("x"))
			}
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			_, _ = io.ReadAll(io.LimitReader(c, 12))
			c.Close()
		}
		front.Close()
		up.Close()
		if _, ok := protocols.Load(map[bool]string{false: "HTTP/1.1", true: "HTTP/2.0"}[h2]); !ok {
			t.Errorf("HTTP/2 %v: the upstream saw no request of that protocol", h2)
		}
		if requests, errors := canaryOutcomes(t, g); requests != 0 || errors != 0 {
			t.Errorf("HTTP/2 %v: 5 slow uploads recorded as %v canary requests, %v failures", h2, requests, errors)
		}
	}

	deaf := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	never := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(2 * time.Second):
		}
	}))
	defer never.Close()
	bounded := httptest.NewServer(http.TimeoutHandler(newProxy(t, Options{}, deaf, never.URL, never.URL), 300*time.Millisecond, "slow"))
	defer bounded.Close()
	body := bytes.Repeat([]byte("x"), 32<<20)
	for range 5 {
		req, _ := http.NewRequest(http.MethodPost, bounded.URL, bytes.NewReader(body))
		req.Header.Set("X-Request-Id", "k")
		if res, err := http.DefaultClient.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
		}
	}
	eventually(t, "5 failures of the upstream that never reads", func() bool {
		requests, errors := canaryOutcomes(t, deaf)
		return requests == 5 && errors == 5
	})
}

// The front server's ReadTimeout (500 ms) ends the read of a 32 MiB body that the client sent
// at once and the upstream takes 20 ms a 256 KiB to read: the read fails, but the upstream
// held the request, not the client, and is charged as abandoned (a slow success past the
// 100 ms latency target; a build taking every failed read for the client's recorded nothing),
// and the client, still connected, is answered 502, not 200 (a build writing nothing to a
// request whose context was canceled left net/http to answer 200 OK with an empty body).
func TestAReadTimeoutDoesNotHideAnUpstreamSlowToReadTheBody(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	if err := g.SwapSLO(`{"latency_target_ms": 100}`); err != nil {
		t.Fatal(err)
	}
	up := slowReader(t, 256<<10)
	front := httptest.NewUnstartedServer(newProxy(t, Options{}, g, up.URL, up.URL))
	front.Config.ReadTimeout = 500 * time.Millisecond
	front.Start()
	defer front.Close()
	req, _ := http.NewRequest(http.MethodPost, front.URL, bytes.NewReader(bytes.Repeat([]byte("x"), 32<<20)))
	req.Header.Set("X-Request-Id", "k")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("an upload the upstream never finished reading was answered %s", res.Status)
	}
	eventually(t, "the slow upstream is recorded", func() bool {
		requests, _ := canaryOutcomes(t, g)
		return requests == 1
	})
	if _, errors := canaryOutcomes(t, g); errors != 0 {
		t.Errorf("abandoned recorded as %v failures", errors)
	}
	if slow := metric(t, g, "promotion_slo_compliance_ratio", `cohort="canary"`); slow != 0 {
		t.Errorf("the slow upstream's compliance is %v, want 0 (a success past the target)", slow)
	}
}

// A host that cancels its requests' contexts at shutdown (a BaseContext it cancels) while the
// client still waits: the client is answered 502 (a build writing nothing answered 200 OK
// with an empty body).
func TestACanceledContextIsAnswered(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	arrived := make(chan struct{}, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
		_, _ = w.Write([]byte("late"))
	}))
	defer up.Close()
	base, shutdown := context.WithCancel(context.Background())
	defer shutdown()
	front := httptest.NewUnstartedServer(newProxy(t, Options{}, g, up.URL, up.URL))
	front.Config.BaseContext = func(net.Listener) context.Context { return base }
	front.Start()
	defer front.Close()
	go func() { <-arrived; shutdown() }()
	req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
	req.Header.Set("X-Request-Id", "k")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("a request whose context the host canceled was answered %s", res.Status)
	}
}

// A panic of the host's code is not the version's failure: its Rewrite's, before any request
// is sent (a build charging every pending panic failed the canary 5 times without one request
// to it), and its ModifyResponse's or IsFailure's, after the upstream answered (a build
// charging them failed the canary 5 times for 5 good answers); the server sees the host's own
// panic value.
func TestAHostPanicIsNotTheUpstreamsFailure(t *testing.T) {
	for _, tc := range []struct {
		hook string
		opts Options
		hits int64 // requests the upstream saw
	}{
		{"Rewrite", Options{Rewrite: func(*httputil.ProxyRequest, bool) { panic("the host's Rewrite failed") }}, 0},
		{"ModifyResponse", Options{ModifyResponse: func(*http.Response) error { panic("the host's ModifyResponse failed") }}, 5},
		{"IsFailure", Options{IsFailure: func(int) bool { panic("the host's IsFailure failed") }}, 5},
	} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		var hits atomic.Int64
		up := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
		var logged syncBuffer
		front := httptest.NewUnstartedServer(newProxy(t, tc.opts, g, up.URL, up.URL))
		front.Config.ErrorLog = log.New(&logged, "", 0)
		front.Start()
		for i := range 5 {
			req, _ := http.NewRequest(http.MethodGet, front.URL, nil)
			req.Header.Set("X-Request-Id", fmt.Sprint("k", i))
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}
		front.Close()
		up.Close()
		if requests, errors := canaryOutcomes(t, g); requests != 0 || errors != 0 || hits.Load() != tc.hits {
			t.Errorf("5 %s panics: %v canary requests, %v failures recorded, %v upstream hits (want %v)",
				tc.hook, requests, errors, hits.Load(), tc.hits)
		}
		if text := logged.String(); !strings.Contains(text, "panic serving") || !strings.Contains(text, ": the host's "+tc.hook+" failed\n") {
			t.Errorf("%s: the server logged %q, not the host's panic", tc.hook, text)
		}
	}
}

// A panic after the upstream's response came closes its body before it goes on: the
// ReverseProxy closes the body when it returns, and on an error of ModifyResponse or of the
// body's copy, but not when a panic goes through it, and under an adapter whose request
// context never ends (ServeHTTP called directly) the Transport's connection stayed taken for
// good. The host's ModifyResponse and IsFailure (a build closing the body only for
// ModifyResponse's panic closed none of 3 for IsFailure's), and the host's ResponseWriter:
// its WriteHeader refusing the upstream's status (net/http's writers panic on a status below
// 100), its Header, its Write during the body's copy, also with http.ErrAbortHandler, which
// the ReverseProxy panics with once it closed the body (a build taking every such panic for
// the ReverseProxy's closed none, and charged the upstream with a broken body). The panic
// goes on with its own value.
func TestAPanicAfterTheResponseClosesTheUpstreamsBody(t *testing.T) {
	const failed = "the host's code failed"
	fine := upstream(t, "canary", http.StatusOK)
	odd := rawUpstream(t, "HTTP/1.1 099 Odd\r\nContent-Length: 4\r\n\r\nbody", 0)
	for _, tc := range []struct {
		name     string
		opts     Options
		upstream string
		writer   func() http.ResponseWriter
		panicked func(any) bool
	}{
		{"ModifyResponse", Options{ModifyResponse: func(*http.Response) error { panic(failed) }}, fine.URL,
			func() http.ResponseWriter { return httptest.NewRecorder() }, func(v any) bool { return v == failed }},
		{"IsFailure", Options{IsFailure: func(int) bool { panic(failed) }}, fine.URL,
			func() http.ResponseWriter { return httptest.NewRecorder() }, func(v any) bool { return v == failed }},
		{"a writer refusing status 099", Options{}, odd.URL,
			func() http.ResponseWriter { return httptest.NewRecorder() },
			func(v any) bool { return strings.Contains(fmt.Sprint(v), "invalid WriteHeader code 99") }},
		{"a writer's Header", Options{}, fine.URL,
			func() http.ResponseWriter { return panickingWriter{httptest.NewRecorder(), "Header"} },
			func(v any) bool { return v == "Header failed" }},
		{"a writer's Write", Options{}, fine.URL,
			func() http.ResponseWriter { return panickingWriter{httptest.NewRecorder(), "Write"} },
			func(v any) bool { return v == "Write failed" }},
		{"a writer's Write aborting", Options{}, fine.URL,
			func() http.ResponseWriter { return panickingWriter{httptest.NewRecorder(), "Abort"} },
			func(v any) bool { return v == http.ErrAbortHandler }},
	} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		upstreams := &http.Transport{}
		var made, closed atomic.Int64
		tc.opts.Transport = roundTripper(func(r *http.Request) (*http.Response, error) {
			res, err := upstreams.RoundTrip(r)
			if err == nil {
				made.Add(1)
				res.Body = closeCounter{res.Body, &closed}
			}
			return res, err
		})
		p := newProxy(t, tc.opts, g, tc.upstream, tc.upstream)
		for range 3 {
			func() {
				defer func() {
					if v := recover(); !tc.panicked(v) {
						t.Errorf("%s: ServeHTTP panicked with %v, not the panic's own value", tc.name, v)
					}
				}()
				p.ServeHTTP(tc.writer(), httptest.NewRequest(http.MethodGet, "http://front/", nil))
			}()
		}
		upstreams.CloseIdleConnections()
		if made.Load() != 3 || closed.Load() != 3 {
			t.Errorf("%s: %d upstream responses, %d bodies closed", tc.name, made.Load(), closed.Load())
		}
		if _, errors := canaryOutcomes(t, g); tc.upstream == fine.URL && errors != 0 {
			t.Errorf("%s: the upstream answered 200 and was charged %v failures", tc.name, errors)
		}
	}
}

// panickingWriter is a host's ResponseWriter whose method named fails panics.
type panickingWriter struct {
	http.ResponseWriter
	fails string
}

func (w panickingWriter) Header() http.Header {
	if w.fails == "Header" {
		panic("Header failed")
	}
	return w.ResponseWriter.Header()
}

func (w panickingWriter) Write(b []byte) (int, error) {
	switch w.fails {
	case "Write":
		panic("Write failed")
	case "Abort":
		panic(http.ErrAbortHandler)
	}
	return w.ResponseWriter.Write(b)
}

// A host's writer that aborts (panics with http.ErrAbortHandler) once its client left, in
// Header too, leaves the status to decide, and the abort goes on as http.ErrAbortHandler: the
// outcome was read from the writer's Header again after the panic, which panicked again
// inside the Proxy's recovery (a build doing so recorded none of the 200 answers), and when
// the ReverseProxy's own abort of a failed write came first, the writer's second panic went
// on in its place. Upstreams answering 200 and 500; the writer's Header panicking after the
// status (in the ReverseProxy's copy of the trailers), or its Write failing (the client left)
// and its Header panicking with a value of its own after it.
func TestAWriterAbortingInHeaderLeavesTheStatusToDecide(t *testing.T) {
	for _, tc := range []struct {
		name   string
		writer func() http.ResponseWriter
	}{
		{"Header aborting after the status", func() http.ResponseWriter {
			return &leftWriter{ResponseWriter: httptest.NewRecorder(), header: http.ErrAbortHandler}
		}},
		{"Write failing, then Header panicking", func() http.ResponseWriter {
			return &leftWriter{ResponseWriter: httptest.NewRecorder(), header: "the client left", writeFails: true}
		}},
	} {
		for _, status := range []int{http.StatusOK, http.StatusInternalServerError} {
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			up := upstream(t, "canary", status)
			p := newProxy(t, Options{}, g, up.URL, up.URL)
			for range 3 {
				req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
				req = req.WithContext(context.WithValue(req.Context(), http.ServerContextKey, &http.Server{}))
				func() {
					defer func() {
						if v := recover(); v != http.ErrAbortHandler {
							t.Errorf("%s, upstream %d: ServeHTTP panicked with %v, not http.ErrAbortHandler", tc.name, status, v)
						}
					}()
					p.ServeHTTP(tc.writer(), req)
				}()
			}
			want := map[int]float64{http.StatusOK: 0, http.StatusInternalServerError: 3}[status]
			if requests, errors := canaryOutcomes(t, g); requests != 3 || errors != want {
				t.Errorf("%s, upstream %d: %v canary requests, %v failures recorded; want 3, %v failures",
					tc.name, status, requests, errors, want)
			}
		}
	}
}

// When the host's deadline ends the copy of a body, the Proxy's probe for TimeoutHandler's
// deadline writes nothing to the host's writer: a writer that panics on a write after its
// deadline (its own value) leaves the status to decide, and the ReverseProxy's abort goes on
// as http.ErrAbortHandler (a build letting the probe's panic out recorded nothing, and the
// writer's value went on in its place).
func TestAWriterPanickingAtTheDeadlineProbeLeavesTheStatusToDecide(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	transport := roundTripper(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: r,
			Body: io.NopCloser(&stalledBody{ctx: r.Context()})}, nil
	})
	p := newProxy(t, Options{Transport: transport}, g, "http://stable.invalid", "http://canary.invalid")
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), http.ServerContextKey, &http.Server{}), 50*time.Millisecond)
	defer cancel()
	req := httptest.NewRequest(http.MethodGet, "http://front/", nil).WithContext(ctx)
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("ServeHTTP panicked with %v, not http.ErrAbortHandler", v)
			}
		}()
		p.ServeHTTP(deadlineWriter{httptest.NewRecorder(), ctx}, req)
	}()
	if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != 0 {
		t.Errorf("%v canary requests, %v failures recorded; want 1, 0 failures", requests, errors)
	}
}

// stalledBody gives 10 bytes, then waits for ctx to end and fails with its error.
type stalledBody struct {
	ctx  context.Context
	sent bool
}

func (b *stalledBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "0123456789"), nil
	}
	<-b.ctx.Done()
	return 0, b.ctx.Err()
}

// deadlineWriter is a host's writer that panics on a write once ctx ended.
type deadlineWriter struct {
	http.ResponseWriter
	ctx context.Context
}

func (w deadlineWriter) Write(b []byte) (int, error) {
	if w.ctx.Err() != nil {
		panic("a write after the deadline")
	}
	return w.ResponseWriter.Write(b)
}

// leftWriter is a host's writer whose client left once the status was written: its Header
// panics with header from then on, and its Write fails when writeFails is set.
type leftWriter struct {
	http.ResponseWriter
	header     any
	writeFails bool
	status     bool
}

func (w *leftWriter) WriteHeader(status int) {
	w.status = true
	w.ResponseWriter.WriteHeader(status)
}

func (w *leftWriter) Header() http.Header {
	if w.status {
		panic(w.header)
	}
	return w.ResponseWriter.Header()
}

func (w *leftWriter) Write(b []byte) (int, error) {
	if w.writeFails {
		return 0, errors.New("write: broken pipe")
	}
	return w.ResponseWriter.Write(b)
}

// A gRPC stream that the host's writer aborts (http.ErrAbortHandler from its Write, as a
// writer whose client left may) before the trailers were copied is left to its status: its
// grpc-status trailer never came through, which is no failure of the upstream (a build
// reading it as a stream the upstream ended without a status charged the canary for its
// client's leaving). A trailers-only answer's status, in the header, still decides.
func TestAGRPCStreamTheHostsWriterAbortsIsLeftToItsStatus(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport grpcTransport
		errors    float64
	}{
		{"0 OK in a trailer", grpcTransport{inTrailer: "0", announced: true}, 0},
		{"13 in a trailer", grpcTransport{inTrailer: "13", announced: true}, 0},
		{"13 in the header (trailers-only)", grpcTransport{inHeader: "13"}, 1},
	} {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		p := newProxy(t, Options{Transport: tc.transport}, g, "http://stable.invalid", "http://canary.invalid")
		req := httptest.NewRequest(http.MethodPost, "http://front/pkg.Service/Call", nil)
		req.Header.Set("Content-Type", "application/grpc")
		func() {
			defer func() {
				if v := recover(); v != http.ErrAbortHandler {
					t.Errorf("%s: ServeHTTP panicked with %v, not http.ErrAbortHandler", tc.name, v)
				}
			}()
			p.ServeHTTP(panickingWriter{httptest.NewRecorder(), "Abort"}, req)
		}()
		if requests, errors := canaryOutcomes(t, g); requests != 1 || errors != tc.errors {
			t.Errorf("%s: %v canary requests, %v failures recorded; want 1, %v failures",
				tc.name, requests, errors, tc.errors)
		}
	}
}

// closeCounter is a response body that counts its Close calls.
type closeCounter struct {
	io.ReadCloser
	closed *atomic.Int64
}

func (c closeCounter) Close() error {
	c.closed.Add(1)
	return c.ReadCloser.Close()
}

// The default error handler logs an upstream error to Options.ErrorLog, as the ReverseProxy's
// own does (a build installing its own handler logged nothing anywhere).
func TestUpstreamErrorsReachTheErrorLog(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	var logged syncBuffer
	front := httptest.NewServer(newProxy(t, Options{ErrorLog: log.New(&logged, "", 0)}, g, "http://127.0.0.1:9", "http://127.0.0.1:9"))
	defer front.Close()
	res, err := http.Get(front.URL)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if text := logged.String(); res.StatusCode != http.StatusBadGateway || !strings.Contains(text, "http: proxy error: dial tcp 127.0.0.1:9") {
		t.Errorf("HTTP %d; ErrorLog got %q", res.StatusCode, text)
	}
}

// syncBuffer is a bytes.Buffer that goroutines may write at once (a log's output).
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
