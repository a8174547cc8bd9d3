// Command e2e is the program bindings/go/e2e.sh and bindings/go/bench.sh run: a reverse
// proxy on the canaryproxy package, or the two upstream servers it proxies to, or the two
// proxies the benchmark compares, all on loopback addresses.
//
//	e2e proxy -listen ADDR -admin ADDR -config FILE -stable URL -canary URL -log FILE
//	e2e upstreams -stable ADDR -canary ADDR -fail-file FILE
//	e2e bench [-a ADDR] [-b ADDR] [-control] -config FILE -stable URL -canary URL [-cpuprofile FILE]
//
// proxy makes a gate from the config document FILE (with its "store", a restarted proxy
// starts from the stored state), serves canaryproxy.Proxy on -listen, and the gate's
// read-only status (/gate/status: {"pid", "environment", "stage"}) and Prometheus
// exposition (/metrics) on -admin. It writes one line per proxied request to -log,
// "<pid> <version> <status> <forced> <key>" (version canary or stable: the upstream it was
// sent to; status 0 when the client went away before an answer (the upstreams never answer
// 502 themselves); forced 1 when an override
// forced it, by the gate's decision; key the routing key), and one line per state change of the gate to standard
// error ("change rollback from canary to production (origin this_gate): <reason>"). SIGTERM or SIGINT stop it: the
// servers shut down, the log is flushed and the gate closed.
//
// upstreams serves the stable upstream (always 200, body "stable") and the canary upstream
// (200, body "canary"; 500 while the file -fail-file exists, and 500 after a second on the
// path /slow: a canary a client may give up on).
//
// bench serves the FNV-split baseline on -a and canaryproxy.Proxy on -b (see runBench).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
	"github.com/promotion-gates/promotion-gates/bindings/go/canaryproxy"
)

func main() {
	if len(os.Args) < 2 {
		log.Fatal("usage: e2e proxy|upstreams|bench [flags]")
	}
	var err error
	switch os.Args[1] {
	case "proxy":
		err = runProxy(os.Args[2:])
	case "upstreams":
		err = runUpstreams(os.Args[2:])
	case "bench":
		err = runBench(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: proxy, upstreams or bench", os.Args[1])
	}
	if err != nil {
		log.Fatal(err)
	}
}

// requestLog writes one line per proxied request, buffered, flushed every 20 ms and on close.
type requestLog struct {
	mu  sync.Mutex
	out *bufio.Writer
	pid string
}

func (l *requestLog) write(version string, status int, forced bool, key string) {
	f := "0"
	if forced {
		f = "1"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.out.WriteString(l.pid + " " + version + " " + strconv.Itoa(status) + " " + f + " " + key + "\n")
}

func (l *requestLog) flush() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.out.Flush()
}

// served is what one request's handlers learn: the upstream it went to.
type served struct{ version string }

type servedKey struct{}

// statusWriter keeps the status written to the client.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap returns the client's ResponseWriter, so that http.ResponseController finds its
// Flush, Hijack and deadlines (the Proxy flushes streamed answers through it).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func runProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ContinueOnError)
	listen := fs.String("listen", "", "address of the proxy")
	admin := fs.String("admin", "", "address of /gate/status and /metrics")
	configPath := fs.String("config", "", "the gate's config document")
	stableURL := fs.String("stable", "", "URL of the stable upstream")
	canaryURL := fs.String("canary", "", "URL of the canary upstream")
	logPath := fs.String("log", "", "the request log")
	if err := fs.Parse(args); err != nil {
		return err
	}
	config, err := os.ReadFile(*configPath)
	if err != nil {
		return err
	}
	stable, canary, err := upstreamURLs(*stableURL, *canaryURL)
	if err != nil {
		return err
	}
	logFile, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logFile.Close()
	requests := &requestLog{out: bufio.NewWriterSize(logFile, 1<<16), pid: strconv.Itoa(os.Getpid())}

	gate, err := promotiongates.New(string(config), "")
	if err != nil {
		return err
	}
	defer gate.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go logChanges(gate.Changes(ctx, 20*time.Millisecond))

	proxy, err := canaryproxy.New(canaryproxy.Options{
		Gate: gate, Stable: stable, Canary: canary,
		Rewrite: func(pr *httputil.ProxyRequest, canary bool) {
			if s, ok := pr.In.Context().Value(servedKey{}).(*served); ok && canary {
				s.version = "canary"
			}
		},
	})
	if err != nil {
		return err
	}
	front := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := &served{version: "stable"}
		sw := &statusWriter{ResponseWriter: w}
		proxy.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), servedKey{}, s)))
		// Routed again for the log: whether an override forced the request (routing is
		// deterministic, and an override's effect does not depend on the stage), not merely
		// whether a forcing value was sent. An ignored value is counted twice by the gate.
		d, err := proxy.Route(r)
		forced := err == nil && d.ForcedBy() != promotiongates.NotForced
		status := sw.status
		if status == http.StatusBadGateway && errors.Is(r.Context().Err(), context.Canceled) {
			status = 0 // the client went away: the error handler's 502 reached no one
		}
		requests.write(s.version, status, forced, proxy.Key(r))
	})
	adminMux := http.NewServeMux()
	adminMux.Handle("GET /metrics", proxy.MetricsHandler())
	adminMux.HandleFunc("GET /gate/status", func(w http.ResponseWriter, _ *http.Request) {
		status, err := gateStatus(gate)
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(status)
	})

	servers := []*http.Server{{Addr: *listen, Handler: front}, {Addr: *admin, Handler: adminMux}}
	failed := make(chan error, len(servers))
	for _, s := range servers {
		go func() {
			if err := s.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				failed <- err
			}
		}()
	}
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
				_ = requests.flush()
			}
		}
	}()
	select {
	case <-ctx.Done():
	case err = <-failed:
	}
	shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(shutdown)
	}
	if ferr := requests.flush(); err == nil {
		err = ferr
	}
	return err
}

// upstreamURLs parses the stable and the canary upstream's URLs.
func upstreamURLs(stable, canary string) (*url.URL, *url.URL, error) {
	s, err := url.Parse(stable)
	if err != nil {
		return nil, nil, err
	}
	c, err := url.Parse(canary)
	if err != nil {
		return nil, nil, err
	}
	return s, c, nil
}

// gateStatus is the /gate/status document, read without judging.
func gateStatus(gate *promotiongates.Gate) ([]byte, error) {
	state, err := gate.State()
	if err != nil {
		return nil, err
	}
	return json.Marshal(map[string]any{
		"pid":         os.Getpid(),
		"environment": state.Environment.String(),
		"stage":       state.Stage,
	})
}

// logChanges writes each state change of the gate to standard error.
func logChanges(changes <-chan promotiongates.Change) {
	for c := range changes {
		reason := ""
		if c.Rollback != nil {
			reason = ": " + c.Rollback.Reason
		}
		log.Printf("change %s from %v to %v (origin %s)%s", c.Kind, c.From, c.To, c.Origin, reason)
	}
}

func runUpstreams(args []string) error {
	fs := flag.NewFlagSet("upstreams", flag.ContinueOnError)
	stableAddr := fs.String("stable", "", "address of the stable upstream")
	canaryAddr := fs.String("canary", "", "address of the canary upstream")
	failFile := fs.String("fail-file", "", "the canary answers 500 while this file exists")
	if err := fs.Parse(args); err != nil {
		return err
	}
	stable := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("stable\n")) })
	canary := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
			http.Error(w, "canary fails slowly", http.StatusInternalServerError)
			return
		}
		if _, err := os.Stat(*failFile); err == nil {
			http.Error(w, "canary fails", http.StatusInternalServerError)
			return
		}
		_, _ = w.Write([]byte("canary\n"))
	})
	failed := make(chan error, 2)
	for _, s := range []*http.Server{{Addr: *stableAddr, Handler: stable}, {Addr: *canaryAddr, Handler: canary}} {
		go func() { failed <- s.ListenAndServe() }()
	}
	return <-failed
}
