package promotiongates

/*
#include "promotion_gates.h"

// As in gate.go: the library keeps no pointer beyond the call and never calls back into Go.
#cgo noescape pgate_metrics_prometheus_gates
#cgo nocallback pgate_metrics_prometheus_gates
#cgo noescape pgate_latency_histograms_json
#cgo nocallback pgate_latency_histograms_json
*/
import "C"

import (
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"unsafe"
)

// PrometheusContentType is the content type of the Prometheus text exposition (format 0.0.4).
const PrometheusContentType = "text/plain; version=0.0.4; charset=utf-8"

// MetricsPrometheus returns the Prometheus text exposition (format 0.0.4) of the gates: each
// metric family once, one series per gate, labelled gate="<name>". A gate passed twice, or
// two gates of one name (whose series would repeat), is an error naming both positions. It
// reads the gates without side effects: a scrape never judges, so it may run as often as
// wanted.
func MetricsPrometheus(gates ...*Gate) (string, error) {
	first := make(map[*Gate]int, len(gates)) // each gate's first position
	for i, g := range gates {
		if g == nil {
			continue // closed: refused below
		}
		if j, seen := first[g]; seen {
			return "", &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
				"gates[%d] and gates[%d] are the same gate", j, i)}
		}
		first[g] = i
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
	for {
		for i, g := range gates {
			handles[i], holds[i] = g.acquire()
			if handles[i] == nil {
				releaseAll()
				return "", errClosed
			}
		}
		var n C.size_t
		st := C.pgate_metrics_prometheus_gates(unsafe.SliceData(handles), C.size_t(len(handles)),
			(*C.char)(unsafe.Pointer(unsafe.SliceData(buf))), C.size_t(len(buf)), &n)
		releaseAll()
		runtime.KeepAlive(gates)
		switch st {
		case C.PGATE_STATUS_OK:
			return string(buf[:n]), nil
		case C.PGATE_STATUS_BUFFER_TOO_SMALL:
			buf = make([]byte, int(n)+4096) // the text may grow between two calls
		case C.PGATE_STATUS_INVALID_ARGUMENT:
			return "", sameNames(gates, st)
		default:
			return "", statusError("pgate_metrics_prometheus_gates", st)
		}
	}
}

// sameNames explains the library's refusal st of gates of one name by their positions, as
// every binding words it; the bare status when no two names are the same.
func sameNames(gates []*Gate, st C.pgate_status) error {
	first := make(map[string]int, len(gates))
	for i, g := range gates {
		name, err := g.Name()
		if err != nil {
			break
		}
		if j, seen := first[name]; seen {
			return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
				"gates[%d] is named %q, as gates[%d] is: their series would repeat", i, name, j)}
		}
		first[name] = i
	}
	return statusError("pgate_metrics_prometheus_gates", st)
}

// MetricsPrometheus returns this gate's Prometheus text exposition (see the function
// MetricsPrometheus).
func (g *Gate) MetricsPrometheus() (string, error) { return MetricsPrometheus(g) }

// MetricsHandler serves the gates' Prometheus exposition (mount it at /metrics). A closed
// gate makes it answer 503 Service Unavailable.
func MetricsHandler(gates ...*Gate) http.Handler {
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

// LatencyHistograms returns each cohort's latency histogram of the judged window. It has no
// side effect on the gate.
func (g *Gate) LatencyHistograms() (LatencyHistograms, error) {
	var h LatencyHistograms
	doc, err := g.readJSON("pgate_latency_histograms_json", func(p *C.pgate_gate, buf *C.char, n C.size_t, out *C.size_t) C.pgate_status {
		return C.pgate_latency_histograms_json(p, buf, n, out)
	})
	if err != nil {
		return h, err
	}
	err = json.Unmarshal([]byte(doc), &h)
	return h, err
}
