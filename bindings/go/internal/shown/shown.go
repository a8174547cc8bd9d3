// Package shown writes a refused text into the binding's error messages, the root package's
// and canaryproxy's alike: quoted, every character a reader would not see as itself escaped,
// and at most a given number of its bytes, so that a huge argument never makes a huge
// message.
package shown

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Quoted is value as Quote shows it, or, when it is longer than max bytes, its first bytes
// (cut at a character's start, at most max) quoted and followed by ...(N bytes), N the length
// of value.
func Quoted(value string, max int) string {
	part := Part(value, max)
	if len(part) == len(value) {
		return Quote(value)
	}
	return fmt.Sprintf("%s...(%d bytes)", Quote(part), len(value))
}

// Part is at most max bytes of value, cut at a character's start.
func Part(value string, max int) string {
	if len(value) <= max {
		return value
	}
	for max > 0 && !utf8.RuneStart(value[max]) {
		max--
	}
	return value[:max]
}

// Bytes is data as the library shows bytes that may not be UTF-8 (LoggedBytes in
// src/telemetry/logs.rs, the C ABI's refusal of a document that is not UTF-8): quoted, each
// character as Rust's escape_debug writes it (\u{7f}, \u{301} for a combining mark, \")
// and one drawn as nothing as \u{ad}, each byte that is no character's as \xNN; when data is
// longer than max bytes, its first max bytes, or fewer when max falls inside a whole
// character (cut at its start), followed by ...(N bytes), N the length of data.
func Bytes(data []byte, max int) string {
	cut := cutBeforeCharacter(data, max)
	var b strings.Builder
	b.WriteByte('"')
	for rest := data[:cut]; len(rest) > 0; {
		r, size := utf8.DecodeRune(rest)
		if r == utf8.RuneError && size <= 1 {
			fmt.Fprintf(&b, `\x%02x`, rest[0])
		} else {
			writeEscaped(&b, r)
		}
		rest = rest[size:]
	}
	b.WriteByte('"')
	if cut < len(data) {
		fmt.Fprintf(&b, "...(%d bytes)", len(data))
	}
	return b.String()
}

// cutBeforeCharacter is where data is cut to show at most bound of its bytes, as the
// library's cut_before_character: at the bound, or at the start of a whole UTF-8 character
// the bound falls inside. Bytes that are no character's are cut at the bound (backing over
// them would hide them).
func cutBeforeCharacter(data []byte, bound int) int {
	if len(data) <= bound {
		return len(data)
	}
	start := -1
	for back := 1; back <= 3 && back <= bound; back++ {
		if data[bound-back]&0xC0 != 0x80 {
			start = bound - back
			break
		}
	}
	if start < 0 {
		return bound
	}
	var size int
	switch lead := data[start]; {
	case lead >= 0xC0 && lead <= 0xDF:
		size = 2
	case lead >= 0xE0 && lead <= 0xEF:
		size = 3
	case lead >= 0xF0 && lead <= 0xF7:
		size = 4
	default:
		return bound
	}
	if start+size > bound && start+size <= len(data) && utf8.Valid(data[start:start+size]) {
		return start
	}
	return bound
}

// writeEscaped writes r as the library's write_escaped (src/error.rs): ' as it is, a
// character drawn as nothing (Invisible) as \u{hex}, any other as Rust's char::escape_debug
// writes it: \0 \t \r \n \\ \", a grapheme extender (a combining mark) or a character
// that is not printable (a control, format, space but ASCII's, private-use or unassigned
// one) as \u{hex}, the rest as itself.
func writeEscaped(b *strings.Builder, r rune) {
	switch {
	case r == '\'':
		b.WriteRune(r)
	case Invisible(r):
		fmt.Fprintf(b, `\u{%x}`, r)
	case r == 0:
		b.WriteString(`\0`)
	case r == '\t':
		b.WriteString(`\t`)
	case r == '\r':
		b.WriteString(`\r`)
	case r == '\n':
		b.WriteString(`\n`)
	case r == '\\' || r == '"':
		b.WriteByte('\\')
		b.WriteRune(r)
	case unicode.In(r, unicode.Mn, unicode.Me, unicode.Other_Grapheme_Extend) || !unicode.IsPrint(r):
		fmt.Fprintf(b, `\u{%x}`, r)
	default:
		b.WriteRune(r)
	}
}

// Quote is strconv.Quote(value), which escapes the control, format (U+200B, the bidirectional
// controls U+202A-U+202E and U+2066-U+2069...) and space characters (but ASCII's space) and
// every byte that is not UTF-8, with the characters drawn as nothing that it leaves as they
// are (Invisible: a variation selector, U+034F, the Hangul fillers, U+2800...) escaped too,
// as \uXXXX or \UXXXXXXXX: a name the library refuses for holding one shows why.
func Quote(value string) string {
	quoted := strconv.Quote(value)
	if !strings.ContainsFunc(quoted, Invisible) {
		return quoted
	}
	var b strings.Builder
	for _, r := range quoted { // an escape is ASCII: every invisible character here is raw
		switch {
		case !Invisible(r):
			b.WriteRune(r)
		case r < 0x10000:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	return b.String()
}

// Invisible reports whether r is drawn as nothing, as the library tells it (is_invisible in
// src/config/unseen.rs): a code point of Unicode's Default_Ignorable_Code_Point (15.1), or
// U+2800 BRAILLE PATTERN BLANK. The library refuses them in names.
func Invisible(r rune) bool {
	if r == '\u2800' {
		return true
	}
	for _, span := range defaultIgnorable {
		if r < span[0] {
			return false
		}
		if r <= span[1] {
			return true
		}
	}
	return false
}

// defaultIgnorable is the library's DEFAULT_IGNORABLE (src/config/unseen.rs): Unicode's
// Default_Ignorable_Code_Point, as sorted, disjoint ranges of first and last code point.
var defaultIgnorable = [...][2]rune{
	{0x00AD, 0x00AD},
	{0x034F, 0x034F},
	{0x061C, 0x061C},
	{0x115F, 0x1160},
	{0x17B4, 0x17B5},
	{0x180B, 0x180F},
	{0x200B, 0x200F},
	{0x202A, 0x202E},
	{0x2060, 0x206F},
	{0x3164, 0x3164},
	{0xFE00, 0xFE0F},
	{0xFEFF, 0xFEFF},
	{0xFFA0, 0xFFA0},
	{0xFFF0, 0xFFF8},
	{0x1BCA0, 0x1BCA3},
	{0x1D173, 0x1D17A},
	{0xE0000, 0xE0FFF},
}
