//go:build !pgate_shared

package promotiongates

// Static link (the default): pkg-config's promotion_gates-static gives
// -lpromotion_gates_ffi_static, a link to the archive libpromotion_gates_ffi.a under a name no
// shared library has, so the archive is linked into every binary and programs and test
// binaries need no library at run time. Install it first (packaging/install.sh at the
// repository root; add PREFIX/lib/pkgconfig to PKG_CONFIG_PATH when PREFIX is not one
// pkg-config searches). Build with -tags pgate_shared to link the shared library instead
// (link_shared.go). bindings/go/test.sh points pkg-config at the checkout's own build.

// #cgo pkg-config: promotion_gates-static
import "C"
