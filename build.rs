//! Generates the Rust side of the C shim's boundary header, so the two
//! languages share one declaration of every function and type that crosses.

use std::env;
use std::path::PathBuf;

fn main() {
    wasmtime_version();

    let header = "ngx-glue/ngx_proxy_wasm.h";
    println!("cargo:rerun-if-changed={header}");

    let bindings = bindgen::Builder::default()
        .header(header)
        .allowlist_type("ngx_proxy_wasm_.*")
        .allowlist_var("ngx_proxy_wasm_api")
        .rustified_enum("ngx_proxy_wasm_.*_e")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .generate()
        .expect("bindgen failed on ngx-glue/ngx_proxy_wasm.h");

    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    bindings
        .write_to_file(out.join("bindings.rs"))
        .expect("cannot write bindings.rs");
}

/// The wasmtime release the library is built with, from Cargo.lock: named in
/// the start-up notice and part of the compiled-code cache's key.
fn wasmtime_version() {
    println!("cargo:rerun-if-changed=Cargo.lock");
    let lock = std::fs::read_to_string("Cargo.lock").expect("cannot read Cargo.lock");
    let version = lock
        .split("[[package]]")
        .find_map(|package| {
            let mut lines = package.lines().map(str::trim);
            lines.find(|line| *line == "name = \"wasmtime\"")?;
            lines.find_map(|line| line.strip_prefix("version = \"")?.strip_suffix('"'))
        })
        .expect("Cargo.lock has no wasmtime package");
    println!("cargo:rustc-env=NGX_PROXY_WASM_WASMTIME_VERSION={version}");
}
