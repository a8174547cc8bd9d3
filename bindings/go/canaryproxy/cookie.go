package canaryproxy

import "strings"

// cookieValue finds cookie name in Cookie header lines ("a=1; b=2") without allocating
// (http.Request.Cookie parses every cookie into a new slice). A value in double quotes is
// returned without them. The first cookie of that name wins, as with Request.Cookie.
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}
