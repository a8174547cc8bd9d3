// Package promotiongates is the Go binding of promotion-gates: deterministic canary routing
// and promotion gates, through the library's C ABI (prefix pgate_).
//
// A Gate routes each request id to the canary (the new version) or the stable version,
// deterministically by a salted SHA-256 bucket; Record feeds the outcome back; the judge
// rolls a failing canary back by itself and gates promotions on evidence.
//
//	gate, err := promotiongates.New(`{"environment":{"canary":{"traffic_percent":10}}}`, "")
//	if err != nil { ... }
//	defer gate.Close()
//	d, _ := gate.RouteString("user-42")
//	// ... serve the request with the version d.IsCanary() picks ...
//	gate.Record(d, true, 12*time.Millisecond)
//
// Memory: request ids, names and JSON documents are passed to the library by pointer for the
// duration of one call and never kept (cgo's pointer rules); everything the library returns
// is written into Go memory during the call (or copied into it and freed: an error's
// message), so nothing of the gate's is read after the call, which Close waits for (each call
// counts itself in flight; see Gate.Close).
//
// Logging: never pass a Go function to the C ABI's pgate_set_log_callback. The binding's C
// calls are declared #cgo nocallback, the library calls the log callback inside them (on the
// thread that logs), and the runtime panics at the first line ("function marked with #cgo
// nocallback called back into Go"). Read Gate.Changes for rollbacks, promotions and flag
// changes, or install a callback written in C that never calls Go (see "Logging" in the
// README).
//
// Linking: through pkg-config, after the library is installed (packaging/install.sh at the
// repository root). By default the static archive libpromotion_gates_ffi.a that
// promotion_gates-static.pc names (link_static.go); -tags pgate_shared links the shared
// -lpromotion_gates_ffi that promotion_gates.pc gives instead (link_shared.go).
package promotiongates
