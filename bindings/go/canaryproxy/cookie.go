package canaryproxy

import "strings"

// manyCookies is the most cookies a request may carry for its forcing cookie to be read
// (docs/overrides.md), net/http's default limit (GODEBUG httpcookiemaxnum): beyond it, none is
// read, whatever the Go release or GODEBUG setting the host is built with (net/http has the
// limit only from Go 1.25.2 and 1.24.8 on), as the nginx module reads none.
const manyCookies = 3000

// cookieValue finds cookie name in Cookie header lines ("a=1; b=2") as http.Request.Cookie
// does, without allocating (Request.Cookie parses every cookie of that name into a new
// slice): the first valid cookie of that name wins, a value in double quotes is returned
// without them, a value with a byte a cookie may not hold (a control, a quote inside, a
// backslash, a byte above 0x7e) is skipped, and a name alone is a cookie with an empty
// value. A request with more than manyCookies cookies has none.
func cookieValue(lines []string, name string) (string, bool) {
	if len(lines) == 0 {
		return "", false
	}
	count := 0
	for _, line := range lines {
		count += strings.Count(line, ";") + 1
	}
	if count > manyCookies {
		return "", false
	}
	for _, line := range lines {
		line = trimCookieSpace(line)
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = trimCookieSpace(part)
			if part == "" {
				continue
			}
			k, v, _ := strings.Cut(part, "=")
			if trimCookieSpace(k) != name {
				continue
			}
			if v, ok := cookieText(v); ok {
				return v, true
			}
		}
	}
	return "", false
}

// cookieText is a cookie's value without its double quotes, if it is one a cookie may hold.
func cookieText(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}

// trimCookieSpace trims the spaces, tabs and line ends that net/http trims around a cookie,
// its name and the header line (textproto.TrimString).
func trimCookieSpace(s string) string {
	space := func(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }
	for s != "" && space(s[0]) {
		s = s[1:]
	}
	for s != "" && space(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}
