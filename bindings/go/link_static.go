//go:build !pgate_shared

package promotiongates

// Static link (the default): the archive built by `cargo build --release -p promotion-gates-ffi` at the
// repository root is linked into every binary, so tests and programs are self-contained.
// Build with -tags pgate_shared to link an installed library instead (link_shared.go).

// #cgo CFLAGS: -I${SRCDIR}/../../include
// #cgo LDFLAGS: ${SRCDIR}/../../target/release/libpromotion_gates_ffi.a -lm -ldl -lpthread
import "C"
