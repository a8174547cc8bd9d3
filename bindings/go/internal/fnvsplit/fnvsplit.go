// Package fnvsplit is the baseline the canaryproxy middleware is measured against, in its
// tests and Go benchmarks (canaryproxy/*_test.go) and in the process benchmark
// (bindings/go/bench.sh, through e2e/bench.go): the same two httputil.ReverseProxys as
// canaryproxy.Proxy builds, the same routing key, split by FNV-1a of the key at the same
// share, recording nothing. One baseline for all three, so that their figures compare.
package fnvsplit

import (
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
)

// Proxy is an http.Handler that sends a request to the canary upstream when the FNV-1a hash
// (32 bits) of its routing key falls below the canary share, else to the stable upstream.
type Proxy struct {
	stable, canary *httputil.ReverseProxy
	threshold      uint64 // keys hashing below it go to the canary
	header         string // canonical header key
	fallback       func(*http.Request) string
}

// New builds a Proxy routing percent % of keys to canary. Its ReverseProxys set the
// upstream's URL and the X-Forwarded headers (Rewrite: SetURL, SetXForwarded), as
// canaryproxy.Proxy's do, through transport (nil: http.DefaultTransport). The routing key is
// the header named header when present and not empty, else fallback(r) (pass
// canaryproxy.ClientAddress to extract the key as canaryproxy.Proxy does by default).
func New(stable, canary *url.URL, transport http.RoundTripper, percent float64, header string,
	fallback func(*http.Request) string) *Proxy {
	rp := func(target *url.URL) *httputil.ReverseProxy {
		return &httputil.ReverseProxy{
			Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target); pr.SetXForwarded() },
			Transport: transport,
		}
	}
	return &Proxy{
		stable:    rp(stable),
		canary:    rp(canary),
		threshold: uint64(percent / 100 * (1 << 32)),
		header:    textproto.CanonicalMIMEHeaderKey(header),
		fallback:  fallback,
	}
}

// Key returns the request's routing key: the header's value, else the fallback's.
func (p *Proxy) Key(r *http.Request) string {
	if v := r.Header[p.header]; len(v) > 0 && v[0] != "" {
		return v[0]
	}
	return p.fallback(r)
}

// IsCanary reports whether key goes to the canary upstream.
func (p *Proxy) IsCanary(key string) bool {
	return uint64(Hash(key)) < p.threshold
}

// ServeHTTP proxies the request to the upstream its key is split to.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if p.IsCanary(p.Key(r)) {
		p.canary.ServeHTTP(w, r)
		return
	}
	p.stable.ServeHTTP(w, r)
}

// Hash is the 32-bit FNV-1a hash of key (what hash/fnv's New32a computes, without its
// allocation and interface calls).
func Hash(key string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(key); i++ {
		h ^= uint32(key[i])
		h *= 16777619
	}
	return h
}
