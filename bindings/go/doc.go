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
// is copied into Go memory before the call's lock is released.
//
// Linking: through pkg-config, after the library is installed (packaging/install.sh at the
// repository root). By default the static archive libpromotion_gates_ffi.a that
// promotion_gates-static.pc names (link_static.go); -tags pgate_shared links the shared
// -lpromotion_gates_ffi that promotion_gates.pc gives instead (link_shared.go).
package promotiongates
