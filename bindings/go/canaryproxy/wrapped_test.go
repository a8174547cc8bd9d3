package canaryproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// selfError is a host's error whose Unwrap returns itself: errors.Is and errors.As never end on it.
type selfError struct{}

func (e *selfError) Error() string { return "an error wrapping itself" }
func (e *selfError) Unwrap() error { return e }

// pairError is one of two errors whose Unwrap returns the other (a cycle of two).
type pairError struct{ other *pairError }

func (e *pairError) Error() string { return "an error in a cycle" }
func (e *pairError) Unwrap() error { return e.other }

// joinedWithItself is an error whose Unwrap() []error holds itself.
type joinedWithItself struct{ also error }

func (e *joinedWithItself) Error() string   { return "an error joined with itself" }
func (e *joinedWithItself) Unwrap() []error { return []error{e, e.also} }

// uncomparableSelf is an error of a type that cannot be compared, whose Unwrap returns itself.
type uncomparableSelf struct{ _ []byte }

func (e uncomparableSelf) Error() string { return "an uncomparable error wrapping itself" }
func (e uncomparableSelf) Unwrap() error { return e }

// cycles are errors whose trees never end, each built anew.
func cycles() map[string]error {
	a, b := &pairError{}, &pairError{}
	a.other, b.other = b, a
	return map[string]error{
		"Unwrap returning itself":           &selfError{},
		"an uncomparable one":               uncomparableSelf{},
		"a cycle of two":                    a,
		"wrapped by fmt.Errorf":             fmt.Errorf("read: %w", &selfError{}),
		"Unwrap() []error holding itself":   &joinedWithItself{also: io.EOF},
		"joined with errors.Join":           errors.Join(io.ErrUnexpectedEOF, &selfError{}),
		"ErrBadRequestBody around a cycle":  fmt.Errorf("%w: %w", ErrBadRequestBody, a),
		"a MaxBytesError after a cycle too": errors.Join(&joinedWithItself{}, &http.MaxBytesError{Limit: 1}),
	}
}

// finishes runs f and fails the test when it has not returned within 2 s (it is left running).
func finishes(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("%s: still running after 2 s", what)
	}
}

// The Proxy's errors.Is and errors.As end on a tree that never does, and answer as the
// standard library does on trees that end (against it, the simplest reference).
func TestErrorTreesThatNeverEndAreLookedAtBoundedly(t *testing.T) {
	for name, err := range cycles() {
		finishes(t, name, func() {
			_, tooLarge := errorAs[*http.MaxBytesError](err)
			wantLarge := strings.HasPrefix(name, "a MaxBytesError")
			if bad := errorIs(err, ErrBadRequestBody); bad != strings.HasPrefix(name, "ErrBadRequestBody") || tooLarge != wantLarge {
				t.Errorf("%s: ErrBadRequestBody %v, a MaxBytesError %v", name, bad, tooLarge)
			}
			if eof := errorIs(err, io.ErrUnexpectedEOF); eof != (name == "joined with errors.Join") {
				t.Errorf("%s: io.ErrUnexpectedEOF %v", name, eof)
			}
		})
	}
	deadline, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	<-deadline.Done()
	for _, err := range []error{
		nil, io.EOF, fmt.Errorf("x: %w", io.ErrUnexpectedEOF), errors.Join(io.EOF, ErrBadRequestBody),
		fmt.Errorf("%w: %w", ErrBadRequestBody, &http.MaxBytesError{Limit: 7}), deadline.Err(),
		fmt.Errorf("copy: %w", http.ErrHandlerTimeout),
	} {
		for _, target := range []error{io.EOF, io.ErrUnexpectedEOF, ErrBadRequestBody, context.DeadlineExceeded, http.ErrHandlerTimeout} {
			if got, want := errorIs(err, target), errors.Is(err, target); got != want {
				t.Errorf("errorIs(%v, %v) = %v, errors.Is says %v", err, target, got, want)
			}
		}
		var large *http.MaxBytesError
		var timeout interface{ Timeout() bool }
		if _, got := errorAs[*http.MaxBytesError](err); got != errors.As(err, &large) {
			t.Errorf("errorAs[*http.MaxBytesError](%v) = %v", err, got)
		}
		if _, got := errorAs[interface{ Timeout() bool }](err); got != errors.As(err, &timeout) {
			t.Errorf("errorAs[Timeout](%v) = %v", err, got)
		}
	}
}

// A host's error whose Unwrap returns itself (or a cycle) never hangs a request: returned by
// its ModifyResponse (the default error handler's look for ErrBadRequestBody spun forever:
// answered 502 and the canary's failure now), by its writer's Write (the look for
// TimeoutHandler's refusal: a failed write is the client's, the status decides), by its
// client's body (read by the Transport: the look for a timeout; the client's doing, answered
// 400, or 413 for a MaxBytesError, and not recorded). A writer whose Unwrap returns itself is
// looked at boundedly for TimeoutHandler's writer (as for an upstream's 103 Early Hints).
func TestAHostsCycleNeverHangsARequest(t *testing.T) {
	up := upstream(t, "canary", http.StatusOK)
	readsTheBody := roundTripper(func(r *http.Request) (*http.Response, error) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return nil, err
		}
		return http.DefaultTransport.RoundTrip(r)
	})
	for _, tc := range []string{"ModifyResponse's error", "the writer's Write error", "the client's body's error"} {
		for cycle, err := range cycles() {
			name := tc + ", " + cycle
			g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}}`)
			rec := httptest.NewRecorder()
			var w http.ResponseWriter = rec
			req := httptest.NewRequest(http.MethodGet, "http://front/", nil)
			opts, status, requests, errors := Options{}, http.StatusBadGateway, 1.0, 1.0
			switch tc {
			case "ModifyResponse's error":
				opts.ModifyResponse = func(*http.Response) error { return err }
			case "the writer's Write error":
				w, status, errors = failingWriter{rec, err}, http.StatusOK, 0
			default:
				req = httptest.NewRequest(http.MethodPost, "http://front/", failingBody{err})
				opts.Transport, status, requests, errors = readsTheBody, http.StatusBadRequest, 0, 0
			}
			if status != http.StatusOK { // as the default error handler answers what the error wraps
				switch {
				case strings.HasPrefix(cycle, "ErrBadRequestBody"):
					status = http.StatusBadRequest
				case strings.HasPrefix(cycle, "a MaxBytesError"):
					status = http.StatusRequestEntityTooLarge
				}
			}
			p := newProxy(t, opts, g, up.URL, up.URL)
			finishes(t, name, func() { p.ServeHTTP(w, req) })
			if rec.Code != status {
				t.Errorf("%s: answered %d, want %d", name, rec.Code, status)
			}
			if gotRequests, gotErrors := canaryOutcomes(t, g); gotRequests != requests || gotErrors != errors {
				t.Errorf("%s: %v canary requests, %v failures; want %v, %v", name, gotRequests, gotErrors, requests, errors)
			}
		}
	}
	finishes(t, "a writer whose Unwrap returns itself", func() {
		if interimRefused(selfWriter{httptest.NewRecorder()}) {
			t.Error("a writer unwrapping to itself taken for TimeoutHandler's")
		}
	})
}

// failingWriter is a host's writer whose Write fails with err.
type failingWriter struct {
	http.ResponseWriter
	err error
}

func (w failingWriter) Write([]byte) (int, error) { return 0, w.err }

// failingBody is a client's body whose Read fails with err.
type failingBody struct{ err error }

func (b failingBody) Read([]byte) (int, error) { return 0, b.err }

// selfWriter is a host's writer whose Unwrap returns itself.
type selfWriter struct{ http.ResponseWriter }

func (w selfWriter) Unwrap() http.ResponseWriter { return w }
