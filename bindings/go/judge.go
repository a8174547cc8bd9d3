package promotiongates

// #include "promotion_gates.h"
import "C"

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// Recommendation is what the judge advises (pgate_recommendation).
type Recommendation uint32

// The judge's recommendations.
const (
	// Healthy: enough data, no rule fired, health score >= 0.9, and the canary shown not worse
	// than the stable version beyond the tolerated limits: promotable.
	Healthy Recommendation = C.PGATE_RECOMMENDATION_HEALTHY
	// Monitor: too little data, or a health score below 0.9 and no rule fired (a score below
	// 0.8 that the data are not yet sure of included).
	Monitor Recommendation = C.PGATE_RECOMMENDATION_MONITOR
	// Rollback: a rule fired (health_score fires once the score's upper confidence bound is
	// below 0.8): the gate rolls back, or would with auto rollback on.
	Rollback Recommendation = C.PGATE_RECOMMENDATION_ROLLBACK
	// NoData: the canary reported no outcome for no_data_ms while some were due; never
	// promotable.
	NoData Recommendation = C.PGATE_RECOMMENDATION_NO_DATA
)

// String returns "HEALTHY", "MONITOR", "ROLLBACK" or "NO_DATA".
func (r Recommendation) String() string {
	return enumName([]string{"HEALTHY", "MONITOR", "ROLLBACK", "NO_DATA"}, uint32(r), "Recommendation")
}

// Rules is a set of the judge's rules (bits of pgate_health.rules_fired).
type Rules uint32

// The judge's rules, one bit each.
const (
	RuleSLOCompliance      Rules = C.PGATE_RULE_SLO_COMPLIANCE       // compliance below slo_threshold
	RuleErrorRateMax       Rules = C.PGATE_RULE_ERROR_RATE_MAX       // error rate above max_error_rate
	RuleErrorRateVsStable  Rules = C.PGATE_RULE_ERROR_RATE_VS_STABLE // error rate above error_rate_ratio_limit x the stable version's
	RuleOverwhelmingErrors Rules = C.PGATE_RULE_OVERWHELMING_ERRORS  // errors improbable at any acceptable rate, before min_samples
	RuleP99VsStable        Rules = C.PGATE_RULE_P99_VS_STABLE        // p99 above the stable version's x p99_ratio_limit
	RuleP99Budget          Rules = C.PGATE_RULE_P99_BUDGET           // p99 above p99_budget_ms
	RuleHealthScore        Rules = C.PGATE_RULE_HEALTH_SCORE         // health score surely below 0.8 (its upper bound is)
	RuleErrorBurst         Rules = C.PGATE_RULE_ERROR_BURST          // errors in a burst span improbable given the stable version's
	RuleErrorsOverStage    Rules = C.PGATE_RULE_ERRORS_OVER_STAGE    // over the stage, errors surely above the stable version's beyond the margin
	RuleLatencyShift       Rules = C.PGATE_RULE_LATENCY_SHIFT        // over the stage, latencies surely slower than tolerated (Mann-Whitney)
	RuleNoData             Rules = C.PGATE_RULE_NO_DATA              // no canary outcome for no_data_ms (holds; never fired)
)

var ruleNames = []struct {
	rule Rules
	name string
}{
	{RuleSLOCompliance, "slo_compliance"},
	{RuleErrorRateMax, "error_rate_max"},
	{RuleErrorRateVsStable, "error_rate_vs_stable"},
	{RuleOverwhelmingErrors, "overwhelming_errors"},
	{RuleP99VsStable, "p99_vs_stable"},
	{RuleP99Budget, "p99_budget"},
	{RuleHealthScore, "health_score"},
	{RuleErrorBurst, "error_burst"},
	{RuleErrorsOverStage, "errors_over_stage"},
	{RuleLatencyShift, "latency_shift"},
	{RuleNoData, "no_data"},
}

// Has reports whether every rule of r2 is in r.
func (r Rules) Has(r2 Rules) bool { return r&r2 == r2 }

// String lists the rules, e.g. "error_rate_max|overwhelming_errors"; "none" for no rule.
func (r Rules) String() string {
	if r == 0 {
		return "none"
	}
	var parts []string
	for _, rn := range ruleNames {
		if r&rn.rule != 0 {
			parts = append(parts, rn.name)
			r &^= rn.rule
		}
	}
	if r != 0 {
		parts = append(parts, "0x"+strconv.FormatUint(uint64(r), 16))
	}
	return strings.Join(parts, "|")
}

// Health is the canary's health in the current window (pgate_health plus the evidence line).
type Health struct {
	Stage               uint64         // the stage judged
	Environment         Environment    // the environment judged
	TrafficPercent      float64        // the canary share (100 in Staging, 0 in Production)
	CanaryRequests      uint64         // requests to the new version in the window
	ProductionRequests  uint64         // requests to the stable version in the window
	CanaryErrorRate     float64        // the new version's error rate
	ProductionErrorRate float64        // the stable version's error rate
	CanaryP99           time.Duration  // the new version's p99 latency
	ProductionP99       time.Duration  // the stable version's p99 latency
	CanaryCompliance    float64        // share of canary requests that succeeded within the latency target
	HealthScore         float64        // 1.0 minus the penalties, in 0..=1
	Recommendation      Recommendation // HEALTHY, MONITOR, ROLLBACK or NO_DATA
	RulesFired          Rules          // the rules that fired
	SufficientData      bool           // at least min_samples canary samples in the window (latencies after the stage's warm-up), or the stage shows the canary not worse
	Evidence            string         // the judge's evidence line: samples, rates, p99s, findings
}

// evidenceCapacity is the evidence buffer's size, the header's PGATE_EVIDENCE_CAPACITY, which
// always holds the judge's evidence line (the library cuts a longer one), so that one
// judgement is enough: a call made again with a larger buffer would judge again.
const evidenceCapacity = C.PGATE_EVIDENCE_CAPACITY

// Health is MonitorHealth: it judges the canary now and may roll it back.
//
// Deprecated: call MonitorHealth to judge (the same call), or ReadHealth for a read whose
// judgement never rolls back (a status page, a metrics scrape; see ReadHealth).
func (g *Gate) Health() (Health, error) {
	return g.MonitorHealth()
}

// health reads the health through pgate_monitor_health (judge) or pgate_read_health, the
// evidence into a buffer of evidenceCapacity bytes. Should the library ever ask for more (it
// promises it never does), the call is not made again, which would judge again: the error
// says so (evidenceTooLong).
func (g *Gate) health(judge bool) (Health, error) {
	op := "pgate_read_health"
	if judge {
		op = "pgate_monitor_health"
	}
	var buf [evidenceCapacity]byte
	var h Health
	var n int
	var st Status
	var err error
	if healthStub == nil {
		h, n, st, err = g.callHealth(buf[:], judge) // a direct call: buf stays on the stack
	} else {
		h, n, st, err = stubbedHealth(g, buf[:], judge)
	}
	switch {
	case err != nil:
		return Health{}, err
	case st == StatusBufferTooSmall:
		return Health{}, evidenceTooLong(op, n)
	case st != StatusOK:
		return Health{}, &Error{Status: st, Message: op + " failed"} // as statusError says it
	}
	h.Evidence = string(buf[:n])
	return h, nil
}

// evidenceTooLong is the refusal of op's evidence line of n bytes, longer than the
// PGATE_EVIDENCE_CAPACITY the header promises always holds it: an ErrBufferTooSmall naming
// both, rather than a second call, which would judge again.
func evidenceTooLong(op string, n int) error {
	return &Error{Status: StatusBufferTooSmall, Message: fmt.Sprintf(
		"%s: an evidence line of %d bytes, longer than PGATE_EVIDENCE_CAPACITY (%d bytes) holds: "+
			"a library newer than this binding?", op, n, evidenceCapacity)}
}

// healthStub, when a test sets it, stands in for callHealth (the library never asks for more
// than the buffer it is given). nil outside tests, so that health calls callHealth directly:
// a buffer passed to a function variable would escape to the heap on every call.
var healthStub func(g *Gate, buf []byte, judge bool) (Health, int, Status, error)

// stubbedHealth calls healthStub with a heap buffer of buf's length and copies what it wrote
// into buf, which therefore never reaches the function variable and stays on health's stack.
func stubbedHealth(g *Gate, buf []byte, judge bool) (Health, int, Status, error) {
	heap := make([]byte, len(buf))
	h, n, st, err := healthStub(g, heap, judge)
	copy(buf, heap)
	return h, n, st, err
}

// callHealth makes one pgate_monitor_health (judge) or pgate_read_health call with the
// evidence buffer buf.
func (g *Gate) callHealth(buf []byte, judge bool) (Health, int, Status, error) {
	p, held := g.acquire()
	if p == nil {
		return Health{}, 0, 0, errClosed
	}
	var ch C.pgate_health
	var n C.size_t
	evidence := (*C.char)(unsafe.Pointer(unsafe.SliceData(buf)))
	var st C.pgate_status
	if judge {
		st = C.pgate_monitor_health(p, &ch, evidence, C.size_t(len(buf)), &n)
	} else {
		st = C.pgate_read_health(p, &ch, evidence, C.size_t(len(buf)), &n)
	}
	held.release()
	runtime.KeepAlive(g)
	return Health{
		Stage:               uint64(ch.stage),
		Environment:         Environment(ch.environment),
		TrafficPercent:      float64(ch.traffic_percent),
		CanaryRequests:      uint64(ch.canary_requests),
		ProductionRequests:  uint64(ch.production_requests),
		CanaryErrorRate:     float64(ch.canary_error_rate),
		ProductionErrorRate: float64(ch.production_error_rate),
		CanaryP99:           nanos(ch.canary_p99_ns),
		ProductionP99:       nanos(ch.production_p99_ns),
		CanaryCompliance:    float64(ch.canary_compliance),
		HealthScore:         float64(ch.health_score),
		Recommendation:      Recommendation(ch.recommendation),
		RulesFired:          Rules(ch.rules_fired),
		SufficientData:      bool(ch.sufficient_data),
	}, int(n), Status(st), nil
}

// nanos converts a latency in nanoseconds, saturating at the largest Duration.
func nanos(ns C.uint64_t) time.Duration {
	if uint64(ns) > uint64(1<<63-1) {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(ns)
}

// CheckSLO reports whether the version under judgement meets its SLO: enough samples,
// compliance at or above slo_threshold and no rule fired (false with too little data). Like
// MonitorHealth, it may roll a failing canary back.
func (g *Gate) CheckSLO() (bool, error) {
	return g.readBool("pgate_check_slo", func(p *C.pgate_gate) (answer C.bool, st C.pgate_status) {
		st = C.pgate_check_slo(p, &answer)
		return answer, st
	})
}
