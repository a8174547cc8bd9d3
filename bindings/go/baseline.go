package promotiongates

// #include "promotion_gates.h"
import "C"

import (
	"runtime"
	"unsafe"
)

// routeUnguarded is Route without the Close guard (no in-flight count): the baseline that
// BenchmarkRouteUnguarded sets beside BenchmarkRoute, so that the guard's cost is read from
// one run. Not for use: it races with Close.
func routeUnguarded(g *Gate, id []byte) (Decision, error) {
	var d Decision
	st := C.pgate_route(g.ptr, (*C.uint8_t)(unsafe.SliceData(id)), C.size_t(len(id)), &d.c)
	runtime.KeepAlive(g)
	return d, statusError("pgate_route", st)
}
