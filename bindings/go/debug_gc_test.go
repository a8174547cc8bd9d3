//go:build pgatedebug

package promotiongates

import (
	"runtime"
	"sync/atomic"
)

// With -tags pgatedebug, every test helper forces a collection between operations, and a
// goroutine collects continuously, so that a Gate collected (and freed by its cleanup) while
// a call still uses it, a missing runtime.KeepAlive or a pointer kept by C shows up as a
// crash or a wrong answer instead of hiding.
const debugGC = true

func gcPoint() { runtime.GC() }

func startGCHammer() (stop func()) {
	var done atomic.Bool
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for !done.Load() {
			runtime.GC()
			runtime.Gosched()
		}
	}()
	return func() {
		done.Store(true)
		<-finished
	}
}
