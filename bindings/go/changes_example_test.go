package promotiongates_test

import (
	"context"
	"fmt"
	"log"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

func ExampleGate_Changes() {
	gate, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := gate.Changes(ctx, 10*time.Millisecond)

	_ = gate.Rollback("bad deploy") // or the judge, with the rules that fired
	c := <-changes
	fmt.Println(c.Sequence, c.Kind, c.From, "->", c.To, c.Rollback.Trigger, c.Rollback.Reason)
	// Output: 1 rollback canary -> production manual bad deploy
}

func ExampleGate_SwapSLO() {
	gate, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	before, _ := gate.State()
	if err := gate.SwapSLO(`{"latency_target_ms": 250, "max_error_rate": 0.02}`); err != nil {
		log.Fatal(err)
	}
	slo, _ := gate.SLO()
	after, _ := gate.State()
	fmt.Println(slo.LatencyTarget, slo.MaxErrorRate, after == before)
	// Output: 250ms 0.02 true
}
