package promotiongates

/*
#include "promotion_gates.h"

#cgo noescape pgate_state
#cgo nocallback pgate_state
#cgo noescape pgate_slo_json
#cgo nocallback pgate_slo_json
#cgo noescape pgate_swap_slo
#cgo nocallback pgate_swap_slo
#cgo noescape pgate_read_health
#cgo nocallback pgate_read_health
*/
import "C"

import (
	"encoding/json"
	"runtime"
	"time"
)

// State is where a gate stands (pgate_state): read without judging, no side effect.
type State struct {
	Environment    Environment // canary, staging or production
	TrafficPercent float64     // the canary share: 100 in Staging, 0 in Production
	Stage          uint64      // the release stage; grows at each write that starts one (the Rust crate's StageId lists them)
}

// State reads where the gate stands now. It judges nothing and never rolls back.
func (g *Gate) State() (State, error) {
	p, held := g.acquire()
	if p == nil {
		return State{}, errClosed
	}
	var env C.pgate_environment
	var percent C.double
	var stage C.uint64_t
	st := C.pgate_state(p, &env, &percent, &stage)
	held.release()
	runtime.KeepAlive(g)
	if st != C.PGATE_STATUS_OK {
		return State{}, statusError("pgate_state", st)
	}
	return State{Environment(env), float64(percent), uint64(stage)}, nil
}

// SLO returns the SLO policy the gate judges with now (pgate_slo_json, decoded).
func (g *Gate) SLO() (SLO, error) {
	doc, err := g.readJSON("pgate_slo_json", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_slo_json(p, buf, n, out)
	})
	if err != nil {
		return SLO{}, err
	}
	var slo SLO
	if err := slo.UnmarshalJSON([]byte(doc)); err != nil {
		return SLO{}, err
	}
	return slo, nil
}

// SwapSLO replaces the gate's SLO policy with a JSON SloConfig (as New's sloJSON: missing
// fields take the defaults, so {} swaps in the defaults; but "", which New reads as the
// defaults, is refused: a swap's empty text is taken for a mistake) and keeps the gate's
// state: its stage, environment, flags, the outcomes in the window and the rollback history.
// The judge uses the new policy from its next evaluation; outcomes already recorded keep the
// compliance they were counted with. The swap is a change of kind ChangeConfig. With a state
// store, the SLO stays this process's own (the store does not keep it).
//
// Errors: ErrInvalidJSON (malformed JSON, an unknown field, or "": "invalid JSON SLO config:
// empty document (pass {} for the defaults)"), ErrInvalidConfig (the message names the field
// and value); the gate is unchanged then.
func (g *Gate) SwapSLO(sloJSON string) error {
	err := g.textCall("pgate_swap_slo", sloJSON, func(p *C.pgate_gate, doc *C.uint8_t, n C.size_t, cerr **C.pgate_error) C.pgate_status {
		return C.pgate_swap_slo(p, doc, n, cerr)
	})
	return emptyRefused(err, sloJSON, "SLO config", "pass {} for the defaults")
}

// UnmarshalJSON reads the library's JSON form (Gate.SLO's source) as the library reads it.
// Missing fields take the library's defaults, as in the library; a field SLO does not know is
// refused (as the library refuses it) rather than dropped, so a document of a newer library is
// not swapped back without it, and so are a key not in its exact case, a field given twice,
// null for a field that is not optional (only p99_budget_ms is) and a value of another type:
// an ErrInvalidJSON in the library's words, without the position the library adds
// ("invalid JSON SLO config: min_samples: invalid type: floating point `1.5`, expected u64"),
// and so is a duration the library does not read as one: negative, longer than a Rust
// Duration holds, above 0 yet below its nanosecond ("invalid JSON SLO config: warm_up_ms: -5
// is not a duration in milliseconds (finite, not negative)"). A duration longer than a
// time.Duration holds (about 9.2e12 ms, far beyond any the library takes) is an
// ErrInvalidConfig naming the field and the value, as the library's validation refuses it, and
// so is a p99_budget_ms of 0 (the library's refusal, "invalid p99_budget_ms = 0: a latency
// above 0 and below ..."): P99Budget's 0 means none, so it would be written back as null.
// Other values the library reads but refuses (a latency_target_ms of 0) are New's and
// SwapSLO's to refuse. A document longer than the library's MAX_DOCUMENT_BYTES (8 MiB) is an
// ErrInvalidConfig naming the field document, unread, as the library refuses it; bytes that
// are not UTF-8 and \u escapes that are no character are refused as Config.UnmarshalJSON
// refuses them (naming slo_json), and what json.Unmarshal checks before calling UnmarshalJSON
// is as there.
// Durations are rounded to the nanosecond as the library rounds them (to the nearest, ties to
// even). A refused document leaves s as it was.
func (s *SLO) UnmarshalJSON(data []byte) error {
	d := DefaultSLO()
	w := sloJSON{
		LatencyTargetMS:          millis(d.LatencyTarget),
		MaxErrorRate:             d.MaxErrorRate,
		ErrorRateRatioLimit:      d.ErrorRateRatioLimit,
		P99RatioLimit:            d.P99RatioLimit,
		MinSamples:               d.MinSamples,
		Significance:             d.Significance,
		OverwhelmingSignificance: d.OverwhelmingSignificance,
		EvaluationIntervalMS:     millis(d.EvaluationInterval),
		ErrorRateTolerance:       d.ErrorRateTolerance,
		LatencyShiftLimit:        d.LatencyShiftLimit,
		LatencyToleranceMS:       millis(d.LatencyTolerance),
		WarmUpMS:                 millis(d.WarmUp),
		NoDataMS:                 millis(d.NoDataAfter),
		PromotionSignificance:    d.PromotionSignificance,
		PromotionEvidence:        d.PromotionEvidence,
	}
	if err := readDocument(data, sloDocument, "SloConfig", &w); err != nil {
		return err
	}
	read := SLO{
		MaxErrorRate:             w.MaxErrorRate,
		ErrorRateRatioLimit:      w.ErrorRateRatioLimit,
		P99RatioLimit:            w.P99RatioLimit,
		MinSamples:               w.MinSamples,
		Significance:             w.Significance,
		OverwhelmingSignificance: w.OverwhelmingSignificance,
		ErrorRateTolerance:       w.ErrorRateTolerance,
		LatencyShiftLimit:        w.LatencyShiftLimit,
		PromotionSignificance:    w.PromotionSignificance,
		PromotionEvidence:        w.PromotionEvidence,
	}
	durations := []struct {
		field string
		ms    *millisJSON
		into  *time.Duration
	}{
		{"latency_target_ms", &w.LatencyTargetMS, &read.LatencyTarget},
		{"p99_budget_ms", w.P99BudgetMS, &read.P99Budget}, // nil: no budget
		{"evaluation_interval_ms", &w.EvaluationIntervalMS, &read.EvaluationInterval},
		{"latency_tolerance_ms", &w.LatencyToleranceMS, &read.LatencyTolerance},
		{"warm_up_ms", &w.WarmUpMS, &read.WarmUp},
		{"no_data_ms", &w.NoDataMS, &read.NoDataAfter},
	}
	for _, d := range durations {
		if d.ms == nil {
			continue
		}
		var err error
		if *d.into, err = d.ms.duration(d.field); err != nil {
			return err
		}
	}
	if w.P99BudgetMS != nil && read.P99Budget == 0 {
		return noBudgetGivenAsZero(data)
	}
	*s = read
	return nil
}

// noBudgetGivenAsZero refuses a p99_budget_ms given as 0 (or -0, 0.0) in the SLO document
// data as the library's validation refuses it: the binding's 0 means no budget, so it would be
// written back as null, a document the library takes in place of one it refuses. The error is
// the library's own, its refusal of a gate made of the default config and that budget as data
// writes it, so its words (the value as written, and the edge of the histogram it names) are
// the library's as it is now.
func noBudgetGivenAsZero(data []byte) error {
	written := json.RawMessage("0")
	var fields map[string]json.RawMessage
	if json.Unmarshal(data, &fields) == nil && fields["p99_budget_ms"] != nil {
		written = fields["p99_budget_ms"]
	}
	g, err := New("", `{"p99_budget_ms": `+string(written)+`}`)
	if err != nil {
		return err
	}
	// A library that takes a budget of 0: the binding still cannot tell it from none.
	_ = g.Close()
	return &Error{Status: StatusInvalidConfig, Message: "invalid p99_budget_ms = 0: a latency above 0, " +
		"or null for none (the binding's P99Budget of 0 means none)"}
}

// ReadHealth reads the canary's health over the current window, as MonitorHealth judges it,
// without side effects of its own (pgate_read_health): its judgement never rolls back and
// leaves the window as it was, so a status page or a metrics scrape may call it as often as
// it likes. A rule may show as fired here; the gate acts on it at its next judgement (the
// record path judges by itself). An evaluation the record path asked for while the read held
// the window is made right after it, and may roll the canary back there, as the record path
// would have.
func (g *Gate) ReadHealth() (Health, error) {
	return g.health(false)
}

// MonitorHealth judges the canary now and returns its health (pgate_monitor_health). Like the
// Rust monitor_canary_health, it rolls a canary back when a rule fired and
// auto_rollback_enabled; the health returned is the one judged (after an automatic rollback it
// still shows the canary's numbers and ROLLBACK). ReadHealth reads the same without judging.
//
// The evidence is copied into a buffer of PGATE_EVIDENCE_CAPACITY (4096) bytes on the stack,
// which the library promises always holds it (it cuts a longer line with ...), so the call
// judges once. Should a library ever write a longer line, the call returns an
// ErrBufferTooSmall rather than judge again.
func (g *Gate) MonitorHealth() (Health, error) {
	return g.health(true)
}
