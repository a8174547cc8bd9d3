package promotiongates

/*
#include "promotion_gates.h"

// As in gate.go: the library keeps no pointer beyond the call and never calls back into Go.
#cgo noescape pgate_fleet_judging
#cgo nocallback pgate_fleet_judging
#cgo noescape pgate_store_location
#cgo nocallback pgate_store_location
#cgo noescape pgate_document_gate_name
#cgo nocallback pgate_document_gate_name
#cgo noescape pgate_document_fleet_judging
#cgo nocallback pgate_document_fleet_judging
*/
import "C"

import (
	"encoding/json"
	"reflect"

	"github.com/promotion-gates/promotion-gates/bindings/go/internal/shown"
)

// Store is a config's store section: the state store that keeps the gate's release state and
// history, shared by every process that opens it (docs/store.md). Exactly one of SQLite and
// Etcd is set; Config.Store nil (no "store" key) keeps the state in this process only. A
// running gate keeps the store it was opened with: a swapped config must name the same store,
// so read the gate's Config, change it and swap it back (the store comes along).
type Store struct {
	SQLite *SQLiteStore // store.sqlite: one SQLite file on one host
	Etcd   *EtcdStore   // store.etcd: an etcd cluster (builds with the cargo feature etcd)
}

// SQLiteStore is store.sqlite. Start from DefaultSQLiteStore: the zero value's SyncIntervalMS
// (0) is refused, and its FleetJudging (false) turns fleet-wide judging off.
type SQLiteStore struct {
	Path           string `json:"path" pgate:"required"` // the database file, created when missing; its directory must exist
	SyncIntervalMS uint64 `json:"sync_interval_ms"`      // how often to read other processes' writes, 10 ..= 60000 ms
	BusyTimeoutMS  uint64 `json:"busy_timeout_ms"`       // how long a write waits for another's lock, 0 ..= 60000 ms
	FleetJudging   bool   `json:"fleet_judging"`         // judge the summed outcomes of every process on the store
}

// EtcdStore is store.etcd. Start from DefaultEtcdStore: the zero value's SyncIntervalMS (0) is
// refused, and its FleetJudging (false) turns fleet-wide judging off.
type EtcdStore struct {
	Endpoints      []string `json:"endpoints" pgate:"required"` // http://host:port of one or more cluster members
	Prefix         string   `json:"prefix" pgate:"required"`    // this gate's key prefix, e.g. /promotion-gates/checkout
	SyncIntervalMS uint64   `json:"sync_interval_ms"`           // how often to re-read beside the watch, 10 ..= 60000 ms
	FleetJudging   bool     `json:"fleet_judging"`              // judge the summed outcomes of every process on the store
}

// DefaultSQLiteStore returns a store section for the SQLite file at path with the library's
// defaults: reads every 250 ms, waits up to 2000 ms for another process's lock, fleet-wide
// judging on.
func DefaultSQLiteStore(path string) *Store {
	return &Store{SQLite: &SQLiteStore{Path: path, SyncIntervalMS: 250, BusyTimeoutMS: 2000, FleetJudging: true}}
}

// DefaultEtcdStore returns a store section for the etcd cluster at endpoints and the key
// prefix with the library's defaults: re-reads every 1000 ms, fleet-wide judging on.
func DefaultEtcdStore(endpoints []string, prefix string) *Store {
	return &Store{Etcd: &EtcdStore{Endpoints: endpoints, Prefix: prefix, SyncIntervalMS: 1000, FleetJudging: true}}
}

// storeJSON is the wire form of Store: {"sqlite": {...}} or {"etcd": {...}}.
type storeJSON struct {
	SQLite *SQLiteStore `json:"sqlite,omitempty"`
	Etcd   *EtcdStore   `json:"etcd,omitempty"`
}

// MarshalJSON writes the library's JSON form. A Store with neither or both sections set is an
// ErrInvalidConfig naming the field, as the library names a value it refuses.
func (s Store) MarshalJSON() ([]byte, error) {
	switch {
	case s.SQLite == nil && s.Etcd == nil:
		return nil, &Error{Status: StatusInvalidConfig, Message: "invalid store = {}: one store, sqlite or etcd"}
	case s.SQLite != nil && s.Etcd != nil:
		return nil, &Error{Status: StatusInvalidConfig, Message: "invalid store = {sqlite, etcd}: one store, sqlite or etcd, not both"}
	}
	w := storeJSON{SQLite: s.SQLite}
	if s.Etcd != nil {
		etcd := *s.Etcd
		etcd.Endpoints = nonNil(etcd.Endpoints) // the library names [] rather than a null
		w.Etcd = &etcd
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the library's JSON form as the library reads it (see
// Config.UnmarshalJSON): missing fields take the library's defaults; a section without its
// path (SQLite) or endpoints and prefix (etcd), a field the binding does not know, a key not
// in its exact case, both stores or none are refused with an ErrInvalidJSON in the library's
// words, the path starting at store ("invalid JSON config: store.sqlite: missing field
// `path`"). A refused document leaves s as it was.
func (s *Store) UnmarshalJSON(data []byte) error {
	var read Store
	if err := readJSON(data, "store", sectionDocument("store"), func(data []byte) error { return read.readAt(data, "store") }); err != nil {
		return err
	}
	*s = read
	return nil
}

// storeForms are the forms a store takes, as its errors list them.
const storeForms = `{"sqlite": {"path": ...}} or {"etcd": {...}}`

// shownStoreTextBytes is the most of a refused text (a string given as the store, a second key)
// the library's store errors show (SHOWN_TEXT_BYTES in src/store/config/store_wire.rs).
const shownStoreTextBytes = 48

// readAt reads a store as the library does (src/store/config/store_wire.rs).
func (s *Store) readAt(data []byte, at string) error {
	switch data[0] {
	case '"':
		text, err := readString(data, at)
		if err != nil {
			return err
		}
		return refuse(at, "invalid type: string %s, expected %s", shown.Quoted(text, shownStoreTextBytes), storeForms)
	case '{':
	default:
		return invalidType(at, data, storeForms)
	}
	name, written, value, ok, secondWritten, more := variant(data)
	if err := strictString(written, at); ok && err != nil {
		return err
	}
	*s = Store{}
	var section reflect.Value
	switch {
	case !ok:
		return refuse(at, "invalid value: an empty map, expected %s", storeForms)
	case name == "sqlite":
		s.SQLite = DefaultSQLiteStore("").SQLite
		section = reflect.ValueOf(s.SQLite).Elem()
	case name == "etcd":
		s.Etcd = DefaultEtcdStore(nil, "").Etcd
		section = reflect.ValueOf(s.Etcd).Elem()
	default:
		return refuse(at, "unknown variant `%s`, expected %s", name, oneOf([]string{"sqlite", "etcd"}))
	}
	if err := readValue(value, within(at, name), section); err != nil {
		return err
	}
	if more {
		second, err := readString(secondWritten, at)
		if err != nil {
			return err
		}
		return refuse(at, "invalid value: a second key %s, expected %s", shown.Quoted(second, shownStoreTextBytes), storeForms)
	}
	return nil
}

func (*SQLiteStore) libraryForm() (string, bool) { return "struct SqliteStoreConfig", false }

func (*EtcdStore) libraryForm() (string, bool) { return "struct EtcdStoreConfig", false }

// UnmarshalJSON reads the section store.sqlite alone as the library reads it inside a config
// (see Store.UnmarshalJSON): missing fields take the library's defaults (DefaultSQLiteStore),
// and what the library refuses there is refused, with the path starting at store.sqlite
// ("invalid JSON config: store.sqlite: missing field `path`"). A refused document leaves s as
// it was.
func (s *SQLiteStore) UnmarshalJSON(data []byte) error {
	return readSection(data, "store.sqlite", s, *DefaultSQLiteStore("").SQLite)
}

// UnmarshalJSON reads the section store.etcd alone as the library reads it inside a config
// (see Store.UnmarshalJSON): missing fields take the library's defaults (DefaultEtcdStore),
// and what the library refuses there is refused, with the path starting at store.etcd
// ("invalid JSON config: store.etcd: missing field `prefix`"). A refused document leaves s as
// it was.
func (s *EtcdStore) UnmarshalJSON(data []byte) error {
	return readSection(data, "store.etcd", s, *DefaultEtcdStore(nil, "").Etcd)
}

// FleetJudging reports whether the gate's state store sums the outcomes every process records
// for the judge (the store's fleet_judging, on unless the document turns it off); false for
// a gate without a store (pgate_fleet_judging). A gate keeps the store it was opened with, so
// the answer never changes. A host that pools its processes' outcomes itself refuses a gate
// that answers true: every outcome would be counted once per process.
func (g *Gate) FleetJudging() (bool, error) {
	return g.readBool("pgate_fleet_judging", func(p *C.pgate_gate) (answer C.bool, st C.pgate_status) {
		st = C.pgate_fleet_judging(p, &answer)
		return answer, st
	})
}

// StoreLocation returns where a config document's state store keeps the gate's state, read
// from the document alone: nothing is opened or created (pgate_store_location). It is
// "sqlite:" and the file path as the document writes it (a relative path is opened against
// the working directory of the process that opens the gate), "etcd:" and the key prefix, or
// "" for a document without a store (its gate's state lives and dies with the gate). A host
// that resolves paths itself, or refuses a relative one, asks before New would create the
// file; a host that shares memory between the processes of one gate keys it by this and the
// gate's name. "" is the default document.
//
// Errors: those of New for a document New would refuse (ErrInvalidJSON, ErrInvalidConfig
// naming the field and value, ErrInvalidArgument), all but one check that depends on the SLO,
// which this function does not take: rollback_window_seconds against the SLO's
// evaluation_interval_ms (at most a tenth of the window), which New checks for the SLO it is
// given. So {"rollback_window_seconds": 5} is read here, and New refuses it with the default
// SLO (a 1 s interval), accepts it with an interval of 500 ms or less.
func StoreLocation(configJSON string) (string, error) {
	return documentText("pgate_store_location", configJSON, func(doc *C.uint8_t, n C.size_t, buf *C.char, size C.size_t, out *C.size_t, cerr **C.pgate_error) C.pgate_status {
		return C.pgate_store_location(doc, n, buf, size, out, cerr)
	})
}

// documentText runs op, a C call that reads a text from a config document alone into a caller
// buffer (pgate_store_location, pgate_document_gate_name), through readText.
func documentText(op, configJSON string, call func(*C.uint8_t, C.size_t, *C.char, C.size_t, *C.size_t, **C.pgate_error) C.pgate_status) (string, error) {
	doc, n := optionalBytes(configJSON)
	return readText(op, cBuffer(func(buf *C.char, size C.size_t, out *C.size_t) (C.pgate_status, error) {
		var cerr *C.pgate_error
		st := call(doc, n, buf, size, out, &cerr)
		return st, takeError(op, st, cerr) // frees the object on every path
	}))
}

// DocumentGateName returns the gate name of a config document (its "gate", or "default"
// without one), read from the document alone: nothing is opened or created
// (pgate_document_gate_name). It is what Gate.Name answers for the gate New makes from the
// document: a host that refuses two gates of one name (they would share one state in a
// store) asks before New writes the second's state there. "" is the default document.
//
// Errors: those of New for a document New would refuse (ErrInvalidJSON, ErrInvalidConfig
// naming the field and value, ErrInvalidArgument), all but the window against the SLO's
// evaluation_interval_ms, which depends on the SLO New is given and New checks (see
// StoreLocation).
func DocumentGateName(configJSON string) (string, error) {
	return documentText("pgate_document_gate_name", configJSON, func(doc *C.uint8_t, n C.size_t, buf *C.char, size C.size_t, out *C.size_t, cerr **C.pgate_error) C.pgate_status {
		return C.pgate_document_gate_name(doc, n, buf, size, out, cerr)
	})
}

// DocumentFleetJudging reports whether a config document's state store sums the outcomes
// every process records for the judge (its store's fleet_judging, on unless the document turns
// it off; false without a store), read from the document alone: nothing is opened or created
// (pgate_document_fleet_judging). It is what Gate.FleetJudging answers for the gate New makes
// from the document: a host that pools its processes' outcomes itself refuses the document
// before New writes its state into the store. "" is the default document.
//
// Errors: those of New for a document New would refuse (ErrInvalidJSON, ErrInvalidConfig
// naming the field and value, ErrInvalidArgument), all but the window against the SLO's
// evaluation_interval_ms, which depends on the SLO New is given and New checks (see
// StoreLocation).
func DocumentFleetJudging(configJSON string) (bool, error) {
	doc, n := optionalBytes(configJSON)
	var sums C.bool
	var cerr *C.pgate_error
	st := C.pgate_document_fleet_judging(doc, n, &sums, &cerr)
	if err := takeError("pgate_document_fleet_judging", st, cerr); err != nil {
		return false, err
	}
	return bool(sums), nil
}
