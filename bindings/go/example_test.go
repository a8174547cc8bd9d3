package promotiongates_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
)

func Example() {
	gate, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 10}}, "feature_flags": ["new_api"]}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()

	d, _ := gate.RouteString("user-12345-session") // deterministic: same id, same version
	newAPI, _ := gate.HasFeature(d, "new_api")
	// ... serve the request with the version d.IsCanary() picks ...
	recorded, _ := gate.Record(d, true, 12*time.Millisecond)

	err = gate.Promote(promotiongates.Canary, 50) // ramping up is gated on evidence
	fmt.Println(d.IsCanary(), newAPI, recorded, errors.Is(err, promotiongates.ErrInsufficientData))
	// Output: false false counted true
}
