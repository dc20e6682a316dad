//! ngx_proxy_wasm: a Proxy-Wasm host for nginx, on wasmtime.
//!
//! Layers, from the guest outwards:
//! - `abi`: the Proxy-Wasm ABI: enums, wire formats, guest memory and the
//!   host functions modules import;
//! - `runtime`: wasmtime engine, compiled modules, live instances;
//! - `chain`: a request's run through its filter chain;
//! - `callout`: HTTP calls filters make (`proxy_http_call`);
//! - `host`: what the core needs from the proxy (a trait);
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
