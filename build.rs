//! Generates the Rust side of the C shim's boundary header, so the two
//! languages share one declaration of every function and type that crosses.

use std::env;
use std::path::PathBuf;

fn main() {
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
