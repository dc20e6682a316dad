//! The boundary with the C shim: the bindings generated from
//! `ngx-glue/ngx_proxy_wasm.h`, the `Host` the shim provides, and the API
//! table it calls. All `unsafe` code of the crate lives here.

mod api;
mod nginx_host;

#[allow(non_camel_case_types, non_upper_case_globals, dead_code, clippy::all)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

use bindings::ngx_proxy_wasm_str_t;

/// The bytes of a string the shim passed in.
///
/// # Safety
/// `s.data` must point to `s.len` readable bytes (or be anything when
/// `s.len` is 0) that outlive the returned slice.
unsafe fn bytes<'a>(s: ngx_proxy_wasm_str_t) -> &'a [u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(s.data, s.len) }
}

fn str_of(bytes: &[u8]) -> ngx_proxy_wasm_str_t {
    ngx_proxy_wasm_str_t {
        data: bytes.as_ptr(),
        len: bytes.len(),
    }
}
