//go:build !pgatedebug

package promotiongates

// Without -tags pgatedebug the collection points cost nothing (see debug_gc_test.go).
const debugGC = false

func gcPoint() {}

func startGCHammer() (stop func()) { return func() {} }
