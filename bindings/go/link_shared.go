//go:build pgate_shared

package promotiongates

// Dynamic link (-tags pgate_shared): links -lpromotion_gates_ffi from the linker's search path.
// Point cgo at an installed library and header with the environment, e.g.
//
//	CGO_CFLAGS=-I/usr/local/include \
//	CGO_LDFLAGS=-L/usr/local/lib \
//	go build -tags pgate_shared ./...
//
// and make the library findable at run time (LD_LIBRARY_PATH or an rpath:
// CGO_LDFLAGS="-L/usr/local/lib -Wl,-rpath,/usr/local/lib"). The checked-in header of this
// repository is on the include path too, as a fallback.

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: -lpromotion_gates_ffi -lm -ldl -lpthread
import "C"
