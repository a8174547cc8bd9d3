//! Names the shared library in itself (its ELF SONAME): a program linked with the library by
//! its path, as Meson and CMake link pkg-config's libraries, then records the name
//! `libpromotion_gates_ffi.so`, which the loader looks up, not the path it was linked from
//! (a tree installed and then moved would not load otherwise).

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    // ELF platforms; Mach-O names a library by its install name, and Windows by its DLL.
    if !matches!(os.as_str(), "macos" | "ios" | "windows" | "") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libpromotion_gates_ffi.so");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
