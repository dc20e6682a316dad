//! The boundary with the C shim: the `Host` nginx provides through the
//! shim's function table, and the API table the shim calls. The types of
//! both are generated from `ngx-glue/ngx_proxy_wasm.h` (`crate::sys`).
//! All `unsafe` code of the crate lives here.

mod api;
mod api_lua;
mod nginx;

use crate::sys::ngx_proxy_wasm_str_t;

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
