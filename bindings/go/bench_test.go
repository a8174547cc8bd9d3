package promotiongates

import (
	"fmt"
	"testing"
	"time"
)

// benchIDs are request ids of a typical length (a session id), cycled by the benchmarks.
var benchIDs = func() [][]byte {
	ids := make([][]byte, 1024)
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("user-%06d-session-7f3a9c", i))
	}
	return ids
}()

var benchStrings = func() []string {
	s := make([]string, len(benchIDs))
	for i, id := range benchIDs {
		s[i] = string(id)
	}
	return s
}()

func benchGate(b *testing.B) *Gate {
	return newGate(b, `{"environment": {"canary": {"traffic_percent": 10}}, "feature_flags": ["new_api"]}`, "")
}

// serial runs op(i) in a benchmark loop, i counting calls.
func serial(b *testing.B, op func(i int) error) {
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if err := op(i); err != nil {
			b.Fatal(err)
		}
		i++
	}
}

// parallel runs op(i) on every P at once, i counting each goroutine's calls.
func parallel(b *testing.B, op func(i int) error) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for i := 0; pb.Next(); i++ {
			if err := op(i); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// route and routeBaseline are the subject and its baseline: with and without the Close guard.
func route(g *Gate) func(int) error {
	return func(i int) error { _, err := g.Route(benchIDs[i%len(benchIDs)]); return err }
}

func routeBaseline(g *Gate) func(int) error {
	return func(i int) error { _, err := routeUnguarded(g, benchIDs[i%len(benchIDs)]); return err }
}

// BenchmarkRoute: Route with the Close guard (the call counted in flight around the cgo call).
func BenchmarkRoute(b *testing.B) { serial(b, route(benchGate(b))) }

// BenchmarkRouteUnguarded is the baseline beside BenchmarkRoute: the same cgo call without
// the guard, so that the difference is the guard's cost.
func BenchmarkRouteUnguarded(b *testing.B) { serial(b, routeBaseline(benchGate(b))) }

// BenchmarkRouteString: RouteString passes the string's bytes without copying.
func BenchmarkRouteString(b *testing.B) {
	g := benchGate(b)
	serial(b, func(i int) error { _, err := g.RouteString(benchStrings[i%len(benchStrings)]); return err })
}

// BenchmarkRecord records successes (which never trigger the judge's error screen).
func BenchmarkRecord(b *testing.B) {
	g := benchGate(b)
	decisions := make([]Decision, len(benchIDs))
	for i, id := range benchIDs {
		d, err := g.Route(id)
		if err != nil {
			b.Fatal(err)
		}
		decisions[i] = d
	}
	serial(b, func(i int) error {
		_, err := g.Record(decisions[i%len(decisions)], true, 3*time.Millisecond)
		return err
	})
}

// BenchmarkHasFeature: the allocation-free flag lookup (a cached, sorted name list).
func BenchmarkHasFeature(b *testing.B) {
	g := benchGate(b)
	d, _ := g.RouteString("x")
	for !d.IsCanary() {
		d, _ = g.RouteString(fmt.Sprint(d.Bucket()))
	}
	serial(b, func(int) error {
		if has, err := g.HasFeature(d, "new_api"); !has || err != nil {
			return fmt.Errorf("HasFeature = %v, %v", has, err)
		}
		return nil
	})
}

// BenchmarkRouteParallel: every P routes on one Gate (each goroutine counts its calls on a
// counter picked by its stack).
func BenchmarkRouteParallel(b *testing.B) { parallel(b, route(benchGate(b))) }

// BenchmarkRouteParallelUnguarded is the baseline beside BenchmarkRouteParallel.
func BenchmarkRouteParallelUnguarded(b *testing.B) { parallel(b, routeBaseline(benchGate(b))) }
