package promotiongates

/*
#include "promotion_gates.h"

// No function of the library keeps a pointer it is given beyond the call, and none calls back
// into Go: these directives let Go pass pointers to stack memory without moving it to the heap.
// (A log callback written in Go would call back into Go from inside them: the runtime panics,
// hence "Logging" in the README.)
#cgo noescape pgate_gate_new
#cgo nocallback pgate_gate_new
#cgo noescape pgate_config_json
#cgo nocallback pgate_config_json
#cgo noescape pgate_gate_name
#cgo nocallback pgate_gate_name
#cgo noescape pgate_override_names
#cgo nocallback pgate_override_names
#cgo noescape pgate_swap_config
#cgo nocallback pgate_swap_config
#cgo noescape pgate_swap_config_from
#cgo nocallback pgate_swap_config_from
#cgo noescape pgate_monitor_health
#cgo nocallback pgate_monitor_health
#cgo noescape pgate_check_slo
#cgo nocallback pgate_check_slo
#cgo noescape pgate_promote
#cgo nocallback pgate_promote
#cgo noescape pgate_promote_from
#cgo nocallback pgate_promote_from
#cgo noescape pgate_rollback
#cgo nocallback pgate_rollback
#cgo noescape pgate_enable_feature
#cgo nocallback pgate_enable_feature
#cgo noescape pgate_disable_feature
#cgo nocallback pgate_disable_feature
#cgo noescape pgate_is_feature_enabled
#cgo nocallback pgate_is_feature_enabled
#cgo noescape pgate_rollback_history_json
#cgo nocallback pgate_rollback_history_json
#cgo noescape pgate_route
#cgo nocallback pgate_route
#cgo noescape pgate_route_forced
#cgo nocallback pgate_route_forced
#cgo noescape pgate_record
#cgo nocallback pgate_record
#cgo noescape pgate_record_abandoned_as
#cgo nocallback pgate_record_abandoned_as
#cgo noescape pgate_record_by_id
#cgo nocallback pgate_record_by_id
#cgo noescape pgate_record_by_id_forced
#cgo nocallback pgate_record_by_id_forced
#cgo noescape pgate_flag_set_len
#cgo nocallback pgate_flag_set_len
#cgo noescape pgate_flag_set_name
#cgo nocallback pgate_flag_set_name
#cgo nocallback pgate_gate_free
*/
import "C"

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Gate is one promotion gate (one pgate_gate): it routes requests to the canary or the
// stable version, records their outcomes, judges the canary and moves the release along.
//
// A Gate is safe for concurrent use by many goroutines. Close it when done; a Gate that is
// garbage collected without Close is freed by a cleanup (a finalizer), on a goroutine that
// frees the collected gates one after another (the free of a store-backed gate may wait for
// its store; Close waits for it). Every
// method of a closed Gate returns an error matching ErrClosed and never touches freed memory.
//
// Thread safety of Close: every call counts itself in flight for the duration of its C call,
// on one of the Gate's counters picked by its goroutine's stack (each on cache lines of its
// own, so goroutines on other cores rarely write the same line), and Close waits until no
// call is in flight, so calls that start afterwards fail with ErrClosed. The count costs one
// atomic add on entry and one on exit (see BenchmarkRoute beside BenchmarkRouteUnguarded).
type Gate struct {
	guard guard
	ptr   *C.pgate_gate // set by New; freed by Close or the cleanup, never read after

	// done is closed when the gate is closed or collected: the goroutines of Changes wait on
	// it, holding no reference to the Gate.
	done    chan struct{}
	cleanup runtime.Cleanup // frees ptr and closes done if the Gate is collected without Close

	flagMu   sync.Mutex                          // serializes fills of flagSets
	flagSets atomic.Pointer[map[uint32][]string] // copy-on-write cache of interned flag sets
}

// liveGates counts the gates made and not yet freed; cleanedGates those freed by a cleanup
// rather than by Close (tests read both).
var liveGates, cleanedGates atomic.Int64

// New creates a gate from a JSON PromotionConfig and a JSON SloConfig (the Rust field names;
// durations in milliseconds). An empty string means the defaults.
//
// Errors: ErrInvalidJSON (malformed JSON or an unknown field, named in the message),
// ErrInvalidConfig (a value refused by validation: the message names the field and value).
func New(configJSON, sloJSON string) (*Gate, error) {
	cfg, cfgLen := optionalBytes(configJSON)
	slo, sloLen := optionalBytes(sloJSON)
	var ptr *C.pgate_gate
	var cerr *C.pgate_error
	st := C.pgate_gate_new(cfg, cfgLen, slo, sloLen, &ptr, &cerr)
	if st != C.PGATE_STATUS_OK {
		return nil, takeError("pgate_gate_new", st, cerr)
	}
	liveGates.Add(1)
	g := &Gate{ptr: ptr, done: make(chan struct{})}
	g.cleanup = runtime.AddCleanup(g, freeGate, collected{ptr, g.done})
	return g, nil
}

// optionalBytes passes a JSON string to C: NULL with length 0 for "" (the defaults),
// otherwise the string's own bytes, read only during the call.
func optionalBytes(s string) (*C.uint8_t, C.size_t) {
	if s == "" {
		return nil, 0
	}
	return (*C.uint8_t)(unsafe.Pointer(unsafe.StringData(s))), C.size_t(len(s))
}

// collected is what the cleanup of a Gate needs, without the Gate (which a cleanup's argument
// must not reach).
type collected struct {
	ptr  *C.pgate_gate
	done chan struct{}
}

// freeGate is the cleanup of a Gate that was collected without Close. It runs only once the
// Gate is unreachable, so no call can be in flight on it. It hands the gate to the freeing
// goroutine (see collectedGates), as runtime.AddCleanup asks of a long cleanup: the free of a
// store-backed gate waits for its sync thread's tick (an SQLite write waiting up to its
// busy_timeout, the etcd watch up to a second) and may write, and the cleanups of other
// objects would wait for this one.
func freeGate(g collected) {
	close(g.done)
	collectedGates.Lock()
	defer collectedGates.Unlock()
	collectedGates.waiting = append(collectedGates.waiting, g.ptr)
	if !collectedGates.freeing {
		collectedGates.freeing = true
		go freeCollected()
	}
}

// collectedGates are the gates collected without Close and not yet freed, freed one after
// another by one goroutine (freeCollected), running while any waits: a goroutine blocked in
// C holds an OS thread, so one per gate would make a thread of each gate collected while its
// store is slow.
var collectedGates struct {
	sync.Mutex
	waiting []*C.pgate_gate
	freeing bool
}

// freeCollected frees the collected gates until none waits.
func freeCollected() {
	for {
		collectedGates.Lock()
		if len(collectedGates.waiting) == 0 {
			collectedGates.waiting = nil
			collectedGates.freeing = false
			collectedGates.Unlock()
			return
		}
		ptr := collectedGates.waiting[0]
		collectedGates.waiting = collectedGates.waiting[1:]
		collectedGates.Unlock()
		C.pgate_gate_free(ptr)
		liveGates.Add(-1)
		cleanedGates.Add(1)
	}
}

// guardShards is the number of in-flight counters of a Gate: enough that the cores of a
// large host seldom pick the same one at once.
const (
	guardBits   = 5
	guardShards = 1 << guardBits
)

// inFlight counts the calls in flight that picked it, alone in 128 bytes (two cache lines:
// adjacent-line prefetching fetches lines in pairs).
type inFlight struct {
	n atomic.Int64
	_ [120]byte
}

// release ends a call counted by acquire; nil (no call counted) is a no-op.
func (s *inFlight) release() {
	if s != nil {
		s.n.Add(-1)
	}
}

// guard lets Close wait for the calls in flight without a lock that every call writes: a call
// counts itself on a counter, then reads closed; Close sets closed, then waits for every
// counter to read zero. The atomics are sequentially consistent, so a call that read closed
// false was counted before Close read its counter.
type guard struct {
	closed atomic.Bool
	shards [guardShards]inFlight
}

// acquire returns the live handle and the counter that counts the call, or nil, nil (nothing
// counted) if the Gate is closed. Every successful acquire is paired with the counter's
// release after the C call.
func (g *Gate) acquire() (*C.pgate_gate, *inFlight) {
	if g == nil || g.ptr == nil { // a nil or zero Gate: closed (New sets ptr once, first)
		return nil, nil
	}
	// The counter by the calling goroutine's stack (stacks are at least 2 KiB, hashed by
	// Fibonacci hashing): goroutines running at once have stacks apart, so they mostly count
	// on different counters, and picking costs a multiplication.
	var here byte
	s := &g.guard.shards[uint64(uintptr(unsafe.Pointer(&here))>>11)*0x9e3779b97f4a7c15>>(64-guardBits)]
	s.n.Add(1)
	if g.guard.closed.Load() {
		s.n.Add(-1)
		return nil, nil
	}
	return g.ptr, s
}

// close marks the gate closed, then waits until no call is in flight; false if it was closed
// already.
func (gd *guard) close() bool {
	if !gd.closed.CompareAndSwap(false, true) {
		return false
	}
	for pause := time.Microsecond; !gd.idle(); pause = min(2*pause, time.Millisecond) {
		time.Sleep(pause)
	}
	return true
}

// idle reports whether every counter reads zero.
func (gd *guard) idle() bool {
	for i := range gd.shards {
		if gd.shards[i].n.Load() != 0 {
			return false
		}
	}
	return true
}

// Close frees the gate. It waits for calls in flight on other goroutines, and every call
// that starts once Close began returns ErrClosed at once. Closing twice is a no-op that
// returns nil (at once, even while the first Close still waits). Decisions routed by the
// gate must not be recorded on it afterwards (Record returns ErrClosed).
func (g *Gate) Close() error {
	if g == nil || g.ptr == nil { // nothing to free
		return nil
	}
	if !g.guard.close() {
		return nil
	}
	g.cleanup.Stop()
	close(g.done)
	st := C.pgate_gate_free(g.ptr)
	liveGates.Add(-1)
	runtime.KeepAlive(g)
	return statusError("pgate_gate_free", st)
}

// Config returns the gate's current PromotionConfig as JSON (decode it into a Config with
// encoding/json if you like).
func (g *Gate) Config() (string, error) {
	return g.readJSON("pgate_config_json", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_config_json(p, buf, n, out)
	})
}

// Name returns the gate's name: its config's "gate", its key in a state store and the gate
// label of its metrics.
func (g *Gate) Name() (string, error) {
	return g.readJSON("pgate_gate_name", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_gate_name(p, buf, n, out)
	})
}

// OverrideNames returns where the gate's config says a host reads a forcing value: the
// header and cookie names of its overrides section, "" for a name it does not give
// (pgate_override_names: both from one config, no JSON parsed). A config swap, this
// process's or another's applied from the state store, may rename them and moves
// ChangeCount: a host that keeps the names reads them again when the count moved, as
// canaryproxy does.
func (g *Gate) OverrideNames() (header, cookie string, err error) {
	var h, c [C.PGATE_NAME_CAPACITY]byte // always large enough; on the stack (no C.GoStringN)
	var hn, cn C.size_t
	p, held := g.acquire()
	if p == nil {
		return "", "", errClosed
	}
	st := C.pgate_override_names(p, (*C.char)(unsafe.Pointer(&h[0])), C.size_t(len(h)), &hn,
		(*C.char)(unsafe.Pointer(&c[0])), C.size_t(len(c)), &cn)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return "", "", statusError("pgate_override_names", st)
	}
	return string(h[:hn]), string(c[:cn]), nil
}

// RollbackHistory returns the rollback events, oldest first.
func (g *Gate) RollbackHistory() ([]RollbackEvent, error) {
	doc, err := g.readJSON("pgate_rollback_history_json", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_rollback_history_json(p, buf, n, out)
	})
	if err != nil {
		return nil, err
	}
	return parseHistory(doc)
}

// readJSON runs a C call that copies a document about the gate into a caller buffer (see
// readText).
func (g *Gate) readJSON(op string, call func(*C.pgate_gate, *C.char, C.size_t, *C.size_t) C.pgate_status) (string, error) {
	return readText(op, cBuffer(func(buf *C.char, n C.size_t, out *C.size_t) (C.pgate_status, error) {
		p, held := g.acquire()
		if p == nil {
			return C.PGATE_STATUS_INVALID_HANDLE, errClosed
		}
		st := call(p, buf, n, out)
		held.release()
		runtime.KeepAlive(g)
		return st, statusError(op, st)
	}))
}

// textTries is how many times readText asks for a text before giving up: each retry takes an
// eighth more than was asked for, and textSlack bytes, so only a text growing faster than
// that between two calls (another process's rollbacks, applied by the sync thread) runs out
// of tries, as in the Lua and Python bindings.
const (
	textTries = 8
	textSlack = 4096
)

// readText runs op, a call that copies text into the buffer it is given and answers how long
// the text is, growing the buffer while the call says it is too small (a gate's document may
// grow between two calls), at most textTries times. The call returns the text's length, its
// status and the error that status means. A text still growing after textTries calls is an
// ErrBufferTooSmall naming op.
func readText(op string, call func(buf []byte) (int, Status, error)) (string, error) {
	buf := make([]byte, 512)
	asked := 0
	for range textTries {
		n, st, err := call(buf)
		switch st {
		case StatusOK:
			return string(buf[:n]), nil
		case StatusBufferTooSmall:
			asked = n
			buf = make([]byte, n+1+n/8+textSlack) // room for the NUL the library writes
		default:
			return "", err
		}
	}
	return "", textGrew(op, asked)
}

// textGrew is the refusal of op's text, still growing after textTries calls, the last of
// which asked for asked bytes.
func textGrew(op string, asked int) error {
	return &Error{Status: StatusBufferTooSmall, Message: fmt.Sprintf(
		"%s: the text kept growing: %d tries, the last asking for %d bytes", op, textTries, asked)}
}

// cBuffer adapts a C call that copies text into a (buf, size, len_out) buffer to readText.
func cBuffer(call func(*C.char, C.size_t, *C.size_t) (C.pgate_status, error)) func([]byte) (int, Status, error) {
	return func(buf []byte) (int, Status, error) {
		var n C.size_t
		st, err := call((*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n)
		return int(n), Status(st), err
	}
}

// readBool runs a C call that writes one bool about the gate. call declares the bool it
// passes to the C function, which keeps it on the stack: a pointer passed to call, a function
// value, would move it to the heap.
func (g *Gate) readBool(op string, call func(*C.pgate_gate) (C.bool, C.pgate_status)) (bool, error) {
	p, held := g.acquire()
	if p == nil {
		return false, errClosed
	}
	answer, st := call(p)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return false, statusError(op, st)
	}
	return bool(answer), nil
}

// SwapConfig replaces the gate's config atomically with a JSON PromotionConfig (a hot
// reload: not gated by the judge). On error the gate is unchanged, but for ErrSLONotMet: a
// swap that would start a stage (a new split, environment or salt, or in Canary and Staging
// a flag newly on) judges the stage it ends first, and a fired rule rolls the canary back.
// "", which New reads as the defaults, is an ErrInvalidJSON ("invalid JSON config: empty
// document (...)"): a swap's empty text is taken for a mistake.
func (g *Gate) SwapConfig(configJSON string) error {
	p, held := g.acquire()
	if p == nil {
		return errClosed
	}
	doc, n := optionalBytes(configJSON)
	var cerr *C.pgate_error
	st := C.pgate_swap_config(p, doc, n, &cerr)
	held.release()
	runtime.KeepAlive(g)
	return emptyConfigRefused(takeError("pgate_swap_config", st, cerr), configJSON)
}

// emptyConfigRefused names the refusal of an empty config to a swap (see emptyRefused).
func emptyConfigRefused(err error, configJSON string) error {
	return emptyRefused(err, configJSON, "config", "a swap takes a whole config, such as Config returns")
}

// SwapConfigFrom is SwapConfig, made only if the gate has not changed since the caller read
// changeCount (ChangeCount) before the config it edited (Config). A hot reload that edits the
// gate's config uses it: a plain SwapConfig of a config read before a rollback puts the
// rolled-back canary back, one read before DisableFeature (a kill switch) turns the flag on
// again, and two reloads overwrite each other. Every change moves the count: a rollback, a
// promotion, a flag turned on or off, a config swap, an SLO swap (SwapSLO: no config changes,
// yet it counts), and another process's write once read from the state store (after a lost
// compare-and-swap too, so one this gate has not synced yet refuses the swap). Read the count
// first: a change between the two reads then refuses the swap, never lets it through.
//
// Errors: ErrGateChanged when the count is no longer changeCount (the message names both;
// nothing changed: read the count and the config again), otherwise as SwapConfig.
func (g *Gate) SwapConfigFrom(changeCount uint64, configJSON string) error {
	p, held := g.acquire()
	if p == nil {
		return errClosed
	}
	doc, n := optionalBytes(configJSON)
	var cerr *C.pgate_error
	st := C.pgate_swap_config_from(p, C.uint64_t(changeCount), doc, n, &cerr)
	held.release()
	runtime.KeepAlive(g)
	return emptyConfigRefused(takeError("pgate_swap_config_from", st, cerr), configJSON)
}

// Version is the library's version, e.g. "0.1.0".
func Version() string {
	return C.GoString(C.pgate_version())
}
