package canaryproxy

import (
	"bufio"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// forcingVectorFile: how a host finds a request's forcing value, shared with the nginx module.
var forcingVectorFile = filepath.Join("..", "..", "..", "tests", "vectors", "override_requests.tsv")

// unescapeVector reads the file's escapes: \xNN is the byte NN, \\ a backslash.
func unescapeVector(t *testing.T, s string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] != '\\':
			b.WriteByte(s[i])
		case strings.HasPrefix(s[i:], `\\`):
			b.WriteByte('\\')
			i++
		case strings.HasPrefix(s[i:], `\x`) && i+4 <= len(s):
			n, err := strconv.ParseUint(s[i+2:i+4], 16, 8)
			if err != nil {
				t.Fatalf("%s: bad escape in %q: %v", forcingVectorFile, s, err)
			}
			b.WriteByte(byte(n))
			i += 3
		default:
			t.Fatalf("%s: bad escape in %q", forcingVectorFile, s)
		}
	}
	return b.String()
}

// TestForcingValueVectors: each request of tests/vectors/override_requests.tsv, as net/http
// reads it from the wire, has the forcing value the file names (header X-Canary, cookie
// pgate_version), which for a cookie is also what Request.Cookie finds (up to manyCookies
// cookies, where Request.Cookie finds the same on every Go release).
func TestForcingValueVectors(t *testing.T) {
	data, err := os.ReadFile(forcingVectorFile)
	if err != nil {
		t.Fatal(err)
	}
	f := newForcing("X-Canary", "pgate_version")
	rows := 0
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		rows++
		fields := strings.Split(line, "\t")
		want, wantPresent := "", fields[0] != "-"
		if wantPresent {
			if !strings.HasPrefix(fields[0], "=") {
				t.Fatalf("%s: expected - or =VALUE: %q", forcingVectorFile, line)
			}
			want = unescapeVector(t, fields[0][1:])
		}
		raw := "GET / HTTP/1.1\r\nHost: example.com\r\n"
		for _, h := range fields[1:] {
			raw += unescapeVector(t, h) + "\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n")))
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		got, present := f.value(r)
		if got != want || present != wantPresent {
			t.Errorf("%q: forcing value %q, present %v; want %q, %v", line, got, present, want, wantPresent)
		}
		// Request.Cookie is asked only up to manyCookies cookies: beyond, what it finds depends
		// on the Go release (net/http limits the cookies only from 1.25.2 and 1.24.8 on, and
		// go.mod allows 1.25.0) and on GODEBUG httpcookiemaxnum, while the forcing value is
		// none whatever they are (cookie.go).
		cookies := 0
		for _, h := range r.Header["Cookie"] {
			cookies += strings.Count(h, ";") + 1
		}
		if len(r.Header["X-Canary"]) == 0 && cookies <= manyCookies {
			if c, err := r.Cookie("pgate_version"); (err == nil) != present || (err == nil && c.Value != got) {
				t.Errorf("%q: Request.Cookie found %v, %v; the forcing value is %q, %v", line, c, err, got, present)
			}
		}
	}
	if rows < 20 {
		t.Fatalf("%s: %d requests, expected at least 20", forcingVectorFile, rows)
	}
}
