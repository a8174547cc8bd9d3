package promotiongates

import (
	"encoding/json"
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
