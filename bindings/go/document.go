package promotiongates

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/promotion-gates/promotion-gates/bindings/go/internal/shown"
)

// How the binding reads the library's documents (Config, SLO, Store) as the library reads them
// (serde, deny_unknown_fields), so that a document read here is one the library takes: a key
// in its exact case (encoding/json matches keys in any case), an unknown or repeated key
// refused, a required field (environment.canary.traffic_percent, store.sqlite.path,
// store.etcd.endpoints and prefix) required, null only for an optional field (salt,
// p99_budget_ms, store, overrides, an override name), every value of its field's type. A
// refusal is an *Error of StatusInvalidJSON in the library's words, without the position the
// library adds (" at line 1 column 42"): "invalid JSON config: environment.canary: unknown field
// `trafic_percent`, expected `traffic_percent`" (a syntax error is in encoding/json's words, and
// a refused text is quoted by strconv.Quote, which escapes some characters otherwise than
// Rust's {:?}, and escapes the characters drawn as nothing too: see shown.Quote).
//
// A wire struct names its fields with json tags (the library's names, in its order), a
// required one with the tag pgate:"required", an optional one that is no pointer (null read as
// its zero value) with pgate:"optional", a uint64 the library reads as a usize with
// pgate:"usize", and says what the library calls it
// (libraryForm); a section with a form of its own (environment, store) reads itself
// (sectionReader).

// libraryForm is implemented by every struct a document's object is read into.
type libraryForm interface {
	// libraryForm returns serde's words for what the object is ("struct Overrides"), and
	// whether the library reads it with a visitor of its own, whose error for an unknown
	// field names the object (environment.canary), not the field (overrides.cokie).
	libraryForm() (expecting string, ownVisitor bool)
}

// sectionReader is a section with a form of its own, which reads data, the section's JSON at
// path at in its document.
type sectionReader interface {
	readAt(data []byte, at string) error
}

// refusal is what a document's reader refuses: the path of the value ("" for the document)
// and serde's words.
type refusal struct{ at, words string }

func (r *refusal) Error() string {
	if r.at == "" {
		return r.words
	}
	return r.at + ": " + r.words
}

func refuse(at, format string, args ...any) error {
	return &refusal{at, fmt.Sprintf(format, args...)}
}

// within is the path of key in the object at at.
func within(at, key string) string {
	if at == "" {
		return key
	}
	return at + "." + key
}

// byteOrderMark is UTF-8's byte order mark, which JSON has none of (RFC 8259): the library
// refuses a document starting with one in these words, naming it, not as a syntax error.
var byteOrderMark = []byte("\xEF\xBB\xBF")

// maxDocumentBytes is the library's MAX_DOCUMENT_BYTES (src/limits.rs): the longest JSON
// document it reads.
const maxDocumentBytes = 8 * 1024 * 1024

// document is how the library names a document it refuses: prefix, the words before a
// refusal of its JSON ("invalid JSON config"); noun, what it holds, in a refusal of its size
// ("a PromotionConfig"); argument and text, in a refusal of bytes that are not UTF-8, New's
// parameter that takes it and what it holds ("config_json", "config": the C ABI's words).
type document struct{ prefix, noun, argument, text string }

// The documents of the library, and its sections given alone.
var (
	configDocument      = document{"invalid JSON config", "a PromotionConfig", "config_json", "config"}
	sloDocument         = document{"invalid JSON SLO config", "a SloConfig", "slo_json", "SLO config"}
	environmentDocument = document{"invalid JSON environment", "an environment", "environment", "environment"}
)

// sectionDocument is the section at path at of a config, given alone: refused as the library
// refuses it inside a config ("invalid JSON config: overrides: ..."), and named by its path.
func sectionDocument(at string) document {
	return document{"invalid JSON config", "a section " + at, at, "section " + at}
}

// readJSON runs read on data (JSON whitespace trimmed), the value at path at in its document
// doc, once data is valid JSON holding no number too small for a float64 (firstTinyNumber),
// and returns what either refuses as an *Error of StatusInvalidJSON: doc.prefix (the
// library's, "invalid JSON config"), then the refusal shortened as the library shortens it
// (see shortenedRefusal), or encoding/json's account of the syntax error. Data longer than
// maxDocumentBytes is refused first, unread, as the library refuses it: an *Error of
// StatusInvalidConfig naming the field document, doc.noun and the size. Then data that is not
// UTF-8 is refused as the C ABI refuses it (see notUTF8), and data starting with a byte order
// mark as the library refuses it.
func readJSON(data []byte, at string, doc document, read func([]byte) error) error {
	if len(data) > maxDocumentBytes {
		return &Error{Status: StatusInvalidConfig, Message: fmt.Sprintf(
			"invalid document = %s of %d bytes: at most %d bytes (MAX_DOCUMENT_BYTES)", doc.noun, len(data), maxDocumentBytes)}
	}
	if err := notUTF8(data, doc); err != nil {
		return err
	}
	if bytes.HasPrefix(data, byteOrderMark) {
		return &Error{Status: StatusInvalidJSON, Message: doc.prefix + ": starts with a UTF-8 byte order mark (EF BB BF): save it without one"}
	}
	data = bytes.Trim(data, " \t\r\n")
	if !json.Valid(data) {
		var syntax any
		err := json.Unmarshal(data, &syntax)
		return &Error{Status: StatusInvalidJSON, Message: doc.prefix + ": " + err.Error()}
	}
	if field, number, found := firstTinyNumber(data, at); found {
		return &Error{Status: StatusInvalidJSON, Message: doc.prefix + ": " + tinyNumberRefusal(field, number)}
	}
	if err := read(data); err != nil {
		return &Error{Status: StatusInvalidJSON, Message: doc.prefix + ": " + shortenedRefusal(err.Error())}
	}
	return nil
}

// notUTF8 refuses data, doc's bytes, when they are not UTF-8, as New refuses them (the C
// ABI's refusal, which the library never sees: it reads only UTF-8): an *Error of
// StatusInvalidArgument naming doc.argument, the bytes as the library shows them (shown.Bytes:
// each byte that is not UTF-8 as \xNN, characters as Rust escapes them) and the offset of the
// first such byte: "invalid config_json = "{\"salt\": \"caf\xe9\"}": config is not valid UTF-8
// (invalid byte at offset 13)". nil when
// data is UTF-8. encoding/json reads such a byte as U+FFFD, without an error.
func notUTF8(data []byte, doc document) error {
	if utf8.Valid(data) {
		return nil
	}
	offset := 0
	for {
		r, size := utf8.DecodeRune(data[offset:])
		if r == utf8.RuneError && size <= 1 {
			break
		}
		offset += size
	}
	return &Error{Status: StatusInvalidArgument, Message: fmt.Sprintf(
		"invalid %s = %s: %s is not valid UTF-8 (invalid byte at offset %d)",
		doc.argument, shown.Bytes(data, maxShownValueBytes), doc.text, offset)}
}

// readDocument reads data, a whole document doc the library calls what ("PromotionConfig"),
// into w, a pointer to its wire struct, whose fields hold the defaults of those the document
// leaves out.
func readDocument(data []byte, doc document, what string, w libraryForm) error {
	return readJSON(data, "", doc, func(data []byte) error {
		if data[0] != '{' {
			return refuse("", "a %s must be a JSON object with named fields, not %s", what, kind(data))
		}
		return readValue(data, "", reflect.ValueOf(w).Elem())
	})
}

// readSection reads data, a section of a config document given alone (its JSON, as a host's
// json.Unmarshal passes it to the section's UnmarshalJSON), as the library reads it at path
// at in a config: into a copy of defaults, the section with the fields the library gives one
// the document leaves out, stored in *into only when the whole section was read. A refusal is
// the library's, as readDocument's: "invalid JSON config: overrides: unknown field `cokie`,
// ...". null, which the library takes for an optional section in a config, is refused: a
// section given alone is no field that may be absent.
func readSection[T any, P interface {
	*T
	libraryForm
}](data []byte, at string, into P, defaults T) error {
	read := defaults
	if err := readJSON(data, at, sectionDocument(at), func(data []byte) error {
		return readValue(data, at, reflect.ValueOf(&read).Elem())
	}); err != nil {
		return err
	}
	*into = read
	return nil
}

// readValue reads data, valid JSON, at path at into v, which must be addressable.
func readValue(data []byte, at string, v reflect.Value) error {
	return readTyped(data, at, v, "u64")
}

// readTyped is readValue with the name of v's type in the library when it is a uint64: u64,
// or usize (a field tagged pgate:"usize").
func readTyped(data []byte, at string, v reflect.Value, unsigned string) error {
	if section, ok := v.Addr().Interface().(sectionReader); ok {
		return section.readAt(data, at)
	}
	if v.Kind() == reflect.Pointer { // an optional value: null for none
		if data[0] == 'n' {
			v.SetZero()
			return nil
		}
		v.Set(reflect.New(v.Type().Elem()))
		return readTyped(data, at, v.Elem(), unsigned)
	}
	switch v.Kind() {
	case reflect.Struct:
		return readObject(data, at, v)
	case reflect.Slice: // of strings
		if data[0] != '[' {
			return invalidType(at, data, "a sequence")
		}
		var items []json.RawMessage
		_ = json.Unmarshal(data, &items) // valid JSON: an array
		list := reflect.MakeSlice(v.Type(), len(items), len(items))
		for i, item := range items {
			if err := readValue(item, fmt.Sprintf("%s[%d]", at, i), list.Index(i)); err != nil {
				return err
			}
		}
		v.Set(list)
	case reflect.String:
		if data[0] != '"' {
			return invalidType(at, data, "a string")
		}
		s, err := readString(data, at)
		if err != nil {
			return err
		}
		v.SetString(s)
	case reflect.Bool:
		if data[0] != 't' && data[0] != 'f' {
			return invalidType(at, data, "a boolean")
		}
		v.SetBool(data[0] == 't')
	case reflect.Float64:
		if !isNumber(data) {
			return invalidType(at, data, "f64")
		}
		f, err := strconv.ParseFloat(string(data), 64)
		if err != nil {
			return refuse(at, "number out of range")
		}
		v.SetFloat(f)
	case reflect.Uint64:
		n, err := strconv.ParseUint(string(data), 10, 64)
		_, negative := strconv.ParseInt(string(data), 10, 64)
		switch {
		case err == nil:
			v.SetUint(n)
		case negative == nil && isInteger(data): // an integer below 0 (-0 is a float to serde_json)
			return refuse(at, "invalid value: %s, expected %s", unexpected(data), unsigned)
		default:
			return invalidType(at, data, unsigned)
		}
	default:
		panic("promotiongates: a wire struct holds a field of kind " + v.Kind().String())
	}
	return nil
}

// readObject reads data at path at into v, a struct implementing libraryForm (by pointer).
func readObject(data []byte, at string, v reflect.Value) error {
	expecting, ownVisitor := v.Addr().Interface().(libraryForm).libraryForm()
	if data[0] == '[' && !ownVisitor {
		// serde's derived reader takes a struct's fields in order; the library refuses that.
		return refuse(at, "must be a JSON object with named fields, not an array")
	}
	if data[0] != '{' {
		return invalidType(at, data, expecting)
	}
	type field struct {
		name     string
		index    int
		required bool   // pgate:"required": the object must have it
		optional bool   // pgate:"optional": null is its zero value (a field that is no pointer)
		unsigned string // pgate:"usize": a uint64 the library reads as a usize; else u64
		seen     bool
	}
	var fields []field
	var names []string
	for i := range v.NumField() {
		f := v.Type().Field(i)
		if name, _, _ := strings.Cut(f.Tag.Get("json"), ","); name != "" && name != "-" {
			tag := f.Tag.Get("pgate")
			unsigned := "u64"
			if tag == "usize" {
				unsigned = tag
			}
			fields = append(fields, field{name: name, index: i, required: tag == "required",
				optional: tag == "optional", unsigned: unsigned})
			names = append(names, name)
		}
	}
	d := json.NewDecoder(bytes.NewReader(data))
	_, _ = d.Token() // {
	for d.More() {
		key, written := nextKey(d, data)
		if err := strictString(written, at); err != nil {
			return err
		}
		var value json.RawMessage
		_ = d.Decode(&value)
		i := 0
		for i < len(fields) && fields[i].name != key {
			i++
		}
		switch {
		case i == len(fields) && ownVisitor:
			return refuse(at, "unknown field `%s`, expected %s", key, oneOf(names))
		case i == len(fields):
			return refuse(within(at, key), "unknown field `%s`, expected %s", key, oneOf(names))
		case fields[i].seen:
			return refuse(at, "duplicate field `%s`", key)
		}
		fields[i].seen = true
		if fields[i].optional && value[0] == 'n' {
			v.Field(fields[i].index).SetZero()
		} else if err := readTyped(value, within(at, key), v.Field(fields[i].index), fields[i].unsigned); err != nil {
			return err
		}
	}
	for _, f := range fields {
		if f.required && !f.seen {
			return refuse(at, "missing field `%s`", f.name)
		}
	}
	return nil
}

// variant reads data, a JSON object, as the map form of an enum of the library's,
// {"name": value}: its first key as read and as written (its JSON string, see strictString)
// and that key's value (ok false for an empty object), and its second key as written, if it
// has one (more is false when it has none).
func variant(data []byte) (name string, written, value json.RawMessage, ok bool, second json.RawMessage, more bool) {
	d := json.NewDecoder(bytes.NewReader(data))
	_, _ = d.Token() // {
	if !d.More() {
		return "", nil, nil, false, nil, false
	}
	name, written = nextKey(d, data)
	_ = d.Decode(&value)
	if d.More() {
		_, second = nextKey(d, data)
		more = true
	}
	return name, written, value, true, second, more
}

// nextKey reads the next key of the object d reads from data: the key as encoding/json reads
// it, and as written, its JSON string.
func nextKey(d *json.Decoder, data []byte) (string, json.RawMessage) {
	from := d.InputOffset() // the end of the value before: a comma and whitespace follow
	token, _ := d.Token()
	return token.(string), bytes.TrimLeft(data[from:d.InputOffset()], " \t\r\n,")
}

// readString reads data, a JSON string (valid JSON, UTF-8), at path at, as serde_json reads
// a string (see strictString).
func readString(data []byte, at string) (string, error) {
	if err := strictString(data, at); err != nil {
		return "", err
	}
	var s string
	_ = json.Unmarshal(data, &s)
	return s, nil
}

// strictString refuses written, a JSON string as written (valid JSON) at path at, when one
// of its \u escapes is no character, in serde_json's words: a trailing surrogate alone
// (\udc00), or a leading one followed by no escape ("\ud800", "\ud800\n": "unexpected end
// of hex escape") or by one of no trailing surrogate ("\ud800\u0041": "lone leading surrogate
// in hex escape"). encoding/json reads each as U+FFFD, without an error. nil when every
// escape is a character.
func strictString(written []byte, at string) error {
	hex := func(digits []byte) uint64 {
		n, _ := strconv.ParseUint(string(digits), 16, 16) // valid JSON: four hex digits
		return n
	}
	trailing := func(n uint64) bool { return n >= 0xDC00 && n <= 0xDFFF }
	for i := 1; i < len(written)-1; i++ { // within the quotes
		if written[i] != '\\' {
			continue
		}
		if written[i+1] != 'u' {
			i++ // a one-character escape: \" or \\ among them
			continue
		}
		n := hex(written[i+2 : i+6])
		i += 5 // the escape's last digit
		switch {
		case trailing(n):
			return refuse(at, "lone leading surrogate in hex escape")
		case n < 0xD800 || n > 0xDBFF: // a character
		case written[i+1] != '\\' || written[i+2] != 'u': // the closing quote follows at worst
			return refuse(at, "unexpected end of hex escape")
		case !trailing(hex(written[i+3 : i+7])):
			return refuse(at, "lone leading surrogate in hex escape")
		default: // a pair
			i += 6
		}
	}
	return nil
}

// invalidType is serde's refusal of a value of another type than expected.
func invalidType(at string, data []byte, expected string) error {
	switch { // serde_json reads the value it refuses: strictly, a string; a number in range
	case data[0] == '"':
		if err := strictString(data, at); err != nil {
			return err
		}
	case isNumber(data):
		if _, err := strconv.ParseFloat(string(data), 64); err != nil {
			return refuse(at, "number out of range")
		}
	}
	return refuse(at, "invalid type: %s, expected %s", unexpected(data), expected)
}

// unexpected is a JSON value as serde names a value it refuses: string "x", integer `5`,
// floating point `1.5` (see serdeFloat), boolean `true`, null, sequence, map.
func unexpected(data []byte) string {
	switch data[0] {
	case '"':
		var s string
		_ = json.Unmarshal(data, &s)
		return "string " + shown.Quote(s)
	case 't', 'f':
		return "boolean `" + string(data) + "`"
	case 'n':
		return "null"
	case '[':
		return "sequence"
	case '{':
		return "map"
	}
	if isInteger(data) {
		if _, err := strconv.ParseInt(string(data), 10, 64); err == nil {
			return "integer `" + string(data) + "`"
		}
		if _, err := strconv.ParseUint(string(data), 10, 64); err == nil {
			return "integer `" + string(data) + "`"
		}
	}
	f, _ := strconv.ParseFloat(string(data), 64) // finite: invalidType refuses the others first
	return "floating point `" + serdeFloat(f) + "`"
}

// serdeFloat writes f, finite, as serde_json writes a float it refuses (zmij's shortest
// form): in decimal, with a fraction (1000000.0, 0.00001, -0.0), for a decimal exponent of
// -5 to 15; else in exponent form, the exponent signed and without leading zeros (1e+16,
// 1.5e-7). Go writes 1e+06, 1e-05 and 1e-07.
func serdeFloat(f float64) string {
	mantissa, exponent, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	n, _ := strconv.Atoi(exponent)
	if n >= -5 && n <= 15 {
		decimal := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(decimal, ".") {
			decimal += ".0"
		}
		return decimal
	}
	sign := "+"
	if n < 0 {
		sign, n = "-", -n
	}
	return mantissa + "e" + sign + strconv.Itoa(n)
}

// kind is what data, valid JSON, is, as the library names a document that is no object.
func kind(data []byte) string {
	switch data[0] {
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	}
	return "a number"
}

// isNumber reports whether data, valid JSON, is a number.
func isNumber(data []byte) bool { return data[0] == '-' || data[0] >= '0' && data[0] <= '9' }

// isInteger reports whether data, valid JSON, is a number serde_json reads as an integer:
// without a fraction or an exponent, and not -0, which it reads as the float -0.0.
func isInteger(data []byte) bool {
	return isNumber(data) && !bytes.ContainsAny(data, ".eE") && string(data) != "-0"
}

// oneOf is serde's list of what a field or a variant may be: `a`, `a` or `b`, one of `a`,
// `b`, `c`.
func oneOf(names []string) string {
	switch len(names) {
	case 1:
		return "`" + names[0] + "`"
	case 2:
		return "`" + names[0] + "` or `" + names[1] + "`"
	}
	return "one of `" + strings.Join(names, "`, `") + "`"
}

// tinyNumberWords is the library's TINY_NUMBER_REFUSAL (src/config/tiny_numbers.rs).
const tinyNumberWords = "below the smallest positive number a double holds (5e-324); it would read as 0"

// isTinyNumber reports whether number, a JSON number as written, has a digit other than 0
// before its exponent yet reads as 0 in a float64 (the library's is_tiny_number):
// strconv.ParseFloat reads 1e-400 as 0 without an error, as serde_json does. A zero as
// written (0e-400, -0.0) is none, nor is a subnormal that reads above 0 (1e-310).
func isTinyNumber(number string) bool {
	mantissa, _, _ := strings.Cut(strings.ToLower(number), "e")
	f, err := strconv.ParseFloat(number, 64)
	return strings.ContainsAny(mantissa, "123456789") && err == nil && f == 0
}

// firstTinyNumber is the field path (under at) and the text of the first number in data,
// valid JSON, that isTinyNumber, as the library refuses it before reading a document.
func firstTinyNumber(data []byte, at string) (field, number string, found bool) {
	type frame struct {
		object, keyNext bool
		key             string
		index           int
	}
	var stack []frame
	d := json.NewDecoder(bytes.NewReader(data))
	d.UseNumber()
	for {
		token, err := d.Token()
		if err != nil {
			return "", "", false
		}
		top := len(stack) - 1
		if key, ok := token.(string); ok && top >= 0 && stack[top].keyNext {
			stack[top].key, stack[top].keyNext = key, false
			continue
		}
		switch t := token.(type) {
		case json.Delim:
			if t == '{' || t == '[' {
				stack = append(stack, frame{object: t == '{', keyNext: t == '{'})
				continue
			}
			stack = stack[:top]
		case json.Number:
			if isTinyNumber(string(t)) {
				field = at
				for _, f := range stack {
					if f.object {
						field = within(field, f.key)
					} else {
						field += fmt.Sprintf("[%d]", f.index)
					}
				}
				return field, string(t), true
			}
		}
		// A value ended: the next one is under a key, or at the next index.
		if top := len(stack) - 1; top >= 0 {
			if stack[top].object {
				stack[top].keyNext = true
			} else {
				stack[top].index++
			}
		}
	}
}

// tinyNumberRefusal is the library's refusal of number at field (without its position): the
// field and the number each shortened as the library shortens a shown value.
func tinyNumberRefusal(field, number string) string {
	shortened := func(value string) string {
		if part := shown.Part(value, maxShownValueBytes); len(part) < len(value) {
			return fmt.Sprintf("%s...(%d bytes)", part, len(value))
		}
		return value
	}
	if field == "" {
		return shortened(number) + ": " + tinyNumberWords
	}
	return shortened(field) + " = " + shortened(number) + ": " + tinyNumberWords
}
