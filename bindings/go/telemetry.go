package promotiongates

/*
#include "promotion_gates.h"

// As in gate.go: the library keeps no pointer beyond the call and never calls back into Go.
#cgo noescape pgate_metrics_prometheus_gates
#cgo nocallback pgate_metrics_prometheus_gates
#cgo noescape pgate_metrics_prometheus_counted
#cgo nocallback pgate_metrics_prometheus_counted
#cgo noescape pgate_latency_histograms_json
#cgo nocallback pgate_latency_histograms_json
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"slices"
	"unsafe"
)

// PrometheusContentType is the content type of the Prometheus text exposition (format 0.0.4).
const PrometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

// MetricsPrometheus returns the Prometheus text exposition (format 0.0.4) of the gates: each
// metric family once, one series per gate, labelled gate="<name>". A gate passed twice, or
// two gates of one name (whose series would repeat), is an error naming both positions; a nil
// or closed gate is an ErrClosed naming its position ("gates[1] is closed"). It
// judges nothing, so a scrape may run as often as wanted (as after ReadHealth, an evaluation
// the record path asked for meanwhile is made after the read, and may roll back).
func MetricsPrometheus(gates ...*Gate) (string, error) {
	return exposition(gates, nil, "pgate_metrics_prometheus_gates")
}

// OutcomeCounts holds the four outcome counters of a gate's exposition as a host of several
// processes counts them, once for all its processes (C pgate_outcome_counts; see
// MetricsPrometheusCounted).
type OutcomeCounts struct {
	// LateOutcomes is promotion_late_outcomes_total: outcomes Record dropped as Late.
	LateOutcomes uint64
	// ForeignOutcomes is promotion_foreign_outcomes_total: outcomes Record dropped as Foreign.
	ForeignOutcomes uint64
	// ForcedOutcomes is promotion_forced_outcomes_total: outcomes Record counted as Forced,
	// in neither cohort.
	ForcedOutcomes uint64
	// IgnoredOverrideValues is promotion_ignored_override_values_total: forcing values
	// RouteForced ignored (its decision's ForcedBy is NotForced; a canaryproxy.Proxy tells
	// each to its Options.OnIgnoredOverrideValue).
	IgnoredOverrideValues uint64
}

// MetricsPrometheusCounted is MetricsPrometheus with the host's counts counts[i] in place of
// the four outcome counters of gates[i] (pgate_metrics_prometheus_counted); every other series
// is the gate's own. Each process of a host of several (the workers of a pre-forking server,
// each with its gates) has counters of its own, and a scrape reaching another process would
// read a lower count, a counter reset to Prometheus: such a host counts each outcome once, in
// memory its processes share, and serves those counts, so every process answers the same.
//
//	counts := OutcomeCounts{
//		LateOutcomes:          atomic.LoadUint64(&shared.late),
//		ForeignOutcomes:       atomic.LoadUint64(&shared.foreign),
//		ForcedOutcomes:        atomic.LoadUint64(&shared.forced),
//		IgnoredOverrideValues: atomic.LoadUint64(&shared.ignored),
//	} // all four replace the gate's own: a zero here is served as 0
//	text, err := MetricsPrometheusCounted([]OutcomeCounts{counts}, gate)
//	// `promotion_forced_outcomes_total{gate="checkout"} 7` when shared.forced is 7
//
// counts must hold one OutcomeCounts per gate, else an ErrInvalidArgument error names both
// lengths before the library is called; the gates are refused as MetricsPrometheus refuses
// them.
func MetricsPrometheusCounted(counts []OutcomeCounts, gates ...*Gate) (string, error) {
	if len(counts) != len(gates) {
		return "", &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
			"invalid len(counts) = %d: one OutcomeCounts per gate (gates: %d)", len(counts), len(gates))}
	}
	c := make([]C.pgate_outcome_counts, len(counts))
	for i, n := range counts {
		c[i] = C.pgate_outcome_counts{
			late_outcomes:           C.uint64_t(n.LateOutcomes),
			foreign_outcomes:        C.uint64_t(n.ForeignOutcomes),
			forced_outcomes:         C.uint64_t(n.ForcedOutcomes),
			ignored_override_values: C.uint64_t(n.IgnoredOverrideValues),
		}
	}
	return exposition(gates, c, "pgate_metrics_prometheus_counted")
}

// exposition is the exposition of the gates, with counts (one per gate) in place of their
// own outcome counters, or their own (nil); op names the C call in errors.
func exposition(gates []*Gate, counts []C.pgate_outcome_counts, op string) (string, error) {
	if err := sameGate(gates); err != nil {
		return "", err
	}
	buf := make([]byte, 16384)
	handles := make([]*C.pgate_gate, len(gates))
	holds := make([]*inFlight, len(gates))
	releaseAll := func() {
		for i, held := range holds {
			held.release()
			holds[i] = nil
		}
	}
	asked := 0
	for range textTries { // at most textTries, as readText
		for i, g := range gates {
			handles[i], holds[i] = g.acquire()
			if handles[i] == nil {
				releaseAll()
				return "", closedAt(gates, i)
			}
		}
		var n C.size_t
		var st C.pgate_status
		if counts == nil {
			st = C.pgate_metrics_prometheus_gates(unsafe.SliceData(handles), C.size_t(len(handles)),
				(*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n)
		} else {
			st = C.pgate_metrics_prometheus_counted(unsafe.SliceData(handles),
				unsafe.SliceData(counts), C.size_t(len(handles)),
				(*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n)
		}
		releaseAll()
		runtime.KeepAlive(gates)
		switch st {
		case C.PGATE_STATUS_OK:
			return string(buf[:n]), nil
		case C.PGATE_STATUS_BUFFER_TOO_SMALL:
			asked = int(n)
			buf = make([]byte, asked+1+asked/8+textSlack) // the text may grow between two calls
		case C.PGATE_STATUS_INVALID_ARGUMENT:
			return "", sameNames(gates, st, op)
		default:
			return "", statusError(op, st)
		}
	}
	return "", textGrew(op, asked)
}

// closedAt is the refusal of gates[i], nil or closed: errClosed's status (errors.Is(err,
// ErrClosed) holds) with its position, as the other refusals of the gates name theirs.
func closedAt(gates []*Gate, i int) error {
	what := "closed"
	if gates[i] == nil {
		what = "nil"
	}
	return &Error{Status: StatusInvalidHandle, Message: fmt.Sprintf("gates[%d] is %s", i, what)}
}

// sameGate refuses a gate passed twice (its series would repeat), naming both positions; nil
// gates are passed over (the exposition refuses them).
func sameGate(gates []*Gate) error {
	first := make(map[*Gate]int, len(gates)) // each gate's first position
	for i, g := range gates {
		if g == nil {
			continue
		}
		if j, seen := first[g]; seen {
			return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
				"gates[%d] and gates[%d] are the same gate", j, i)}
		}
		first[g] = i
	}
	return nil
}

// sameName refuses two gates of one name (their series would repeat) by their positions, as
// every binding words it; gates whose name cannot be read (nil or closed) are passed over.
func sameName(gates []*Gate) error {
	first := make(map[string]int, len(gates))
	for i, g := range gates {
		name, err := g.Name()
		if err != nil {
			continue
		}
		if j, seen := first[name]; seen {
			return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
				"gates[%d] is named %q, as gates[%d] is: their series would repeat", i, name, j)}
		}
		first[name] = i
	}
	return nil
}

// sameNames explains the library's refusal st of gates of one name by their positions; the
// bare status when no two names are the same.
func sameNames(gates []*Gate, st C.pgate_status, op string) error {
	if err := sameName(gates); err != nil {
		return err
	}
	return statusError(op, st)
}

// MetricsPrometheus returns this gate's Prometheus text exposition (see the function
// MetricsPrometheus).
func (g *Gate) MetricsPrometheus() (string, error) { return MetricsPrometheus(g) }

// MetricsPrometheusCounted returns this gate's Prometheus text exposition with the host's
// counts in place of its outcome counters (see the function MetricsPrometheusCounted).
func (g *Gate) MetricsPrometheusCounted(counts OutcomeCounts) (string, error) {
	return MetricsPrometheusCounted([]OutcomeCounts{counts}, g)
}

// MetricsHandler serves the gates' Prometheus exposition (mount it at /metrics). A nil or
// closed gate makes it answer 503 Service Unavailable. A gate passed twice, or two gates of
// one name, is a mistake no later request can mend (a gate's name never changes: a config
// swap that renames it is refused): the handler finds it once, when it is built, and then
// answers every request 500 Internal Server Error with the refusal, which names both
// positions. A host that would rather not start so calls MetricsPrometheus(gates...) once at
// startup and stops on its error (it refuses the same gates, and a nil or closed one). The
// handler serves the gates as given at its build: it keeps a copy of the list, so a later
// write to the caller's slice (MetricsHandler(gs...)) changes nothing it serves.
func MetricsHandler(gates ...*Gate) http.Handler {
	gates = slices.Clone(gates)
	err := sameGate(gates)
	if err == nil {
		err = sameName(gates)
	}
	if err != nil {
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		})
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		text, err := MetricsPrometheus(gates...)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", PrometheusContentType)
		_, _ = w.Write([]byte(text))
	})
}

// LatencyHistograms holds each cohort's latency histogram of the judged window in
// HdrHistogram's compressed V2 form, base64 (Encoding "hdrhistogram-v2-deflate-base64"),
// values in microseconds: decode, merge and plot them with an HdrHistogram port (e.g.
// github.com/HdrHistogram/hdrhistogram-go's Decode).
type LatencyHistograms struct {
	Encoding string `json:"encoding"`
	Unit     string `json:"unit"`
	Canary   string `json:"canary"`
	Stable   string `json:"stable"`
}

// LatencyHistograms returns each cohort's latency histogram of the judged window. It judges
// nothing (as after ReadHealth, an evaluation the record path asked for meanwhile is made after
// the read, and may roll back). A document the binding cannot read (from a library newer than
// it) is an ErrInvalidJSON, as ChangesSince refuses one.
func (g *Gate) LatencyHistograms() (LatencyHistograms, error) {
	doc, err := g.readJSON("pgate_latency_histograms_json", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_latency_histograms_json(p, buf, n, out)
	})
	if err != nil {
		return LatencyHistograms{}, err
	}
	return parseHistograms(doc)
}

// parseHistograms decodes the JSON object of pgate_latency_histograms_json; a document it
// cannot read is an ErrInvalidJSON naming what it read, as parseChanges refuses one.
func parseHistograms(doc string) (LatencyHistograms, error) {
	var h LatencyHistograms
	if err := json.Unmarshal([]byte(doc), &h); err != nil {
		return LatencyHistograms{}, &Error{Status: StatusInvalidJSON, Message: "latency histograms: " + err.Error()}
	}
	return h, nil
}
