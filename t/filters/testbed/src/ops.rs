//! Steps that exercise one host function each: foreign functions, local
//! responses to gRPC requests, gRPC calls and streams.

use log::info;
use proxy_wasm::types::{BufferType, MapType, Status};

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

/// declare <name> <readonly 0|1> [type]: Envoy's declare_property, its
/// arguments serialized as DeclarePropertyArguments.
pub fn declare(name: &str, readonly: &str, kind: &str) {
    let mut args = vec![0x0a, name.len() as u8];
    args.extend_from_slice(name.as_bytes());
    args.extend_from_slice(&[0x10, (readonly == "1") as u8]);
    args.extend_from_slice(&[0x18, kind.parse().unwrap_or(0)]);
    match proxy_wasm::hostcalls::call_foreign_function("declare_property", Some(&args)) {
        Ok(_) => info!("declared {}", name),
        Err(status) => info!("declare {} failed: {:?}", name, status),
    }
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect()
}

fn put_bytes(out: &mut Vec<u8>, field: u8, bytes: &[u8]) {
    out.push(field << 3 | 2);
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push(len as u8 | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
}

/// verify <hash> <key: DER in hex, or "pem:" and PEM> <signature in hex>
/// <text>: Envoy's verify_signature, and the VerifySignatureResult.
pub fn verify(hash: &str, key: &str, signature: &str, text: &str) {
    let mut args = Vec::new();
    put_bytes(&mut args, 1, hash.as_bytes());
    match key.strip_prefix("pem:") {
        Some(pem) => put_bytes(&mut args, 5, pem.as_bytes()),
        None => put_bytes(&mut args, 2, &unhex(key)),
    }
    put_bytes(&mut args, 3, &unhex(signature));
    put_bytes(&mut args, 4, text.as_bytes());
    match proxy_wasm::hostcalls::call_foreign_function("verify_signature", Some(&args)) {
        Ok(result) => {
            let result = result.unwrap_or_default();
            let ok = result.starts_with(&[0x08, 1]);
            let error = result.iter().position(|&b| b == 0x12).map(|i| String::from_utf8_lossy(&result[i + 2..]).into_owned());
            info!("verify_signature {}: {} {:?}", hash, ok, error.unwrap_or_default());
        }
        Err(status) => info!("verify_signature {} failed: {:?}", hash, status),
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

thread_local! {
    /// The last gRPC call or stream started: what grpc_send, grpc_close
    /// and grpc_cancel act on.
    static GRPC_TOKEN: std::cell::Cell<u32> = std::cell::Cell::new(0);
}

/// A message: "big:N" is N bytes (a counting pattern), "-" none, else
/// the text.
fn payload(text: &str) -> Vec<u8> {
    match text.strip_prefix("big:") {
        Some(n) => (0..n.parse::<usize>().unwrap_or(0)).map(|i| b'a' + (i % 26) as u8).collect(),
        None if text == "-" => Vec::new(),
        None => text.as_bytes().to_vec(),
    }
}

fn metadata(pairs: &[String]) -> Vec<(&str, &[u8])> {
    pairs
        .iter()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k, v.as_bytes()))
        .collect()
}

/// grpc_call <target> <service> <method> <message> <timeout_ms> [k=v...]
pub fn grpc_call(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let message = payload(arg(4));
    let timeout = std::time::Duration::from_millis(arg(5).parse().unwrap_or(0));
    let md = metadata(args.get(6..).unwrap_or(&[]));
    match proxy_wasm::hostcalls::dispatch_grpc_call(arg(1), arg(2), arg(3), md, Some(&message), timeout) {
        Ok(token) => {
            GRPC_TOKEN.with(|t| t.set(token));
            info!("grpc call #{} dispatched to {}", token, arg(1));
        }
        Err(status) => info!("grpc call to {} failed: {:?}", arg(1), status),
    }
}

/// grpc_stream <target> <service> <method> [k=v...]
pub fn grpc_stream(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    let md = metadata(args.get(4..).unwrap_or(&[]));
    match proxy_wasm::hostcalls::open_grpc_stream(arg(1), arg(2), arg(3), md) {
        Ok(token) => {
            GRPC_TOKEN.with(|t| t.set(token));
            info!("grpc stream #{} opened to {}", token, arg(1));
        }
        Err(status) => info!("grpc stream to {} failed: {:?}", arg(1), status),
    }
}

fn raw_status(status: Status) -> String {
    match status {
        Status::Ok => "ok".into(),
        Status::NotFound => "not found".into(),
        Status::BadArgument => "bad argument".into(),
        other => format!("{:?}", other),
    }
}

/// grpc_send <message> [end]: on the last stream, with the raw status.
pub fn grpc_send(message: &str, end: bool) {
    let token = GRPC_TOKEN.with(|t| t.get());
    let message = payload(message);
    let status = unsafe { super::proxy_grpc_send(token, message.as_ptr(), message.len(), end) };
    info!("grpc send #{} {} bytes{}: {}", token, message.len(), if end { ", end" } else { "" }, raw_status(status));
}

/// grpc_close / grpc_cancel: of the last call or stream.
pub fn grpc_end(cancel: bool) {
    let token = GRPC_TOKEN.with(|t| t.get());
    let status = unsafe {
        if cancel {
            super::proxy_grpc_cancel(token)
        } else {
            super::proxy_grpc_close(token)
        }
    };
    info!("grpc {} #{}: {}", if cancel { "cancel" } else { "close" }, token, raw_status(status));
}

fn shown(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(40)]).into_owned();
    text.replace('\n', "\\n")
}

fn log_metadata(token: u32, which: &str, entries: Vec<(String, Vec<u8>)>) {
    info!("grpc stream #{} {} metadata: {} entries", token, which, entries.len());
    for (name, value) in entries {
        info!("grpc stream #{} {} \"{}: {}\"", token, which, name, shown(&value));
    }
}

/// What a gRPC callback got, logged for the tests.
pub fn log_grpc_response(token: u32, status: u32, size: usize) {
    if status == 0 {
        let body = proxy_wasm::hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).unwrap().unwrap_or_default();
        info!("grpc call #{} response: status 0, {} bytes \"{}\"", token, body.len(), shown(&body));
    } else {
        let (code, message) = proxy_wasm::hostcalls::get_grpc_status().unwrap();
        info!("grpc call #{} response: status {} \"{}\"", token, code, message.unwrap_or_default());
    }
}

pub fn log_grpc_initial_metadata(token: u32) {
    let entries = proxy_wasm::hostcalls::get_map_bytes(MapType::GrpcReceiveInitialMetadata).unwrap();
    log_metadata(token, "initial", entries);
}

pub fn log_grpc_message(token: u32, size: usize) {
    let body = proxy_wasm::hostcalls::get_buffer(BufferType::GrpcReceiveBuffer, 0, size).unwrap().unwrap_or_default();
    info!("grpc stream #{} message: {} bytes \"{}\"", token, body.len(), shown(&body));
}

pub fn log_grpc_trailing_metadata(token: u32) {
    let entries = proxy_wasm::hostcalls::get_map_bytes(MapType::GrpcReceiveTrailingMetadata).unwrap();
    log_metadata(token, "trailing", entries);
}

pub fn log_grpc_close(token: u32, status: u32) {
    let (code, message) = proxy_wasm::hostcalls::get_grpc_status().unwrap();
    info!("grpc stream #{} close: status {} ({}) \"{}\"", token, status, code, message.unwrap_or_default());
}
