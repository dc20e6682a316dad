//! Generates the Rust side of the C shim's boundary header, so the two
//! languages share one declaration of every function, type and enum that
//! crosses: bindgen's structs and function types, and for every C enum a
//! Rust enum with an exhaustive decoder (`TryFrom<u32>`), whose default is
//! its value 0 (what a zeroed C struct holds).

use std::collections::BTreeMap;
use std::env;
use std::fmt::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bindgen::callbacks::{EnumVariantValue, ParseCallbacks};

const HEADER: &str = "ngx-glue/ngx_proxy_wasm.h";

fn main() {
    wasmtime_version();
    println!("cargo:rerun-if-changed={HEADER}");

    let enums = Arc::new(Mutex::new(BTreeMap::new()));
    let bindings = bindgen::Builder::default()
        .header(HEADER)
        .allowlist_type("ngx_proxy_wasm_.*")
        .allowlist_var("ngx_proxy_wasm_api")
        .allowlist_var("NGX_PROXY_WASM_.*_MAX")
        // enums stay plain integers in signatures and structs: a value the
        // other side sends is decoded, never trusted to be in range
        .constified_enum("ngx_proxy_wasm_.*_e")
        .prepend_enum_name(false)
        .derive_default(true)
        .layout_tests(false)
        .parse_callbacks(Box::new(EnumCollector(enums.clone())))
        .generate()
        .expect("bindgen failed on ngx-glue/ngx_proxy_wasm.h");

    let mut code = bindings.to_string();
    for (c_name, variants) in enums.lock().expect("no panic while collecting").iter() {
        rust_enum(&mut code, c_name, variants);
    }
    let out = PathBuf::from(env::var("OUT_DIR").expect("OUT_DIR is set by cargo"));
    std::fs::write(out.join("bindings.rs"), code).expect("cannot write bindings.rs");
}

/// The values of every enum of the header (name, value), by the enum's C
/// name.
type Enums = BTreeMap<String, Vec<(String, u32)>>;

#[derive(Debug)]
struct EnumCollector(Arc<Mutex<Enums>>);

impl ParseCallbacks for EnumCollector {
    fn enum_variant_name(
        &self,
        enum_name: Option<&str>,
        variant: &str,
        value: EnumVariantValue,
    ) -> Option<String> {
        let name = enum_name?.trim_start_matches("enum ").to_string();
        let value = match value {
            EnumVariantValue::Boolean(b) => u32::from(b),
            EnumVariantValue::Signed(v) => u32::try_from(v).expect("enum values are small and positive"),
            EnumVariantValue::Unsigned(v) => u32::try_from(v).expect("enum values are small"),
        };
        let mut enums = self.0.lock().expect("no panic while collecting");
        let variants = enums.entry(name).or_default();
        if !variants.iter().any(|(known, _)| known == variant) {
            variants.push((variant.to_string(), value));
        }
        None
    }
}

/// `ngx_proxy_wasm_header_map_e` → `HeaderMap`; its values lose their
/// common prefix: `NGX_PROXY_WASM_HEADER_MAP_RESPONSE_TRAILERS` →
/// `ResponseTrailers`.
fn rust_enum(code: &mut String, c_name: &str, variants: &[(String, u32)]) {
    let Some(stem) = c_name
        .strip_prefix("ngx_proxy_wasm_")
        .and_then(|name| name.strip_suffix("_e"))
    else {
        return;
    };
    let name = camel(stem);
    let prefix = common_prefix(variants.iter().map(|(variant, _)| variant.as_str()));
    let rust_variants: Vec<(String, u32)> = variants
        .iter()
        .map(|(variant, value)| (camel(&variant[prefix.len()..]), *value))
        .collect();

    let _ = writeln!(code, "\n/// `{c_name}` of `{HEADER}`.");
    let _ = writeln!(code, "#[repr(u32)]");
    let _ = writeln!(
        code,
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]"
    );
    let _ = writeln!(code, "pub enum {name} {{");
    for (variant, value) in &rust_variants {
        // the default is what a zeroed C struct holds
        if *value == 0 {
            let _ = writeln!(code, "    #[default]");
        }
        let _ = writeln!(code, "    {variant} = {value},");
    }
    let _ = writeln!(code, "}}\n");
    let _ = writeln!(code, "impl {name} {{");
    let _ = writeln!(code, "    pub const ALL: &'static [{name}] = &[");
    for (variant, _) in &rust_variants {
        let _ = writeln!(code, "        {name}::{variant},");
    }
    let _ = writeln!(code, "    ];\n}}\n");
    let _ = writeln!(code, "impl TryFrom<u32> for {name} {{");
    let _ = writeln!(code, "    type Error = crate::sys::UnknownValue;");
    let _ = writeln!(
        code,
        "    fn try_from(raw: u32) -> Result<{name}, crate::sys::UnknownValue> {{"
    );
    let _ = writeln!(code, "        match raw {{");
    for (variant, value) in &rust_variants {
        let _ = writeln!(code, "            {value} => Ok({name}::{variant}),");
    }
    let _ = writeln!(
        code,
        "            other => Err(crate::sys::UnknownValue {{ kind: \"{c_name}\", value: other }}),"
    );
    let _ = writeln!(code, "        }}\n    }}\n}}\n");
    let _ = writeln!(code, "impl From<{name}> for u32 {{");
    let _ = writeln!(
        code,
        "    fn from(value: {name}) -> u32 {{\n        value as u32\n    }}\n}}"
    );
}

/// The longest prefix, ending with `_`, that every name starts with.
fn common_prefix<'a>(mut names: impl Iterator<Item = &'a str>) -> String {
    let Some(first) = names.next() else {
        return String::new();
    };
    let mut len = first.len();
    for name in names {
        len = first
            .bytes()
            .zip(name.bytes())
            .take(len)
            .take_while(|(a, b)| a == b)
            .count();
    }
    match first[..len].rfind('_') {
        Some(end) => first[..=end].to_string(),
        None => String::new(),
    }
}

fn camel(snake: &str) -> String {
    snake
        .split('_')
        .filter(|word| !word.is_empty())
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
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
