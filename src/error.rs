//! What errors of every domain share: a wasmtime error on one line, for
//! `nginx -t` output. The errors themselves are each domain's
//! (`runtime::RuntimeError`, `runtime::module::ModuleError`,
//! `shared::SharedError`, `shared::zones::ZoneError`,
//! `sys::UnknownValue`).

/// A wasmtime error and its causes on one line.
pub fn one_line(error: &wasmtime::Error) -> String {
    let chain = error
        .chain()
        .map(|cause| cause.to_string())
        .collect::<Vec<_>>()
        .join(": ");
    chain.split_whitespace().collect::<Vec<_>>().join(" ")
}
