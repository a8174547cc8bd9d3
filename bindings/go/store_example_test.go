package promotiongates_test

import (
	"encoding/json"
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
