//! Links the NIF with `-z nodelete`: once loaded, the library is never
//! unmapped, even when `Caravan.Native` is purged or deleted. Caravan's DNS
//! runtime thread runs code from this library for the life of the process,
//! so unmapping it under that thread would crash the VM; with `nodelete` a
//! reload (dlopen of the same file) finds the same library, statics and
//! runtime. (glibc already keeps a library with live thread-local
//! destructors mapped; this makes it a promise rather than a side effect.)
fn main() {
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
