package canaryproxy_test

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"

	promotiongates "github.com/promotion-gates/promotion-gates/bindings/go"
	"github.com/promotion-gates/promotion-gates/bindings/go/canaryproxy"
)

func Example() {
	gate, err := promotiongates.New(`{"environment": {"canary": {"traffic_percent": 10}}}`, "")
	if err != nil {
		log.Fatal(err)
	}
	defer gate.Close()
	// Two upstreams; in production, the URLs of the stable and the canary deployments.
	stableServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "stable") }))
	defer stableServer.Close()
	canaryServer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, "canary") }))
	defer canaryServer.Close()
	stable, _ := url.Parse(stableServer.URL)
	canary, _ := url.Parse(canaryServer.URL)

	proxy, err := canaryproxy.New(canaryproxy.Options{
		Gate: gate, Stable: stable, Canary: canary,
		KeyHeader: "X-Request-Id", KeyCookie: "session", // else the client's IP address
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", proxy.MetricsHandler())      // read-only: a scrape never judges
	mux.Handle("GET /canary/status", proxy.StatusHandler()) // read-only: config and upstreams
	mux.Handle("/", proxy)
	front := httptest.NewServer(mux) // http.ListenAndServe(":8080", mux)
	defer front.Close()

	req, _ := http.NewRequest(http.MethodGet, front.URL+"/api", nil)
	req.Header.Set("X-Request-Id", "user-12345-session")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()

	res, err = http.Get(front.URL + "/metrics")
	if err != nil {
		log.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	fmt.Println(string(body), strings.Contains(string(metrics), `promotion_window_requests{gate="default",cohort="stable"} 1`))
	// Output: stable true
}
