// A Go host of an installed promotion-gates, built as a module outside the repository:
// route GATE PERCENT ID routes one request on a canary of PERCENT % and prints "canary
// BUCKET" or "stable BUCKET". packaging/test.sh writes its go.mod.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: route GATE PERCENT ID")
		os.Exit(2)
	}
	percent, err := strconv.ParseFloat(os.Args[2], 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	config, err := json.Marshal(map[string]any{
		"gate":        os.Args[1],
		"environment": map[string]any{"canary": map[string]any{"traffic_percent": percent}},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	gate, err := promotiongates.New(string(config), "")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	defer gate.Close()
	decision, err := gate.RouteString(os.Args[3])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	side := "stable"
	if decision.IsCanary() {
		side = "canary"
	}
	fmt.Println(side, decision.Bucket())
}
