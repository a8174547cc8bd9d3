package promotiongates

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"weak"
)

// next receives one change, failing the test after a generous wait.
func next(t *testing.T, ch <-chan Change) Change {
	t.Helper()
	select {
	case c, open := <-ch:
		if !open {
			t.Fatal("the changes channel closed early")
		}
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("no change arrived")
	}
	return Change{}
}

// failCanary records failures for canary requests until the gate stops routing there.
func failCanary(t *testing.T, g *Gate) {
	t.Helper()
	for i := range 1000 {
		d, err := g.RouteString(fmt.Sprint("user-", i))
		ok(t, err)
		if !d.IsCanary() {
			return
		}
		_, err = g.Record(d, false, time.Millisecond)
		ok(t, err)
	}
	t.Fatal("a canary failing every request was not rolled back")
}

func TestChangesDeliversFlagsManualAndAutomaticRollbacks(t *testing.T) {
	g := newGate(t, `{"environment": {"canary": {"traffic_percent": 100}}, "feature_flags": ["new_api"]}`, "")
	ok(t, g.EnableFeature("warm_up")) // before the subscription: not delivered
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := g.Changes(ctx, time.Millisecond)

	ok(t, g.EnableFeature("dark_mode"))
	c := next(t, ch)
	if c.Sequence != 2 || c.Kind != ChangeFlags || c.Origin != OriginThisGate || c.Rollback != nil ||
		!slices.Equal(c.FlagsEnabled, []string{"dark_mode"}) || len(c.FlagsDisabled) != 0 ||
		c.From != Canary || c.To != Canary || c.ToPercent != 100 || time.Since(c.Time) > time.Minute {
		t.Fatalf("flag change %+v", c)
	}

	ok(t, g.Rollback("drill"))
	c = next(t, ch)
	if c.Kind != ChangeRollback || c.From != Canary || c.FromPercent != 100 || c.To != Production ||
		c.Rollback == nil || c.Rollback.Trigger != TriggerManual || c.Rollback.Reason != "drill" ||
		c.Rollback.Rules != 0 || !slices.Contains(c.FlagsDisabled, "new_api") {
		t.Fatalf("manual rollback %+v (event %+v)", c, c.Rollback)
	}
	stage := c.Stage

	ok(t, g.Promote(Canary, 100))
	c = next(t, ch)
	if c.Kind != ChangePromotion || c.From != Production || c.To != Canary || c.Stage != stage+1 {
		t.Fatalf("new rollout %+v", c)
	}

	failCanary(t, g)
	c = next(t, ch)
	if c.Kind != ChangeRollback || c.Sequence != 5 || c.Rollback == nil ||
		c.Rollback.Trigger != TriggerAutomatic || !c.Rollback.Rules.Has(RuleOverwhelmingErrors) ||
		!strings.Contains(c.Rollback.Reason, "FIRED") {
		t.Fatalf("automatic rollback %+v (event %+v)", c, c.Rollback)
	}
	// The same event, with its rules, in the history.
	history, err := g.RollbackHistory()
	ok(t, err)
	if len(history) != 2 || history[1].Rules != c.Rollback.Rules {
		t.Fatalf("history %+v", history)
	}
	n, err := g.ChangeCount()
	ok(t, err)
	if n != 5 {
		t.Fatalf("change count %d", n)
	}
}

func TestChangesStopsWhenTheContextIsDoneOrTheGateClosed(t *testing.T) {
	g := newGate(t, "", "")
	ctx, cancel := context.WithCancel(context.Background())
	ch := g.Changes(ctx, time.Millisecond)
	cancel()
	for range ch { // drains until closed; nothing changed
		t.Fatal("a change without a write")
	}

	g2, err := New("", "")
	ok(t, err)
	ch = g2.Changes(context.Background(), time.Millisecond)
	ok(t, g2.Close())
	for range ch {
		t.Fatal("a change without a write")
	}
	if _, open := <-g2.Changes(context.Background(), time.Millisecond); open {
		t.Fatal("Changes on a closed gate delivers")
	}
	wantErr(t, func() error { _, err := g2.ChangeCount(); return err }(), ErrClosed)
}

// TestASlowReaderSeesTheGapInSequence: the gate keeps 64 changes; a reader 100 behind
// receives the last 64, and their Sequence numbers show the 36 it missed.
func TestASlowReaderSeesTheGapInSequence(t *testing.T) {
	g := newGate(t, "", "")
	tick := make(chan time.Time)
	out := make(chan Change)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go deliver(ctx, gateReader(g), g.done, tick, 0, out)
	for i := range 50 {
		ok(t, g.EnableFeature(fmt.Sprint("f", i)))
		ok(t, g.DisableFeature(fmt.Sprint("f", i)))
	}
	tick <- time.Now()
	var got []uint64
	for len(got) < 64 {
		got = append(got, next(t, out).Sequence)
	}
	if got[0] != 37 || got[63] != 100 {
		t.Fatalf("sequences %v", got)
	}
	changes, err := g.ChangesSince(0)
	ok(t, err)
	if len(changes) != 64 || changes[0].Sequence != 37 {
		t.Fatalf("kept %d from %d", len(changes), changes[0].Sequence)
	}
	// A later change arrives at the next look.
	ok(t, g.EnableFeature("late"))
	tick <- time.Now()
	if c := next(t, out); c.Sequence != 101 || !slices.Equal(c.FlagsEnabled, []string{"late"}) {
		t.Fatalf("late change %+v", c)
	}
}

// gateReader reads g's changes as the goroutine of Changes does, through a weak pointer.
func gateReader(g *Gate) func(uint64) ([]Change, error) {
	gate := weak.Make(g)
	return func(seen uint64) ([]Change, error) { return changesAfter(gate, seen) }
}

// TestAFailedReadOfTheChangesIsMadeAgain: a read of the changes that fails otherwise than
// by ErrClosed (ErrInvalidJSON from a library newer than the binding) neither closes the
// channel, which a reader would take for Close or ctx, nor loses the change: the read is
// made again at the next look, and the first failure of a run alone is logged.
func TestAFailedReadOfTheChangesIsMadeAgain(t *testing.T) {
	var logged strings.Builder
	defer func(w io.Writer, flags int) { log.SetOutput(w); log.SetFlags(flags) }(log.Writer(), log.Flags())
	log.SetOutput(&logged)
	log.SetFlags(0)
	reads := 0
	read := func(seen uint64) ([]Change, error) {
		reads++
		if reads <= 2 {
			return nil, &Error{Status: StatusInvalidJSON, Message: "changes: unexpected end of JSON input"}
		}
		return []Change{{Sequence: seen + 1, Kind: ChangeFlags}}, nil
	}
	tick := make(chan time.Time)
	out := make(chan Change)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go deliver(ctx, read, make(chan struct{}), tick, 7, out)
	look := func() {
		t.Helper()
		select {
		case tick <- time.Now():
		case c, open := <-out:
			if !open {
				t.Fatal("the channel closed at a failed read")
			}
			t.Fatalf("change %+v before its look", c)
		}
	}
	look() // fails
	look() // fails again: not logged again
	look()
	if c := next(t, out); c.Sequence != 8 || c.Kind != ChangeFlags {
		t.Fatalf("change %+v", c)
	}
	want := "promotiongates: changes: unexpected end of JSON input (PGATE_STATUS_INVALID_JSON); Changes reads them again at each look until a read succeeds\n"
	if logged.String() != want {
		t.Fatalf("logged %q, want %q", logged.String(), want)
	}
	cancel()
	if _, open := <-out; open {
		t.Fatal("a change delivered after ctx was done")
	}
}

// TestNoChangeIsSentOnceTheContextIsDoneOrTheGateClosed: of a batch of 10 changes, a reader
// that took one and then cancels ctx (or closes the gate) receives no other: the channel is
// closed. The goroutine looks at both before each send (a select on the send and on them
// would pick one at random when both are ready: about half the rounds failed).
func TestNoChangeIsSentOnceTheContextIsDoneOrTheGateClosed(t *testing.T) {
	read := func(seen uint64) ([]Change, error) {
		batch := make([]Change, 10)
		for i := range batch {
			batch[i].Sequence = seen + 1 + uint64(i)
		}
		return batch, nil
	}
	for round := range 20 {
		tick := make(chan time.Time)
		out := make(chan Change)
		done := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		go deliver(ctx, read, done, tick, 0, out)
		tick <- time.Now()
		if c := next(t, out); c.Sequence != 1 {
			t.Fatalf("round %d: first change %+v", round, c)
		}
		stop := "ctx was done"
		if round%2 == 0 {
			cancel()
		} else {
			close(done)
			stop = "the gate was closed"
		}
		if c, open := <-out; open {
			t.Fatalf("round %d: change %d delivered after %s", round, c.Sequence, stop)
		}
		cancel()
	}
}

// TestChangesKeepsNoGateAlive: five gates subscribed to with a context that never ends, each
// with a change its reader never takes, dropped without Close, are freed by their cleanups,
// and their goroutines end. Counted exactly (liveGates, delivering), from none: a count of
// every goroutine of the process was lowered by other tests' ending meanwhile.
func TestChangesKeepsNoGateAlive(t *testing.T) {
	settle(t)
	subscribeAndDrop(t, 5)
	if !soon(10*time.Second, func() bool { runtime.GC(); return liveGates.Load() == 0 && delivering.Load() == 0 }) {
		t.Fatalf("of 5 dropped gates with a Changes goroutine, %d not freed, %d goroutines still running",
			liveGates.Load(), delivering.Load())
	}
}

// subscribeAndDrop makes n gates, subscribes to the changes of each with context.Background(),
// makes a change no one reads, waits until the n goroutines of Changes have read it and wait
// at its send for a reader (sending: a fixed sleep let a slow host drop the gates before),
// checks that n goroutines of Changes run (all the gates held: none ended meanwhile), and
// drops the gates without closing them.
func subscribeAndDrop(t *testing.T, n int) {
	gates := make([]*Gate, n)
	for i := range gates {
		g, err := New("", "")
		ok(t, err)
		_ = g.Changes(context.Background(), time.Millisecond)
		ok(t, g.EnableFeature("dark_mode"))
		gates[i] = g
	}
	if !soon(10*time.Second, func() bool { return sending.Load() == int64(n) }) {
		t.Fatalf("%d goroutines of Changes at a send, waiting for their reader, of %d", sending.Load(), n)
	}
	if running := delivering.Load(); running != int64(n) {
		t.Fatalf("%d goroutines of Changes running for %d gates", running, n)
	}
	runtime.KeepAlive(gates)
}

// settle waits (collecting, up to 10 s) until no gate and no goroutine of Changes of an
// earlier test is left, so that the counts a test reads are its own.
func settle(t *testing.T) {
	t.Helper()
	if !soon(10*time.Second, func() bool {
		runtime.GC()
		return liveGates.Load() == 0 && delivering.Load() == 0 && sending.Load() == 0
	}) {
		t.Fatalf("earlier tests left %d gates and %d goroutines of Changes (%d at a send)",
			liveGates.Load(), delivering.Load(), sending.Load())
	}
}

// soon reports whether cond became true within d, looking every millisecond.
func soon(d time.Duration, cond func() bool) bool {
	for deadline := time.Now().Add(d); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// TestCloseEndsAChangesGoroutineWaitingForItsReader: a reader that stops reading does not keep
// the goroutine once the gate is closed. The test waits until the goroutine has read the
// change and waits at its send (sending), not for a fixed time.
func TestCloseEndsAChangesGoroutineWaitingForItsReader(t *testing.T) {
	settle(t)
	g, err := New("", "")
	ok(t, err)
	ch := g.Changes(context.Background(), time.Millisecond)
	ok(t, g.EnableFeature("dark_mode"))
	if !soon(10*time.Second, func() bool { return sending.Load() == 1 }) {
		t.Fatal("the goroutine of Changes did not reach the send of the change")
	}
	if n := delivering.Load(); n != 1 {
		t.Fatalf("%d goroutines of Changes running, want 1", n)
	}
	ok(t, g.Close())
	if !soon(10*time.Second, func() bool { return delivering.Load() == 0 }) {
		t.Fatal("the goroutine of Changes outlived Close")
	}
	if _, open := <-ch; open {
		t.Fatal("a change delivered after its goroutine ended")
	}
}

// TestChangesWithoutAPositiveIntervalIsClosed: every <= 0 gives a closed channel (no panic),
// and so does a nil ctx (its goroutine would panic waiting on it, out of the caller's reach).
func TestChangesWithoutAPositiveIntervalIsClosed(t *testing.T) {
	g := newGate(t, "", "")
	for _, every := range []time.Duration{0, -time.Second} {
		if _, open := <-g.Changes(context.Background(), every); open {
			t.Fatalf("Changes(ctx, %v) delivered", every)
		}
	}
	if _, open := <-g.Changes(nil, time.Millisecond); open {
		t.Fatal("Changes(nil, 1ms) delivered")
	}
	ok(t, g.Promote(Canary, 5)) // a change the nil ctx's goroutine, had it started, would read
	time.Sleep(20 * time.Millisecond)
}

func TestSyncNowReadsAnotherGatesRollbackAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	doc := func(syncMS int) string {
		return fmt.Sprintf(`{"environment": {"canary": {"traffic_percent": 10}},
			"store": {"sqlite": {"path": %q, "sync_interval_ms": %d}}}`, path, syncMS)
	}
	slow := newGate(t, doc(60000), "") // reads the store once a minute: here only when asked
	other := newGate(t, doc(20), "")
	seen, err := slow.ChangeCount()
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Rollback("bad deploy"); err != nil {
		t.Fatal(err)
	}
	if asked, err := slow.SyncNow(); err != nil || !asked {
		t.Fatalf("SyncNow: %v %v", asked, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		n, err := slow.ChangeCount()
		if err != nil {
			t.Fatal(err)
		}
		if n != seen {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the rollback was not read within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
	storeless := newGate(t, "", "")
	if asked, err := storeless.SyncNow(); err != nil || asked {
		t.Fatalf("no store: %v %v", asked, err)
	}
	if err := storeless.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := storeless.SyncNow(); !errors.Is(err, ErrClosed) {
		t.Fatalf("closed: %v", err)
	}
}
