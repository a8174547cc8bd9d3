package promotiongates

/*
#include "promotion_gates.h"

#cgo noescape pgate_change_count
#cgo nocallback pgate_change_count
#cgo noescape pgate_sync_now
#cgo nocallback pgate_sync_now
#cgo noescape pgate_changes_json
#cgo nocallback pgate_changes_json
*/
import "C"

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"runtime"
	"sync/atomic"
	"time"
	"weak"
)

// ChangeKind is what kind of state change a Change is, by what matters most in it.
type ChangeKind string

// The kinds of changes.
const (
	ChangeRollback  ChangeKind = "rollback"  // the release was rolled back (manually, or by the judge)
	ChangePromotion ChangeKind = "promotion" // the environment moved otherwise (promotion, new rollout, ramp)
	ChangeFlags     ChangeKind = "flags"     // flags turned on or off, the environment unchanged
	ChangeConfig    ChangeKind = "config"    // anything else: a config swap of the policy, salt or bounds, an SLO swap
)

// ChangeOrigin says where a change was made.
type ChangeOrigin string

// The origins of changes.
const (
	OriginThisGate ChangeOrigin = "this_gate" // a call on this gate, or its judge
	OriginStore    ChangeOrigin = "store"     // another process sharing the state store
)

// Change is one state change of a gate (an element of pgate_changes_json): numbered, with the
// environments before and after, the flags it turned on and off and, for a rollback, its
// event (for an automatic one, with the rules that fired).
type Change struct {
	Sequence      uint64         // 1 for the gate's first change, one more for each
	Kind          ChangeKind     // rollback, promotion, flags or config
	Origin        ChangeOrigin   // this gate or the state store
	Stage         uint64         // the release stage after the change
	From          Environment    // the environment before
	FromPercent   float64        // the canary share before, when From is Canary
	To            Environment    // the environment after
	ToPercent     float64        // the canary share after, when To is Canary
	Time          time.Time      // when, by the gate's clock (millisecond resolution)
	FlagsEnabled  []string       // flags now on for a version's requests that were off for them (at most 32 names with FlagsDisabled)
	FlagsDisabled []string       // flags now off for a version's requests that were on (a graduated flag moved back to FeatureFlags: the stable version's)
	FlagsUnlisted int            // changed flags beyond the listed ones
	Rollback      *RollbackEvent // the rollback's event, or nil
}

// changeJSON is the wire form of a Change.
type changeJSON struct {
	Sequence      uint64             `json:"sequence"`
	Kind          ChangeKind         `json:"kind"`
	Origin        ChangeOrigin       `json:"origin"`
	Stage         uint64             `json:"stage"`
	From          environmentJSON    `json:"from"`
	To            environmentJSON    `json:"to"`
	AtMS          int64              `json:"at_ms"`
	FlagsEnabled  []string           `json:"flags_enabled"`
	FlagsDisabled []string           `json:"flags_disabled"`
	FlagsUnlisted int                `json:"flags_unlisted"`
	Rollback      *rollbackEventJSON `json:"rollback"`
}

// ChangeCount returns the number of the gate's newest state change (0 before the first):
// pgate_change_count, one atomic load in the library, cheap enough for every request. When
// it moves, ChangesSince says what changed.
func (g *Gate) ChangeCount() (uint64, error) {
	p, held := g.acquire()
	if p == nil {
		return 0, errClosed
	}
	var n C.uint64_t
	st := C.pgate_change_count(p, &n)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return 0, statusError("pgate_change_count", st)
	}
	return uint64(n), nil
}

// SyncNow asks the gate's state store sync thread to read the store at once rather than at
// its next sync_interval_ms (pgate_sync_now), for a host told by its own means that another
// process wrote. It returns at once, having done no I/O; the sync thread then publishes what
// changed, and ChangeCount moves. Asks made before that read begins are merged into one.
// asked is false when the gate has no store.
func (g *Gate) SyncNow() (asked bool, err error) {
	return g.readBool("pgate_sync_now", func(p *C.pgate_gate) (answer C.bool, st C.pgate_status) {
		st = C.pgate_sync_now(p, &answer)
		return answer, st
	})
}

// ChangesSince returns the gate's kept changes numbered above after, oldest first: the last
// 64 at most (a gap in their Sequence numbers shows changes no longer kept).
func (g *Gate) ChangesSince(after uint64) ([]Change, error) {
	doc, err := g.readJSON("pgate_changes_json", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_changes_json(p, C.uint64_t(after), buf, n, out)
	})
	if err != nil {
		return nil, err
	}
	return parseChanges(doc)
}

// parseChanges decodes the JSON array of pgate_changes_json.
func parseChanges(doc string) ([]Change, error) {
	var wire []changeJSON
	if err := json.Unmarshal([]byte(doc), &wire); err != nil {
		return nil, &Error{Status: StatusInvalidJSON, Message: "changes: " + err.Error()}
	}
	changes := make([]Change, len(wire))
	for i, w := range wire {
		changes[i] = Change{
			Sequence:      w.Sequence,
			Kind:          w.Kind,
			Origin:        w.Origin,
			Stage:         w.Stage,
			From:          w.From.Environment,
			FromPercent:   w.From.TrafficPercent,
			To:            w.To.Environment,
			ToPercent:     w.To.TrafficPercent,
			Time:          time.UnixMilli(w.AtMS),
			FlagsEnabled:  nonNil(w.FlagsEnabled),
			FlagsDisabled: nonNil(w.FlagsDisabled),
			FlagsUnlisted: w.FlagsUnlisted,
		}
		if w.Rollback != nil {
			event := w.Rollback.event()
			changes[i].Rollback = &event
		}
	}
	return changes, nil
}

// Changes delivers the gate's state changes made after the call (rollbacks with their
// evidence, promotions, flag changes, config and SLO swaps, and writes of other processes
// applied from the state store) on the returned channel, in order. The library never calls
// Go for a change: a goroutine reads the change counter every `every` (one atomic load in
// the library, no lock) and, when it moved, the changes.
//
// The channel is closed when ctx is done, or when the gate is closed or garbage collected,
// and then only (at once, also while the goroutine waits for the reader): changes not yet
// delivered then are dropped, and none is sent once the goroutine sees either (it looks
// before each send). The goroutine holds no reference to the Gate, so a Gate dropped without
// Close is still collected and freed, and the goroutine ends with it. A closed gate, or an
// every that is not positive (which time.NewTicker would refuse by a panic), gives a channel
// that is already closed.
//
// A read of the changes that fails otherwise (an ErrInvalidJSON from a library newer than
// this binding, say) does not close the channel: the goroutine logs the error with the
// standard log package, once for a run of failures, and reads again at each look; the
// changes it could not read are still kept by the gate (the last 64), and are delivered once
// a read succeeds.
//
// A slow reader: the goroutine waits for the reader to take each change (it never drops one
// it has read while the gate lives), while the gate keeps only its last 64 changes. A reader
// that falls more than 64 changes behind misses the oldest: the Sequence numbers it receives
// then jump, and the gap is the number missed. Read the gate's State to learn where it
// stands after a gap. A reader that stops reading keeps the goroutine waiting until ctx is
// done or the gate is closed or collected. A nil ctx, which the goroutine could not wait
// on, gives a channel that is already closed too.
func (g *Gate) Changes(ctx context.Context, every time.Duration) <-chan Change {
	out := make(chan Change)
	seen, err := g.ChangeCount()
	if err != nil || every <= 0 || ctx == nil {
		close(out)
		return out
	}
	gate, done, ticker := weak.Make(g), g.done, time.NewTicker(every)
	read := func(seen uint64) ([]Change, error) { return changesAfter(gate, seen) }
	delivering.Add(1)
	go func() {
		defer delivering.Add(-1)
		defer ticker.Stop()
		deliver(ctx, read, done, ticker.C, seen, out)
	}()
	return out
}

// delivering counts the goroutines of Changes running, and sending those of them at a send,
// waiting for their reader (tests read both).
var delivering, sending atomic.Int64

// deliver sends the changes numbered above seen on out, reading them (read, which holds the
// gate only while it reads, never while deliver waits) at each tick, until ctx is done or the
// gate is closed or collected (done, or read's ErrClosed); then it closes out. Once ctx is
// done or the gate closed, no change is sent: each send is preceded by a look at both, since
// a select on a send and on them would pick at random among those ready. A read that fails
// otherwise (ErrInvalidJSON from a library newer than the binding, say) is logged, the first
// of a run of failures alone, and made again at the next tick: the changes it missed are
// still kept by the gate, and seen did not move.
func deliver(ctx context.Context, read func(seen uint64) ([]Change, error), done <-chan struct{}, tick <-chan time.Time, seen uint64, out chan<- Change) {
	defer close(out)
	failing := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			return
		case <-tick:
		}
		changes, err := read(seen)
		switch {
		case errors.Is(err, ErrClosed):
			return // closed or collected
		case err != nil:
			if !failing {
				log.Printf("%v; Changes reads them again at each look until a read succeeds", err)
			}
			failing = true
			continue
		}
		failing = false
		for _, c := range changes {
			if stopped(ctx, done) {
				return
			}
			sent := false
			sending.Add(1)
			select {
			case out <- c:
				seen, sent = c.Sequence, true
			case <-ctx.Done():
			case <-done:
			}
			sending.Add(-1)
			if !sent {
				return // ctx done or the gate closed while the reader did not take c
			}
		}
	}
}

// stopped reports, without waiting, whether ctx is done or done closed.
func stopped(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-ctx.Done():
		return true
	case <-done:
		return true
	default:
		return false
	}
}

// changesAfter reads the gate's changes numbered above seen (none when its counter has not
// moved), holding the Gate only during the reads. A collected gate is ErrClosed.
func changesAfter(gate weak.Pointer[Gate], seen uint64) ([]Change, error) {
	g := gate.Value()
	if g == nil {
		return nil, errClosed
	}
	n, err := g.ChangeCount()
	if err != nil || n == seen {
		return nil, err
	}
	return g.ChangesSince(seen)
}
