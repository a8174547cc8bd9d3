package promotiongates

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestConcurrentRoutingWhileTheReleaseMoves: goroutines route and record on one Gate while
// another promotes, ramps, flips flags, swaps the config, judges and rolls back. Every
// decision must be self-consistent; run with -race.
func TestConcurrentRoutingWhileTheReleaseMoves(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["a"]}`, `{"min_samples": 20, "warm_up_ms": 0, "promotion_evidence": false}`)
	workers := max(3, runtime.GOMAXPROCS(0)+1)
	var stop atomic.Bool
	var routed, canaries atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers+1)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := []byte(fmt.Sprintf("worker-%d-request-00000000", w))
			for i := 0; !stop.Load(); i++ {
				copy(id[len(id)-8:], fmt.Sprintf("%08d", i))
				d, err := g.Route(id)
				if err != nil {
					errs <- err
					return
				}
				if err := consistent(d); err != nil {
					errs <- err
					return
				}
				if s, err := g.RouteString(string(id)); err != nil || (s.Stage() == d.Stage() && s.IsCanary() != d.IsCanary()) {
					errs <- fmt.Errorf("RouteString disagrees within a stage: %+v vs %+v (%v)", s, d, err)
					return
				}
				if i%16 == 0 {
					if _, err := g.HasFeature(d, "a"); err != nil {
						errs <- err
						return
					}
				}
				// Canaries fail a tenth of their requests, enough for the judge to act sometimes.
				success := !d.IsCanary() || i%10 != 0
				if _, err := g.Record(d, success, time.Duration(i%50)*time.Millisecond); err != nil {
					errs <- err
					return
				}
				routed.Add(1)
				if d.IsCanary() {
					canaries.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // the operator
		defer wg.Done()
		defer stop.Store(true)
		percents := []float64{50, 80, 30, 0, 90}
		for i := range 96 { // twelve rounds of every operation
			var err error
			switch i % 8 {
			case 0:
				err = g.Rollback(fmt.Sprint("drill ", i))
			case 1:
				err = g.Promote(Canary, percents[(i/8)%len(percents)])
			case 2:
				err = g.Promote(Canary, 1) // ramping: up is gated, down is not
			case 3:
				err = g.EnableFeature(fmt.Sprint("flag_", i%3))
			case 4:
				err = g.DisableFeature(fmt.Sprint("flag_", (i+1)%3))
			case 5:
				_, err = g.Health()
			case 6:
				_, err = g.CheckSLO()
			case 7:
				err = g.Promote(Staging, 0)
			}
			var pe *Error
			if err != nil && (!errors.As(err, &pe) || pe.Status == StatusPanic || pe.Status == StatusInvalidHandle) {
				errs <- fmt.Errorf("operator step %d: %w", i, err)
				return
			}
			if _, err := g.RollbackHistory(); err != nil {
				errs <- err
				return
			}
			runtime.Gosched()
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if routed.Load() == 0 {
		t.Fatal("nothing routed")
	}
	t.Logf("%d requests routed, %d to the canary", routed.Load(), canaries.Load())
}

// consistent checks a decision against the routing rule and its environment.
func consistent(d Decision) error {
	if d.IsCanary() != (d.Bucket() < d.Threshold()) || d.Bucket() > 9_999_999 {
		return fmt.Errorf("inconsistent decision %+v", d)
	}
	want := referenceThreshold(d.TrafficPercent())
	switch d.Environment() {
	case Production:
		want = 0
	case Staging:
		want = 10_000_000
	}
	if d.Threshold() != want {
		return fmt.Errorf("threshold %d for %v %v", d.Threshold(), d.Environment(), d.TrafficPercent())
	}
	return nil
}

// TestCloseWhileCallsAreInFlight: Close waits for the calls in flight; every call that starts
// after it returns ErrClosed; nothing touches freed memory. The rotation takes the hot calls
// and every kind of read and write besides: the exposition, the histograms, the changes and
// their count, the state, both health reads, the SLO and its swap, FleetJudging.
func TestCloseWhileCallsAreInFlight(t *testing.T) {
	routeAndRecord := func(g *Gate) error {
		d, err := g.RouteString("user")
		if err == nil {
			_, err = g.Record(d, true, time.Millisecond)
		}
		return err
	}
	rotation := []func(*Gate) error{
		routeAndRecord, routeAndRecord,
		func(g *Gate) error { return second(g.RecordByIDString("user", false, time.Millisecond)) },
		func(g *Gate) error { return second(g.Features(Decision{})) },
		func(g *Gate) error { return second(g.Health()) },
		func(g *Gate) error { return second(g.Config()) },
		func(g *Gate) error { return second(g.MetricsPrometheus()) },
		func(g *Gate) error { return second(g.LatencyHistograms()) },
		func(g *Gate) error { return second(g.ChangesSince(0)) },
		func(g *Gate) error { return second(g.ChangeCount()) },
		func(g *Gate) error { return second(g.State()) },
		func(g *Gate) error { return second(g.ReadHealth()) },
		func(g *Gate) error { return second(g.SLO()) },
		func(g *Gate) error { return g.SwapSLO("{}") },
		func(g *Gate) error { return second(g.FleetJudging()) },
	}
	for round := range 20 {
		g, err := New(`{"environment": {"canary": {"traffic_percent": 50}}, "feature_flags": ["a"]}`, "")
		ok(t, err)
		var wg sync.WaitGroup
		var calls atomic.Int64
		errs := make(chan error, 8)
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					err := rotation[(w+i)%len(rotation)](g)
					if errors.Is(err, ErrClosed) {
						return
					}
					if err != nil {
						errs <- err
						return
					}
					calls.Add(1)
				}
			}()
		}
		for calls.Load() < 50 {
			runtime.Gosched()
		}
		ok(t, g.Close())
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// TestCloseWaitsForEveryCallInFlight holds calls in flight by hand, from goroutines of their
// own (so on different counters): Close does not return while any is held, calls that start
// meanwhile fail at once with ErrClosed, and Close returns once the last one ends.
func TestCloseWaitsForEveryCallInFlight(t *testing.T) {
	g, err := New("", "")
	ok(t, err)
	const calls = 16
	held := make(chan *inFlight, calls)
	for range calls {
		go func() {
			p, s := g.acquire()
			if p == nil {
				t.Error("acquire on a live gate failed")
			}
			held <- s
		}()
	}
	holds := make([]*inFlight, 0, calls)
	for range calls {
		holds = append(holds, <-held)
	}
	used := map[*inFlight]bool{}
	for _, s := range holds {
		used[s] = true
	}
	t.Logf("%d calls on %d counters", calls, len(used))
	closed := make(chan error, 1)
	go func() { closed <- g.Close() }()
	for deadline := time.Now().Add(10 * time.Second); ; runtime.Gosched() {
		if _, err := g.RouteString("user"); errors.Is(err, ErrClosed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("calls still start 10 s after Close was called")
		}
	}
	for i, s := range holds {
		select {
		case err := <-closed:
			t.Fatalf("Close returned (%v) with %d calls in flight", err, calls-i)
		case <-time.After(5 * time.Millisecond):
		}
		s.release()
	}
	select {
	case err := <-closed:
		ok(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Close still waits 10 s after the last call ended")
	}
	ok(t, g.Close()) // a second Close is a no-op
}
