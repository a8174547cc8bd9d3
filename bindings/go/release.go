package promotiongates

// #include "promotion_gates.h"
import "C"

import (
	"encoding/json"
	"runtime"
	"time"
	"unsafe"
)

// Promote moves the release along the state machine: Production -> Canary (a new rollout),
// Canary -> Canary (ramping; up is gated, but from 0 %, which has no outcome to judge),
// Canary -> Staging (gated), Staging or Canary -> Production (gated; graduates the release's
// flags; not from a canary at 0 %). percent is read only for Canary.
//
// Errors: ErrInvalidConfig (percent outside 0..=100 or NaN), ErrInvalidArgument (an unknown
// Environment), ErrInvalidPromotion, ErrAlreadyThere, and for gated moves ErrInsufficientData
// or ErrSLONotMet with the judge's evidence in the message (a ramp down is not gated, but the
// stage it ends is judged first: ErrSLONotMet when a rule fired in it). On error nothing
// changed (unless the judge rolled a failing canary back).
func (g *Gate) Promote(env Environment, percent float64) error {
	p, held := g.acquire()
	if p == nil {
		return errClosed
	}
	var cerr *C.pgate_error
	st := C.pgate_promote(p, C.uint32_t(env), C.double(percent), &cerr)
	held.release()
	runtime.KeepAlive(g)
	return takeError("pgate_promote", st, cerr)
}

// PromoteFrom is Promote, made only if the gate is still in release stage stage: the stage
// read before deciding (State().Stage, a Decision's Stage(), or Health.Stage, the stage
// judged). A ramp loop uses it: if the judge rolled the canary back after the look, or another
// process moved the gate, a plain Promote(Canary, percent) from Production would start a new,
// ungated rollout of the build just rolled back.
//
// Errors: ErrStageChanged when the gate left stage (the message names the stage it is in
// now; nothing changed), otherwise as Promote.
func (g *Gate) PromoteFrom(stage uint64, env Environment, percent float64) error {
	p, held := g.acquire()
	if p == nil {
		return errClosed
	}
	var cerr *C.pgate_error
	st := C.pgate_promote_from(p, C.uint64_t(stage), C.uint32_t(env), C.double(percent), &cerr)
	held.release()
	runtime.KeepAlive(g)
	return takeError("pgate_promote_from", st, cerr)
}

// Rollback rolls the release back to Production with a reason (not blank: at least one
// visible character; at most 4096 bytes), turns the release's flags off and starts a new
// stage. ErrRollbackRefused in Production or for such a reason.
func (g *Gate) Rollback(reason string) error {
	return g.textCall("pgate_rollback", reason, func(p *C.pgate_gate, s *C.uint8_t, n C.size_t, e **C.pgate_error) C.pgate_status {
		return C.pgate_rollback(p, s, n, e)
	})
}

// EnableFeature turns a release flag on (idempotent). ErrInvalidFlag for a name that is
// empty, longer than 128 bytes, or holds whitespace, control, format or invisible characters. In Canary
// and Staging a flag newly on starts a new stage, and the current one is judged first;
// ErrSLONotMet when a rule fired in it, or the judge called for its rollback while the write
// was being made (the rollback is made instead).
func (g *Gate) EnableFeature(name string) error {
	return g.textCall("pgate_enable_feature", name, func(p *C.pgate_gate, s *C.uint8_t, n C.size_t, e **C.pgate_error) C.pgate_status {
		return C.pgate_enable_feature(p, s, n, e)
	})
}

// DisableFeature turns a flag off (release or graduated) and records it in the rollback
// history. ErrFlagNotEnabled if it is not on.
func (g *Gate) DisableFeature(name string) error {
	return g.textCall("pgate_disable_feature", name, func(p *C.pgate_gate, s *C.uint8_t, n C.size_t, e **C.pgate_error) C.pgate_status {
		return C.pgate_disable_feature(p, s, n, e)
	})
}

// textCall runs a cold-path C call that takes one string (read only during the call) and
// explains its failures with an error object.
func (g *Gate) textCall(op, text string, call func(*C.pgate_gate, *C.uint8_t, C.size_t, **C.pgate_error) C.pgate_status) error {
	p, held := g.acquire()
	if p == nil {
		return errClosed
	}
	var cerr *C.pgate_error
	st := call(p, (*C.uint8_t)(unsafe.StringData(text)), C.size_t(len(text)), &cerr)
	held.release()
	runtime.KeepAlive(g)
	return takeError(op, st, cerr)
}

// IsFeatureEnabled reports whether a flag is on for the gate (as a release flag or a
// graduated one). Which flags one request sees is in its Decision (Features, HasFeature).
//
// Errors: for a name no flag can have, naming the value, the error EnableFeature returns for
// it: ErrInvalidFlag (empty, over 128 bytes, with whitespace, control, format or invisible
// characters), or ErrInvalidArgument (not UTF-8); ErrClosed.
func (g *Gate) IsFeatureEnabled(name string) (bool, error) {
	p, held := g.acquire()
	if p == nil {
		return false, errClosed
	}
	var on C.bool
	st := C.pgate_is_feature_enabled(p, (*C.uint8_t)(unsafe.StringData(name)), C.size_t(len(name)), &on)
	held.release()
	runtime.KeepAlive(g)
	switch st {
	case C.PGATE_STATUS_OK:
		return bool(on), nil
	case C.PGATE_STATUS_INVALID_FLAG, C.PGATE_STATUS_INVALID_ARGUMENT: // the library's call writes no message
		return false, &Error{Status: Status(st), Message: "invalid name = " + quoted(name) + ": " + notAFlagName}
	}
	return false, statusError("pgate_is_feature_enabled", st)
}

// Trigger is what started a rollback event.
type Trigger string

// The triggers of rollback events.
const (
	TriggerManual       Trigger = "manual"        // a host called Rollback
	TriggerAutomatic    Trigger = "automatic"     // the judge found the canary in breach of its SLO
	TriggerFlagDisabled Trigger = "flag_disabled" // a host disabled a flag (the environment did not change)
)

// RolledBack says what a rollback event rolled back.
type RolledBack string

// What rollback events roll back.
const (
	RolledBackRelease RolledBack = "release" // the release: the gate went back to Production
	RolledBackFlag    RolledBack = "flag"    // one feature flag, turned off
)

// RollbackEvent is one entry of a gate's rollback history.
type RollbackEvent struct {
	RolledBack     RolledBack  // the release or a flag
	Feature        string      // the specification's text: the environment ("Canary{50}") or the flag's name
	Reason         string      // why, with the judge's evidence for automatic rollbacks
	Time           time.Time   // when, by the gate's clock (millisecond resolution)
	Environment    Environment // the environment the gate was in before
	TrafficPercent float64     // the canary share before, when Environment is Canary
	Trigger        Trigger     // what started it
	Rules          Rules       // for an automatic rollback, the rules that fired
}

// rollbackEventJSON is the wire form of a RollbackEvent (pgate_rollback_history_json, and a
// rollback change's event in pgate_changes_json).
type rollbackEventJSON struct {
	RolledBack  RolledBack      `json:"rolled_back"`
	Feature     string          `json:"feature"`
	Reason      string          `json:"reason"`
	TimestampMS int64           `json:"timestamp_ms"`
	Environment environmentJSON `json:"environment"`
	Trigger     Trigger         `json:"trigger"`
	Rules       []string        `json:"rules"`
}

// event decodes the wire form; rule names this binding does not know are left out of Rules.
func (w rollbackEventJSON) event() RollbackEvent {
	var rules Rules
	for _, name := range w.Rules {
		for _, rn := range ruleNames {
			if rn.name == name {
				rules |= rn.rule
			}
		}
	}
	return RollbackEvent{
		RolledBack:     w.RolledBack,
		Feature:        w.Feature,
		Reason:         w.Reason,
		Time:           time.UnixMilli(w.TimestampMS),
		Environment:    w.Environment.Environment,
		TrafficPercent: w.Environment.TrafficPercent,
		Trigger:        w.Trigger,
		Rules:          rules,
	}
}

// parseHistory decodes the JSON array of pgate_rollback_history_json.
func parseHistory(doc string) ([]RollbackEvent, error) {
	var wire []rollbackEventJSON
	if err := json.Unmarshal([]byte(doc), &wire); err != nil {
		return nil, &Error{Status: StatusInvalidJSON, Message: "rollback history: " + err.Error()}
	}
	events := make([]RollbackEvent, len(wire))
	for i, w := range wire {
		events[i] = w.event()
	}
	return events, nil
}

// notAFlagName is why IsFeatureEnabled refuses a name, as every binding words it.
const notAFlagName = "not a flag name (1 to 128 bytes of UTF-8, no whitespace, control, format or invisible characters)"
