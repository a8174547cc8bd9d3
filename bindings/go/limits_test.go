package promotiongates

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// A document longer than the library's MAX_DOCUMENT_BYTES is refused by Config's and SLO's
// UnmarshalJSON as New refuses it, in the library's words, and leaves the value as it was;
// one of exactly MAX_DOCUMENT_BYTES is read.
func TestUnmarshalRefusesADocumentOverMaxDocumentBytes(t *testing.T) {
	over := `{"gate":"g",` + strings.Repeat(" ", 9<<20) + `"salt":"s"}`
	_, libraryErr := New(over, "")
	wantErr(t, libraryErr, ErrInvalidConfig)
	c := DefaultConfig()
	err := json.Unmarshal([]byte(over), &c)
	wantErr(t, err, ErrInvalidConfig)
	if err.Error() != libraryErr.Error() || !strings.Contains(err.Error(), fmt.Sprintf("invalid document = a PromotionConfig of %d bytes", len(over))) {
		t.Fatalf("binding: %v\nlibrary: %v", err, libraryErr)
	}
	if !reflect.DeepEqual(c, DefaultConfig()) {
		t.Fatalf("a refused document changed the config: %+v", c)
	}
	var o Overrides
	wantErr(t, o.UnmarshalJSON([]byte(`{"header":"X-Canary"`+strings.Repeat(" ", 9<<20)+`}`)), ErrInvalidConfig)

	overSLO := `{"min_samples":40` + strings.Repeat(" ", 9<<20) + `}`
	_, libraryErr = New("", overSLO)
	wantErr(t, libraryErr, ErrInvalidConfig)
	s := DefaultSLO()
	err = json.Unmarshal([]byte(overSLO), &s)
	if err == nil || err.Error() != libraryErr.Error() || s != DefaultSLO() {
		t.Fatalf("binding: %v\nlibrary: %v", err, libraryErr)
	}

	at := `{"gate":"g"` + strings.Repeat(" ", maxDocumentBytes-len(`{"gate":"g"}`)) + `}`
	g, err := New(at, "")
	ok(t, err)
	ok(t, g.Close())
	ok(t, json.Unmarshal([]byte(at), &c))
	if c.Gate != "g" {
		t.Fatalf("gate %q", c.Gate)
	}
}

// TestJSONUnmarshalChecksTheSyntaxItself pins what json.Unmarshal does before Config's
// UnmarshalJSON runs, as the README and Config.UnmarshalJSON say: it checks the whole input's
// syntax itself, so a byte order mark, a syntax error and a byte that is not UTF-8 outside a
// string are its *json.SyntaxError, not the library's refusal, and it passes only the value,
// so whitespace around it is not counted against MAX_DOCUMENT_BYTES. UnmarshalJSON called
// directly refuses each as New does.
func TestJSONUnmarshalChecksTheSyntaxItself(t *testing.T) {
	for doc, status := range map[string]error{
		"\xEF\xBB\xBF" + `{"gate": "g"}`: ErrInvalidJSON,
		`{"gate": `:                      ErrInvalidJSON,
		`{"gate": "g"}` + "\xff":         ErrInvalidArgument,
	} {
		var syntax *json.SyntaxError
		if err := json.Unmarshal([]byte(doc), new(Config)); !errors.As(err, &syntax) {
			t.Errorf("json.Unmarshal(%q): %v, want a *json.SyntaxError", doc, err)
		}
		_, libraryErr := New(doc, "")
		library := wantErr(t, libraryErr, status)
		var cfg Config
		if pe := wantErr(t, cfg.UnmarshalJSON([]byte(doc)), status); status != ErrInvalidJSON && pe.Message != library.Message {
			t.Errorf("UnmarshalJSON(%q): %s\n  library: %s", doc, pe.Message, library.Message)
		}
	}
	padded := `{"gate": "g"}` + strings.Repeat("\n", 9<<20)
	_, libraryErr := New(padded, "")
	wantErr(t, libraryErr, ErrInvalidConfig)
	var cfg Config
	ok(t, json.Unmarshal([]byte(padded), &cfg)) // the value alone is 13 bytes
	if cfg.Gate != "g" {
		t.Fatalf("gate %q", cfg.Gate)
	}
	if err := cfg.UnmarshalJSON([]byte(padded)); err == nil || err.Error() != libraryErr.Error() {
		t.Fatalf("UnmarshalJSON: %v\n     library: %v", err, libraryErr)
	}
}
