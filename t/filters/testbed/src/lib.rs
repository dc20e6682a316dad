//! A filter scripted by its configuration, for the test suite.
//!
//! The plugin configuration (and the VM configuration, for `vm_start`) is a
//! list of steps separated by `;`, each `<callback> <op> [args...]`, where
//! callback is one of vm_start, configure, create, request_headers,
//! request_body, response_headers, response_body, response_trailers, log,
//! done, delete, call_response (HTTP contexts), tick, root_done,
//! root_call_response, queue_ready (root contexts). Arguments are separated by spaces;
//! `%20` and other `%XX` escapes are decoded. `trace` alone logs every
//! callback.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

mod ops;

use log::{debug, error, info, warn};
use proxy_wasm::traits::*;
use proxy_wasm::types::*;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    proxy_wasm::set_root_context(|context_id| -> Box<dyn RootContext> {
        Box::new(Root { context_id, script: Rc::new(Script::default()) })
    });
}}

extern "C" {
    fn proxy_log(level: u32, data: *const u8, size: usize) -> u32;
    fn proxy_get_buffer_bytes(kind: u32, start: usize, max: usize, data: *mut *const u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_pairs(map: u32, data: *mut *const u8, size: *mut usize) -> u32;
    fn proxy_get_header_map_value(map: u32, key: *const u8, key_size: usize, data: *mut *const u8, size: *mut usize) -> u32;
    fn proxy_add_header_map_value(map: u32, key: *const u8, key_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_send_local_response(
        status: u32, details: *const u8, details_size: usize, body: *const u8, body_size: usize,
        headers: *const u8, headers_size: usize, grpc_status: i32,
    ) -> u32;
    fn proxy_set_effective_context(context_id: u32) -> u32;
    fn proxy_define_metric(kind: u32, name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_get_property(path: *const u8, path_size: usize, data: *mut *const u8, size: *mut usize) -> u32;
    fn proxy_set_property(path: *const u8, path_size: usize, value: *const u8, value_size: usize) -> u32;
    fn proxy_get_status(code: *mut u32, data: *mut *const u8, size: *mut usize) -> u32;
    fn proxy_done() -> u32;
    // ABI 0.1.0's, which the host registers and does not implement
    fn proxy_clear_route_cache() -> u32;
    fn proxy_set_shared_data(key: *const u8, key_size: usize, value: *const u8, value_size: usize, cas: u32) -> u32;
    fn proxy_enqueue_shared_queue(queue_id: u32, value: *const u8, value_size: usize) -> u32;
    fn proxy_dequeue_shared_queue(queue_id: u32, data: *mut *const u8, size: *mut usize) -> u32;
    fn proxy_register_shared_queue(name: *const u8, name_size: usize, id: *mut u32) -> u32;
    fn proxy_get_shared_data(key: *const u8, key_size: usize, data: *mut *const u8, size: *mut usize, cas: *mut u32) -> u32;
    fn proxy_increment_metric(id: u32, offset: i64) -> u32;
    fn proxy_record_metric(id: u32, value: i64) -> u32;
    fn proxy_get_metric(id: u32, value: *mut u64) -> u32;
    // as the SDK declares them: one signature per import
    fn proxy_grpc_send(token: u32, message: *const u8, size: usize, end: bool) -> Status;
    fn proxy_grpc_cancel(token: u32) -> Status;
    fn proxy_grpc_close(token: u32) -> Status;
}

fn set_shared(key: &str, value: &[u8], cas: u32) -> u32 {
    unsafe { proxy_set_shared_data(key.as_ptr(), key.len(), value.as_ptr(), value.len(), cas) }
}

fn shared_value(key: &str) -> (Option<Vec<u8>>, u32) {
    let (value, cas) = proxy_wasm::hostcalls::get_shared_data(key).unwrap();
    (value, cas.unwrap_or(0))
}

/// `kv_incr <key>`: adds one to a number in the shared store, retrying
/// on CAS mismatches, as filters count across workers.
fn shared_increment(key: &str) {
    let mut retries = 0;
    loop {
        let (value, cas) = shared_value(key);
        let n: u64 = value.map(|v| String::from_utf8_lossy(&v).parse().unwrap_or(0)).unwrap_or(0);
        match set_shared(key, (n + 1).to_string().as_bytes(), cas) {
            0 => {
                info!("kv_incr {}: {} after {} retries", key, n + 1, retries);
                return;
            }
            8 => retries += 1,
            status => {
                info!("kv_incr {} failed: {}", key, status);
                return;
            }
        }
    }
}

/// A queue of this VM by name.
fn own_queue(name: &str) -> Option<u32> {
    proxy_wasm::hostcalls::resolve_shared_queue("", name).unwrap()
}

/// The id of a metric defined by `metric`, by its name, or an id as a
/// number (`#4`: another filter's, say).
fn metric_id(name: &str) -> u32 {
    if let Some(id) = name.strip_prefix('#') {
        return id.parse().unwrap_or(0xdead);
    }
    METRICS.with(|m| m.borrow().get(name).copied()).unwrap_or(0xdead)
}

/// `call <target> <method> <path> [<authority> [<timeout ms> [<body> [<header=value>...]]]]`:
/// dispatches an HTTP call with the SDK and logs the token or the error.
fn dispatch(args: &[String]) {
    let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
    // '' sends :authority empty, "-" leaves it out
    let authority = match arg(4) {
        "" => "localhost",
        "''" => "",
        authority => authority,
    };
    let mut headers = vec![(":method", arg(2)), (":path", arg(3)), (":authority", authority)];
    headers.retain(|(_, v)| *v != "-");
    for extra in args.iter().skip(7) {
        headers.push(extra.split_once('=').unwrap_or((extra.as_str(), "")));
    }
    let timeout = std::time::Duration::from_millis(arg(5).parse().unwrap_or(0));
    let body = args.get(6).filter(|b| b.as_str() != "-").map(String::as_bytes);
    match proxy_wasm::hostcalls::dispatch_http_call(arg(1), headers, body, vec![], timeout) {
        Ok(token) => info!("dispatched call #{} to {}", token, arg(1)),
        Err(status) => info!("dispatch to {} failed: {:?}", arg(1), status),
    }
}

/// Logs what `on_http_call_response` is given, as the SDK reads it.
fn log_call_response(token: u32, headers: usize, body_size: usize, trailers: usize) {
    info!("call #{} response: {} headers, {} bytes, {} trailers", token, headers, body_size, trailers);
    for (name, value) in proxy_wasm::hostcalls::get_map(MapType::HttpCallResponseHeaders).unwrap() {
        if name == ":status" || name.starts_with("x-") {
            info!("call #{} header \"{}: {}\"", token, name, value);
        }
    }
    if let Some(body) = proxy_wasm::hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size).unwrap() {
        info!("call #{} body \"{}\"", token, String::from_utf8_lossy(&body).trim_end());
    }
    for (name, value) in proxy_wasm::hostcalls::get_map(MapType::HttpCallResponseTrailers).unwrap() {
        info!("call #{} trailer \"{}: {}\"", token, name, value);
    }
    let mut code = 0u32;
    let mut data: *const u8 = std::ptr::null();
    let mut size = 0usize;
    unsafe { proxy_get_status(&mut code, &mut data, &mut size) };
    let message = if data.is_null() { String::new() } else {
        String::from_utf8_lossy(unsafe { std::slice::from_raw_parts(data, size) }).into_owned()
    };
    info!("call #{} status {} \"{}\"", token, code, message);
}

/// A property path of a step: segments joined by NUL (`%00`).
fn segments(path: &str) -> Vec<&str> {
    path.split('\0').collect()
}

fn shown(path: &str) -> String {
    path.replace('\0', ".")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{:02x}", b)).collect()
}

/// Logs a property as the Rust SDK returns it: its bytes, as hex and text,
/// and as an integer when it has 8 bytes.
fn log_property(path: &str) {
    match proxy_wasm::hostcalls::get_property(segments(path)) {
        Ok(Some(bytes)) => {
            let int = if bytes.len() == 8 {
                let mut le = [0u8; 8];
                le.copy_from_slice(&bytes);
                format!(" int={}", i64::from_le_bytes(le))
            } else {
                String::new()
            };
            // bytes that are not printable (a newline would break the log
            // line) show as dots
            let text: String = bytes
                .iter()
                .map(|&b| if b == b' ' || b.is_ascii_graphic() { b as char } else { '.' })
                .collect();
            info!("property {}: len={} hex={} text=\"{}\"{}", shown(path), bytes.len(), hex(&bytes), text, int);
        }
        Ok(None) => info!("property {}: missing", shown(path)),
        Err(status) => info!("property {}: error {:?}", shown(path), status),
    }
}

/// Logs a map property entry by entry (the pairs format).
fn log_property_map(path: &str) {
    let bytes = proxy_wasm::hostcalls::get_property(segments(path)).unwrap().unwrap_or_default();
    let word = |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]) as usize;
    let count = if bytes.len() >= 4 { word(0) } else { 0 };
    info!("property {}: {} entries, {} bytes", shown(path), count, bytes.len());
    let mut data = 4 + 8 * count;
    for i in 0..count {
        let (key_len, value_len) = (word(4 + 8 * i), word(8 + 8 * i));
        let key = String::from_utf8_lossy(&bytes[data..data + key_len]);
        let value = String::from_utf8_lossy(&bytes[data + key_len + 1..data + key_len + 1 + value_len]);
        info!("property {} entry \"{}: {}\"", shown(path), key, value);
        data += key_len + value_len + 2;
    }
}

thread_local! {
    /// HTTP contexts remembered by `remember`, for another request to
    /// continue, close or answer.
    static REMEMBERED: RefCell<Vec<u32>> = RefCell::new(Vec::new());
    /// Set by `done_later`: the root contexts' on_done returns false, and
    /// their end is logged.
    static DONE_LATER: std::cell::Cell<bool> = std::cell::Cell::new(false);
    /// What `count` counts: the instance's calls to it.
    static COUNT: RefCell<u64> = RefCell::new(0);
    /// The instance's ticks so far.
    static TICKS: RefCell<u64> = RefCell::new(0);
    /// Memory kept by `grow`.
    static KEPT: RefCell<Vec<Vec<u8>>> = RefCell::new(Vec::new());
    /// Metrics defined by `metric`.
    static METRICS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    /// The queue `on_queue_ready` is running for.
    static READY_QUEUE: RefCell<u32> = RefCell::new(0);
}

/// What a body callback was given.
#[derive(Clone, Copy, Default)]
struct Given {
    size: usize,
    end_of_stream: bool,
}

#[derive(Default)]
struct Script {
    trace: bool,
    steps: Vec<(String, Vec<String>)>,
}

impl Script {
    fn parse(text: &str) -> Script {
        let mut script = Script::default();
        for step in text.split(';').map(str::trim).filter(|s| !s.is_empty()) {
            if step == "trace" {
                script.trace = true;
                continue;
            }
            let mut words = step.split(' ').filter(|w| !w.is_empty()).map(decode);
            let when = words.next().unwrap_or_default();
            script.steps.push((when, words.collect()));
        }
        script
    }

    fn steps<'a>(&'a self, when: &'a str) -> impl Iterator<Item = &'a [String]> + 'a {
        self.steps.iter().filter(move |(w, _)| w == when).map(|(_, args)| &args[..])
    }
}

fn decode(word: &str) -> String {
    let bytes = word.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What a step asks the callback to return.
#[derive(PartialEq)]
enum Outcome {
    Continue,
    Pause,
    Fail,
}

fn map_of(name: &str) -> MapType {
    match name {
        "request" => MapType::HttpRequestHeaders,
        "response" => MapType::HttpResponseHeaders,
        "request_trailers" => MapType::HttpRequestTrailers,
        _ => MapType::HttpResponseTrailers,
    }
}

fn raw_map(name: &str) -> u32 {
    map_of(name) as u32
}

fn body_of(when: &str) -> BufferType {
    if when.starts_with("request") {
        BufferType::HttpRequestBody
    } else {
        BufferType::HttpResponseBody
    }
}

/// For each remembered context still alive: make it the effective one and
/// act on it.
fn on_remembered(action: impl Fn(u32)) {
    let ids = REMEMBERED.with(|r| std::mem::take(&mut *r.borrow_mut()));
    for id in ids {
        match proxy_wasm::hostcalls::set_effective_context(id) {
            Ok(()) => action(id),
            Err(status) => info!("remembered context #{} is gone: {:?}", id, status),
        }
    }
}

/// Runs the steps of one callback; `context` is the context id.
fn run(script: &Script, when: &str, context_id: u32) -> Outcome {
    run_given(script, when, context_id, Given::default())
}

fn run_given(script: &Script, when: &str, context_id: u32, given: Given) -> Outcome {
    let mut outcome = Outcome::Continue;
    for args in script.steps(when) {
        run_op(args, when, context_id, given, &mut outcome);
    }
    outcome
}

/// One step: `args[0]` is the op.
fn run_op(args: &[String], when: &str, context_id: u32, given: Given, outcome: &mut Outcome) {
    {
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
        match arg(0) {
            "log" => {
                let message = args[2..].join(" ");
                match arg(1) {
                    "trace" => log::trace!("{}", message),
                    "debug" => debug!("{}", message),
                    "info" => info!("{}", message),
                    "warn" => warn!("{}", message),
                    "error" => error!("{}", message),
                    _ => {
                        proxy_wasm::hostcalls::log(LogLevel::Critical, &message).unwrap();
                    }
                }
            }
            "add_header" => proxy_wasm::hostcalls::add_map_value(map_of(arg(1)), arg(2), arg(3)).unwrap(),
            "replace_header" => proxy_wasm::hostcalls::set_map_value(map_of(arg(1)), arg(2), Some(arg(3))).unwrap(),
            "remove_header" => proxy_wasm::hostcalls::set_map_value(map_of(arg(1)), arg(2), None).unwrap(),
            "set_headers" => {
                let pairs: Vec<(&str, &str)> = args[2..]
                    .iter()
                    .map(|kv| kv.split_once('=').unwrap_or((kv.as_str(), "")))
                    .collect();
                proxy_wasm::hostcalls::set_map(map_of(arg(1)), pairs).unwrap();
            }
            "get_header" => match proxy_wasm::hostcalls::get_map_value(map_of(arg(1)), arg(2)).unwrap() {
                Some(value) => info!("{} header {}: \"{}\"", arg(1), arg(2), value),
                None => info!("{} header {}: missing", arg(1), arg(2)),
            },
            "dump_headers" => {
                for (name, value) in proxy_wasm::hostcalls::get_map(map_of(arg(1))).unwrap() {
                    info!("{} header \"{}: {}\"", arg(1), name, value);
                }
            }
            "respond" => {
                let status = arg(1).parse().unwrap_or(200);
                let headers: Vec<(&str, &str)> = args
                    .iter()
                    .skip(3)
                    .map(|kv| kv.split_once(':').unwrap_or((kv.as_str(), "")))
                    .collect();
                let body = args.get(2).filter(|b| b.as_str() != "-").map(String::as_bytes);
                proxy_wasm::hostcalls::send_http_response(status, headers, body).unwrap();
            }
            "respond_details" => {
                let details = arg(2);
                let status = unsafe {
                    proxy_send_local_response(arg(1).parse().unwrap_or(0), details.as_ptr(), details.len(), std::ptr::null(), 0, std::ptr::null(), 0, -1)
                };
                info!("proxy_send_local_response returned {}", status);
            }
            "respond_grpc" => ops::respond_grpc(arg(1), arg(2), arg(3)),
            "respond_status" => {
                let status = unsafe {
                    proxy_send_local_response(arg(1).parse().unwrap_or(0), std::ptr::null(), 0, std::ptr::null(), 0, std::ptr::null(), 0, -1)
                };
                info!("proxy_send_local_response returned {}", status);
            }
            "pause" => *outcome = Outcome::Pause,
            "pause_until_end" => {
                if !given.end_of_stream {
                    *outcome = Outcome::Pause;
                }
            }
            "log_body" => {
                let body = proxy_wasm::hostcalls::get_buffer(body_of(when), 0, given.size).unwrap();
                let body = body.map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default();
                info!("{} ({} bytes, end_of_stream {}): \"{}\"", when, given.size, given.end_of_stream, body);
            }
            "log_body_size" => info!("{} ({} bytes, end_of_stream {})", when, given.size, given.end_of_stream),
            "replace_body" => proxy_wasm::hostcalls::set_buffer(body_of(when), 0, given.size, arg(1).as_bytes()).unwrap(),
            "prepend_body" => proxy_wasm::hostcalls::set_buffer(body_of(when), 0, 0, arg(1).as_bytes()).unwrap(),
            "append_body" => proxy_wasm::hostcalls::set_buffer(body_of(when), given.size, 0, arg(1).as_bytes()).unwrap(),
            "splice_body" => {
                let start = arg(1).parse().unwrap_or(0);
                let size = arg(2).parse().unwrap_or(0);
                proxy_wasm::hostcalls::set_buffer(body_of(when), start, size, arg(3).as_bytes()).unwrap();
            }
            "upper_body" => {
                let body = proxy_wasm::hostcalls::get_buffer(body_of(when), 0, given.size).unwrap().unwrap_or_default();
                proxy_wasm::hostcalls::set_buffer(body_of(when), 0, given.size, &body.to_ascii_uppercase()).unwrap();
            }
            "body_when_end" => {
                if given.end_of_stream {
                    proxy_wasm::hostcalls::set_buffer(body_of(when), 0, given.size, arg(1).as_bytes()).unwrap();
                }
            }
            "add_trailer" => proxy_wasm::hostcalls::add_map_value(MapType::HttpResponseTrailers, arg(1), arg(2)).unwrap(),
            "dump_trailers" => {
                for (name, value) in proxy_wasm::hostcalls::get_map(MapType::HttpResponseTrailers).unwrap() {
                    info!("trailer \"{}: {}\"", name, value);
                }
            }
            "remember" => REMEMBERED.with(|r| r.borrow_mut().push(context_id)),
            "continue_remembered" => on_remembered(|_| match arg(1) {
                "response" => proxy_wasm::hostcalls::resume_http_response().unwrap(),
                _ => proxy_wasm::hostcalls::resume_http_request().unwrap(),
            }),
            "close_remembered" => on_remembered(|_| proxy_wasm::hostcalls::reset_http_request().unwrap()),
            "respond_remembered" => on_remembered(|_| {
                let status = arg(1).parse().unwrap_or(200);
                proxy_wasm::hostcalls::send_http_response(status, vec![], Some(arg(2).as_bytes())).unwrap();
            }),
            "continue" => match arg(1) {
                "response" => proxy_wasm::hostcalls::resume_http_response().unwrap(),
                _ => proxy_wasm::hostcalls::resume_http_request().unwrap(),
            },
            "close" => proxy_wasm::hostcalls::reset_http_request().unwrap(),
            "fail" => *outcome = Outcome::Fail,
            "panic" => panic!("testbed panics in {}", when),
            "unreachable" => core::arch::wasm32::unreachable(),
            "config" => {
                let vm = proxy_wasm::hostcalls::get_buffer(BufferType::VmConfiguration, 0, usize::MAX).unwrap();
                let plugin = proxy_wasm::hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX).unwrap();
                let show = |b: Option<Vec<u8>>| b.map_or("(none)".to_string(), |b| String::from_utf8_lossy(&b).into_owned());
                info!("vm configuration: {}, plugin configuration: {}", show(vm), show(plugin));
            }
            "buffer_slice" => {
                let start = arg(1).parse().unwrap_or(0);
                let max = arg(2).parse().unwrap_or(usize::MAX);
                let bytes = proxy_wasm::hostcalls::get_buffer(BufferType::VmConfiguration, start, max).unwrap();
                info!("vm configuration [{}, +{}]: {:?}", start, max, bytes.map(|b| String::from_utf8_lossy(&b).into_owned()));
            }
            "time" => {
                let now = proxy_wasm::hostcalls::get_current_time().unwrap();
                let secs = now.duration_since(UNIX_EPOCH).unwrap().as_secs();
                info!("host time plausible: {}", secs > 1_600_000_000);
            }
            "log_level" => info!("host log level: {:?}", proxy_wasm::hostcalls::get_log_level().unwrap()),
            "stdout" => println!("{}", args[1..].join(" ")),
            "stderr" => eprintln!("{}", args[1..].join(" ")),
            "wasi" => {
                let mut map = HashMap::new();
                map.insert(1, 2);
                let wall = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
                let start = Instant::now();
                let later = Instant::now();
                info!(
                    "wasi: random {}, wall clock plausible {}, monotonic {}, args {}, env {}",
                    map.len() == 1,
                    wall > 1_600_000_000,
                    later >= start,
                    std::env::args().count(),
                    std::env::vars().count()
                );
            }
            "bad_pointers" => unsafe {
                let mut data: *const u8 = std::ptr::null();
                let mut size: usize = 0;
                let huge = 0xffff_fff0usize;
                info!("proxy_log with a bad message: {}", proxy_log(2, huge as *const u8, 64));
                info!("proxy_log with a bad level: {}", proxy_log(9, b"x".as_ptr(), 1));
                info!("get_buffer_bytes with a bad type: {}", proxy_get_buffer_bytes(99, 0, 1, &mut data, &mut size));
                info!("get_buffer_bytes with a bad out-pointer: {}", proxy_get_buffer_bytes(6, 0, 10, huge as *mut *const u8, &mut size));
                info!("get_header_map_pairs with a bad map: {}", proxy_get_header_map_pairs(42, &mut data, &mut size));
                info!("get_header_map_pairs with a bad out-pointer: {}", proxy_get_header_map_pairs(raw_map("request"), &mut data, huge as *mut usize));
                info!("get_header_map_value with a bad key: {}", proxy_get_header_map_value(raw_map("request"), huge as *const u8, 100, &mut data, &mut size));
                info!("add_header_map_value with a bad value: {}", proxy_add_header_map_value(raw_map("request"), b"x".as_ptr(), 1, huge as *const u8, 100));
                info!("add_header_map_value with an invalid name: {}", proxy_add_header_map_value(raw_map("request"), b"a b".as_ptr(), 3, b"v".as_ptr(), 1));
                info!("add_header_map_value with an invalid value: {}", proxy_add_header_map_value(raw_map("request"), b"x".as_ptr(), 1, b"a\r\nb".as_ptr(), 4));
                info!("send_local_response with bad headers: {}", proxy_send_local_response(200, std::ptr::null(), 0, std::ptr::null(), 0, b"\x05\0\0\0".as_ptr(), 4, -1));
            },
            "response_map" => unsafe {
                let mut data: *const u8 = std::ptr::null();
                let mut size: usize = 0;
                info!("response headers map: {}", proxy_get_header_map_pairs(raw_map("response"), &mut data, &mut size));
            },
            "effective_context" => unsafe {
                let target = match arg(1) {
                    "self" => context_id,
                    other => other.parse().unwrap_or(0),
                };
                info!("set_effective_context({}) returned {}", arg(1), proxy_set_effective_context(target));
            },
            "unimplemented" => unsafe {
                info!("proxy_clear_route_cache returned {}", proxy_clear_route_cache());
                info!("proxy_clear_route_cache again returned {}", proxy_clear_route_cache());
            },
            "kv_get" => match proxy_wasm::hostcalls::get_shared_data(arg(1)) {
                Ok((Some(value), cas)) => {
                    info!("kv_get {}: \"{}\" cas {}", arg(1), String::from_utf8_lossy(&value), cas.unwrap_or(0))
                }
                Ok((None, _)) => info!("kv_get {}: missing", arg(1)),
                Err(status) => info!("kv_get {}: error {:?}", arg(1), status),
            },
            "kv_set" => {
                let value = if arg(2) == "-" { "" } else { arg(2) };
                info!("kv_set {} returned {}", arg(1), set_shared(arg(1), value.as_bytes(), arg(3).parse().unwrap_or(0)));
            }
            "kv_set_cas" => {
                // sets with the stored CAS plus a delta (0: the right one)
                let (_, cas) = shared_value(arg(1));
                let cas = cas.wrapping_add(arg(3).parse().unwrap_or(0));
                info!("kv_set_cas {} returned {}", arg(1), set_shared(arg(1), arg(2).as_bytes(), cas));
            }
            "kv_incr" => shared_increment(arg(1)),
            "kv_respond" => {
                let (value, _) = shared_value(arg(1));
                let (status, body) = match value {
                    Some(value) => (200, value),
                    None => (404, b"missing".to_vec()),
                };
                proxy_wasm::hostcalls::send_http_response(status, vec![], Some(&body)).unwrap();
            }
            "kv_fill" => {
                // sets <prefix><i> for i in [from, to] to <size> bytes
                let (from, to): (u32, u32) = (arg(2).parse().unwrap_or(0), arg(3).parse().unwrap_or(0));
                let value = vec![b'v'; arg(4).parse().unwrap_or(1)];
                let mut failed = None;
                for i in from..=to {
                    let status = set_shared(&format!("{}{}", arg(1), i), &value, 0);
                    if status != 0 && failed.is_none() {
                        failed = Some((i, status));
                    }
                }
                match failed {
                    None => info!("kv_fill {}{}..{}: all stored", arg(1), from, to),
                    Some((i, status)) => info!("kv_fill {}{}..{}: {}{} failed with {}", arg(1), from, to, arg(1), i, status),
                }
            }
            "kv_count" => {
                // how many of <prefix><i> for i in [from, to] are there
                let (from, to): (u32, u32) = (arg(2).parse().unwrap_or(0), arg(3).parse().unwrap_or(0));
                let present: Vec<String> = (from..=to)
                    .filter(|i| shared_value(&format!("{}{}", arg(1), i)).0.is_some())
                    .map(|i| i.to_string())
                    .collect();
                info!("kv_count {}{}..{}: {} present [{}]", arg(1), from, to, present.len(), present.join(" "));
            }
            "bad_shared_pointers" => unsafe {
                let mut data: *const u8 = std::ptr::null();
                let mut size: usize = 0;
                let mut cas = 0u32;
                let mut id = 0u32;
                let huge = 0xffff_fff0usize;
                info!("get_shared_data with a bad key: {}", proxy_get_shared_data(huge as *const u8, 8, &mut data, &mut size, &mut cas));
                info!("get_shared_data with a bad out-pointer: {}", proxy_get_shared_data(b"k".as_ptr(), 1, huge as *mut *const u8, &mut size, &mut cas));
                info!("get_shared_data with a bad cas pointer: {}", proxy_get_shared_data(b"k".as_ptr(), 1, &mut data, &mut size, huge as *mut u32));
                info!("set_shared_data with a bad value: {}", proxy_set_shared_data(b"k".as_ptr(), 1, huge as *const u8, 8, 0));
                info!("register_shared_queue with a bad name: {}", proxy_register_shared_queue(huge as *const u8, 8, &mut id));
                info!("register_shared_queue with a bad out-pointer: {}", proxy_register_shared_queue(b"q".as_ptr(), 1, huge as *mut u32));
                let queue = own_queue("q").unwrap_or(0);
                info!("enqueue_shared_queue with a bad value: {}", proxy_enqueue_shared_queue(queue, huge as *const u8, 8));
                info!("enqueue_shared_queue on an unknown queue: {}", proxy_enqueue_shared_queue(999, b"x".as_ptr(), 1));
                info!("dequeue_shared_queue with a bad out-pointer: {}", proxy_dequeue_shared_queue(queue, huge as *mut *const u8, &mut size));
                info!("dequeue_shared_queue on an unknown queue: {}", proxy_dequeue_shared_queue(999, &mut data, &mut size));
                info!("define_metric with a bad name: {}", proxy_define_metric(0, huge as *const u8, 8, &mut id));
                info!("get_metric with a bad out-pointer: {}", proxy_get_metric(metric_id("c"), huge as *mut u64));
            },
            "queue_register" => {
                let id = proxy_wasm::hostcalls::register_shared_queue(arg(1)).unwrap();
                info!("registered queue {} as #{}", arg(1), id);
            }
            "queue_resolve" => match proxy_wasm::hostcalls::resolve_shared_queue(if arg(1) == "-" { "" } else { arg(1) }, arg(2)) {
                Ok(Some(id)) => info!("resolved queue {}/{} as #{}", arg(1), arg(2), id),
                Ok(None) => info!("resolved queue {}/{}: missing", arg(1), arg(2)),
                Err(status) => info!("resolved queue {}/{}: error {:?}", arg(1), arg(2), status),
            },
            "enqueue" => match proxy_wasm::hostcalls::resolve_shared_queue(arg(1), arg(2)).unwrap() {
                Some(id) => {
                    let status = unsafe { proxy_enqueue_shared_queue(id, arg(3).as_ptr(), arg(3).len()) };
                    info!("enqueued \"{}\" on {}: {}", arg(3), arg(2), status);
                }
                None => info!("enqueue on {}: no such queue", arg(2)),
            },
            "enqueue_fill" => {
                // enqueues <n> items of <size> bytes; logs the first failure
                let id = own_queue(arg(1)).unwrap_or(0);
                let n: u32 = arg(2).parse().unwrap_or(0);
                let value = vec![b'q'; arg(3).parse().unwrap_or(1)];
                let mut stored = 0;
                let mut status = 0;
                for _ in 0..n {
                    status = unsafe { proxy_enqueue_shared_queue(id, value.as_ptr(), value.len()) };
                    if status != 0 {
                        break;
                    }
                    stored += 1;
                }
                info!("enqueue_fill {}: {} stored, last status {}", arg(1), stored, status);
            }
            "dequeue" => {
                let id = match arg(1) {
                    "ready" => READY_QUEUE.with(|q| *q.borrow()),
                    name => own_queue(name).unwrap_or(0),
                };
                match proxy_wasm::hostcalls::dequeue_shared_queue(id) {
                    Ok(Some(item)) => info!("dequeued \"{}\" ({} bytes)", String::from_utf8_lossy(&item[..item.len().min(32)]), item.len()),
                    Ok(None) => info!("dequeue: empty"),
                    Err(status) => info!("dequeue: error {:?}", status),
                }
            }
            "dequeue_of" => {
                // dequeues from a queue another vm id registered
                match proxy_wasm::hostcalls::resolve_shared_queue(arg(1), arg(2)) {
                    Ok(Some(id)) => match proxy_wasm::hostcalls::dequeue_shared_queue(id) {
                        Ok(Some(item)) => info!("dequeued \"{}\" from {}/{}", String::from_utf8_lossy(&item), arg(1), arg(2)),
                        Ok(None) => info!("dequeue from {}/{}: empty", arg(1), arg(2)),
                        Err(status) => info!("dequeue from {}/{}: error {:?}", arg(1), arg(2), status),
                    },
                    Ok(None) => info!("dequeue from {}/{}: no such queue", arg(1), arg(2)),
                    Err(status) => info!("dequeue from {}/{}: resolve error {:?}", arg(1), arg(2), status),
                }
            }
            "register_status" => {
                let mut id = 0u32;
                let status = unsafe { proxy_register_shared_queue(arg(1).as_ptr(), arg(1).len(), &mut id) };
                info!("register_shared_queue {} returned {}", arg(1), status);
            }
            "enqueue_time" => {
                // enqueues the host's time, for "drain_latency"
                let id = proxy_wasm::hostcalls::resolve_shared_queue(arg(1), arg(2)).unwrap().unwrap_or(0);
                let now = proxy_wasm::hostcalls::get_current_time().unwrap();
                let ns = now.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
                proxy_wasm::hostcalls::enqueue_shared_queue(id, Some(&ns.to_le_bytes())).unwrap();
            }
            "drain_latency" => {
                let id = READY_QUEUE.with(|q| *q.borrow());
                while let Ok(Some(item)) = proxy_wasm::hostcalls::dequeue_shared_queue(id) {
                    let now = proxy_wasm::hostcalls::get_current_time().unwrap();
                    let ns = now.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
                    let sent = u64::from_le_bytes(item[..8].try_into().unwrap());
                    info!("queue latency {} us", ns.saturating_sub(sent) / 1000);
                }
            }
            "drain" => {
                let id = READY_QUEUE.with(|q| *q.borrow());
                while let Ok(Some(item)) = proxy_wasm::hostcalls::dequeue_shared_queue(id) {
                    info!("dequeued \"{}\" ({} bytes)", String::from_utf8_lossy(&item[..item.len().min(32)]), item.len());
                }
            }
            "metric" => unsafe {
                // metric <type number> <name>
                let mut id = 0u32;
                let status = proxy_define_metric(arg(1).parse().unwrap_or(0), arg(2).as_ptr(), arg(2).len(), &mut id);
                if status == 0 {
                    METRICS.with(|m| m.borrow_mut().insert(arg(2).to_string(), id));
                }
                info!("define_metric {} returned {} id {}", arg(2), status, id);
            },
            "metric_incr" => unsafe {
                let status = proxy_increment_metric(metric_id(arg(1)), arg(2).parse().unwrap_or(0));
                if status != 0 || arg(3) == "log" {
                    info!("increment_metric {} {} returned {}", arg(1), arg(2), status);
                }
            },
            "metric_record" => unsafe {
                let status = proxy_record_metric(metric_id(arg(1)), arg(2).parse().unwrap_or(0));
                if status != 0 || arg(3) == "log" {
                    info!("record_metric {} {} returned {}", arg(1), arg(2), status);
                }
            },
            "metric_get" => unsafe {
                let mut value = 0u64;
                let status = proxy_get_metric(metric_id(arg(1)), &mut value);
                info!("get_metric {} returned {} value {}", arg(1), status, value as i64);
            },
            "metric_respond" => {
                let value = proxy_wasm::hostcalls::get_metric(metric_id(arg(1))).unwrap();
                proxy_wasm::hostcalls::send_http_response(200, vec![], Some(value.to_string().as_bytes())).unwrap();
            }
            "prop" => log_property(arg(1)),
            "prop_map" => log_property_map(arg(1)),
            "prop_status" => unsafe {
                let mut data: *const u8 = std::ptr::null();
                let mut size: usize = 0;
                let path = arg(1);
                let status = proxy_get_property(path.as_ptr(), path.len(), &mut data, &mut size);
                info!("get_property {} returned {} ({} bytes)", shown(path), status, size);
            },
            "set_prop" => unsafe {
                let (path, value) = (arg(1), arg(2));
                let (ptr, len) = if value == "-" { (std::ptr::null(), 0) } else { (value.as_ptr(), value.len()) };
                let status = proxy_set_property(path.as_ptr(), path.len(), ptr, len);
                info!("set_property {} returned {}", shown(path), status);
            },
            "set_prop_sdk" => proxy_wasm::hostcalls::set_property(segments(arg(1)), Some(arg(2).as_bytes())).unwrap(),
            "bad_property_pointers" => unsafe {
                let mut data: *const u8 = std::ptr::null();
                let mut size: usize = 0;
                let huge = 0xffff_fff0usize;
                let path = "request\0path";
                info!("get_property with a bad path: {}", proxy_get_property(huge as *const u8, 64, &mut data, &mut size));
                info!("get_property with a bad out-pointer: {}", proxy_get_property(path.as_ptr(), path.len(), huge as *mut *const u8, &mut size));
                info!("set_property with a bad value: {}", proxy_set_property(b"x".as_ptr(), 1, huge as *const u8, 64));
                info!("get_property with an empty path: {}", proxy_get_property(path.as_ptr(), 0, &mut data, &mut size));
            },
            "call" => dispatch(args),
            "count" => {
                let count = COUNT.with(|c| {
                    *c.borrow_mut() += 1;
                    *c.borrow()
                });
                info!("count {}", count);
            }
            "foreign" => ops::foreign(arg(1), args.get(2).map(String::as_str)),
            "foreign_roundtrip" => ops::foreign_roundtrip(arg(1)),
            "declare" => ops::declare(arg(1), arg(2), arg(3)),
            "verify" => ops::verify(arg(1), arg(2), arg(3), arg(4)),
            "done_later" => DONE_LATER.with(|d| d.set(true)),
            "proxy_done" => {
                let status = unsafe { proxy_done() };
                info!("#{} proxy_done returned {}", context_id, status);
            }
            "grpc_call" => ops::grpc_call(args),
            "grpc_stream" => ops::grpc_stream(args),
            "grpc_send" => ops::grpc_send(arg(1), arg(2) == "end"),
            "grpc_close" => ops::grpc_end(false),
            "grpc_cancel" => ops::grpc_end(true),
            "tick_period" => proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_millis(arg(1).parse().unwrap_or(0))).unwrap(),
            "tick_count" => {
                // logs the tick; at the n-th one, sets the period given
                let ticks = TICKS.with(|t| {
                    *t.borrow_mut() += 1;
                    *t.borrow()
                });
                info!("tick {}", ticks);
                if ticks.to_string() == arg(1) {
                    let period = arg(2).parse().unwrap_or(0);
                    proxy_wasm::hostcalls::set_tick_period(std::time::Duration::from_millis(period)).unwrap();
                }
            }
            "grow" => {
                // keeps n MiB, one at a time
                for _ in 0..arg(1).parse().unwrap_or(1) {
                    KEPT.with(|k| k.borrow_mut().push(vec![1u8; 1024 * 1024]));
                }
                info!("kept {} MiB", KEPT.with(|k| k.borrow().len()));
            }
            "spin" => {
                // runs forever, unless stopped
                let mut i = 0u64;
                loop {
                    unsafe { std::ptr::write_volatile(&mut i, std::ptr::read_volatile(&i).wrapping_add(1)) };
                }
            }
            "when_count" => {
                // runs an op when the instance's count is at a value
                if COUNT.with(|c| c.borrow().to_string()) == arg(1) {
                    run_op(&args[2..], when, context_id, given, outcome);
                }
            }
            "at_end" => {
                if given.end_of_stream {
                    run_op(&args[1..], when, context_id, given, outcome);
                }
            }
            other => error!("testbed: unknown op \"{}\"", other),
        }
    }
}

struct Root {
    context_id: u32,
    script: Rc<Script>,
}

impl Context for Root {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, trailers: usize) {
        log_call_response(token, headers, body_size, trailers);
        run(&self.script, "root_call_response", self.context_id);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        ops::log_grpc_response(token, status, size);
        run(&self.script, "root_grpc_response", self.context_id);
    }

    fn on_grpc_stream_initial_metadata(&mut self, token: u32, _count: u32) {
        ops::log_grpc_initial_metadata(token);
        run(&self.script, "root_grpc_metadata", self.context_id);
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        ops::log_grpc_message(token, size);
        run(&self.script, "root_grpc_message", self.context_id);
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, _count: u32) {
        ops::log_grpc_trailing_metadata(token);
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        ops::log_grpc_close(token, status);
        run(&self.script, "root_grpc_close", self.context_id);
    }

    fn on_done(&mut self) -> bool {
        run(&self.script, "root_done", self.context_id);
        let later = DONE_LATER.with(|d| d.get());
        if later {
            info!("#{} root on_done: finishing later", self.context_id);
        }
        !later
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        if DONE_LATER.with(|d| d.get()) {
            info!("#{} root on_delete", self.context_id);
        }
    }
}


impl RootContext for Root {
    fn on_queue_ready(&mut self, queue_id: u32) {
        info!("#{} on_queue_ready #{}", self.context_id, queue_id);
        READY_QUEUE.with(|q| *q.borrow_mut() = queue_id);
        run(&self.script, "queue_ready", self.context_id);
    }

    fn on_tick(&mut self) {
        if self.script.trace {
            info!("#{} on_tick", self.context_id);
        }
        run(&self.script, "tick", self.context_id);
    }

    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        let vm = self.get_vm_configuration().unwrap_or_default();
        let script = Script::parse(&String::from_utf8_lossy(&vm));
        if script.trace {
            info!("#{} on_vm_start", self.context_id);
        }
        run(&script, "vm_start", self.context_id) != Outcome::Fail
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let config = self.get_plugin_configuration().unwrap_or_default();
        self.script = Rc::new(Script::parse(&String::from_utf8_lossy(&config)));
        if self.script.trace {
            info!("#{} on_configure", self.context_id);
        }
        run(&self.script, "configure", self.context_id) != Outcome::Fail
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        if self.script.trace {
            info!("#{} create http context #{}", self.context_id, context_id);
        }
        run(&self.script, "create", context_id);
        Some(Box::new(Http { context_id, script: self.script.clone() }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Http {
    context_id: u32,
    script: Rc<Script>,
}

impl Http {
    fn callback(&self, when: &str, detail: String) -> Action {
        self.callback_given(when, detail, Given::default())
    }

    fn callback_given(&self, when: &str, detail: String, given: Given) -> Action {
        if self.script.trace {
            info!("#{} on_{} {}", self.context_id, when, detail);
        }
        match run_given(&self.script, when, self.context_id, given) {
            Outcome::Pause => Action::Pause,
            _ => Action::Continue,
        }
    }
}

impl Context for Http {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, trailers: usize) {
        log_call_response(token, headers, body_size, trailers);
        run(&self.script, "call_response", self.context_id);
    }

    fn on_grpc_call_response(&mut self, token: u32, status: u32, size: usize) {
        ops::log_grpc_response(token, status, size);
        run(&self.script, "grpc_response", self.context_id);
    }

    fn on_grpc_stream_initial_metadata(&mut self, token: u32, _count: u32) {
        ops::log_grpc_initial_metadata(token);
        run(&self.script, "grpc_metadata", self.context_id);
    }

    fn on_grpc_stream_message(&mut self, token: u32, size: usize) {
        ops::log_grpc_message(token, size);
        run(&self.script, "grpc_message", self.context_id);
    }

    fn on_grpc_stream_trailing_metadata(&mut self, token: u32, _count: u32) {
        ops::log_grpc_trailing_metadata(token);
    }

    fn on_grpc_stream_close(&mut self, token: u32, status: u32) {
        ops::log_grpc_close(token, status);
        run(&self.script, "grpc_close", self.context_id);
    }

    fn on_done(&mut self) -> bool {
        self.callback("done", String::new());
        true
    }
}

impl HttpContext for Http {
    fn on_http_request_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        self.callback("request_headers", format!("{} headers, end_of_stream {}", headers, end_of_stream))
    }

    fn on_http_request_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let given = Given { size, end_of_stream };
        self.callback_given("request_body", format!("{} bytes, end_of_stream {}", size, end_of_stream), given)
    }

    fn on_http_response_headers(&mut self, headers: usize, end_of_stream: bool) -> Action {
        self.callback("response_headers", format!("{} headers, end_of_stream {}", headers, end_of_stream))
    }

    fn on_http_response_body(&mut self, size: usize, end_of_stream: bool) -> Action {
        let given = Given { size, end_of_stream };
        self.callback_given("response_body", format!("{} bytes, end_of_stream {}", size, end_of_stream), given)
    }

    fn on_http_response_trailers(&mut self, trailers: usize) -> Action {
        self.callback("response_trailers", format!("{} trailers", trailers))
    }

    fn on_log(&mut self) {
        self.callback("log", String::new());
    }
}

impl Drop for Http {
    fn drop(&mut self) {
        if self.script.trace {
            info!("#{} on_delete", self.context_id);
        }
        run(&self.script, "delete", self.context_id);
    }
}
