package promotiongates

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestTheCleanupOfASlowGateReturnsAtOnce: the cleanup of a gate collected without Close hands
// it to one goroutine that frees the collected gates one after another. The free of a
// store-backed gate waits for its sync thread's tick, here an SQLite write waiting for a lock
// another holder keeps (its busy_timeout: up to 60 s), and runtime.AddCleanup runs the
// cleanups of other objects after this one on the same goroutine: they waited that long. The
// cleanup, called as the runtime calls it, returns at once; the gates are freed once the lock
// is let go, and not before (else the free was not slow and the test proved nothing).
func TestTheCleanupOfASlowGateReturnsAtOnce(t *testing.T) {
	settle(t) // no other gate is freed meanwhile: the counts below are these gates'
	path := filepath.Join(t.TempDir(), "state.db")
	document := fmt.Sprintf(`{"store": {"sqlite": {"path": %q, "sync_interval_ms": 10, "busy_timeout_ms": 60000}}}`, path)
	var gates [3]*Gate
	for i := range gates {
		g, err := New(document, "")
		ok(t, err)
		gates[i] = g
	}
	unlock := lockWrites(t, path)
	time.Sleep(500 * time.Millisecond) // a sync tick writes each gate's contribution, and waits
	live := liveGates.Load()
	returned := make(chan struct{})
	go func() {
		for _, g := range gates {
			g.cleanup.Stop() // called here instead
			freeGate(collected{g.ptr, g.done})
		}
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(200 * time.Millisecond):
		unlock()
		<-returned
		t.Fatal("the cleanup waited for the free of a gate whose store is locked: other cleanups waited behind it")
	}
	time.Sleep(300 * time.Millisecond)
	if n := liveGates.Load(); n != live {
		t.Fatalf("freed while its store was locked (%d live gates, %d before): the free was not slow", n, live)
	}
	// One goroutine frees them, one after another: the two others wait for it, not each on a
	// goroutine (and an OS thread) of its own.
	collectedGates.Lock()
	waiting := len(collectedGates.waiting)
	collectedGates.Unlock()
	if waiting != 2 {
		t.Fatalf("%d gates wait to be freed while the first one's free waits for its store, not 2", waiting)
	}
	unlock()
	if !soon(10*time.Second, func() bool { return liveGates.Load() == live-3 }) {
		t.Fatal("not freed within 10 s of the store's unlocking")
	}
}

// lockWrites takes the write lock of the SQLite database at db (in WAL mode: byte 120 of its
// -shm file, WAL_WRITE_LOCK) until unlock is called (or the test ends). It is an open file
// description lock, which the POSIX locks SQLite takes in this same process contend with.
func lockWrites(t *testing.T, db string) (unlock func()) {
	t.Helper()
	f, err := os.OpenFile(db+"-shm", os.O_RDWR, 0)
	ok(t, err)
	const ofdSetLockWait = 38 // F_OFD_SETLKW: waits for a write of the gate's sync thread
	lock := syscall.Flock_t{Type: syscall.F_WRLCK, Whence: io.SeekStart, Start: 120, Len: 1}
	if err := syscall.FcntlFlock(f.Fd(), ofdSetLockWait, &lock); err != nil {
		t.Fatalf("locking %s-shm: %v", db, err)
	}
	unlock = sync.OnceFunc(func() { _ = f.Close() }) // the description's last close unlocks
	t.Cleanup(unlock)
	return unlock
}
