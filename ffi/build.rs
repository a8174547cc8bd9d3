//! Names the shared library in itself (its ELF SONAME), with the version of its ABI:
//! `libpromotion_gates_ffi.so.0.<minor>` before 1.0, when a minor release may change the ABI,
//! and `libpromotion_gates_ffi.so.<major>` from 1.0. A program linked with the library, by
//! `-l` or by its path (as Meson and CMake link pkg-config's libraries), records that name,
//! which the loader looks up: not the path it was linked from (a tree installed and then moved
//! would not load otherwise), and not the unversioned development link (a program built
//! against 0.1 would load 0.2, whose ABI differs). `packaging/install.sh` installs the library
//! as `libpromotion_gates_ffi.so.<version>` with the links `.so.<abi>` and `.so`, and
//! `--build-tree-pc` writes the `.so.<abi>` link beside this build's library.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // ELF platforms; Mach-O names a library by its install name, and Windows by its DLL.
    if !matches!(os.as_str(), "macos" | "ios" | "windows" | "") {
        let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_default();
        let minor = std::env::var("CARGO_PKG_VERSION_MINOR").unwrap_or_default();
        let abi = if major == "0" {
            format!("0.{minor}")
        } else {
            major
        };
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpromotion_gates_ffi.so.{abi}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
