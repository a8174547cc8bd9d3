package promotiongates

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"
)

// TestMain runs the tests, with a goroutine forcing garbage collections throughout when
// built with -tags pgatedebug (see debug_gc_test.go), then checks that every gate the tests
// made was freed, by Close or by its cleanup.
func TestMain(m *testing.M) {
	stop := startGCHammer()
	code := m.Run()
	stop()
	if code == 0 && !testing.Short() {
		deadline := time.Now().Add(10 * time.Second)
		for liveGates.Load() != 0 && time.Now().Before(deadline) {
			runtime.GC()
			time.Sleep(time.Millisecond)
		}
		if n := liveGates.Load(); n != 0 {
			fmt.Fprintf(os.Stderr, "%d gates leaked: neither closed nor freed by a cleanup\n", n)
			code = 1
		}
	}
	os.Exit(code)
}

// newGate makes a gate that the test closes when it ends.
func newGate(t testing.TB, config, slo string) *Gate {
	t.Helper()
	g, err := New(config, slo)
	if err != nil {
		t.Fatalf("New(%s, %s): %v", config, slo, err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	gcPoint()
	return g
}

// ok fails the test on err.
func ok(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	gcPoint()
}

// wantErr fails the test unless errors.Is(err, target).
func wantErr(t testing.TB, err, target error) *Error {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
	var pe *Error
	if !errors.As(err, &pe) {
		t.Fatalf("error %v is not an *Error", err)
	}
	gcPoint()
	return pe
}
