package promotiongates_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

// A store-backed gate's config, read, changed and swapped back: the store comes along (a
// running gate keeps the store it was opened with).
func ExampleGate_SwapConfig() {
	dir, err := os.MkdirTemp("", "pgate-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := promotiongates.DefaultConfig()
	cfg.Gate = "checkout"
	cfg.Environment, cfg.TrafficPercent = promotiongates.Canary, 10
	cfg.Store = promotiongates.DefaultSQLiteStore(filepath.Join(dir, "checkout.db"))
	gate, err := promotiongates.NewFromConfig(cfg, promotiongates.DefaultSLO())
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	doc, _ := gate.Config()
	var current promotiongates.Config
	if err := json.Unmarshal([]byte(doc), &current); err != nil {
		log.Fatal(err)
	}
	current.TrafficPercent = 20
	next, _ := json.Marshal(current)
	if err := gate.SwapConfig(string(next)); err != nil {
		log.Fatal(err)
	}
	state, _ := gate.State()
	fmt.Println(state.TrafficPercent, filepath.Base(current.Store.SQLite.Path), current.Store.SQLite.SyncIntervalMS)
	// Output: 20 checkout.db 250
}

// A hot reload that edits the gate's config reads the change count first, then the config: a
// change between the read and the swap (a rollback, a flag turned off, another reload; by the
// judge, another goroutine or another process) refuses the swap, and the change stays; read
// again, the swap is made.
func ExampleGate_SwapConfigFrom() {
	cfg := promotiongates.DefaultConfig()
	cfg.FeatureFlags = []string{"dark_mode"}
	gate, err := promotiongates.NewFromConfig(cfg, promotiongates.DefaultSLO())
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	// edit reads the change count, then the config, and turns the flag wide_layout on in it.
	edit := func() (uint64, string) {
		seen, _ := gate.ChangeCount() // first
		doc, _ := gate.Config()
		var current promotiongates.Config
		if err := json.Unmarshal([]byte(doc), &current); err != nil {
			log.Fatal(err)
		}
		current.FeatureFlags = append(current.FeatureFlags, "wide_layout")
		next, _ := json.Marshal(current)
		return seen, string(next)
	}
	seen, next := edit()
	_ = gate.DisableFeature("dark_mode") // meanwhile: a kill switch
	err = gate.SwapConfigFrom(seen, next)
	on, _ := gate.IsFeatureEnabled("dark_mode")
	fmt.Println(errors.Is(err, promotiongates.ErrGateChanged), on)

	seen, next = edit()
	if err := gate.SwapConfigFrom(seen, next); err != nil {
		log.Fatal(err)
	}
	wide, _ := gate.IsFeatureEnabled("wide_layout")
	on, _ = gate.IsFeatureEnabled("dark_mode")
	fmt.Println(wide, on)
	// Output:
	// true false
	// true false
}

// Where a document's store keeps the state, read before any gate is made: nothing is opened
// or created.
func ExampleStoreLocation() {
	for _, doc := range []string{
		`{"gate": "checkout", "store": {"sqlite": {"path": "/var/lib/promotion-gates/checkout.db"}}}`,
		`{"store": {"etcd": {"endpoints": ["http://127.0.0.1:2379"], "prefix": "/promotion-gates/checkout"}}}`,
		`{"gate": "checkout"}`,
	} {
		location, err := promotiongates.StoreLocation(doc)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%q\n", location)
	}
	_, err := promotiongates.StoreLocation(`{"store": {"sqlite": {"path": ""}}}`)
	fmt.Println(errors.Is(err, promotiongates.ErrInvalidConfig))
	// Output:
	// "sqlite:/var/lib/promotion-gates/checkout.db"
	// "etcd:/promotion-gates/checkout"
	// ""
	// true
}

// A host that pools its processes' outcomes itself refuses a gate whose store sums them too.
func ExampleGate_FleetJudging() {
	dir, err := os.MkdirTemp("", "pgate-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	cfg := promotiongates.DefaultConfig()
	cfg.Store = promotiongates.DefaultSQLiteStore(filepath.Join(dir, "checkout.db"))
	cfg.Store.SQLite.FleetJudging = false // this host pools the outcomes itself
	gate, err := promotiongates.NewFromConfig(cfg, promotiongates.DefaultSLO())
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	fleet, _ := gate.FleetJudging()
	fmt.Println(fleet)
	// Output: false
}
