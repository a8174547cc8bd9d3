package promotiongates

// #include "promotion_gates.h"
import "C"

import (
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"time"
	"unsafe"
)

// Environment is where a gate stands (pgate_environment).
type Environment uint32

// The environments of the release state machine.
const (
	// Canary sends TrafficPercent % of requests (by bucket) to the new version.
	Canary Environment = C.PGATE_ENVIRONMENT_CANARY
	// Staging sends every request to the new version, every release flag on.
	Staging Environment = C.PGATE_ENVIRONMENT_STAGING
	// Production sends every request to the stable version.
	Production Environment = C.PGATE_ENVIRONMENT_PRODUCTION
)

// String returns "canary", "staging" or "production" (the names of the JSON config).
func (e Environment) String() string {
	return enumName([]string{"canary", "staging", "production"}, uint32(e), "Environment")
}

// enumName names value v of a C enum numbered 0, 1, 2... from names, or says typ(v).
func enumName(names []string, v uint32, typ string) string {
	if int(v) < len(names) {
		return names[v]
	}
	return typ + "(" + strconv.FormatUint(uint64(v), 10) + ")"
}

// Recorded says what happened to a recorded outcome (pgate_recorded).
type Recorded uint32

// What Record can do with an outcome.
const (
	// Counted: counted for its stage and cohort.
	Counted Recorded = C.PGATE_RECORDED_COUNTED
	// Late: its stage had already ended (a promotion or rollback came between); dropped. The
	// library compares the outcome's stage with the gate's newest, so it is Late on whatever
	// OS thread the goroutine records it. Only one recorded while the stage changes may still
	// come back Counted: it then counts for the ended stage, which is never judged again.
	// Either way it cannot pollute the current stage.
	Late Recorded = C.PGATE_RECORDED_LATE
	// Foreign: its stage is newer than the gate's (a decision of another gate); dropped.
	Foreign Recorded = C.PGATE_RECORDED_FOREIGN
	// Forced: its request was forced by an override; counted apart, in neither cohort, so
	// that testers and allow-lists never distort the judge's comparison.
	Forced Recorded = C.PGATE_RECORDED_FORCED
)

// String returns "counted", "late", "foreign" or "forced".
func (r Recorded) String() string {
	return enumName([]string{"counted", "late", "foreign", "forced"}, uint32(r), "Recorded")
}

// ForcedBy says whether an override forced a decision, and by what (pgate_forced).
type ForcedBy uint8

// What can force a request.
const (
	// NotForced: routed by its bucket.
	NotForced ForcedBy = C.PGATE_FORCED_NONE
	// ForcedByValue: by the forcing value passed to RouteForced (read from the header or
	// cookie the config's overrides name).
	ForcedByValue ForcedBy = C.PGATE_FORCED_VALUE
	// ForcedByIDList: by the config's overrides.canary_ids or overrides.stable_ids.
	ForcedByIDList ForcedBy = C.PGATE_FORCED_ID_LIST
)

// String returns "none", "value" or "id_list" (the names of tests/vectors/overrides.tsv).
func (f ForcedBy) String() string {
	return enumName([]string{"none", "value", "id_list"}, uint32(f), "ForcedBy")
}

// Decision is one routing decision: a small value (40 bytes) to keep with the request and
// pass back, unchanged, to Record, so that the outcome counts for the stage and cohort the
// request was routed in. Its flag set belongs to the Gate that routed it.
//
// The zero Decision is valid: a stable-version decision of stage 0 with no flags.
type Decision struct {
	c C.pgate_decision
}

// IsCanary reports whether the request goes to the new version.
func (d Decision) IsCanary() bool { return bool(d.c.is_canary) }

// Environment is the gate's environment at routing time.
func (d Decision) Environment() Environment { return Environment(d.c.environment) }

// TrafficPercent is the canary share at routing time (100 in Staging, 0 in Production).
func (d Decision) TrafficPercent() float64 { return float64(d.c.traffic_percent) }

// Bucket is the request's bucket, 0 ..= 9_999_999.
func (d Decision) Bucket() uint32 { return uint32(d.c.bucket) }

// Threshold: requests with a bucket below it go to the new version.
func (d Decision) Threshold() uint32 { return uint32(d.c.threshold) }

// Stage is the release stage the request was routed in.
func (d Decision) Stage() uint64 { return uint64(d.c.stage) }

// ForcedBy says whether an override forced the request (then IsCanary is the version forced
// to, and Record counts the outcome in neither cohort), and by what.
func (d Decision) ForcedBy() ForcedBy { return ForcedBy(d.c.forced) }

// FlagSet is the number of the gate's interned set of flags on for this request (0 is the
// empty set). Read the names with Gate.Features or Gate.HasFeature.
func (d Decision) FlagSet() uint32 { return uint32(d.c.flag_set) }

// Route routes a request id (any bytes; nil is the empty id). Deterministic, lock-free in the
// library, and allocation-free. The id is read only during the call.
func (g *Gate) Route(id []byte) (Decision, error) {
	return g.route((*C.uint8_t)(unsafe.SliceData(id)), len(id))
}

// RouteString routes a request id given as a string, without copying it: the string's bytes
// are passed to the library (through unsafe.StringData) and read only during the call; Go
// strings are immutable and the library never writes through the pointer.
func (g *Gate) RouteString(id string) (Decision, error) {
	return g.route((*C.uint8_t)(unsafe.StringData(id)), len(id))
}

// RouteForced routes a request id with the forcing value the host read from the request (the
// value of the header or cookie the config's overrides name): nil for none; an empty
// non-nil slice is a value (ignored). "canary" or "stable" (ASCII case ignored) force the
// request; any other value is ignored and counted, never an error. The config's id lists win
// over the value. Lock-free and allocation-free like Route.
func (g *Gate) RouteForced(id, value []byte) (Decision, error) {
	return g.routeForced((*C.uint8_t)(unsafe.SliceData(id)), len(id), value != nil,
		(*C.uint8_t)(unsafe.SliceData(value)), len(value))
}

// RouteForcedString is RouteForced for strings, passed without copying (as RouteString);
// present false means the request carried no forcing value.
func (g *Gate) RouteForcedString(id, value string, present bool) (Decision, error) {
	return g.routeForced((*C.uint8_t)(unsafe.StringData(id)), len(id), present,
		(*C.uint8_t)(unsafe.StringData(value)), len(value))
}

// emptyValue is the pointer passed for a present but empty forcing value (NULL means none).
var emptyValue = [1]C.uint8_t{}

func (g *Gate) routeForced(id *C.uint8_t, n int, present bool, value *C.uint8_t, m int) (Decision, error) {
	if !present {
		value, m = nil, 0
	} else if value == nil {
		value = &emptyValue[0]
	}
	var d Decision
	p, held := g.acquire()
	if p == nil {
		return d, errClosed
	}
	st := C.pgate_route_forced(p, id, C.size_t(n), value, C.size_t(m), &d.c)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return Decision{}, statusError("pgate_route_forced", st)
	}
	return d, nil
}

// route is routeForced with no value, written out: calling routeForced made RouteString
// about 14 ns slower in BenchmarkRouteString (the canaryproxy's call on every request).
func (g *Gate) route(id *C.uint8_t, n int) (Decision, error) {
	var d Decision
	p, held := g.acquire()
	if p == nil {
		return d, errClosed
	}
	st := C.pgate_route(p, id, C.size_t(n), &d.c)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return Decision{}, statusError("pgate_route", st)
	}
	return d, nil
}

// latencyNanos converts a latency for the library, refusing a negative one. A Duration is
// whole nanoseconds in an int64, so it cannot be NaN, infinite or beyond the u64 of
// pgate_record: negative is the only bad latency it can hold. The error is the one every
// binding gives a bad latency (ErrInvalidArgument, the same text as C++, Python and Lua).
func latencyNanos(latency time.Duration) (C.uint64_t, error) {
	if latency < 0 {
		return 0, &Error{Status: StatusInvalidArgument, Message: "invalid latency = " +
			strconv.FormatInt(int64(latency), 10) + " ns: " + latencyRule}
	}
	return C.uint64_t(latency), nil
}

// latencyRule is what every binding says of a bad latency, after its value (every binding's
// tests check it against tests/vectors/latency.tsv).
const latencyRule = "a latency must be finite, at least 0 and below 2^64 ns"

// Record records the outcome of a request routed by d: whether it succeeded and its latency.
// Lock-free and allocation-free in the library. It may run the judge and roll a failing
// canary back by itself (when auto_rollback_enabled).
func (g *Gate) Record(d Decision, success bool, latency time.Duration) (Recorded, error) {
	ns, err := latencyNanos(latency)
	if err != nil {
		return 0, err
	}
	p, held := g.acquire()
	if p == nil {
		return 0, errClosed
	}
	var r C.pgate_recorded
	st := C.pgate_record(p, &d.c, C.bool(success), ns, &r)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return 0, statusError("pgate_record", st)
	}
	return Recorded(r), nil
}

// RecordAbandoned records a request routed by d whose client went away before the version
// answered, waited after the request was sent to it. A wait longer than the SLO's
// latency_target counts as a success that missed its target, with latency waited (a lower
// bound), so a canary that hangs is rolled back even when every client gives up before the
// proxy's own upstream timeout; a wait up to the target says nothing of the version, and nothing is
// recorded (recorded false). A client leaving is never a failure. RecordAbandonedAs also says
// what happened to the outcome. For the cold path.
func (g *Gate) RecordAbandoned(d Decision, waited time.Duration) (recorded bool, err error) {
	_, recorded, err = g.RecordAbandonedAs(d, waited)
	return recorded, err
}

// RecordAbandonedAs is RecordAbandoned that also returns what happened to the outcome, as
// Record does (Counted, Late, Foreign or Forced), when one was recorded (recorded true; as is
// Counted, its zero, when recorded is false). For a host that counts Late, Foreign and Forced
// outcomes itself (see MetricsPrometheusCounted): a forced request whose client gave up after
// the target comes back Forced. For the cold path.
func (g *Gate) RecordAbandonedAs(d Decision, waited time.Duration) (as Recorded, recorded bool, err error) {
	ns, err := latencyNanos(waited)
	if err != nil {
		return 0, false, err
	}
	p, held := g.acquire()
	if p == nil {
		return 0, false, errClosed
	}
	var done C.bool
	var r C.pgate_recorded
	st := C.pgate_record_abandoned_as(p, &d.c, ns, &done, &r)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return 0, false, statusError("pgate_record_abandoned_as", st)
	}
	if !bool(done) {
		return Counted, false, nil
	}
	return Recorded(r), true, nil
}

// RecordByID records an outcome by request id: the id is routed again under the gate's
// current state (one more hash). Prefer Record with the request's Decision, which counts the
// outcome for the stage the request was actually routed in. The id is routed without a
// forcing value: RecordByID cannot see that a header or cookie forced the request (only that
// an id list does), so such a request's outcome would count in the cohort of its bucket; a
// host that routes with RouteForced records by id with RecordByIDForced.
func (g *Gate) RecordByID(id []byte, success bool, latency time.Duration) (Recorded, error) {
	return g.recordByID((*C.uint8_t)(unsafe.SliceData(id)), len(id), success, latency)
}

// RecordByIDString is RecordByID for a string id, passed without copying (as RouteString).
func (g *Gate) RecordByIDString(id string, success bool, latency time.Duration) (Recorded, error) {
	return g.recordByID((*C.uint8_t)(unsafe.StringData(id)), len(id), success, latency)
}

// RecordByIDForced is RecordByID for a request routed with RouteForced: the id is routed
// again with the same forcing value (nil for none; an empty non-nil slice is a value), so an
// outcome the value forced counts in neither cohort (Forced), as Record counts it with the
// Decision. A value that forces nothing is not counted again as ignored.
func (g *Gate) RecordByIDForced(id, value []byte, success bool, latency time.Duration) (Recorded, error) {
	return g.recordByIDForced((*C.uint8_t)(unsafe.SliceData(id)), len(id), value != nil,
		(*C.uint8_t)(unsafe.SliceData(value)), len(value), success, latency)
}

// RecordByIDForcedString is RecordByIDForced for strings, passed without copying (as
// RouteForcedString); present false means the request carried no forcing value.
func (g *Gate) RecordByIDForcedString(id, value string, present bool, success bool, latency time.Duration) (Recorded, error) {
	return g.recordByIDForced((*C.uint8_t)(unsafe.StringData(id)), len(id), present,
		(*C.uint8_t)(unsafe.StringData(value)), len(value), success, latency)
}

func (g *Gate) recordByIDForced(id *C.uint8_t, n int, present bool, value *C.uint8_t, m int,
	success bool, latency time.Duration) (Recorded, error) {
	ns, err := latencyNanos(latency)
	if err != nil {
		return 0, err
	}
	if !present {
		value, m = nil, 0
	} else if value == nil {
		value = &emptyValue[0]
	}
	p, held := g.acquire()
	if p == nil {
		return 0, errClosed
	}
	var r C.pgate_recorded
	st := C.pgate_record_by_id_forced(p, id, C.size_t(n), value, C.size_t(m), C.bool(success), ns, &r)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return 0, statusError("pgate_record_by_id_forced", st)
	}
	return Recorded(r), nil
}

func (g *Gate) recordByID(id *C.uint8_t, n int, success bool, latency time.Duration) (Recorded, error) {
	ns, err := latencyNanos(latency)
	if err != nil {
		return 0, err
	}
	p, held := g.acquire()
	if p == nil {
		return 0, errClosed
	}
	var r C.pgate_recorded
	st := C.pgate_record_by_id(p, id, C.size_t(n), C.bool(success), ns, &r)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return 0, statusError("pgate_record_by_id", st)
	}
	return Recorded(r), nil
}

// Features returns the names of the flags on for the request of d, in byte order, as a new
// slice the caller owns.
func (g *Gate) Features(d Decision) ([]string, error) {
	names, err := g.flagSet(d.FlagSet())
	if err != nil {
		return nil, err
	}
	return slices.Clone(names), nil
}

// HasFeature reports whether the flag name is on for the request of d. After the first
// question about a flag set it costs one call to the library (is the set still there?) and
// a binary search in Go, and allocates nothing.
func (g *Gate) HasFeature(d Decision, name string) (bool, error) {
	names, err := g.flagSet(d.FlagSet())
	if err != nil {
		return false, err
	}
	_, found := slices.BinarySearch(names, name)
	return found, nil
}

// flagCacheSize bounds the sets a Gate remembers, and flagCacheNames the names they hold in
// all (a set may hold up to 10,000): past either the cache starts afresh, so a gate whose
// flags change often does not keep every set it was ever asked about, and a gate with many
// flags keeps a few megabytes of names at most. A variable for the tests only.
const flagCacheSize = 256

var flagCacheNames = 1 << 16

// flagSet returns the names of interned set id, from the Gate's cache or, the first time,
// from the library. The cache is the Gate's own (a number means nothing to another gate)
// and copy-on-write, so readers take no lock.
//
// The library refuses a number this gate does not know (a decision of another gate, or of a
// gate closed during a reload, or a set it reclaimed: one replaced more than
// flagSetGraceWrites writes ago) with ErrUnknownFlagSet, which is returned and never cached.
// A cached set is asked of the library again on every read (pgate_flag_set_len: lock-free,
// no allocation), so a set the gate has reclaimed since is refused as it is when never
// asked before: the answer never depends on what was asked earlier, as in the other
// bindings. A set's number never names another set while the gate lives, so a set the
// library still holds reads right from the cache.
func (g *Gate) flagSet(id uint32) ([]string, error) {
	if g == nil {
		return nil, errClosed
	}
	if m := g.flagSets.Load(); m != nil {
		if names, ok := (*m)[id]; ok {
			p, held := g.acquire()
			if p == nil { // closed gates answer nothing, as every other method
				return nil, errClosed
			}
			var n C.size_t
			st := C.pgate_flag_set_len(p, C.uint32_t(id), &n)
			held.release()
			runtime.KeepAlive(g)
			if st != C.PGATE_STATUS_OK {
				return nil, flagSetError("pgate_flag_set_len", id, st)
			}
			return names, nil
		}
	}
	g.flagMu.Lock()
	defer g.flagMu.Unlock()
	names, err := g.readFlagSet(id)
	if err != nil {
		return nil, err
	}
	next := make(map[uint32][]string)
	if m := g.flagSets.Load(); m != nil && len(*m) < flagCacheSize {
		total := len(names)
		for _, v := range *m {
			total += len(v)
		}
		if total <= flagCacheNames {
			for k, v := range *m {
				next[k] = v
			}
		}
	}
	next[id] = names
	g.flagSets.Store(&next)
	return names, nil
}

// flagSetGraceWrites is the library's FLAG_SET_GRACE_WRITES (src/flags.rs): a replaced flag
// set stays readable for at least this many later writes. The C header does not carry it.
const flagSetGraceWrites = 60

// flagSetError is the error of a flag set the library refused, whose calls write no message:
// the field and its value, in every binding's words.
func flagSetError(operation string, id uint32, st C.pgate_status) error {
	if st != C.PGATE_STATUS_UNKNOWN_FLAG_SET {
		return statusError(operation, st)
	}
	return &Error{Status: StatusUnknownFlagSet, Message: fmt.Sprintf(
		"invalid flag_set = %d: not a flag set of this gate (another gate's decision, or one "+
			"replaced more than %d writes ago)", id, flagSetGraceWrites)}
}

// readFlagSet copies the names of set id out of the library.
func (g *Gate) readFlagSet(id uint32) ([]string, error) {
	p, held := g.acquire()
	if p == nil {
		return nil, errClosed
	}
	defer held.release()
	defer runtime.KeepAlive(g)
	var n C.size_t
	if st := C.pgate_flag_set_len(p, C.uint32_t(id), &n); st != C.PGATE_STATUS_OK {
		return nil, flagSetError("pgate_flag_set_len", id, st)
	}
	names := make([]string, 0, int(n))
	for i := range int(n) {
		var name *C.uint8_t
		var length C.size_t
		st := C.pgate_flag_set_name(p, C.uint32_t(id), C.size_t(i), &name, &length)
		if st != C.PGATE_STATUS_OK {
			return nil, flagSetError("pgate_flag_set_name", id, st)
		}
		// Copied while the call, counted in flight, keeps the gate (which owns the name) alive.
		names = append(names, C.GoStringN((*C.char)(unsafe.Pointer(name)), C.int(length)))
	}
	return names, nil
}
