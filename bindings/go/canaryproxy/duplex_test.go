package canaryproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A duplex stream (a gRPC bidirectional call, named by Options.Duplex) keeps its body open
// while its client waits for the answer: the read waiting for the client's next message is not
// the client's time, which hid a slow or hung upstream (a build counting it as the client's timed
// a 2 s answer at 0.2 ms, and recorded nothing of an upstream that hung until a deadline or
// until the client left). An upload that is not a duplex stream keeps the protection: a client
// trickling its body fails nothing.

// h2cTransport speaks unencrypted HTTP/2, as a gRPC client and a service mesh's sidecar do.
func h2cTransport() *http.Transport {
	transport := &http.Transport{Protocols: new(http.Protocols)}
	transport.Protocols.SetUnencryptedHTTP2(true)
	return transport
}

// h2cServer serves h over unencrypted HTTP/2 (and HTTP/1) until the test ends.
func h2cServer(t *testing.T, h http.Handler) *httptest.Server {
	t.Helper()
	s := httptest.NewUnstartedServer(h)
	s.Config.Protocols = new(http.Protocols)
	s.Config.Protocols.SetUnencryptedHTTP2(true)
	s.Config.Protocols.SetHTTP1(true)
	s.Config.ErrorLog = quietLog()
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// streamUpstream reads a stream's first message (5 bytes), then answers its headers after
// delay and reads the rest of the stream; a negative delay hangs until the request's
// context ends.
func streamUpstream(t *testing.T, delay time.Duration) *httptest.Server {
	return h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadFull(r.Body, make([]byte, 5))
		if delay < 0 {
			<-r.Context().Done()
			return
		}
		time.Sleep(delay)
		w.WriteHeader(http.StatusOK)
		_ = http.NewResponseController(w).Flush()
		_, _ = io.Copy(io.Discard, r.Body)
	}))
}

// openStream sends a stream to url as a gRPC client does: its first message ("hello"), then
// its side stays open until the answer's headers come or ctx ends, with a message ("beat!")
// every beat if beat is not 0. It returns the answer's status, 0 when none came.
func openStream(t *testing.T, ctx context.Context, url, contentType string, beat time.Duration) int {
	t.Helper()
	transport := h2cTransport()
	defer transport.CloseIdleConnections()
	body, send := io.Pipe()
	defer send.Close()
	go func() {
		message := []byte("hello")
		for {
			if _, err := send.Write(message); err != nil || beat == 0 {
				return
			}
			time.Sleep(beat)
			message = []byte("beat!")
		}
	}()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	res, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		return 0
	}
	send.Close() // the client ends its stream once it has the answer
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.ProtoMajor != 2 {
		t.Errorf("the stream went over %s", res.Proto)
	}
	return res.StatusCode
}

// streams are the requests of these tests: a gRPC call that Options.Duplex says is a duplex
// stream, another stream it says is one, and uploads that are none, a gRPC call's too (no
// request is a duplex stream unless Options.Duplex says so: the same open body is then a
// client trickling its body).
var streams = []struct {
	name, contentType string
	duplex            func(*http.Request) bool
	isDuplex          bool
}{
	{"a gRPC bidirectional call", "application/grpc+proto", func(r *http.Request) bool { return r.URL.Path == "/" }, true},
	{"Options.Duplex", "application/octet-stream", func(r *http.Request) bool { return r.URL.Path == "/" }, true},
	{"an upload", "application/octet-stream", nil, false},
	{"a gRPC call not named by Options.Duplex", "application/grpc+proto", nil, false},
}

// The upstream answers its headers 800 ms after the stream's first message, the client
// sending nothing more, or a message every 100 ms: the duplex stream is timed at 800 ms, not at
// what is left once the read waiting for the client's next message (~0.2 ms), or the reads
// that returned meanwhile (~100 ms), are taken for the client's time; the upload (the client's
// next bytes never came before the answer) still is.
func TestADuplexStreamIsTimedToItsAnswersHeaders(t *testing.T) {
	for _, beat := range []time.Duration{0, 100 * time.Millisecond} {
		for _, stream := range streams {
			name := fmt.Sprintf("%s, a message every %v", stream.name, beat)
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			up := streamUpstream(t, 800*time.Millisecond)
			front := h2cServer(t, newProxy(t, Options{Transport: h2cTransport(), Duplex: stream.duplex}, g, up.URL, up.URL))
			if status := openStream(t, context.Background(), front.URL, stream.contentType, beat); status != http.StatusOK {
				t.Fatalf("%s: answered %d", name, status)
			}
			eventually(t, name+": one request recorded", func() bool {
				requests, _ := canaryOutcomes(t, g)
				return requests == 1
			})
			latency := metric(t, g, "promotion_window_latency_seconds_sum", `cohort="canary"`)
			if stream.isDuplex && latency < 0.7 {
				t.Errorf("%s: an answer 800 ms after the first message timed at %.4f s", name, latency)
			}
			if !stream.isDuplex && latency > 0.3 {
				t.Errorf("%s: the upload's wait for the client's bytes timed as the upstream's (%.4f s)", name, latency)
			}
		}
	}
}

// The upstream hangs after the stream's first message, and the host bounds each request with a
// 500 ms deadline around the Proxy: the duplex stream is the upstream's failure, as a request
// without a body is (a build recorded nothing); the upload, whose client's bytes the deadline
// found awaited, fails nothing.
func TestAHungDuplexStreamUnderADeadlineIsAFailure(t *testing.T) {
	for _, stream := range streams {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		up := streamUpstream(t, -1)
		p := newProxy(t, Options{Transport: h2cTransport(), Duplex: stream.duplex}, g, up.URL, up.URL)
		front := h2cServer(t, withDeadline(p, 500*time.Millisecond))
		if status := openStream(t, context.Background(), front.URL, stream.contentType, 0); status != http.StatusBadGateway {
			t.Errorf("%s: answered %d, want 502", stream.name, status)
		}
		requests, errors := canaryOutcomes(t, g)
		if stream.isDuplex && (requests != 1 || errors != 1) {
			t.Errorf("%s: a hung upstream recorded as %v requests, %v failures, want 1, 1", stream.name, requests, errors)
		}
		if !stream.isDuplex && requests != 0 {
			t.Errorf("%s: a deadline on the client's upload recorded as %v requests, %v failures", stream.name, requests, errors)
		}
	}
}

// The upstream hangs after the stream's first message; the Transport's ResponseHeaderTimeout
// (300 ms) never starts, as Go starts it once the body was written, and the client gives up
// after 1.2 s: the duplex stream is recorded as abandoned (a success past the 500 ms latency
// target, timed to when the client left; a build recorded nothing), as a request without a
// body is; the upload, whose client left while its bytes were awaited, is not recorded.
func TestAHungDuplexStreamTheClientLeavesIsAbandoned(t *testing.T) {
	for _, stream := range streams {
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		up := streamUpstream(t, -1)
		transport := h2cTransport()
		transport.ResponseHeaderTimeout = 300 * time.Millisecond
		served := make(chan struct{})
		p := newProxy(t, Options{Transport: transport, Duplex: stream.duplex}, g, up.URL, up.URL)
		front := h2cServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(served)
			p.ServeHTTP(w, r)
		}))
		ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
		if status := openStream(t, ctx, front.URL, stream.contentType, 0); status != 0 {
			t.Errorf("%s: answered %d before the client left", stream.name, status)
		}
		cancel()
		<-served
		requests, errors := canaryOutcomes(t, g)
		latency := metric(t, g, "promotion_window_latency_seconds_sum", `cohort="canary"`)
		if stream.isDuplex && (requests != 1 || errors != 0 || latency < 1) {
			t.Errorf("%s: a hung upstream the client left after 1.2 s recorded as %v requests, %v failures, %.4f s, want 1, 0, 1.2 s",
				stream.name, requests, errors, latency)
		}
		if !stream.isDuplex && requests != 0 {
			t.Errorf("%s: a client that left mid-upload recorded as %v requests", stream.name, requests)
		}
	}
}

// Options.Duplex is asked of a request with a body only: never of a bodiless one over HTTP/2,
// whose server gives every request a non-nil body, a GET sent with END_STREAM too (Content-Length
// 0). A build asked it of every such request, and watched an upload the ReverseProxy drops
// (it sends no body of Content-Length 0). A body of unknown length (-1) is still one.
func TestDuplexIsNeverAskedOfABodilessHTTP2Request(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
	up := upstream(t, "canary", http.StatusOK)
	var asked atomic.Int64
	duplex := func(*http.Request) bool { asked.Add(1); return false }
	front := h2cServer(t, newProxy(t, Options{Duplex: duplex}, g, up.URL, up.URL))
	transport := h2cTransport()
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport}
	for _, c := range []struct {
		name, method string
		body         io.Reader
		asked        int64 // Duplex's calls so far
	}{
		{"a GET", http.MethodGet, nil, 0},
		{"a POST of no body", http.MethodPost, strings.NewReader(""), 0},
		{"a POST of 4 bytes", http.MethodPost, strings.NewReader("body"), 1},
		{"a POST of unknown length", http.MethodPost, io.MultiReader(strings.NewReader("body")), 2},
	} {
		req, err := http.NewRequest(c.method, front.URL, c.body)
		if err != nil {
			t.Fatal(err)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 || res.StatusCode != http.StatusOK {
			t.Fatalf("%s: answered %d over %s, want 200 over HTTP/2", c.name, res.StatusCode, res.Proto)
		}
		if n := asked.Load(); n != c.asked {
			t.Errorf("%s: Duplex asked %d times in all, want %d", c.name, n, c.asked)
		}
	}
}
