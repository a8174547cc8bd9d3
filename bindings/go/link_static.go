//go:build !pgate_shared

package promotiongates

// Static link (the default): pkg-config's promotion_gates-static names the archive
// libpromotion_gates_ffi.a by path, so it is linked into every binary and programs and test
// binaries need no library at run time. Install it first (packaging/install.sh at the
// repository root; add PREFIX/lib/pkgconfig to PKG_CONFIG_PATH when PREFIX is not one
// pkg-config searches). Build with -tags pgate_shared to link the shared library instead
// (link_shared.go). bindings/go/test.sh points pkg-config at the checkout's own build.

// #cgo pkg-config: promotion_gates-static
import "C"
