package promotiongates_test

import (
	"fmt"
	"log"
	"strings"
	"sync/atomic"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

// A host of several processes counts the four outcome counters once for all of them and serves
// those counts in place of the gate's own, so that every process answers the same counters.
// Here the shared counts are atomics of one process; a real host keeps them in memory its
// processes share.
func ExampleMetricsPrometheusCounted() {
	gate, err := promotiongates.New(`{"gate": "checkout", "overrides": {"header": "X-Canary"}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	var shared struct{ late, foreign, forced, ignored atomic.Uint64 }

	// Each request: count what routing ignored and what recording dropped or set apart.
	value := "yes" // the X-Canary header's value
	d, _ := gate.RouteForcedString("user-42", value, true)
	if d.ForcedBy() == promotiongates.NotForced {
		shared.ignored.Add(1) // a forcing value ignored
	}
	switch r, _ := gate.Record(d, true, 12*time.Millisecond); r {
	case promotiongates.Late:
		shared.late.Add(1)
	case promotiongates.Foreign:
		shared.foreign.Add(1)
	case promotiongates.Forced:
		shared.forced.Add(1)
	}

	// The /metrics handler, whichever process serves it: all four replace the gate's own.
	text, err := promotiongates.MetricsPrometheusCounted([]promotiongates.OutcomeCounts{{
		LateOutcomes:          shared.late.Load(),
		ForeignOutcomes:       shared.foreign.Load(),
		ForcedOutcomes:        shared.forced.Load(),
		IgnoredOverrideValues: shared.ignored.Load(),
	}}, gate)
	if err != nil {
		log.Fatal(err)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "promotion_ignored_override_values_total{") {
			fmt.Println(line)
		}
	}
	// Output: promotion_ignored_override_values_total{gate="checkout"} 1
}
