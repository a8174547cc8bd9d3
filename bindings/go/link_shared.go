//go:build pgate_shared

package promotiongates

// Dynamic link (-tags pgate_shared): pkg-config's promotion_gates gives -lpromotion_gates_ffi
// and its -L. The program then loads the library's SONAME, libpromotion_gates_ffi.so.0.<minor>
// before 1.0, at run time: from a system directory after ldconfig, from LD_LIBRARY_PATH, or
// from an rpath, e.g.
//
//	CGO_LDFLAGS="-Wl,-rpath,$(pkg-config --variable=libdir promotion_gates)" \
//	go build -tags pgate_shared ./...

// #cgo pkg-config: promotion_gates
import "C"
