// Package shown writes a refused text into the binding's error messages, the root package's
// and canaryproxy's alike: quoted, every character a reader would not see as itself escaped,
// and at most a given number of its bytes, so that a huge argument never makes a huge
// message.
package shown

import (
	"fmt"
	"strconv"
	"strings"
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
