//! Steps that exercise one host function each: foreign functions and
//! local responses to gRPC requests.

use log::info;

/// foreign <name> [text]: the call's outcome, and what came back.
pub fn foreign(name: &str, text: Option<&str>) {
    match proxy_wasm::hostcalls::call_foreign_function(name, text.map(str::as_bytes)) {
        Ok(result) => {
            let result = result.unwrap_or_default();
            let head: String = result.iter().take(4).map(|b| format!("{:02x}", b)).collect();
            info!("foreign {}: {} bytes, starting {}", name, result.len(), head);
        }
        Err(status) => info!("foreign {} failed: {:?}", name, status),
    }
}

/// foreign_roundtrip <text>: compress, then uncompress what came back.
pub fn foreign_roundtrip(text: &str) {
    let compressed = proxy_wasm::hostcalls::call_foreign_function("compress", Some(text.as_bytes()))
        .unwrap()
        .unwrap_or_default();
    let back = proxy_wasm::hostcalls::call_foreign_function("uncompress", Some(&compressed))
        .unwrap()
        .unwrap_or_default();
    info!("roundtrip {} bytes -> {} -> {:?}", text.len(), compressed.len(), String::from_utf8_lossy(&back));
}

/// respond_grpc <status> <grpc_status> [body]: a local response with a
/// gRPC status, which the SDK's send_http_response cannot give.
pub fn respond_grpc(status: &str, grpc_status: &str, body: &str) {
    let result = unsafe {
        super::proxy_send_local_response(
            status.parse().unwrap_or(0), std::ptr::null(), 0, body.as_ptr(), body.len(),
            std::ptr::null(), 0, grpc_status.parse().unwrap_or(-1),
        )
    };
    info!("proxy_send_local_response returned {}", result);
}
