package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
	"github.com/promotion-gates/promotion-gates/bindings/go/canaryproxy"
	"github.com/promotion-gates/promotion-gates/bindings/go/internal/fnvsplit"
)

// runBench serves the two variants bindings/go/bench.sh compares, with no request log and
// nothing else on the request path: A, the FNV-split baseline (internal/fnvsplit: the same
// ReverseProxys, the same key, the X-Request-Id header else the client's address, split by
// FNV-1a, recording nothing), on -a; B, canaryproxy.Proxy over the gate of -config (or, with
// -control, a second FNV-split proxy: the A/A noise floor), on -b. Either address may be left
// out, to serve one variant per process; the gate is made unless -control, also by a process
// serving A alone (where it routes nothing), so that two processes differ only by their
// handlers. Both split -percent % to the canary: the gate's canary share must be that
// (checked at start). Each variant has its own connection pool to the upstreams. It writes
// the gate's state to standard error at start and, on SIGTERM or SIGINT, at exit ("bench:
// gate at exit: environment canary, stage 1, canary share 20 %"), then stops the CPU profile
// of -cpuprofile and shuts the servers down.
func runBench(args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	addrA := fs.String("a", "", "address of variant A, the FNV-split proxy (empty: not served)")
	addrB := fs.String("b", "", "address of variant B, the gate's proxy (empty: not served)")
	control := fs.Bool("control", false, "B is a second FNV-split proxy (the A/A control)")
	percent := fs.Float64("percent", 20, "the canary share of both variants, in %")
	configPath := fs.String("config", "", "the gate's config document")
	stableURL := fs.String("stable", "", "URL of the stable upstream")
	canaryURL := fs.String("canary", "", "URL of the canary upstream")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addrA == "" && *addrB == "" {
		return errors.New("bench: neither -a nor -b is set: nothing to serve")
	}
	stable, canary, err := upstreamURLs(*stableURL, *canaryURL)
	if err != nil {
		return err
	}
	baseline := func() http.Handler {
		return fnvsplit.New(stable, canary, upstreamTransport(), *percent,
			canaryproxy.DefaultKeyHeader, canaryproxy.ClientAddress)
	}
	var servers []*http.Server
	if *addrA != "" {
		servers = append(servers, &http.Server{Addr: *addrA, Handler: baseline()})
	}
	var gate *promotiongates.Gate
	if !*control { // also when serving A alone: two processes then differ only by their handlers
		gate, err = benchGate(*configPath, *percent)
		if err != nil {
			return err
		}
		defer gate.Close()
	}
	if *addrB != "" {
		var b http.Handler
		if *control {
			b = baseline()
		} else {
			b, err = canaryproxy.New(canaryproxy.Options{
				Gate: gate, Stable: stable, Canary: canary, Transport: upstreamTransport(),
			})
			if err != nil {
				return err
			}
		}
		servers = append(servers, &http.Server{Addr: *addrB, Handler: b})
	}

	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	failed := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				failed <- err
			}
		}()
	}
	select {
	case <-ctx.Done():
	case err = <-failed:
	}
	if gate != nil {
		logState(gate, "exit")
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	return err
}

// benchGate makes the gate of the config document at path and checks that its canary share
// is percent.
func benchGate(path string, percent float64) (*promotiongates.Gate, error) {
	config, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	gate, err := promotiongates.New(string(config), "")
	if err != nil {
		return nil, err
	}
	state, err := gate.State()
	if err == nil && state.TrafficPercent != percent {
		err = fmt.Errorf("bench: the gate of %s routes %g %% to the canary, -percent is %g", path, state.TrafficPercent, percent)
	}
	if err != nil {
		_ = gate.Close()
		return nil, err
	}
	logState(gate, "start")
	return gate, nil
}

// logState writes where the gate stands to standard error.
func logState(gate *promotiongates.Gate, when string) {
	state, err := gate.State()
	if err != nil {
		log.Printf("bench: gate at %s: %v", when, err)
		return
	}
	log.Printf("bench: gate at %s: environment %v, stage %d, canary share %g %%",
		when, state.Environment, state.Stage, state.TrafficPercent)
}

// upstreamTransport is one variant's own connection pool to the upstreams, keeping up to 64
// idle connections per upstream (http.DefaultTransport keeps 2: under 32 concurrent clients
// it would open and close upstream connections all the time, and measure that).
func upstreamTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 128
	t.MaxIdleConnsPerHost = 64
	return t
}
