package promotiongates

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConfigOfAStoreBackedGateSwapsBack: a store-backed gate's Config, read into a Config,
// changed and swapped back, keeps its store (the store was dropped, and the swap refused with
// "invalid store = null: ... a running gate cannot move its state").
func TestConfigOfAStoreBackedGateSwapsBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	g := newGate(t, fmt.Sprintf(`{"environment": {"canary": {"traffic_percent": 10}},
		"store": {"sqlite": {"path": %q, "busy_timeout_ms": 500}}}`, path), "")
	var cfg Config
	ok(t, json.Unmarshal([]byte(mustConfig(t, g)), &cfg))
	want := SQLiteStore{Path: path, SyncIntervalMS: 250, BusyTimeoutMS: 500, FleetJudging: true}
	if cfg.Store == nil || cfg.Store.SQLite == nil || *cfg.Store.SQLite != want || cfg.Store.Etcd != nil {
		t.Fatalf("Store = %+v, want the SQLite store %+v", cfg.Store, want)
	}
	cfg.TrafficPercent = 20
	next, err := json.Marshal(cfg)
	ok(t, err)
	ok(t, g.SwapConfig(string(next)))
	if s, err := g.State(); err != nil || s.TrafficPercent != 20 {
		t.Fatalf("after the swap: %+v %v", s, err)
	}
}

// TestConfigKeepsEveryFieldOfTheLibrarysDocument: Config reads and writes back every field
// of the library's PromotionConfig, and refuses one it does not know rather than drop it.
func TestConfigKeepsEveryFieldOfTheLibrarysDocument(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	g := newGate(t, fmt.Sprintf(`{"environment": {"canary": {"traffic_percent": 12.5}},
		"feature_flags": ["new_api"], "auto_rollback_enabled": false, "slo_threshold": 0.9,
		"rollback_window_seconds": 60, "gate": "checkout", "salt": "s2",
		"graduated_flags": ["dark_mode"], "max_rollback_history": 7,
		"store": {"sqlite": {"path": %q, "sync_interval_ms": 40, "busy_timeout_ms": 0, "fleet_judging": false}},
		"overrides": {"header": "X-Canary", "cookie": "canary", "canary_ids": ["qa-1"], "stable_ids": ["vip-1"]}}`, path), "")
	doc := mustConfig(t, g)
	var cfg Config
	ok(t, json.Unmarshal([]byte(doc), &cfg))
	again, err := json.Marshal(cfg)
	ok(t, err)
	var library, ours map[string]any
	ok(t, json.Unmarshal([]byte(doc), &library))
	ok(t, json.Unmarshal(again, &ours))
	if !reflect.DeepEqual(library, ours) {
		t.Fatalf("Config changed the document\nlibrary %s\n   ours %s", doc, again)
	}
	for _, unknown := range []string{`{"future_field": 1}`, `{"store": {"sqlite": {"path": "a.db", "future": 1}}}`} {
		if err := json.Unmarshal([]byte(unknown), &cfg); err == nil || !strings.Contains(err.Error(), "future") {
			t.Fatalf("Unmarshal(%s) = %v, want an error naming the unknown field", unknown, err)
		}
	}
}

// TestNewFromConfigWithAStore: a typed store opens the gate on it, and FleetJudging and
// StoreLocation read it back.
func TestNewFromConfigWithAStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	cfg := DefaultConfig()
	cfg.Gate = "checkout"
	cfg.Store = DefaultSQLiteStore(path)
	cfg.Store.SQLite.FleetJudging = false
	g, err := NewFromConfig(cfg, DefaultSLO())
	ok(t, err)
	defer g.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the gate did not open its store: %v", err)
	}
	var back Config
	ok(t, json.Unmarshal([]byte(mustConfig(t, g)), &back))
	if !reflect.DeepEqual(back.Store, cfg.Store) {
		t.Fatalf("the gate's store %+v, want %+v", back.Store.SQLite, cfg.Store.SQLite)
	}
	if fleet, err := g.FleetJudging(); err != nil || fleet {
		t.Fatalf("FleetJudging = %v %v, want false", fleet, err)
	}
	doc, err := json.Marshal(cfg)
	ok(t, err)
	if at, err := StoreLocation(string(doc)); err != nil || at != "sqlite:"+path {
		t.Fatalf("StoreLocation = %q %v", at, err)
	}
	etcd := DefaultEtcdStore([]string{"http://127.0.0.1:2379"}, "/pg/checkout")
	cfg.Store = etcd
	doc, err = json.Marshal(cfg)
	ok(t, err)
	if at, err := StoreLocation(string(doc)); err != nil || at != "etcd:/pg/checkout" {
		t.Fatalf("StoreLocation(etcd) = %q %v", at, err)
	}
}

// TestStoreSectionsAreChecked: neither or both sections are refused before the library is
// called, a bad value by the library, each naming the field.
func TestStoreSectionsAreChecked(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		store    *Store
		target   error
		mentions string
	}{
		{&Store{}, ErrInvalidConfig, "invalid store = {}"},
		{&Store{SQLite: &SQLiteStore{Path: "a.db"}, Etcd: &EtcdStore{}}, ErrInvalidConfig, "not both"},
		{&Store{SQLite: &SQLiteStore{Path: filepath.Join(dir, "a.db")}}, ErrInvalidConfig, "store.sqlite.sync_interval_ms"},
		{DefaultEtcdStore(nil, "/pg/a"), ErrInvalidConfig, "store.etcd.endpoints"},
		{DefaultSQLiteStore(""), ErrInvalidConfig, "store.sqlite.path"},
	}
	for _, c := range cases {
		cfg := DefaultConfig()
		cfg.Store = c.store
		g, err := NewFromConfig(cfg, DefaultSLO())
		if g != nil {
			g.Close()
			t.Fatalf("store %+v: a gate was made", c.store)
		}
		if pe := wantErr(t, err, c.target); !strings.Contains(pe.Message, c.mentions) {
			t.Fatalf("store %+v: message %q should mention %q", c.store, pe.Message, c.mentions)
		}
	}
}

func TestStoreLocationReadsTheDocumentAlone(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	deep := "/" + strings.Repeat("d", 600) + "/a.db" // longer than the first buffer
	for doc, want := range map[string]string{
		fmt.Sprintf(`{"store": {"sqlite": {"path": %q}}}`, path): "sqlite:" + path,
		`{"store": {"sqlite": {"path": "gates/a.db"}}}`:          "sqlite:gates/a.db",
		fmt.Sprintf(`{"store": {"sqlite": {"path": %q}}}`, deep): "sqlite:" + deep,
		`{"gate": "checkout"}`:                                   "",
		"":                                                       "",
	} {
		if got, err := StoreLocation(doc); err != nil || got != want {
			t.Fatalf("StoreLocation(%s) = %q %v, want %q", doc, got, err, want)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("StoreLocation created or opened %s: %v", path, err)
	}
	pe := wantErr(t, must(StoreLocation(`{"store": {"sqlite": {"path": "a.db", "sync_interval_ms": 5}}}`)), ErrInvalidConfig)
	if !strings.Contains(pe.Message, "store.sqlite.sync_interval_ms") || !strings.Contains(pe.Message, "5") {
		t.Fatalf("message %q should name the field and value", pe.Message)
	}
	wantErr(t, must(StoreLocation(`{"store": {"sqlite": {"pth": "a.db"}}}`)), ErrInvalidJSON)
}

func TestFleetJudgingIsTheStoresSetting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gate.db")
	for doc, want := range map[string]bool{
		fmt.Sprintf(`{"store": {"sqlite": {"path": %q}}}`, path): true, // the default
		`{"gate": "no-store"}`: false,
	} {
		g := newGate(t, doc, "")
		if got, err := g.FleetJudging(); err != nil || got != want {
			t.Fatalf("FleetJudging(%s) = %v %v, want %v", doc, got, err, want)
		}
		ok(t, g.Close())
		if _, err := g.FleetJudging(); !errors.Is(err, ErrClosed) {
			t.Fatalf("closed: %v", err)
		}
	}
}

func TestDocumentReadsAnswerAsTheGateMadeFromTheDocument(t *testing.T) {
	dir := t.TempDir()
	docs := []string{
		"",
		`{"gate": "search"}`,
		fmt.Sprintf(`{"gate": "on", "store": {"sqlite": {"path": %q}}}`, filepath.Join(dir, "on.db")),
		fmt.Sprintf(`{"gate": "off", "store": {"sqlite": {"path": %q, "fleet_judging": false}}}`, filepath.Join(dir, "off.db")),
	}
	for _, doc := range docs {
		before, err := os.ReadDir(dir)
		ok(t, err)
		name, err := DocumentGateName(doc)
		ok(t, err)
		sums, err := DocumentFleetJudging(doc)
		ok(t, err)
		after, err := os.ReadDir(dir)
		ok(t, err)
		if len(after) != len(before) {
			t.Fatalf("the document reads of %s created %v", doc, after)
		}
		g := newGate(t, doc, "")
		gateName, err := g.Name()
		ok(t, err)
		gateSums, err := g.FleetJudging()
		ok(t, err)
		if name != gateName || sums != gateSums {
			t.Fatalf("document %s: %q %v, its gate: %q %v", doc, name, sums, gateName, gateSums)
		}
		ok(t, g.Close())
	}
	if name, err := DocumentGateName(""); err != nil || name != "default" {
		t.Fatalf("DocumentGateName(\"\") = %q %v", name, err)
	}
	longest := strings.Repeat("n", 128) // the longest name: PGATE_NAME_CAPACITY - 1 bytes
	if name, err := DocumentGateName(fmt.Sprintf(`{"gate": %q}`, longest)); err != nil || name != longest {
		t.Fatalf("the longest name: %q %v", name, err)
	}
}

func TestDocumentReadsRefuseWhatNewRefuses(t *testing.T) {
	reads := map[string]func(string) error{
		"DocumentGateName":     func(doc string) error { return must(DocumentGateName(doc)) },
		"DocumentFleetJudging": func(doc string) error { return must(DocumentFleetJudging(doc)) },
	}
	for name, read := range reads {
		if pe := wantErr(t, read(`{"gate": ""}`), ErrInvalidConfig); !strings.Contains(pe.Message, `invalid gate = ""`) {
			t.Fatalf("%s: message %q should name the field and value", name, pe.Message)
		}
		if pe := wantErr(t, read(`{"gate": `), ErrInvalidJSON); !strings.Contains(pe.Message, "invalid JSON config") {
			t.Fatalf("%s: message %q", name, pe.Message)
		}
	}
}

// TestADocumentWithAByteOrderMarkIsRefusedInTheLibrarysWords: Config and SLO read past no
// UTF-8 byte order mark, as the library reads past none, and say so in its words (they said
// encoding/json's "invalid character 'ï' looking for beginning of value").
func TestADocumentWithAByteOrderMarkIsRefusedInTheLibrarysWords(t *testing.T) {
	const bom = "\xEF\xBB\xBF"
	_, err := New(bom+`{"gate": "a"}`, "")
	library := wantErr(t, err, ErrInvalidJSON)
	if library.Message != "invalid JSON config: starts with a UTF-8 byte order mark (EF BB BF): save it without one" {
		t.Fatalf("library: %q", library.Message)
	}
	var cfg Config
	if pe := wantErr(t, cfg.UnmarshalJSON([]byte(bom+`{"gate": "a"}`)), ErrInvalidJSON); pe.Message != library.Message {
		t.Errorf("Config: %q, library: %q", pe.Message, library.Message)
	}
	_, err = New("", bom+`{}`)
	library = wantErr(t, err, ErrInvalidJSON)
	var slo SLO
	if pe := wantErr(t, slo.UnmarshalJSON([]byte(bom+`{}`)), ErrInvalidJSON); pe.Message != library.Message {
		t.Errorf("SLO: %q, library: %q", pe.Message, library.Message)
	}
}

// must drops a value, keeping the error.
func must[T any](_ T, err error) error { return err }

// TestDocumentsAreReadAsTheLibraryReadsThem: Config and SLO read a document as the library
// reads it, and refuse what it refuses with its message (without the position it adds): a
// build reading with encoding/json took a misspelled traffic_percent, a canary without one and
// an environment naming two for a canary at 0 %, keys in any case, a field given twice (the
// last won) and null for a number (the default stayed), with json's bare errors.
func TestDocumentsAreReadAsTheLibraryReadsThem(t *testing.T) {
	position := regexp.MustCompile(` at line \d+ column \d+$`)
	long := strings.Repeat("x", 400)
	for _, doc := range []string{
		`{"environment": {"canary": {"trafic_percent": 20}}}`,
		`{"environment": {"canary": {}}}`,
		`{"environment": {"canary": {"traffic_percent": 10}, "staging": null}}`,
		`{"environment": {"canary": {"traffic_percent": 10, "traffic_percent": 20}}}`,
		`{"Environment": {"CANARY": {"Traffic_Percent": 10}}, "SLO_Threshold": 0.5}`,
		`{"environment": {"CANARY": {"traffic_percent": 10}}}`,
		`{"environment": {"canary": {"Traffic_Percent": 10}}}`,
		`{"environment": {"canary": {"traffic_percent": "5"}}}`,
		`{"environment": {"canary": [5]}}`,
		`{"environment": "bogus"}`,
		`{"environment": "canary"}`,
		`{"environment": 5}`,
		`{"environment": [1]}`,
		`{"environment": {}}`,
		`{"environment": {"canry": {}}}`,
		`{"environment": null}`,
		`{"environment": {"staging": 1}}`,
		`{"environment": "` + long + `"}`,
		`{"overrides": {"header": "X-Canary", "cokie": "c"}}`,
		`{"overrides": {"canary_ids": null}}`,
		`{"overrides": {"canary_ids": ["a", 5]}}`,
		`{"overrides": 5}`,
		`{"slo_threshold": null}`,
		`{"slo_threshold": "x"}`,
		`{"rollback_window_seconds": 1.5}`,
		`{"rollback_window_seconds": -1}`,
		`{"rollback_window_seconds": 1e3}`,
		`{"rollback_window_seconds": 100000000000000000000}`,
		`{"feature_flags": null}`,
		`{"feature_flags": "a"}`,
		`{"salt": 5}`,
		`{"auto_rollback_enabled": 1}`,
		`{"gate": "a", "gate": "b"}`,
		`{"` + long + `": 1}`,
		`{"store": {"sqlite": {}}}`,
		`{"store": {"sqlite": {"path": "a.db", "busy": 1}}}`,
		`{"store": {"sqlite": 5}}`,
		`{"store": {}}`,
		`{"store": {"sqlite": {"path": "a.db"}, "etcd": {"endpoints": [], "prefix": "/x"}}}`,
		`{"store": {"etcd": {"prefix": "/x"}}}`,
		`{"store": {"etcd": {"endpoints": ["http://e:2379"]}}}`,
		`{"store": {"mysql": {}}}`,
		`{"store": {"etcd": {"endpoints": [], "prefix": "/x", "tls": true}}}`,
		`{"environment": {"production": {}}}`,
		`{"max_rollback_history": -100000000000000000000}`,
		`{"store": "` + long + `"}`,
		`{"overrides": ["X-Canary", "c", ["a"], []]}`,
		`{"store": {"sqlite": ["a.db"]}}`,
		`{"store": {"etcd": [["http://e:2379"], "/x"]}}`,
		`{"environment": {"canary": {"traffic_percent": 1e-400}}}`,
		`{"rollback_window_seconds": -1E-999}`,
		`{"gate": "a", "slo_threshold": 0.` + strings.Repeat("0", 400) + `1}`,
		`{"feature_flags": [], "store": {"sqlite": {"path": "a.db", "sync_interval_ms": 1e-400}}}`,
		`[1]`,
		`"production"`,
		// serde_json refuses an escape that is no character, which encoding/json reads as
		// U+FFFD: a trailing surrogate alone, a leading one without its trailing one.
		`{"salt": "\udc00"}`,
		`{"salt": "\ud800"}`,
		`{"gate": "a\ud800\u0041"}`,
		`{"gate": "a\ud800\n"}`,
		`{"gate": "\ud800\udc00\udc00"}`,
		`{"\udc00": 1}`,
		`{"gate": "g", "\ud800": 1}`,
		`{"slo_threshold": "\udc00"}`,
		`{"overrides": {"canary_ids": ["u", "\udc00"]}}`,
		`{"overrides": {"he\ud800ader": "x"}}`,
		`{"environment": "\udc00"}`,
		`{"environment": {"\udc00": null}}`,
		`{"environment": {"staging": null, "\udc00": 1}}`,
		`{"environment": {"canary": {"\udc00": 1}}}`,
		`{"store": "\udc00"}`,
		`{"store": {"\udc00": {}}}`,
		`{"store": {"sqlite": {"path": "\udc00.db"}}}`,
		`{"store": {"sqlite": {"path": "a.db"}, "\udc00": 1}}`,
		// A refused number as serde_json writes it: decimal for an exponent of -5 to 15,
		// else an exponent without leading zeros; -0 is a float.
		`{"rollback_window_seconds": 1e6}`,
		`{"gate": 0.00001}`,
		`{"gate": 1e-7}`,
		`{"max_rollback_history": -0}`,
		`{"gate": -0}`,
		`{"gate": 1e15}`,
		`{"gate": 1e16}`,
		`{"gate": -1.5e-300}`,
		`{"gate": 1e400}`,
		`{"rollback_window_seconds": 123456.789}`,
	} {
		var cfg Config
		pe := wantErr(t, json.Unmarshal([]byte(doc), &cfg), ErrInvalidJSON)
		_, err := New(doc, "")
		library := wantErr(t, err, ErrInvalidJSON)
		if want := position.ReplaceAllString(library.Message, ""); pe.Message != want {
			t.Errorf("%.80s:\n   Config: %s\n  library: %s", doc, pe.Message, want)
		}
	}
	for _, doc := range []string{
		`{"min_samples": 40, "later_field": 1}`,
		`{"Min_Samples": 40}`,
		`{"latency_target_ms": null}`,
		`{"min_samples": 1.5}`,
		`{"promotion_evidence": "yes"}`,
		`{"min_samples": 40, "min_samples": 50}`,
		`{"warm_up_ms": -5}`,
		`{"no_data_ms": -0.5}`,
		`{"latency_target_ms": 1e300}`,
		`{"evaluation_interval_ms": 2e22}`,
		`{"p99_budget_ms": -1e300}`,
		`{"latency_tolerance_ms": 1e-7}`,
		`{"max_error_rate": 1e-400}`,
		`{"latency_tolerance_ms": 1e-400}`,
		`{"latency_target_ms": 1e-400}`,
		`{"min_samples": -0}`,
		`{"min_samples": 1e20}`,
		`{"promotion_evidence": 0.0001}`,
		`{"promotion_evidence": "\udc00"}`,
	} {
		var slo SLO
		pe := wantErr(t, json.Unmarshal([]byte(doc), &slo), ErrInvalidJSON)
		_, err := New("", doc)
		library := wantErr(t, err, ErrInvalidJSON)
		if want := position.ReplaceAllString(library.Message, ""); pe.Message != want {
			t.Errorf("SLO %s:\n      SLO: %s\n  library: %s", doc, pe.Message, want)
		}
	}
	// Bytes that are not UTF-8 are refused as New refuses them, an ErrInvalidArgument
	// (encoding/json read each as U+FFFD, and the gate opened with another name, salt, store
	// or allow-list id).
	for _, doc := range []string{
		"{\"gate\":\"a\xff\"}",
		"{\"salt\": \"caf\xe9\"}",
		"{\"store\":{\"sqlite\":{\"path\":\"\xe9.db\"}}}",
		"{\"overrides\":{\"canary_ids\":[\"u\xff\"]}}",
		"{\"gate\":\"g\", \"\xed\xa0\x80\": 1}",
		// Shown as the library shows bytes: cut at 160 bytes unless inside a whole
		// character, characters as Rust escapes them.
		"{\"salt\": \"" + strings.Repeat("a", 150) + "\xa3\xa3\"}",
		"{\"salt\": \"" + strings.Repeat("a", 148) + "\xe2\x82\xac\xff\"}",
		"{\"salt\": \"x\x7f\xff\"}",
		"{\"salt\": \"e\u0301\u00ad\u00a0'\\\"\xff\"}",
	} {
		cfg := DefaultConfig()
		pe := wantErr(t, json.Unmarshal([]byte(doc), &cfg), ErrInvalidArgument)
		_, err := New(doc, "")
		if library := wantErr(t, err, ErrInvalidArgument); pe.Message != library.Message {
			t.Errorf("%q:\n   Config: %s\n  library: %s", doc, pe.Message, library.Message)
		}
		if !reflect.DeepEqual(cfg, DefaultConfig()) {
			t.Errorf("%q: a refused document changed the config: %+v", doc, cfg)
		}
	}
	{
		sloNotUTF8 := "{\"min_samples\": 40, \"w\xffarm_up_ms\": 1}"
		var notUTF8 SLO
		pe := wantErr(t, json.Unmarshal([]byte(sloNotUTF8), &notUTF8), ErrInvalidArgument)
		_, err := New("", sloNotUTF8)
		if library := wantErr(t, err, ErrInvalidArgument); pe.Message != library.Message {
			t.Errorf("SLO %q:\n      SLO: %s\n  library: %s", sloNotUTF8, pe.Message, library.Message)
		}
		var o Overrides
		if pe := wantErr(t, json.Unmarshal([]byte("{\"canary_ids\": [\"u\xff\"]}"), &o), ErrInvalidArgument); pe.Message !=
			`invalid overrides = "{\"canary_ids\": [\"u\xff\"]}": section overrides is not valid UTF-8 (invalid byte at offset 18)` {
			t.Errorf("Overrides alone: %s", pe.Message)
		}
	}
	// What the library takes is taken: null for an optional field, the map form of staging.
	var cfg Config
	ok(t, json.Unmarshal([]byte(`{"environment": {"staging": null}, "salt": null, "store": null, "overrides": {"header": null}}`), &cfg))
	if cfg.Environment != Staging || cfg.Store != nil || cfg.Overrides == nil || cfg.Overrides.Header != "" {
		t.Errorf("the optional fields as null: %+v", cfg)
	}
	var slo SLO
	ok(t, json.Unmarshal([]byte(`{"p99_budget_ms": null}`), &slo))
	// A zero as written, a subnormal and a text that reads as a tiny number are read as they
	// are (encoding/json reads 1e-400 as 0 without an error, so the binding checks the text).
	ok(t, json.Unmarshal([]byte(`{"environment": {"canary": {"traffic_percent": -0.0e-400}}, "salt": "1e-400"}`), &cfg))
	if cfg.TrafficPercent != 0 || cfg.Salt != "1e-400" {
		t.Errorf("a zero and a text: %+v", cfg)
	}
	ok(t, json.Unmarshal([]byte(`{"max_error_rate": 1e-310}`), &slo))
	if slo.MaxErrorRate != 1e-310 {
		t.Errorf("a subnormal: %v", slo.MaxErrorRate)
	}
	// A Store read alone is named from store.
	var store Store
	pe := wantErr(t, json.Unmarshal([]byte(`{"sqlite": {}}`), &store), ErrInvalidJSON)
	if pe.Message != "invalid JSON config: store.sqlite: missing field `path`" {
		t.Errorf("a Store read alone: %q", pe.Message)
	}
}

// TestSectionsAloneAreReadAsTheLibraryReadsThem: Overrides, SQLiteStore and EtcdStore read
// alone (json.Unmarshal into them, as a host reading its own file does) refuse what the library
// refuses of them inside a config, with its message from their path (overrides, store.sqlite,
// store.etcd), and leave the value as it was: read by encoding/json, they took unknown keys,
// keys in any case and a field given twice (the last won), and dropped the rest silently.
func TestSectionsAloneAreReadAsTheLibraryReadsThem(t *testing.T) {
	position := regexp.MustCompile(` at line \d+ column \d+$`)
	long := strings.Repeat("x", 400)
	type section struct {
		name    string
		docs    []string
		read    func([]byte) (any, error) // into a value set before, which must stay
		inside  func(string) string       // the section in a config document
		initial any
	}
	before := Overrides{Header: "X-Before"}
	sqlite := SQLiteStore{Path: "before.db", SyncIntervalMS: 11}
	etcd := EtcdStore{Endpoints: []string{"http://before:2379"}, Prefix: "/before"}
	sections := []section{
		{"Overrides", []string{
			`{"header": "X-Canary", "cokie": "c"}`,
			`{"Header": "X-Canary"}`,
			`{"HEADER": "X-Canary"}`,
			`{"header": "a", "header": "b"}`,
			`{"canary_ids": null}`,
			`{"canary_ids": ["a", 5]}`,
			`{"stable_ids": "a"}`,
			`{"cookie": 5}`,
			`{"` + long + `": 1}`,
			`5`,
			`["X-Canary", "c", ["a"], []]`,
		}, func(doc []byte) (any, error) {
			o := before
			err := json.Unmarshal(doc, &o)
			return o, err
		}, func(doc string) string { return `{"overrides": ` + doc + `}` }, before},
		{"SQLiteStore", []string{
			`{}`,
			`{"path": "a.db", "busy": 1}`,
			`{"Path": "a.db"}`,
			`{"path": "a.db", "path": "b.db"}`,
			`{"path": "a.db", "sync_interval_ms": -1}`,
			`{"path": "a.db", "sync_interval_ms": 1.5}`,
			`{"path": "a.db", "sync_interval_ms": 1e-400}`,
			`{"path": "a.db", "fleet_judging": null}`,
			`{"path": null}`,
			`5`,
			`["a.db"]`,
		}, func(doc []byte) (any, error) {
			s := sqlite
			err := json.Unmarshal(doc, &s)
			return s, err
		}, func(doc string) string { return `{"store": {"sqlite": ` + doc + `}}` }, sqlite},
		{"EtcdStore", []string{
			`{"prefix": "/x"}`,
			`{"endpoints": ["http://e:2379"]}`,
			`{"endpoints": [], "prefix": "/x", "tls": true}`,
			`{"Endpoints": [], "prefix": "/x"}`,
			`{"endpoints": [], "prefix": "/x", "prefix": "/y"}`,
			`{"endpoints": "http://e:2379", "prefix": "/x"}`,
			`{"endpoints": [], "prefix": "/x", "sync_interval_ms": "10"}`,
			`"etcd"`,
			`[["http://e:2379"], "/x"]`,
		}, func(doc []byte) (any, error) {
			e := etcd
			err := json.Unmarshal(doc, &e)
			return e, err
		}, func(doc string) string { return `{"store": {"etcd": ` + doc + `}}` }, etcd},
	}
	for _, s := range sections {
		for _, doc := range s.docs {
			got, err := s.read([]byte(doc))
			pe := wantErr(t, err, ErrInvalidJSON)
			_, err = New(s.inside(doc), "")
			library := wantErr(t, err, ErrInvalidJSON)
			if want := position.ReplaceAllString(library.Message, ""); pe.Message != want {
				t.Errorf("%s %.80s:\n  alone: %s\nlibrary: %s", s.name, doc, pe.Message, want)
			}
			if !reflect.DeepEqual(got, s.initial) {
				t.Errorf("%s %.80s: refused, but changed to %+v", s.name, doc, got)
			}
		}
	}
	// What the library takes is taken, the fields left out at the library's defaults.
	var o Overrides
	ok(t, json.Unmarshal([]byte(`{"header": null, "cookie": "c", "canary_ids": ["a"]}`), &o))
	if !reflect.DeepEqual(o, Overrides{Cookie: "c", CanaryIDs: []string{"a"}}) {
		t.Errorf("Overrides read %+v", o)
	}
	var s SQLiteStore
	ok(t, json.Unmarshal([]byte(`{"path": "a.db", "busy_timeout_ms": 5}`), &s))
	if want := (SQLiteStore{Path: "a.db", SyncIntervalMS: 250, BusyTimeoutMS: 5, FleetJudging: true}); s != want {
		t.Errorf("SQLiteStore read %+v, want %+v", s, want)
	}
	var e EtcdStore
	ok(t, json.Unmarshal([]byte(`{"endpoints": ["http://e:2379"], "prefix": "/x"}`), &e))
	if want := (EtcdStore{Endpoints: []string{"http://e:2379"}, Prefix: "/x", SyncIntervalMS: 1000, FleetJudging: true}); !reflect.DeepEqual(e, want) {
		t.Errorf("EtcdStore read %+v, want %+v", e, want)
	}
}

// TestARefusedStoreLeavesTheValueAsItWas: a Store whose document is refused is as it was (it
// was left holding the part read before the refusal).
func TestARefusedStoreLeavesTheValueAsItWas(t *testing.T) {
	store := *DefaultSQLiteStore("kept.db")
	wantErr(t, json.Unmarshal([]byte(`{"sqlite": {"path": "a.db", "busy": 1}}`), &store), ErrInvalidJSON)
	if !reflect.DeepEqual(store, *DefaultSQLiteStore("kept.db")) {
		t.Errorf("a refused Store changed it to %+v", store.SQLite)
	}
}

// TestSLODurationsAreTheLibrarys: a duration SLO reads is the one the library reads, rounded
// to the nanosecond as it rounds (0.0000007 ms was read as 0, no tolerance, where the library
// reads 1 ns), and one a time.Duration cannot hold is refused as the library's validation
// refuses it (an ErrInvalidConfig naming the field and value; it was read as -292 years), the
// SLO left as it was.
func TestSLODurationsAreTheLibrarys(t *testing.T) {
	for _, doc := range []string{
		`{"latency_tolerance_ms": 0.0000007}`,
		`{"latency_tolerance_ms": 0.0000015}`,
		`{"latency_target_ms": 0.0029, "warm_up_ms": 1234.5678912}`,
	} {
		var slo SLO
		ok(t, json.Unmarshal([]byte(doc), &slo))
		library, err := newGate(t, "", doc).SLO()
		ok(t, err)
		if slo != library {
			t.Errorf("%s: read as %+v, the library's %+v", doc, slo, library)
		}
	}
	for _, doc := range []string{`{"warm_up_ms": 1e13}`, `{"no_data_ms": 9300000000000}`} {
		slo := DefaultSLO()
		err := json.Unmarshal([]byte(doc), &slo)
		pe := wantErr(t, err, ErrInvalidConfig)
		_, err = New("", doc)
		wantErr(t, err, ErrInvalidConfig)
		var field string
		var value float64
		for k, v := range map[string]float64{"warm_up_ms": 1e13, "no_data_ms": 9.3e12} {
			if strings.Contains(doc, k) {
				field, value = k, v
			}
		}
		if want := "invalid " + field + " = " + strconv.FormatFloat(value, 'f', -1, 64) + ": "; !strings.HasPrefix(pe.Message, want) {
			t.Errorf("%s: message %q, want it to start %q", doc, pe.Message, want)
		}
		if slo != DefaultSLO() {
			t.Errorf("%s: refused, but changed the SLO to %+v", doc, slo)
		}
	}
}

// TestANameGivenEmptyIsRefused: a salt, override header or cookie given as "" is refused as
// the library refuses it (its message and status): the binding's "" means none, and a Config
// or Overrides read it as none and wrote it back as none, a document the library takes in
// place of one it refuses. null stays none.
func TestANameGivenEmptyIsRefused(t *testing.T) {
	for doc, section := range map[string]string{
		`{"salt": ""}`:                                                   "",
		`{"overrides": {"header": ""}}`:                                  `{"header": ""}`,
		`{"overrides": {"cookie": "", "header": "X-C"}}`:                 `{"cookie": "", "header": "X-C"}`,
		`{"overrides": {"header": null, "cookie": ""}}`:                  `{"header": null, "cookie": ""}`,
		`{"gate": "g", "overrides": {"stable_ids": [""], "header": ""}}`: `{"stable_ids": [""], "header": ""}`,
	} {
		_, err := New(doc, "")
		library := wantErr(t, err, ErrInvalidConfig)
		cfg := DefaultConfig()
		pe := wantErr(t, json.Unmarshal([]byte(doc), &cfg), ErrInvalidConfig)
		if pe.Message != library.Message {
			t.Errorf("%s:\n  Config: %s\n library: %s", doc, pe.Message, library.Message)
		}
		if !reflect.DeepEqual(cfg, DefaultConfig()) {
			t.Errorf("%s: refused, but changed the Config to %+v", doc, cfg)
		}
		if section == "" {
			continue
		}
		o := Overrides{Header: "kept"}
		pe = wantErr(t, json.Unmarshal([]byte(section), &o), ErrInvalidConfig)
		if pe.Message != library.Message || o.Header != "kept" {
			t.Errorf("Overrides %s: %q, %+v; library: %s", section, pe.Message, o, library.Message)
		}
	}
	var cfg Config
	ok(t, json.Unmarshal([]byte(`{"salt": null, "overrides": {"header": null, "cookie": null}}`), &cfg))
}

// TestTheP99BudgetEdgeIsTheLibrarys: no Go source of the binding holds the library's p99 budget
// edge (the lower edge of its histogram's last bucket, which its refusals name) as a number of
// its own, so a change of the edge cannot leave the binding saying an old one: its refusal of
// a budget of 0 is the library's.
func TestTheP99BudgetEdgeIsTheLibrarys(t *testing.T) {
	_, err := New("", `{"p99_budget_ms": 1e9}`)
	pe := wantErr(t, err, ErrInvalidConfig)
	edge := regexp.MustCompile(`below ([0-9.]+) ms`).FindStringSubmatch(pe.Message)
	if edge == nil {
		t.Fatalf("no edge in the library's refusal: %s", pe.Message)
	}
	ok(t, filepath.WalkDir(".", func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		text, err := os.ReadFile(path)
		if err == nil && strings.Contains(string(text), edge[1]) {
			t.Errorf("%s holds the library's p99 budget edge, %s ms: take it from the library", path, edge[1])
		}
		return err
	}))
}

// TestAP99BudgetGivenAsZeroIsRefused: a p99_budget_ms given as 0 is refused as the library
// refuses it (its message and status): P99Budget's 0 means no budget, and an SLO read it as
// none and wrote it back as null, a document the library takes in place of one it refuses.
// null stays none; the shortest budget stays itself.
func TestAP99BudgetGivenAsZeroIsRefused(t *testing.T) {
	for _, doc := range []string{
		`{"p99_budget_ms": 0}`,
		`{"p99_budget_ms": -0}`,
		`{"warm_up_ms": 5, "p99_budget_ms": 0.0}`,
	} {
		_, err := New("", doc)
		library := wantErr(t, err, ErrInvalidConfig)
		before := DefaultSLO()
		before.P99Budget = 7 * time.Millisecond
		slo := before
		pe := wantErr(t, json.Unmarshal([]byte(doc), &slo), ErrInvalidConfig)
		if pe.Message != library.Message {
			t.Errorf("%s:\n    SLO: %s\nlibrary: %s", doc, pe.Message, library.Message)
		}
		if slo != before {
			t.Errorf("%s: refused, but changed the SLO to %+v", doc, slo)
		}
	}
	for doc, want := range map[string]time.Duration{`{"p99_budget_ms": null}`: 0, `{"p99_budget_ms": 0.000001}`: time.Nanosecond} {
		slo := DefaultSLO()
		ok(t, json.Unmarshal([]byte(doc), &slo))
		if slo.P99Budget != want {
			t.Errorf("%s: read P99Budget %v, want %v", doc, slo.P99Budget, want)
		}
	}
}
