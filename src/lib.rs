//! ngx_proxy_wasm: a Proxy-Wasm host for nginx, on wasmtime.
//!
//! Layers, from the bottom up; each imports only from those below it:
//! - `sys`: the boundary with the C shim as generated from
//!   `ngx-glue/ngx_proxy_wasm.h` (its types, and its enums as Rust enums);
//!   `error`: what errors of every domain share;
//! - `abi`: the Proxy-Wasm ABI: status codes, enums, wire formats, guest
//!   memory, header names, property paths;
//! - `host`: what the core needs from the proxy, by concern (traits);
//! - `shared`: the rules of what filters share across workers (key-value
//!   store, queues, metrics), on the host's shared memory;
//! - `callout`: HTTP calls filters make (`proxy_http_call`);
//! - `runtime`: wasmtime engine, compiled modules, live instances, their
//!   state and host functions, and what a worker's instances reach;
//! - `chain`: a request's run through its filter chain;
//! - `ffi`: the C boundary: nginx's implementation of `host` and the API
//!   table the C shim in `ngx-glue/` calls.

pub mod abi;
pub mod callout;
pub mod chain;
pub mod error;
pub mod host;
pub mod runtime;
pub mod shared;

mod ffi;
pub(crate) mod sys;

/// This library and the runtime it is built on, as the start-up notice and
/// the compiled-code cache name them.
pub const VERSION: &str = concat!(
    "ngx_proxy_wasm ",
    env!("CARGO_PKG_VERSION"),
    ", wasmtime ",
    env!("NGX_PROXY_WASM_WASMTIME_VERSION")
);
