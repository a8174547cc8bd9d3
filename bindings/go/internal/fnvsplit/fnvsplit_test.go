package fnvsplit

import (
	"fmt"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
)

// TestHashIsFNV1a: Hash agrees with the standard library's FNV-1a on keys of every length
// from 0 to 64 bytes.
func TestHashIsFNV1a(t *testing.T) {
	key := ""
	for n := range 65 {
		h := fnv.New32a()
		_, _ = h.Write([]byte(key))
		if got, want := Hash(key), h.Sum32(); got != want {
			t.Fatalf("Hash(%q) = %#x, hash/fnv says %#x", key, got, want)
		}
		key += string(rune('a' + n%26))
	}
}

// TestSplitsAtTheShare: of 20,000 distinct keys, the canary gets the share asked for
// (within 1.5 points), none at 0 % and all at 100 %.
func TestSplitsAtTheShare(t *testing.T) {
	u, err := url.Parse("http://upstream.invalid")
	if err != nil {
		t.Fatal(err)
	}
	for _, percent := range []float64{0, 10, 20, 50, 100} {
		p := New(u, u, nil, percent, "X-Request-Id", nil)
		canary := 0
		const keys = 20000
		for i := range keys {
			if p.IsCanary(fmt.Sprintf("user-%06d-session", i)) {
				canary++
			}
		}
		share := 100 * float64(canary) / keys
		if math.Abs(share-percent) > 1.5 {
			t.Errorf("at %g %%: %d of %d keys to the canary (%.2f %%)", percent, canary, keys, share)
		}
	}
}

// TestKeyFromHeaderElseFallback: the header (any spelling of its name) gives the key; an
// absent or empty header gives the fallback's.
func TestKeyFromHeaderElseFallback(t *testing.T) {
	u, err := url.Parse("http://upstream.invalid")
	if err != nil {
		t.Fatal(err)
	}
	p := New(u, u, nil, 20, "x-request-id", func(*http.Request) string { return "fallback" })
	for _, c := range []struct{ header, want string }{{"k-1", "k-1"}, {"", "fallback"}} {
		r := httptest.NewRequest(http.MethodGet, "http://front/", nil)
		if c.header != "" {
			r.Header.Set("X-Request-Id", c.header)
		}
		if got := p.Key(r); got != c.want {
			t.Errorf("header %q: key %q, want %q", c.header, got, c.want)
		}
	}
	r := httptest.NewRequest(http.MethodGet, "http://front/", nil)
	r.Header["X-Request-Id"] = []string{""}
	if got := p.Key(r); got != "fallback" {
		t.Errorf("empty header: key %q, want the fallback's", got)
	}
}
