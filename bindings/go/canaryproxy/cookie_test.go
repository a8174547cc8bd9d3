package canaryproxy

import (
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
)

// requestCookie is what http.Request.Cookie finds for name in lines.
func requestCookie(lines []string, name string) (string, bool) {
	c, err := (&http.Request{Header: http.Header{"Cookie": lines}}).Cookie(name)
	if err != nil {
		return "", false
	}
	return c.Value, true
}

func TestCookieValue(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		value string
		found bool
	}{
		{[]string{"session=abc"}, "abc", true},
		{[]string{"a=1; session=abc; b=2"}, "abc", true},
		{[]string{"a=1;session=\"q v\""}, "q v", true},
		{[]string{"a=1", "session=second-line"}, "second-line", true},
		{[]string{"session=first; session=second"}, "first", true},
		{[]string{"sessions=x; xsession=y"}, "", false},
		{[]string{"session; session=abc"}, "", true},           // a name alone: an empty value
		{[]string{"session =abc"}, "abc", true},                // the name is trimmed
		{[]string{"session=a\\b; session=ok"}, "ok", true},     // a backslash: skipped
		{[]string{"session=\"a\"b\"; session=ok"}, "ok", true}, // a quote inside: skipped
		{[]string{"session=caf\xc3\xa9"}, "", false},           // not ASCII
		{[]string{"\v session=abc"}, "", false},                // \v is not trimmed
		{nil, "", false},
	} {
		v, ok := cookieValue(tc.lines, "session")
		if v != tc.value || ok != tc.found {
			t.Errorf("cookieValue(%q) = %q, %v; want %q, %v", tc.lines, v, ok, tc.value, tc.found)
		}
		if rv, rok := requestCookie(tc.lines, "session"); rv != v || rok != ok {
			t.Errorf("cookieValue(%q) = %q, %v; Request.Cookie %q, %v", tc.lines, v, ok, rv, rok)
		}
	}
}

// TestCookieValueIsRequestCookie: on 200 000 generated Cookie headers, built from the
// pieces where parsers differ (separators, spaces, quotes, bytes a cookie may not hold,
// names that contain the one looked for), cookieValue finds what Request.Cookie finds.
func TestCookieValueIsRequestCookie(t *testing.T) {
	pieces := []string{"session", "session", "sess", "x", "=", "=", ";", "; ", " ", "\t",
		"\"", "\\", ",", "abc", "q v", "\x7f", "\xc3\xa9", "\x01", "\r", "\n", "\v", "==", ""}
	rng := rand.New(rand.NewPCG(1, 2))
	line := func() string {
		var b strings.Builder
		for range rng.IntN(12) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		return b.String()
	}
	for range 200_000 {
		lines := make([]string, 1+rng.IntN(2))
		for i := range lines {
			lines[i] = line()
		}
		v, ok := cookieValue(lines, "session")
		if rv, rok := requestCookie(lines, "session"); rv != v || rok != ok {
			t.Fatalf("cookieValue(%q) = %q, %v; Request.Cookie %q, %v", lines, v, ok, rv, rok)
		}
	}
}

// TestManyCookiesAreNone: past manyCookies cookies in one request, cookieValue finds none
// (docs/overrides.md), and at the limit it reads them.
func TestManyCookiesAreNone(t *testing.T) {
	lines := []string{"session=abc" + strings.Repeat("; a=1", manyCookies)}
	if v, ok := cookieValue(lines, "session"); ok {
		t.Fatalf("past the limit: cookieValue = %q, %v", v, ok)
	}
	lines = []string{"session=abc" + strings.Repeat("; a=1", manyCookies-1)}
	if v, ok := cookieValue(lines, "session"); v != "abc" || !ok {
		t.Fatalf("at the limit: cookieValue = %q, %v", v, ok)
	}
}

// TestTheCookieLimitIsOursWhateverGODEBUG: the limit is the middleware's own, not net/http's,
// which depends on the Go release (none before 1.25.2 and 1.24.8) and on GODEBUG: with
// httpcookiemaxnum=0 (no limit) Request.Cookie finds a cookie past 3,000, cookieValue none.
func TestTheCookieLimitIsOursWhateverGODEBUG(t *testing.T) {
	t.Setenv("GODEBUG", "httpcookiemaxnum=0")
	lines := []string{"session=abc" + strings.Repeat("; a=1", manyCookies)}
	if v, ok := requestCookie(lines, "session"); v != "abc" || !ok {
		t.Fatalf("Request.Cookie under httpcookiemaxnum=0 = %q, %v: the setting did not take", v, ok)
	}
	if v, ok := cookieValue(lines, "session"); ok {
		t.Fatalf("past the limit under httpcookiemaxnum=0: cookieValue = %q, %v", v, ok)
	}
}
