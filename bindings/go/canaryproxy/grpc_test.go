package canaryproxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// grpcTransport answers every request as a gRPC server would, at once and without a network:
// 200, content-type application/grpc, a 5-byte message, and the call's status in a header
// (a trailers-only answer), in a trailer announced with the header, in one not announced, or
// nowhere (status ""). leave, when set, is called as the message's last byte is read (before
// any trailer), as a client that went away then would cancel the request.
type grpcTransport struct {
	inHeader, inTrailer string
	announced           bool
	leave               func()
}

func (g grpcTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	res := &http.Response{
		StatusCode: 200,
		Header:     http.Header{"Content-Type": {"application/grpc+proto"}},
		Request:    r,
	}
	if g.inHeader != "" {
		res.Header.Set("Grpc-Status", g.inHeader)
	}
	if g.inTrailer != "" && g.announced {
		res.Trailer = http.Header{"Grpc-Status": nil}
	}
	res.Body = &grpcBody{message: []byte("\x00\x00\x00\x00\x00"), res: res, transport: g}
	return res, nil
}

// grpcBody is a gRPC answer's body: its message, then its trailer, set as the body ends.
type grpcBody struct {
	message   []byte
	res       *http.Response
	transport grpcTransport
}

func (b *grpcBody) Read(p []byte) (int, error) {
	if len(b.message) > 0 {
		n := copy(p, b.message)
		b.message = b.message[n:]
		return n, nil
	}
	if b.transport.leave != nil {
		b.transport.leave()
	}
	if status := b.transport.inTrailer; status != "" {
		if b.res.Trailer == nil {
			b.res.Trailer = http.Header{}
		}
		b.res.Trailer.Set("Grpc-Status", status)
	}
	return 0, io.EOF
}

func (b *grpcBody) Close() error { return nil }

// TestGRPCStatusDecides: a gRPC call is answered 200 whatever its outcome, its grpc-status
// says it. A server's own failure (13 INTERNAL, 14 UNAVAILABLE, a value that is no code) is
// the canary's failure, in a trailers-only answer's header or in a trailer, announced or not;
// OK and the caller's errors (5 NOT_FOUND) are successes; a stream ended without a status is
// a failure, unless the client had gone away. A build judging the status alone recorded every
// call as a success.
func TestGRPCStatusDecides(t *testing.T) {
	for _, tc := range []struct {
		name      string
		transport grpcTransport
		leaves    bool
		errors    float64
	}{
		{"13 in the header (trailers-only)", grpcTransport{inHeader: "13"}, false, 1},
		{"14 in an announced trailer", grpcTransport{inTrailer: "14", announced: true}, false, 1},
		{"13 in a trailer not announced", grpcTransport{inTrailer: "13"}, false, 1},
		{"a status that is no code", grpcTransport{inTrailer: "OK"}, false, 1},
		{"no status", grpcTransport{}, false, 1},
		{"0 OK in a trailer", grpcTransport{inTrailer: "0", announced: true}, false, 0},
		{"5 NOT_FOUND in the header", grpcTransport{inHeader: "5"}, false, 0},
		{"no status, the client gone", grpcTransport{}, true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			transport := tc.transport
			if tc.leaves {
				transport.leave = cancel
			}
			p := newProxy(t, Options{Transport: transport}, g, "http://stable.invalid", "http://canary.invalid")
			req := httptest.NewRequest(http.MethodPost, "http://front/pkg.Service/Call", nil).WithContext(ctx)
			req.Header.Set("Content-Type", "application/grpc")
			w := httptest.NewRecorder()
			p.ServeHTTP(w, req)
			if w.Code != 200 {
				t.Fatalf("status %d", w.Code)
			}
			if n := metric(t, g, "promotion_window_requests", `cohort="canary"`); n != 1 {
				t.Fatalf("%v requests recorded, want 1", n)
			}
			if n := metric(t, g, "promotion_window_errors", `cohort="canary"`); n != tc.errors {
				t.Fatalf("%v errors recorded, want %v", n, tc.errors)
			}
		})
	}
}

// TestOnlyGRPCAnswersAreReadForAStatus: a grpc-status on an answer that is not gRPC (another
// content-type, gRPC-Web's framing) says nothing; gRPC's content-types, with a format or
// parameters and in any case, are read.
func TestOnlyGRPCAnswersAreReadForAStatus(t *testing.T) {
	for contentType, want := range map[string]bool{
		"application/grpc":               true,
		"application/grpc+proto":         true,
		"Application/GRPC; charset=utf8": true,
		"application/grpc-web":           false,
		"application/grpc-web+proto":     false,
		"application/json":               false,
		"":                               false,
	} {
		header := http.Header{"Grpc-Status": {"13"}}
		if contentType != "" {
			header.Set("Content-Type", contentType)
		}
		if got := grpcFailed(header, func() bool { return false }); got != want {
			t.Errorf("content-type %q with grpc-status 13: failed %v, want %v", contentType, got, want)
		}
	}
	for status, want := range map[string]bool{
		"0": false, "1": false, "2": true, "3": false, "4": true, "5": false, "12": true,
		"13": true, "14": true, "15": true, "16": false, "17": true, "-1": true, "": true, " 13": true,
	} {
		if got := grpcServerError(status); got != want {
			t.Errorf("grpc-status %q: a server's failure %v, want %v", status, got, want)
		}
	}
}

// TestGRPCOverHTTP2: a real gRPC exchange's shape, over HTTP/2 to the upstream (unencrypted,
// as a service mesh's sidecar speaks it): the grpc-status trailer of a failing call reaches
// the Proxy through the ReverseProxy and the HTTP/2 Transport, and the call is the canary's
// failure; the same call with status 0 is a success.
func TestGRPCOverHTTP2(t *testing.T) {
	for status, errors := range map[string]float64{"14": 1, "0": 0} {
		upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.ProtoMajor != 2 {
				t.Errorf("the upstream was reached over %s", r.Proto)
			}
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Trailer", "Grpc-Status")
			_, _ = w.Write([]byte("\x00\x00\x00\x00\x00"))
			http.NewResponseController(w).Flush() // a stream: no Content-Length
			w.Header().Set("Grpc-Status", status)
		}))
		upstream.Config.Protocols = new(http.Protocols)
		upstream.Config.Protocols.SetUnencryptedHTTP2(true)
		upstream.Start()
		transport := &http.Transport{Protocols: new(http.Protocols)}
		transport.Protocols.SetUnencryptedHTTP2(true)
		g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
		front := httptest.NewServer(newProxy(t, Options{Transport: transport}, g, upstream.URL, upstream.URL))
		res, err := http.Post(front.URL+"/pkg.Service/Call", "application/grpc", http.NoBody)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		front.Close()
		upstream.Close()
		transport.CloseIdleConnections()
		if got := res.Trailer.Get("Grpc-Status"); res.StatusCode != 200 || got != status {
			t.Fatalf("the client got %d with grpc-status %q, want 200 with %q", res.StatusCode, got, status)
		}
		if n := metric(t, g, "promotion_window_requests", `cohort="canary"`); n != 1 {
			t.Fatalf("grpc-status %s: %v requests recorded, want 1", status, n)
		}
		if n := metric(t, g, "promotion_window_errors", `cohort="canary"`); n != errors {
			t.Fatalf("grpc-status %s: %v errors recorded, want %v", status, n, errors)
		}
	}
}
