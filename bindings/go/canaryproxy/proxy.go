// Package canaryproxy is net/http middleware over the promotion-gates binding: a reverse
// proxy that routes each request to the stable or the canary upstream by the gate's decision
// for the request's routing key, and records every request's outcome on the gate, so that
// the judge can roll a failing canary back by itself.
//
// What is recorded, precisely:
//
//   - success: the upstream's status, by Options.IsFailure (default: 5xx is a failure; a
//     status below 100, which net/http refuses, is one too); an error reaching the upstream
//     (dial refused, reset, also while the Transport waited for the client's next bytes of
//     the body, a response-header timeout, an error of Options.ModifyResponse, a Transport
//     that panics or gives no response) is a failure of the version it was routed to. A
//     connection upgrade (WebSocket...) the upstream granted (101) is a success once the
//     client's connection was hijacked for it, whatever the exchange that follows does; one it
//     refused is its status's outcome (a 503 a failure), and a 101 to another protocol than the
//     one asked (or to one of several asked), or to an invalid one, or to a request that asked
//     no upgrade (no Upgrade header, or one without Connection: upgrade), a failure timed at
//     the 101, as the ReverseProxy refuses it (its upgradeType and handleUpgradeResponse: a
//     gate that saw only an upgrade's failures read 100 % errors for any share of refusals,
//     and never rolled back). What
//     the client caused is not: a request the ReverseProxy refuses before sending it (an
//     Upgrade header that is not printable ASCII) is not recorded, nor is one whose body
//     never arrived whole (a malformed chunk or a body shorter than its Content-Length,
//     which the default error handler answers with 400 as net/http's server answers bad
//     framing, see ErrBadRequestBody; a body over an http.MaxBytesHandler limit, answered
//     413; a client that left mid-upload; a deadline while the Transport waited for the
//     client's bytes), unless the upstream held it longer than the client's reads did (then
//     as abandoned, below). Of a duplex stream (the requests Options.Duplex names: none by
//     default), whose client keeps its body open while it waits for the answer, only a read
//     that failed by the client's doing (malformed, cut short, over a limit) is the client's,
//     and then nothing is recorded: the client's reads are not its time (see latency, and
//     the deadline and abandoned rules below). A gRPC call (content-type application/grpc,
//     alone, with a format or with parameters) is answered 200 whatever its outcome,
//     which is its grpc-status (a header in a trailers-only answer, else a trailer, read
//     once the body was copied): it is a failure when that status is a server's own (2 UNKNOWN, 4
//     DEADLINE_EXCEEDED, 12 UNIMPLEMENTED, 13 INTERNAL, 14 UNAVAILABLE, 15 DATA_LOSS, or a
//     value that is no code), and when the upstream ended the stream without one, unless
//     the request's context ended first or the host's ResponseWriter panicked before the
//     trailers came through; 0 OK and the caller's errors (3 INVALID_ARGUMENT,
//     5 NOT_FOUND...) are successes, as in the nginx module. Only an answer whose
//     content-type says gRPC is read for it;
//   - latency: from the moment the request is handed to the version's
//     httputil.ReverseProxy until the upstream's response headers have been received and
//     are about to be written to the client (time to headers; the ReverseProxy's own request
//     preparation, a few microseconds, is included; the copy of the body to the client, and
//     so a slow client, is not), less the time the Transport waited for the client's request
//     body to arrive (a slow upload is the client's time; an upstream slow to read the body
//     is the upstream's), but for a duplex stream none of it (its client sends at its own pace
//     while the upstream works: time to headers, whatever its reads took).
//     Options.ModifyResponse runs before the headers are written, so its time is included
//     (one that reads the body makes the body's time part of it). For an upstream error it is
//     the time until the error; for a granted upgrade, the time until the 101 (taken as the
//     ReverseProxy hijacks the client's connection, as an answer is timed as its headers are
//     written);
//   - forced requests (an override sent them: the config's id lists, or the forcing value of
//     the header or cookie its overrides section names, which the Proxy reads and passes
//     to the gate) are recorded as promotiongates.Forced: in neither cohort. When the
//     config renames the header or cookie (a SwapConfig, or another process's write applied
//     from the state store), the Proxy reads the new names within 50 ms, off the request
//     path (see Proxy.ForcingValue);
//   - a request whose client went away before the upstream answered (its context canceled,
//     which ReverseProxy otherwise reports as a 502) is never a failure: after a wait of at
//     least the SLO's latency_target it is recorded as a slow success, latency the wait
//     (Gate.RecordAbandonedAs: a canary that hangs is rolled back even when every client gives
//     up first), and before that not at all. A request whose context ended by a deadline (a
//     server or TimeoutHandler limit) is a failure: the upstream was too slow, unless the
//     request's body never arrived whole: then only an upstream that held the request longer
//     than the client's reads did is charged, as abandoned (a client trickling its body
//     fails nothing). A duplex stream's body still open is not a body that never arrived: a
//     deadline, or a client that leaves, while a read waits for its next message is charged
//     as for a request without a body (a failure, or abandoned, timed from the request's
//     start), as the client waits for the upstream (over HTTP/1 a client that leaves
//     mid-stream ends its side, and looks like a body cut short: the client's, not recorded);
//   - not recorded: a request routed while the gate is closed, a panic of the host's code
//     (Options.Rewrite, before any request was sent; Options.ModifyResponse or IsFailure,
//     whatever the upstream answered; its ResponseWriter's Header, before the status was
//     taken: the host's bug, as a panic of the host's handler around the Proxy would be; the
//     panic goes on with the host's value, once the upstream's response body, if one came,
//     is closed: as any panic that goes through the ReverseProxy after the response came,
//     such as the host's ResponseWriter refusing a status below 100, the ReverseProxy would
//     leave it open; a panic of the host's ResponseWriter once the status was taken, in
//     WriteHeader, Write or Header (the copy of the trailers), leaves the status to decide,
//     also when its value is http.ErrAbortHandler: that is not the ReverseProxy's abort of a
//     broken body; the panic that goes on is the first one, http.ErrAbortHandler when the
//     ReverseProxy aborted, not one of the writer's after it), and a
//     connection upgrade the upstream granted (101) that the host's side could not take: its
//     ResponseWriter cannot hijack (http.TimeoutHandler's), or the hijack failed.
//
// Informational answers: the ReverseProxy passes an upstream's 1xx on to the client's writer.
// The Proxy drops 100 Continue, which the client's server sends by itself when the request's
// body is first read, and any other 1xx but 101 (103 Early Hints...) when the writer is
// http.TimeoutHandler's, or a writer of the host's that unwraps to it (Unwrap, as
// http.ResponseController asks): that writer takes the first status written for the final
// one and drops the upstream's real status after it, so an upload sent with Expect:
// 100-continue (as curl sends a body over 1 KiB) to an upstream answering 500 would reach the
// client as 200 with the error's body. The outcome recorded is the final status either way.
// The Proxy cannot see through a writer of the host's without Unwrap: what it does with a
// status is its own code's (it may hold TimeoutHandler's writer in a field, a closure or
// another writer, and pass a 1xx on or not), so no look from outside is sure, and the Proxy
// passes the 1xx on to it. A host that puts a writer of its own between http.TimeoutHandler
// and the Proxy must give it Unwrap() http.ResponseWriter, returning the writer it wraps, or,
// when it cannot (it holds the writes it is given), drop every 1xx but 101 in its
// WriteHeader; so must a writer that itself takes the first status for the final one (see
// Example (HostWriterUnderTimeoutHandler)). The check is made for a 1xx only: a final status
// costs nothing more.
//
// An answer is timed when its response headers are written and recorded once its body was
// copied to the client (an error, when it is handled): a body the upstream breaks (cut
// short, a read that fails) is a failure, and so is one it did not finish before
// http.TimeoutHandler's deadline, as a deadline before the headers is: TimeoutHandler's
// writer buffers the answer and answers 503 in its place, so no client slows the copy and no
// stream goes through it. The Proxy tells that deadline by the writer's refusal of a write
// after it (http.ErrHandlerTimeout), also through a writer of the host's around it that
// passes writes on (not one that holds them, such as a compressor's: through it the status
// decides), waiting up to 10 ms for TimeoutHandler to take its deadline (it does in a
// goroutine of its own; another deadline that ends a copy waits that long before the
// response is aborted). A client
// that leaves mid-body or refuses a write is none, nor is a server's WriteTimeout (it fails a
// write and cancels the context). Any other deadline that ends the copy (a context deadline
// of the host's, whatever its writer: one that hides Flush still streams to the client)
// leaves the status to decide: it may be the host's limit on a stream, or a client reading
// slowly, as well as an upstream slow to send (telling them apart would mean timing every
// write, the common path's too). That deadline is the request's, the one the Proxy is given:
// a deadline the host sets in Options.Rewrite on the outgoing request (pr.Out's context) that
// ends a copy is taken for the upstream breaking the body, a failure (telling it would mean
// carrying the outgoing request's context to the writer: allocations on each request); set a
// limit on streams around the Proxy instead. A long stream is recorded when it ends. The
// ReverseProxy tells a broken body by a panic (http.ErrAbortHandler) only under an
// http.Server (which it finds in the request's context, under http.ServerContextKey):
// elsewhere (an httptest.ResponseRecorder, an adapter calling ServeHTTP directly) it
// swallows the error, which it only logs to its ErrorLog, naming no request, and the status
// decides (telling it otherwise would mean wrapping every response body, an allocation per
// request). An adapter can have it as an http.Server does: put its *http.Server in the
// request's context under http.ServerContextKey and recover http.ErrAbortHandler.
package canaryproxy

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
	"github.com/promotion-gates/promotion-gates/bindings/go/internal/shown"
)

// DefaultKeyHeader is the header read for the routing key when Options.KeyHeader is empty.
const DefaultKeyHeader = "X-Request-Id"

// Options configure a Proxy. Gate, Stable and Canary are required.
type Options struct {
	// Gate routes the requests and receives their outcomes. The Proxy does not close it.
	Gate *promotiongates.Gate
	// Stable and Canary are the two upstreams (as for httputil.NewSingleHostReverseProxy:
	// scheme, host and an optional base path).
	Stable, Canary *url.URL
	// KeyHeader is the header holding the routing key (default DefaultKeyHeader). Set
	// NoKeyHeader to read no header (with KeyHeader set too, New refuses the two). Host is
	// read from Request.Host, where net/http moves it (HTTP/2's :authority too).
	KeyHeader   string
	NoKeyHeader bool
	// KeyCookie, when not empty, names a cookie holding the routing key, read when the
	// header is absent or empty.
	KeyCookie string
	// Fallback gives the key of a request with neither header nor cookie. Default: the
	// client's IP address (the host part of Request.RemoteAddr), so that a client without a
	// key is routed the same way on every request and every host.
	Fallback func(*http.Request) string
	// IsFailure says whether an upstream status is a failure (default: status >= 500). A
	// panic of it is the host's: the request is not recorded, and the panic goes on once the
	// upstream's response body is closed.
	IsFailure func(status int) bool
	// Transport is the upstreams' round tripper (default http.DefaultTransport).
	Transport http.RoundTripper
	// ModifyResponse, ErrorHandler and ErrorLog are passed to the ReverseProxies.
	// ModifyResponse runs before the outcome is recorded (an error it returns is a failure;
	// a panic is the host's, as Rewrite's: not recorded, and it goes on once the upstream's
	// response body is closed, as the ReverseProxy closes it on an error), ErrorHandler after;
	// its time is part of the latency, the body's too when it reads the body.
	// The default ErrorHandler logs the error to ErrorLog (the log package's standard logger
	// when nil) as httputil.ReverseProxy's does, unless the client went away, and answers 502
	// Bad Gateway (400 for a malformed or incomplete request body, an error wrapping
	// ErrBadRequestBody; 413 for a body over a MaxBytesHandler limit): always a status, as a
	// handler that writes none is answered 200 OK by net/http.
	ModifyResponse func(*http.Response) error
	ErrorHandler   func(http.ResponseWriter, *http.Request, error)
	ErrorLog       *log.Logger
	// Rewrite, when set, runs after the upstream's URL is set (see httputil.ProxyRequest),
	// with canary true for the canary upstream: add headers, change the path. A panic of it
	// sends nothing and records nothing, and goes on. A deadline it sets on pr.Out's context
	// is the upstream's failure when it ends the request, before the headers or in the
	// body's copy: set a limit on streams around the Proxy, where it leaves the status to
	// decide (see the package doc).
	//
	// What the upstream receives before it runs is the ReverseProxy's Rewrite mode: the
	// client's Forwarded, X-Forwarded-For, X-Forwarded-Host and X-Forwarded-Proto are
	// dropped; the three X-Forwarded-* are set anew from this hop alone (pr.SetXForwarded:
	// For the peer's address, Host the request's Host, Proto https only when the Proxy's own
	// connection is TLS) and Forwarded is not set at all, so behind a load balancer the
	// upstream sees the balancer's address and, where it ended TLS, http; see TrustForwarded
	// to keep a trusted chain. A query with a semicolon
	// (?a=1;b=2), a bad %-escape or more than 10,000 parameters is re-encoded, the
	// parameters Go's url.ParseQuery refuses dropped and the others sorted (?a=1;b=2 reaches
	// the upstream as no query); pr.In.URL.RawQuery holds the client's, and
	// pr.Out.URL.RawQuery = pr.In.URL.RawQuery passes it on unchanged (upstream URLs without
	// a query of their own), for an upstream that parses queries as this host does.
	Rewrite func(pr *httputil.ProxyRequest, canary bool)
	// Duplex says whether a request with a body is a duplex stream: one whose client keeps
	// its body open while it waits for the upstream's answer (a gRPC bidirectional call, a
	// WebSocket-like exchange over HTTP/2), not an upload, whose upstream answers once the
	// body ended (a gRPC unary or client-streaming call: the client's slow bytes are then its
	// own time). Its upstream may answer before the body ends, so none of the time its reads
	// of the body take is the client's: its latency is time to headers, and a deadline that
	// falls or a client that leaves while a read waits for its next message is charged as for
	// a request without a body (a failure, or abandoned; see the package doc). A read that
	// failed by the client's doing (a malformed body, one cut short) is the client's all the
	// same: nothing is recorded. Go's Transport starts its ResponseHeaderTimeout only once
	// the body was written, so a deadline around the Proxy is what bounds a hung upstream of
	// a duplex stream. Asked once per request with a body, before it is sent; never for a
	// request without one (nor for one of Content-Length 0, which the ReverseProxy sends
	// without a body: an HTTP/2 server gives every request a body, a GET's too; an unknown
	// length, -1, is a body). A panic of it is the host's: nothing is sent or recorded, and it
	// goes on. Default (nil): no request is a duplex stream (say which gRPC methods stream
	// both ways, by r.URL.Path).
	Duplex func(*http.Request) bool
	// TrustForcing, when set, says whether a request may be forced by the override header
	// or cookie the gate's config names: a request it returns false for is routed as one
	// carrying neither (by the config's id lists and its bucket), and nothing is counted as
	// ignored. Any client can send the header or cookie, and reaches the version it names in
	// every environment (after a rollback in Production, the rolled-back build), so a Proxy
	// facing clients it does not trust says which it trusts (an address range, an
	// authenticated tester). The header and cookie still go on to the upstream (remove them
	// in Rewrite if it reads them). A panic of it is the host's, as Fallback's. Default
	// (nil): every request's forcing value is read.
	TrustForcing func(*http.Request) bool
	// OnRecorded, when set, is told what the gate did with each outcome the Proxy recorded:
	// Record's answer, or RecordAbandonedAs's for a request whose client left after the SLO's
	// latency target (nothing for one that left before it, nor for an outcome the gate
	// refused, closed meanwhile). A host of several processes counts each Late, Foreign and
	// Forced in memory they share, with each ignored forcing value OnIgnoredOverrideValue
	// tells, and serves them with promotiongates.MetricsPrometheusCounted (the binding's
	// README, "Telemetry"). Called on the request's goroutine as the outcome
	// is recorded, possibly while a panic of the host's code goes on: it must not panic, and
	// should be quick (an atomic add). Default (nil): not called.
	OnRecorded func(promotiongates.Recorded)
	// OnIgnoredOverrideValue, when set, is called for each request whose forcing value (see
	// ForcingValue) the gate ignored, and counted in promotion_ignored_override_values_total:
	// a value neither canary nor stable (ASCII case ignored) of a request the config's id
	// lists do not force (nor one TrustForcing refused: its value is not passed to the gate).
	// A host of several processes counts each call in the memory they share, beside the
	// outcomes OnRecorded tells, and serves the sum as OutcomeCounts.IgnoredOverrideValues:
	// the gate counts the value as the request is routed, so the Proxy calls it then, in
	// Route (from ServeHTTP, or the host's own call), on the request's goroutine, whether an
	// outcome is recorded after or not. It must not panic (a panic goes on before anything
	// is sent or recorded), and should be quick (an atomic add). Default (nil): not called.
	OnIgnoredOverrideValue func()
	// TrustForwarded, when set, says whether a request came from a proxy trusted to set the
	// forwarding headers (a load balancer in front, by its address): for such a request the
	// X-Forwarded-For chain it carries is kept, the peer's address appended, and its
	// X-Forwarded-Proto goes on as it came (this hop's when it carried none): what a balancer
	// appends to and sets (trust only a balancer that sets X-Forwarded-Proto itself: one
	// that passes the client's on lets a client claim https). X-Forwarded-Host is still
	// this hop's (the request's Host) and Forwarded is still dropped, as by default: many
	// balancers pass both on from the client untouched, so keeping them would let a client
	// name the host and its own address. Behind one that sets them, copy them in Rewrite
	// (pr.Out.Header["Forwarded"] = pr.In.Header["Forwarded"]). Any client can send these
	// headers, so a request it returns false for is forwarded as by default (see Rewrite).
	// Runs before Rewrite; a panic of it is the host's, as Rewrite's. Default (nil): no
	// request is trusted.
	TrustForwarded func(*http.Request) bool
}

// Proxy is an http.Handler that routes by the gate and records outcomes. Safe for
// concurrent use. Make one with New: a Proxy not made by New (a zero Proxy, or a nil one)
// routes nothing, as a zero Gate is closed: ServeHTTP answers 500 Internal Server Error and
// logs why to the log package's standard logger, Route returns an error matching
// promotiongates.ErrClosed, and a zero Proxy's MetricsHandler and StatusHandler answer 503,
// as for a closed gate.
type Proxy struct {
	gate         *promotiongates.Gate
	header       string // canonical header key, "" for none or Host
	keyHost      bool   // the key header is Host, read from Request.Host
	cookie       string
	fallback     func(*http.Request) string
	isFailure    func(int) bool
	duplex       func(*http.Request) bool
	onRecorded   func(promotiongates.Recorded)
	onIgnored    func() // Options.OnIgnoredOverrideValue
	onError      func(http.ResponseWriter, *http.Request, error)
	upstreams    [2]string                // the stable and canary URLs, for StatusHandler
	forcing      atomic.Pointer[forcing]  // where a forcing value is read; replaced on a rename
	trustForcing func(*http.Request) bool // nil: every request's forcing value is read
	exchanges    sync.Pool                // of *exchange
}

// forcing is where a forcing value is read: a canonical header key and a cookie name, ""
// for none. Never changed once published: a rename publishes another.
type forcing struct {
	header, cookie string
}

// newForcing canonicalizes the header name. The library refuses Host as the override header
// (docs/overrides.md: each host reads the request's authority its own way), so the header is
// always one a request's Header holds.
func newForcing(header, cookie string) *forcing {
	if header != "" {
		header = textproto.CanonicalMIMEHeaderKey(header)
	}
	return &forcing{header, cookie}
}

// headerKey is a header name's canonical key, where a request's Header holds it, or "" and
// true for Host, which net/http moves from Header to Request.Host (an HTTP/2 request's
// :authority too).
func headerKey(name string) (key string, host bool) {
	if name == "" {
		return "", false
	}
	if key = textproto.CanonicalMIMEHeaderKey(name); key == "Host" {
		return "", true
	}
	return key, false
}

// overridesRefresh is how often a Proxy that follows its gate's override names looks at the
// gate's change counter (as often as the nginx module's timer).
const overridesRefresh = 50 * time.Millisecond

// New builds a Proxy. It fails when the gate or an upstream is missing or an upstream URL
// has no scheme or host, when KeyHeader or KeyCookie is no HTTP token, and when NoKeyHeader
// is set with a KeyHeader (which it would ignore).
func New(opts Options) (*Proxy, error) {
	if opts.Gate == nil {
		return nil, errors.New("canaryproxy: Options.Gate is nil")
	}
	if opts.NoKeyHeader && opts.KeyHeader != "" {
		return nil, fmt.Errorf("canaryproxy: Options.KeyHeader = %s with Options.NoKeyHeader: NoKeyHeader reads no header; set one or the other", quoted(opts.KeyHeader))
	}
	for _, u := range []struct {
		name string
		url  *url.URL
	}{{"Stable", opts.Stable}, {"Canary", opts.Canary}} {
		if err := upstreamError(u.url); err != nil {
			shown := "<nil>"
			if u.url != nil {
				shown = shortened(u.url.Redacted())
			}
			return nil, fmt.Errorf("canaryproxy: Options.%s = %s: %w", u.name, shown, err)
		}
	}
	for _, name := range []struct {
		field, value string
	}{
		{"KeyHeader", opts.KeyHeader}, {"KeyCookie", opts.KeyCookie},
	} {
		if name.value != "" && (!isToken(name.value) || len(name.value) > maxNameBytes) {
			return nil, fmt.Errorf("canaryproxy: Options.%s = %s: a header or cookie name is an HTTP token (letters, digits and !#$%%&'*+-.^_`|~, no spaces or control characters) of at most %d bytes", name.field, quoted(name.value), maxNameBytes)
		}
	}
	p := &Proxy{
		gate:         opts.Gate,
		cookie:       opts.KeyCookie,
		fallback:     opts.Fallback,
		trustForcing: opts.TrustForcing,
		onError:      opts.ErrorHandler,
		duplex:       opts.Duplex,
		onRecorded:   opts.OnRecorded,
		onIgnored:    opts.OnIgnoredOverrideValue,
	}
	if !opts.NoKeyHeader {
		h := opts.KeyHeader
		if h == "" {
			h = DefaultKeyHeader
		}
		p.header, p.keyHost = headerKey(h)
	}
	if p.fallback == nil {
		p.fallback = ClientAddress
	}
	if isFailure := opts.IsFailure; isFailure == nil {
		p.isFailure = func(status int) bool { return status >= 500 }
	} else {
		p.isFailure = func(status int) bool {
			defer hostPanicked()
			return isFailure(status)
		}
	}
	if p.onError == nil {
		errorLog := opts.ErrorLog
		p.onError = func(w http.ResponseWriter, r *http.Request, err error) {
			if !clientGone(r) { // as httputil.ReverseProxy's default handler logs it
				if errorLog != nil {
					errorLog.Printf("http: proxy error: %v", err)
				} else {
					log.Printf("http: proxy error: %v", err)
				}
			}
			badGateway(w, r, err)
		}
	}
	p.upstreams = [2]string{opts.Stable.Redacted(), opts.Canary.Redacted()}
	rewrites := [2]func(*httputil.ProxyRequest){rewrite(opts, opts.Stable, false), rewrite(opts, opts.Canary, true)}
	onError := p.handleError
	p.exchanges.New = func() any { return newExchange(opts, rewrites, onError) }
	seen, err := p.refreshOverrides(unread)
	if err != nil {
		return nil, fmt.Errorf("canaryproxy: reading the gate's overrides: %w", err)
	}
	following.Add(1)
	go followOverrides(weak.Make(p), seen)
	return p, nil
}

// exchange is what a request takes from the Proxy's pool: its writer, and the ReverseProxies
// of the two upstreams that write to it, made once with it. Their ModifyResponse keeps the
// upstream's response in the writer as it comes, before the host's ModifyResponse runs, so
// that ServeHTTP can close its body when a panic goes through the ReverseProxy (which closes
// it on an error, not on a panic). The writer's own ReverseProxies, not the Proxy's: the
// ReverseProxy hands ModifyResponse nothing that leads to the request's writer, and a map from
// one to the other would cost each request. A new exchange is two allocations (it, and the
// closure of its ModifyResponse); a request allocates none.
type exchange struct {
	writer  outcomeWriter
	proxies [2]httputil.ReverseProxy // to the stable upstream, to the canary
}

// newExchange makes an exchange whose ReverseProxies rewrite requests by rewrites (stable,
// canary) and hand errors to onError.
func newExchange(opts Options, rewrites [2]func(*httputil.ProxyRequest), onError func(http.ResponseWriter, *http.Request, error)) *exchange {
	ex := new(exchange)
	ow, modify := &ex.writer, opts.ModifyResponse
	keep := func(res *http.Response) error {
		ow.response = res
		if modify == nil {
			return nil
		}
		defer hostPanicked()
		err := modify(res)
		if err != nil {
			ow.response = nil // the ReverseProxy closes its body, then hands err to handleError
		}
		return err
	}
	for i, rewrite := range rewrites {
		ex.proxies[i] = httputil.ReverseProxy{Rewrite: rewrite, Transport: opts.Transport,
			ModifyResponse: keep, ErrorLog: opts.ErrorLog, ErrorHandler: onError}
	}
	return ex
}

// rewrite is the Rewrite of the ReverseProxies to one upstream, target: Options.Rewrite after
// the target is set.
func rewrite(opts Options, target *url.URL, canary bool) func(*httputil.ProxyRequest) {
	host, trust := opts.Rewrite, opts.TrustForwarded
	return func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		if trust != nil && trusted(trust, pr.In) {
			keepForwarded(pr)
		} else {
			pr.SetXForwarded()
		}
		if host != nil {
			defer hostPanicked()
			host(pr, canary)
		}
	}
}

// trusted asks Options.TrustForwarded about r (a panic is the host's).
func trusted(trust func(*http.Request) bool, r *http.Request) bool {
	defer hostPanicked()
	return trust(r)
}

// keepForwarded forwards a trusted proxy's request: its X-Forwarded-For chain with the peer
// appended (SetXForwarded appends to the outgoing request's) and its X-Forwarded-Proto as it
// came (this hop's where it carried none), what a load balancer sets or appends to. Its
// X-Forwarded-Host is this hop's (the request's Host) and its Forwarded is dropped, as by
// default: many balancers pass both on from the client untouched. The values are copied: the
// host's Rewrite may add to the outgoing request's.
func keepForwarded(pr *httputil.ProxyRequest) {
	pr.Out.Header["X-Forwarded-For"] = slices.Clone(pr.In.Header["X-Forwarded-For"])
	pr.SetXForwarded()
	if v := pr.In.Header["X-Forwarded-Proto"]; len(v) > 0 {
		pr.Out.Header["X-Forwarded-Proto"] = slices.Clone(v)
	}
}

// maxNameBytes is the longest header or cookie name taken, the library's for the override
// names (PGATE_NAME_CAPACITY less its NUL).
const maxNameBytes = 128

// maxShownBytes is the library's MAX_SHOWN_VALUE_BYTES: the most bytes of a refused value an
// error message shows.
const maxShownBytes = 160

// shortened is s, or its first maxShownBytes bytes followed by ...(N bytes): a huge option
// never makes a huge message.
func shortened(s string) string {
	if len(s) <= maxShownBytes {
		return s
	}
	return fmt.Sprintf("%s...(%d bytes)", strings.ToValidUTF8(s[:maxShownBytes], ""), len(s))
}

// quoted is s quoted (every character a reader would not see as itself escaped, see
// shown.Quote), or its first bytes (cut at a character's start, at most maxShownBytes) quoted
// and followed by ...(N bytes), N the length of s.
func quoted(s string) string {
	return shown.Quoted(s, maxShownBytes)
}

// upstreamError is why u is not an upstream a ReverseProxy can dial, or nil: it needs the
// scheme http or https and a host, and its text must read back through url.Parse to the same
// host (a hand-built URL may hold a host with a space, a newline or a port that is no number,
// or a query with a control character, which url.Parse refuses: every request would fail,
// and be recorded as the version's failure).
func upstreamError(u *url.URL) error {
	if u == nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("an upstream needs the scheme http or https and a host")
	}
	parsed, err := url.Parse(u.String())
	if err != nil {
		var parseErr *url.Error
		if errors.As(err, &parseErr) {
			err = parseErr.Err // its URL may hold a password; the one shown above is redacted
		}
		return fmt.Errorf("url.Parse refuses its text: %w", err)
	}
	if parsed.Host != u.Host {
		return fmt.Errorf("url.Parse reads its host as %s", quoted(parsed.Host))
	}
	return nil
}

// isToken reports whether s is an HTTP token (RFC 9110 §5.6.2), what a header or cookie name
// must be: a request can never carry a header or cookie of another name.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
		if !alnum && !strings.ContainsRune("!#$%&'*+-.^_`|~", rune(c)) {
			return false
		}
	}
	return s != ""
}

// ClientAddress is the default fallback key: the host part of r.RemoteAddr (the client's IP
// address, or the whole RemoteAddr if it has no port).
func ClientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// Key returns the request's routing key: the key header (Host: Request.Host), else the key
// cookie, else the fallback.
func (p *Proxy) Key(r *http.Request) string {
	if p.header != "" {
		if v := r.Header[p.header]; len(v) > 0 && v[0] != "" {
			return v[0]
		}
	} else if p.keyHost && r.Host != "" {
		return r.Host
	}
	if p.cookie != "" {
		if v, ok := cookieValue(r.Header["Cookie"], p.cookie); ok && v != "" {
			return v
		}
	}
	if p.fallback == nil { // a Proxy not made by New
		return ClientAddress(r)
	}
	return p.fallback(r)
}

// Route returns the gate's decision for the request (by Key, and by its ForcingValue when
// an override header or cookie is named and Options.TrustForcing, if set, trusts the
// request), as ServeHTTP takes it. A forcing value the gate ignored (and counted: the
// request carried one, and its decision is not forced) is told to
// Options.OnIgnoredOverrideValue.
func (p *Proxy) Route(r *http.Request) (promotiongates.Decision, error) {
	if p == nil {
		return promotiongates.Decision{}, errNotMade
	}
	f := p.forcing.Load()
	if f == nil { // New stores the names before it returns the Proxy
		return promotiongates.Decision{}, errNotMade
	}
	if f.header == "" && f.cookie == "" ||
		p.trustForcing != nil && !p.trustForcing(r) {
		return p.gate.RouteString(p.Key(r))
	}
	value, present := f.value(r)
	d, err := p.gate.RouteForcedString(p.Key(r), value, present)
	if present && p.onIgnored != nil && err == nil && d.ForcedBy() == promotiongates.NotForced {
		p.onIgnored()
	}
	return d, err
}

// ForcingValue returns the request's forcing value: the override header's, else the
// override cookie's, as the gate's config names them in its "overrides" section
// (Gate.OverrideNames); present is false when it carries neither (the library refuses Host as
// the header, which net/http moves out of Header, docs/overrides.md). The config is the one
// place the names are set (it also turns forcing values on: a gate whose config names no
// header or cookie ignores them), and the Proxy follows it when it renames them: a goroutine
// looks at the gate's change counter every 50 ms (one atomic load in the library) and, when it
// moved (a SwapConfig, or another process's write applied from the state store), reads the
// names again. The request path reads them with one atomic pointer load. The goroutine holds
// the Proxy only through a weak pointer: it ends when the Proxy is garbage collected or the
// gate closed.
func (p *Proxy) ForcingValue(r *http.Request) (value string, present bool) {
	return p.forcing.Load().value(r)
}

func (f *forcing) value(r *http.Request) (value string, present bool) {
	if f == nil { // a Proxy not made by New
		return "", false
	}
	if f.header != "" {
		if v := r.Header[f.header]; len(v) > 0 {
			return v[0], true
		}
	}
	if f.cookie != "" {
		return cookieValue(r.Header["Cookie"], f.cookie)
	}
	return "", false
}

// errNotMade is the error of a Proxy not made by New (a zero Proxy, or a nil one): it has
// no upstream to send a request to, and no gate, which is closed as a zero Gate is.
var errNotMade = fmt.Errorf("canaryproxy: the Proxy was not made by New (a zero Proxy, or a nil one): make it with canaryproxy.New: %w", promotiongates.ErrClosed)

// unread is the change count of names never read: no count of a gate reaches it.
const unread = ^uint64(0)

// refreshOverrides reads the gate's override names again when its change counter moved past
// seen, and returns the count the names now belong to (the counter is read first, so a
// rename made between the two reads is read again at the next look, never missed).
func (p *Proxy) refreshOverrides(seen uint64) (uint64, error) {
	n, err := p.gate.ChangeCount()
	if err != nil || n == seen {
		return seen, err
	}
	header, cookie, err := p.gate.OverrideNames()
	if err != nil {
		return seen, err
	}
	p.forcing.Store(newForcing(header, cookie))
	return n, nil
}

// following counts the followOverrides goroutines running (tests read it).
var following atomic.Int64

// followOverrides is the goroutine of a Proxy that follows its gate's override names: every
// overridesRefresh it refreshes them, off the request path, until the Proxy is collected or
// its gate closed. It holds the Proxy only while it looks.
func followOverrides(proxy weak.Pointer[Proxy], seen uint64) {
	defer following.Add(-1)
	ticker := time.NewTicker(overridesRefresh)
	defer ticker.Stop()
	for range ticker.C {
		var err error
		if seen, err = refreshFollowed(proxy, seen); err != nil {
			return
		}
	}
}

// refreshFollowed is one look of followOverrides. A collected Proxy or a closed gate ends
// the goroutine (ErrClosed); another error keeps the names as they were until the next look.
func refreshFollowed(proxy weak.Pointer[Proxy], seen uint64) (uint64, error) {
	p := proxy.Value()
	if p == nil {
		return seen, promotiongates.ErrClosed
	}
	n, err := p.refreshOverrides(seen)
	if errors.Is(err, promotiongates.ErrClosed) {
		return seen, err
	}
	return n, nil
}

// ServeHTTP routes the request, proxies it to the chosen upstream and records its outcome.
// When the gate cannot route (it was closed), the request goes to the stable upstream and
// nothing is recorded. A Proxy not made by New answers 500 (see Proxy).
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, err := p.Route(r)
	if err == errNotMade {
		log.Printf("http: proxy error: %v", err)
		http.Error(w, "canaryproxy: the Proxy was not made by New", http.StatusInternalServerError)
		return
	}
	ex := p.exchanges.Get().(*exchange)
	ow, rp := &ex.writer, &ex.proxies[0]
	if err == nil && d.IsCanary() {
		rp = &ex.proxies[1]
	}
	*ow = outcomeWriter{ResponseWriter: w, proxy: p, request: r, decision: d, pending: err == nil, start: sinceEpoch()}
	if body := r.Body; body != nil && body != http.NoBody && r.ContentLength != 0 {
		// A body of Content-Length 0 is none: the ReverseProxy drops it (an HTTP/2 server
		// gives every request a body, a GET's too); -1 is a body of unknown length. Its own
		// object, not the pooled writer's: the Transport may read or close the body after
		// ServeHTTP returned.
		ow.upload = &uploadWatch{ReadCloser: body, ctx: r.Context(), start: ow.start, duplex: p.duplex != nil && p.duplex(r)}
		r.Body = ow.upload
	}
	returned := false
	defer func() {
		if !returned {
			// A panic inside the ReverseProxy before the headers (a Transport returning no
			// response): the request failed, unless the host's code panicked (hostPanic: its
			// Rewrite, before any request left; its ModifyResponse or IsFailure, whatever the
			// upstream answered). After the headers, the ReverseProxy's abort of the body's copy
			// (http.ErrAbortHandler) is the upstream breaking the body, unless the client
			// refused a write or the request's context ended (see bodyBroken); the client's
			// writer panicking (inWriter), with that value too, is not: the status decides, or,
			// before it was taken (its Header), nothing is recorded, as for the host's code. Once the
			// upstream's response came, its body is closed (see closeResponse). The writer is
			// not pooled again: the code that panicked may still hold it.
			v := recover()
			host, byHost := v.(hostPanic)
			aborted := v == http.ErrAbortHandler && !byHost && !ow.inWriter
			ow.closeResponse(aborted)
			switch {
			case !ow.pending || byHost:
			case ow.inWriter && !ow.answered: // the host's writer, before the status was taken
				ow.pending = false
			case ow.answered:
				ow.settle(aborted && !ow.writeFailed &&
					(ow.handlerTimedOut || bodyBroken(ow.ResponseWriter, r)))
			default:
				ow.record(false)
			}
			if byHost {
				v = host.value // the host's own panic goes on
			}
			if ow.upload != nil {
				r.Body = ow.upload.ReadCloser
			}
			if v != nil { // nil: runtime.Goexit, which goes on by itself
				panic(v) // the first panic's frames are still on the stack: its trace is kept
			}
		}
	}()
	rp.ServeHTTP(ow, r)
	returned = true
	if ow.pending && ow.answered {
		ow.settle(false) // the body was copied
	}
	if ow.upload != nil {
		r.Body = ow.upload.ReadCloser
	}
	*ow = outcomeWriter{}
	p.exchanges.Put(ex)
}

// MetricsHandler serves the gate's Prometheus exposition (promotiongates.MetricsPrometheus:
// it judges nothing, but an evaluation the record path asked for meanwhile is made after the
// read, and may roll back, as the record path would have). Serve it on an admin listener of
// its own, as StatusHandler, not beside the proxied traffic: admin := http.NewServeMux();
// admin.Handle("GET /metrics", p.MetricsHandler()), with admin served on 127.0.0.1 (see
// Example).
func (p *Proxy) MetricsHandler() http.Handler { return promotiongates.MetricsHandler(p.gate) }

// StatusHandler serves a read-only status document, application/json:
// {"stable": URL, "canary": URL, "config": the gate's current config} (whose environment
// says where the release stands; after a rollback it is production). It reads the config
// only: it never judges, so a scrape cannot roll anything back (the binding's Health judges,
// and is not used). A closed gate makes it answer 503. Serve it on an admin listener of its
// own (127.0.0.1, or behind authentication), not beside the proxied traffic: the config it
// shows names the override header and cookie that force a version, the id allow-lists and
// the state store's path.
func (p *Proxy) StatusHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		config, err := p.gate.Config()
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		doc, err := json.Marshal(struct {
			Stable string          `json:"stable"`
			Canary string          `json:"canary"`
			Config json.RawMessage `json:"config"`
		}{p.upstreams[0], p.upstreams[1], json.RawMessage(config)})
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(doc)
	})
}

// handleError is the ReverseProxies' error handler: it records an upstream failure, then runs
// Options.ErrorHandler. What the upstream did not cause is no failure: a request the
// ReverseProxy refused before sending it (an invalid Upgrade header: the handler is given the
// client's request then, not the outgoing copy) records nothing, nor does an error once the
// ReverseProxy took an upgrade the upstream granted (see Hijack, which recorded it or not); a
// 101 the ReverseProxy refuses (to another protocol than the one asked, or to an invalid one,
// or to a request that asked no upgrade) is the upstream's failure. A request whose body never arrived whole (a malformed chunk, a body
// over a MaxBytesHandler limit, the server's ReadTimeout, a client that left mid-upload, a
// deadline that fell while the Transport waited for the client's bytes) is the upstream's
// only when it held the request longer than the client's reads did (an upstream slow to take
// the body): recorded as abandoned, else nothing, so a client that trickles its body cannot
// fail the version its key routes to. A read that failed because the Transport closed the
// body (an upstream that reset the stream while the client's next bytes were awaited) is not
// the client's: the upstream's failure while the request's context lives. A client that went
// away while the upstream worked is recorded as abandoned. A duplex stream's body is ended
// only by a read that failed by the client's doing (see uploadWatch.clientFailed): a deadline
// or a client gone while a read waits for its next message is as for a request without a body.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	if ow, ok := w.(*outcomeWriter); ok {
		// A response still kept is one the ReverseProxy leaves open: a 101 it could not switch
		// to (the host's writer cannot hijack, the upstream switched to another protocol than
		// the one asked, or to an invalid one, or the request asked none), whose body is the upstream's connection, which
		// nothing else closes until a GC. None is kept when none came, or after ModifyResponse's
		// error (the ReverseProxy closed its body); once the client's connection was hijacked
		// its body is nil, and after a hijack that failed the ReverseProxy closes the
		// connection too (a second Close of a net.Conn only returns an error).
		ow.closeResponse(false)
		ow.response = nil
		switch {
		case !ow.pending: // recorded already, or an upgrade
		case r == ow.request: // refused before it was sent
			ow.pending = false
		case ow.upload != nil && ow.upload.ended(r):
			// The body never arrived whole: the upstream is charged, as abandoned, only when
			// it held the request longer than the client's reads did (never a duplex stream's,
			// whose reads are not timed: the client's doing ended it).
			if client := ow.upload.clientTime(); !ow.upload.duplex && ow.waited() > client {
				ow.abandoned()
			} else {
				ow.pending = false
			}
			if ow.upload.malformed.Load() {
				// Whatever error the Transport made of it (its own, the context's).
				err = fmt.Errorf("%w: %w", ErrBadRequestBody, err)
			}
		case clientGone(r):
			ow.abandoned()
		default:
			ow.record(false)
		}
		w = ow.ResponseWriter
	}
	p.onError(w, r, err)
}

// clientGone reports whether the request failed because its client went away: its context
// was canceled (not ended by a deadline, which is the upstream's slowness).
func clientGone(r *http.Request) bool {
	return errorIs(r.Context().Err(), context.Canceled)
}

// ErrBadRequestBody is wrapped in the error given to Options.ErrorHandler when the client's
// request body could not be read whole by its own fault: malformed (an invalid chunk) or
// shorter than it said (its side of the connection ended before its Content-Length or its
// last chunk; a client that left mid-upload, or an HTTP/2 client that reset its stream,
// looks the same, and the answer is dropped). Not when the read failed after the Transport
// closed the body (a pending read of an HTTP/2 client's body fails then, where the
// ReverseProxy passes the Transport's Close on): the upstream reset the stream or its
// connection failed (the upstream's failure), or a deadline ended the request; those are
// answered 502. The default error handler answers it 400 Bad Request; it is not the
// upstream's failure (see the package doc).
var ErrBadRequestBody = errors.New("canaryproxy: malformed or incomplete request body")

// badGateway is the default error handler: 502, or 400 for a malformed request body, 413 for
// a body over the host's http.MaxBytesHandler limit. It always writes a status: a handler that
// writes none is answered 200 OK by net/http, and a canceled context does not mean the client
// is gone (a ReadTimeout, a host's BaseContext canceled on shutdown); to a client that did go
// away the write is dropped.
func badGateway(w http.ResponseWriter, r *http.Request, err error) {
	switch _, tooLarge := errorAs[*http.MaxBytesError](err); {
	case errorIs(err, ErrBadRequestBody):
		w.WriteHeader(http.StatusBadRequest)
	case tooLarge:
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	default:
		w.WriteHeader(http.StatusBadGateway)
	}
}

// uploadWatch is the client's request body as the upstream's Transport reads it: whether
// reading it failed, and by whose doing (the client's, or the Transport's, which closed it
// first), and how long the Transport waited for it to arrive,
// which is not the upstream's latency. Only the time inside Read is the client's: between
// reads the Transport writes what it read to the upstream, and an upstream slow to take the
// body holds it there. Of a duplex stream's body (see Options.Duplex), none is (see
// clientTime), and only a read that failed by the client's doing ends it: a read still
// waiting for the client's next message when a deadline falls or the client leaves is the
// client waiting for the upstream, and so is one the request's context ended.
type uploadWatch struct {
	io.ReadCloser
	ctx    context.Context // the client's request's
	start  time.Duration   // the request's, as the outcomeWriter's (see sinceEpoch)
	duplex bool            // a duplex stream's body (Options.Duplex)
	// cut: the body ended short: a read failed other than at the end (a malformed chunk, a
	// body over a MaxBytesHandler limit, the server's ReadTimeout, a client that left), or the
	// request's context ended (a deadline, a host's shutdown) while a read waited for the
	// client. Not a read that failed because the Transport had closed the body while the
	// context lived (see closing). Of a duplex stream, only a read that failed by the
	// client's doing (see clientFailed).
	cut atomic.Bool
	// malformed: a read failed by the client's doing (see malformed), set before cut; never a
	// read that failed after the Transport closed the body.
	malformed atomic.Bool
	// closing: the Transport closed the body (the upstream reset the stream or answered
	// early, its connection failed, the request's context ended, the ReverseProxy returned).
	// The HTTP/2 Transport closes it from another goroutine while a read waits for the
	// client, and an HTTP/2 client's body then fails that read ("body closed by handler"):
	// the Transport's doing, not the client's, so the upstream's failure while the context
	// lives. Only where the ReverseProxy passes the Transport's Close on to the body: Go
	// 1.26's does not (it wraps the body in a reader whose Close does nothing), and the read
	// waits for the client's bytes.
	closing atomic.Bool
	// waiting: nanoseconds spent inside the body's Read, summed over the reads that returned
	// (not read for a duplex stream's body).
	waiting atomic.Int64
	// reading: 1 + the nanoseconds since start at which the read in flight began, 0 when none
	// is. The HTTP/2 Transport returns from a request whose context ended while a read still
	// waits for the client (the HTTP/1 one waits for that read first).
	reading atomic.Int64
}

func (u *uploadWatch) Read(b []byte) (int, error) {
	began := sinceEpoch() - u.start
	u.reading.Store(int64(began) + 1)
	live := u.ctx.Err() == nil
	n, err := u.ReadCloser.Read(b)
	u.reading.Store(0)
	took := sinceEpoch() - u.start - began
	if err == io.EOF || err == nil && !(live && u.ctx.Err() != nil) {
		u.waiting.Add(int64(took))
		return n, err
	}
	// The read failed, or the request's context ended while it waited for the client.
	closing := u.closing.Load()
	if u.duplex && !u.clientFailed(err, closing) {
		return n, err // the client waited for the upstream: neither its time nor its doing
	}
	u.waiting.Add(int64(took))
	if err != nil && !closing && malformed(err) {
		u.malformed.Store(true)
	}
	if !closing || u.ctx.Err() != nil {
		u.cut.Store(true)
	}
	return n, err
}

// clientFailed reports whether a duplex stream's read that failed, or that the request's
// context ended, failed by the client's doing: a malformed body, one cut short (its side ended
// before its Content-Length or its last chunk), one over a MaxBytesHandler limit. Not when
// the request's context ended otherwise (a deadline; a client that left while the read waited
// for its next message, an HTTP/2 client that reset its stream: it waited for the upstream),
// nor a timeout (the server's ReadTimeout, a deadline too), nor a read the Transport broke by
// closing the body (see closing). An HTTP/1 server cancels the context when the client's side
// ends: a body cut short there (io.ErrUnexpectedEOF) is the client's all the same, and so is
// an HTTP/1 client that left mid-stream, which looks the same.
func (u *uploadWatch) clientFailed(err error, closing bool) bool {
	return err != nil && !closing && !isTimeout(err) &&
		(u.ctx.Err() == nil || errorIs(err, io.ErrUnexpectedEOF))
}

// Close is the Transport's: it marks the body as given up before closing it, so that a read
// the close breaks is not taken for the client's doing.
func (u *uploadWatch) Close() error {
	u.closing.Store(true)
	return u.ReadCloser.Close()
}

// malformed reports whether the error a read of the client's body failed with is the body's
// own fault: malformed (an invalid chunk) or shorter than it said (the client's side ended
// before its Content-Length or its last chunk), the client's doing that net/http's server
// answers 400 when it finds it in a request's head. Not a timeout (the server's ReadTimeout:
// the upstream may have held the read), nor a body over a MaxBytesHandler limit (413). Read
// asks it only of a read that failed before the Transport closed the body (see closing).
func malformed(err error) bool {
	_, tooLarge := errorAs[*http.MaxBytesError](err)
	return !isTimeout(err) && !tooLarge
}

// isTimeout reports whether err says it is a timeout (the server's ReadTimeout, a deadline).
func isTimeout(err error) bool {
	timeout, ok := errorAs[interface{ Timeout() bool }](err)
	return ok && timeout.Timeout()
}

// ended reports whether the body never arrived whole: cut, or a read still waits for the
// client while r's context has ended (a deadline, a host's shutdown); not that wait for a
// duplex stream, whose client waits for the upstream.
func (u *uploadWatch) ended(r *http.Request) bool {
	return u.cut.Load() || !u.duplex && u.reading.Load() != 0 && r.Context().Err() != nil
}

// clientTime is the time the Transport waited for the client's body: the reads that
// returned, and the one in flight; none for a duplex stream's body (its client sends at its
// own pace while the upstream works, and waits for it between messages).
func (u *uploadWatch) clientTime() time.Duration {
	if u.duplex {
		return 0
	}
	client := time.Duration(u.waiting.Load())
	if began := u.reading.Load(); began != 0 {
		client += sinceEpoch() - u.start - time.Duration(began-1)
	}
	return client
}

// outcomeWriter wraps the client's ResponseWriter for one request: the first final status
// written is the outcome, timed then and recorded once the body was copied. It unwraps for
// http.ResponseController (flush, hijack).
type outcomeWriter struct {
	http.ResponseWriter
	proxy *Proxy
	// response: the upstream's response, once it came (see exchange), until its body was
	// closed on an error (see handleError)
	response *http.Response
	request  *http.Request // the client's, as ServeHTTP was given it
	upload   *uploadWatch  // its body, if it has one
	decision promotiongates.Decision
	start    time.Duration // when the request started (see sinceEpoch)
	pending  bool          // an outcome is still to be recorded
	// answered: the upstream's headers came, with a success status (ok) or not, timed at
	// latency; recorded (settle) once the body is copied, a failure if the upstream broke it
	answered    bool
	ok          bool
	latency     time.Duration
	writeFailed bool // a write to the client failed (the client's doing; see Write)
	// inWriter: a Header, WriteHeader or Write of the client's writer is under way; a panic
	// that leaves it set is the writer's (the host's), not the ReverseProxy's abort of the copy
	inWriter bool
	// header: the map the client's writer's Header last returned, where the ReverseProxy put
	// the upstream's headers and trailers; read for a gRPC status (see settle) without asking
	// the writer again, which may panic once it panicked or its client left
	header http.Header
	// handlerTimedOut: a write was refused with http.ErrHandlerTimeout (TimeoutHandler's
	// deadline fell): no need to probe for it (see timedOut)
	handlerTimedOut bool
}

// WriteHeader takes the outcome of a final status (1xx are informational; a status below 100,
// which net/http refuses with a panic, is the upstream's failure), then writes it. Of the
// informational statuses it drops 100 Continue, which the client's server sends by itself
// when the body is first read, and every other (103 Early Hints...) but 101 when the host's
// writer would take it for the final status (see interimRefused).
func (ow *outcomeWriter) WriteHeader(status int) {
	if status >= 200 || status < 100 {
		if ow.pending && !ow.answered {
			ow.answer(status >= 100 && !ow.proxy.isFailure(status))
		}
	} else if status == http.StatusContinue ||
		status != http.StatusSwitchingProtocols && interimRefused(ow.ResponseWriter) {
		return
	}
	ow.inWriter = true
	ow.ResponseWriter.WriteHeader(status)
	ow.inWriter = false
}

// interimRefused reports whether w is http.TimeoutHandler's writer, or a writer of the host's
// that unwraps to it: that writer takes the first status written for the final one, a 1xx too,
// and drops the upstream's real status after it (its 500 reached the client as 200, with the
// error's body). Asked only of an informational status, never on the common path. At most
// maxUnwraps writers are looked at (a writer whose Unwrap returns itself made it loop forever).
func interimRefused(w http.ResponseWriter) bool {
	for timeoutWriter, left := timeoutWriterType(), maxUnwraps; w != nil && left > 0; left-- {
		if reflect.TypeOf(w) == timeoutWriter {
			return true
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return false
		}
		w = u.Unwrap()
	}
	return false
}

// timeoutWriterType is the type of http.TimeoutHandler's writer, which net/http does not
// export: read once, from the writer a TimeoutHandler gives its handler.
var timeoutWriterType = sync.OnceValue(func() (writer reflect.Type) {
	http.TimeoutHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writer = reflect.TypeOf(w)
	}), time.Minute, "").ServeHTTP(discardWriter{}, new(http.Request))
	return writer
})

// discardWriter is a ResponseWriter that keeps nothing (timeoutWriterType's).
type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

// Header is the client's writer's (inWriter while it runs), kept for settle.
func (ow *outcomeWriter) Header() http.Header {
	ow.inWriter = true
	h := ow.ResponseWriter.Header()
	ow.inWriter = false
	ow.header = h
	return h
}

// Write takes an implicit 200 (when no status was written) and writes b.
func (ow *outcomeWriter) Write(b []byte) (int, error) {
	if ow.pending && !ow.answered {
		ow.answer(!ow.proxy.isFailure(http.StatusOK))
	}
	ow.inWriter = true
	n, err := ow.ResponseWriter.Write(b)
	ow.inWriter = false
	if errorIs(err, http.ErrHandlerTimeout) {
		ow.handlerTimedOut = true
	} else if err != nil {
		// Not http.TimeoutHandler's deadline, which its writer reports to a write after it
		// fell: that is the request's context, as when it ends a read (see bodyBroken).
		ow.writeFailed = true
	}
	return n, err
}

// answer takes the upstream's status as its headers are written: timed now, recorded once
// the body is copied (settle), failures and successes alike, so that a long body delays
// neither kind more than the other.
func (ow *outcomeWriter) answer(success bool) {
	ow.answered, ow.ok, ow.latency = true, success, ow.waited()
}

// settle records an answered request's outcome, timed to its headers: its status's, or a
// failure when the upstream broke its body or its gRPC call failed (see grpcFailed), read
// from the headers and trailers the ReverseProxy wrote (header), not from the client's writer
// (a writer that panicked in Header, or aborts once its client left, panicked again here: the
// outcome was lost, and the writer's second panic went on in place of the first). A stream
// the client's writer broke by a panic (inWriter) is cut on this side: a gRPC status that
// had not come through yet is not the upstream's failure.
func (ow *outcomeWriter) settle(broken bool) {
	ow.pending = false
	success := ow.ok && !broken && !grpcFailed(ow.header, ow.cut)
	ow.recorded(ow.proxy.gate.Record(ow.decision, success, ow.latency))
}

// recorded tells Options.OnRecorded what the gate did with an outcome; an error (the gate was
// closed meanwhile) is dropped: the request is served all the same.
func (ow *outcomeWriter) recorded(as promotiongates.Recorded, err error) {
	if err == nil && ow.proxy.onRecorded != nil {
		ow.proxy.onRecorded(as)
	}
}

// cut reports whether the copy of the answer was cut on this side: the client's writer
// panicked (inWriter), or the request's context ended. Asked of a gRPC answer without a
// status only (a context's Err takes its lock).
func (ow *outcomeWriter) cut() bool {
	return ow.inWriter || ow.request.Context().Err() != nil
}

// Unwrap returns the client's ResponseWriter (for http.ResponseController).
func (ow *outcomeWriter) Unwrap() http.ResponseWriter { return ow.ResponseWriter }

// Hijack is the ReverseProxy's switch to the protocol the upstream granted with a 101: it
// hijacks the client's ResponseWriter and, once it did, records the upgrade as a success
// (Options.IsFailure is not asked), timed at the 101 (now: the time the proxy waited for it,
// as an answer is timed at its headers), whatever the exchange that follows does. A hijack
// that fails records nothing (a host writer that cannot hijack, such as
// http.TimeoutHandler's, a client connection already gone: the upstream granted the upgrade,
// the host's side could not take it), nor does a second call.
func (ow *outcomeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	latency := ow.waited()
	conn, brw, err := http.NewResponseController(ow.ResponseWriter).Hijack()
	if ow.pending {
		ow.pending = false
		if err == nil {
			ow.recorded(ow.proxy.gate.Record(ow.decision, true, latency))
		}
	}
	return conn, brw, err
}

// bodyBroken reports whether the ReverseProxy's abort of the body's copy to w, the client's
// writer, is the upstream's doing: the request's context is live (a cut body, a failed read),
// or http.TimeoutHandler's deadline ended it (see timedOut: its writer buffers the whole
// answer, which it replaces with its 503, so no client slowed the copy and no stream went
// through it: the upstream did not send its body in time). Not when the context was canceled
// (the client went away, a failed write, the host's shutdown), nor for any other deadline
// (the host's own limit on a stream, a client reading slowly, or a slow upstream: the status
// decides), whatever the writer (a host's wrapper that hides Flush streams all the same).
// Called once a copy failed, never on the common path.
func bodyBroken(w http.ResponseWriter, r *http.Request) bool {
	switch err := r.Context().Err(); {
	case err == nil:
		return true
	case errorIs(err, context.DeadlineExceeded):
		return timedOut(w)
	default:
		return false
	}
}

// timedOut reports whether w is http.TimeoutHandler's writer after its deadline fell, or a
// writer of the host's around it that passes writes on (reached through its Write, so also a
// wrapper without Unwrap; not one that holds them, a compressor's): that writer refuses every write then, a write of nothing too, with
// http.ErrHandlerTimeout. The probe writes no byte (the headers were written before the
// body's copy began). TimeoutHandler takes its deadline in its own goroutine, woken by the
// same context as the copy, and may run after it: the probe is repeated for up to
// timedOutWait before the status is left to decide, erring toward not charging the upstream.
// Called only when a deadline ended a copy: another deadline than TimeoutHandler's waits that
// long before the ReverseProxy aborts the response.
func timedOut(w http.ResponseWriter) bool {
	deadline := time.Now().Add(timedOutWait)
	for pause := 100 * time.Microsecond; ; pause *= 2 {
		if refusedForDeadline(w) {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left)) // never past timedOutWait (doubling alone reached 12.7 ms)
	}
}

// refusedForDeadline is timedOut's probe: whether a write of nothing to w is refused with
// http.ErrHandlerTimeout. A panic of w (a host's writer that aborts once its deadline fell)
// is no such refusal, and stops there: the ReverseProxy's abort, which the probe follows, is
// the panic that goes on.
func refusedForDeadline(w http.ResponseWriter) (refused bool) {
	defer func() {
		if recover() != nil {
			refused = false
		}
	}()
	_, err := w.Write(nil)
	return errorIs(err, http.ErrHandlerTimeout)
}

// timedOutWait is how long timedOut waits for http.TimeoutHandler to take its deadline.
const timedOutWait = 10 * time.Millisecond

// hostPanic carries a panic of the host's code (Options.Rewrite, ModifyResponse, IsFailure)
// to ServeHTTP: the upstream is not charged with it (it is the host's bug, whatever the
// upstream did), and ServeHTTP panics on with the value the host's code panicked with.
type hostPanic struct{ value any }

// hostPanicked, deferred around a call of the host's code, wraps its panic in a hostPanic.
func hostPanicked() {
	if v := recover(); v != nil {
		panic(hostPanic{v})
	}
}

// closeResponse closes the body of the upstream's response, if one came, as a panic goes
// through the ReverseProxy: it closes the body when it returns or handles an error, not when
// a panic goes through it (the host's ModifyResponse or IsFailure, the host's ResponseWriter:
// its Header, its WriteHeader refusing the status, as net/http's refuse one below 100, its
// Write during the copy), and the Transport's connection stayed taken until the request's
// context ended, for good under an adapter whose context never does. aborted is the
// ReverseProxy's own abort of a failed copy (http.ErrAbortHandler, not from the client's
// writer: a host's writer may panic with it too), which closed the body itself. The body a ModifyResponse put in place is the one closed, as the ReverseProxy
// closes it.
func (ow *outcomeWriter) closeResponse(aborted bool) {
	if res := ow.response; res != nil && res.Body != nil && !aborted {
		_ = res.Body.Close()
	}
}

// waited is the time the upstream is charged with: since the request started, less the time
// the Transport waited for the client's body (a slow client's upload is not the upstream's
// latency).
func (ow *outcomeWriter) waited() time.Duration {
	waited := sinceEpoch() - ow.start
	if ow.upload != nil {
		if client := ow.upload.clientTime(); client > 0 && client < waited {
			waited -= client
		}
	}
	return waited
}

// epoch is the instant the requests' times are read from: a time.Time with a monotonic reading,
// taken once, at package initialization.
var epoch = time.Now()

// sinceEpoch is the monotonic time since epoch: a request's start, and each instant its
// latency or its upload's wait is read at, are such offsets, whose differences are durations.
// One read of the monotonic clock (time.Since of a time with a monotonic reading); time.Now
// also reads the wall clock, which a duration never needs (Go microbenchmark on this host:
// time.Now then time.Since 97 ns, time.Since of epoch twice 73 ns).
func sinceEpoch() time.Duration { return time.Since(epoch) }

// record records the request's outcome once (see recorded).
func (ow *outcomeWriter) record(success bool) {
	ow.pending = false
	ow.recorded(ow.proxy.gate.Record(ow.decision, success, ow.waited()))
}

// abandoned records, once, that the client went away before the upstream answered: a slow
// request when it waited longer than the SLO's latency target, else nothing (see
// promotiongates.Gate.RecordAbandonedAs; see recorded).
func (ow *outcomeWriter) abandoned() {
	if ow.pending {
		ow.pending = false
		as, recorded, err := ow.proxy.gate.RecordAbandonedAs(ow.decision, ow.waited())
		if recorded {
			ow.recorded(as, err)
		}
	}
}
