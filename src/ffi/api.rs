//! The API table the C shim calls (`ngx_proxy_wasm_api`, the crate's only
//! exported symbol). Every entry catches panics: none may unwind into
//! nginx.

use std::cell::RefCell;
use std::ffi::{c_void, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

use super::bindings::{
    ngx_proxy_wasm_action_e as Action, ngx_proxy_wasm_api_t, ngx_proxy_wasm_call_end_e as CallEnd,
    ngx_proxy_wasm_call_rc_e as CallRc, ngx_proxy_wasm_compiler_e as CompilerConf,
    ngx_proxy_wasm_direction_e as Dir, ngx_proxy_wasm_failure_e as Failure,
    ngx_proxy_wasm_host_rc_e as HostRc, ngx_proxy_wasm_host_t, ngx_proxy_wasm_isolation_e as IsolationConf,
    ngx_proxy_wasm_local_response_t, ngx_proxy_wasm_output_e as OutputKind, ngx_proxy_wasm_pair_t,
    ngx_proxy_wasm_runtime_conf_t, ngx_proxy_wasm_runtime_t, ngx_proxy_wasm_step_t, ngx_proxy_wasm_str_t,
    ngx_proxy_wasm_stream_conf_t, ngx_proxy_wasm_stream_t,
};
use super::nginx_host::NginxHost;
use super::{bytes, str_of};
use crate::abi::state::Direction;
use crate::abi::LogLevel;
use crate::callout::{CallFailure, CallSettings};
use crate::chain::{Limits, Next, Output, Step, Stream, StreamConfig};
use crate::host::{Host, RequestRef};
use crate::runtime::limits::InstanceLimits;
use crate::runtime::{CallProgress, Compiler, FailurePolicy, Isolation, Runtime, RuntimeConfig};

#[no_mangle]
pub static ngx_proxy_wasm_api: ngx_proxy_wasm_api_t = ngx_proxy_wasm_api_t {
    version: Some(version),
    runtime_new: Some(runtime_new),
    runtime_free: Some(runtime_free),
    module_load: Some(module_load),
    filter_add: Some(filter_add),
    worker_init: Some(worker_init),
    worker_exit: Some(worker_exit),
    timer_fired: Some(timer_fired),
    call_data: Some(call_data),
    call_end: Some(call_end),
    queue_ready: Some(queue_ready),
    stream_new: Some(stream_new),
    stream_wants_body: Some(stream_wants_body),
    stream_on_headers: Some(stream_on_headers),
    stream_on_body: Some(stream_on_body),
    stream_on_trailers: Some(stream_on_trailers),
    stream_resume: Some(stream_resume),
    stream_response_sent: Some(stream_response_sent),
    stream_local_response: Some(stream_local_response),
    stream_on_log: Some(stream_on_log),
    stream_property: Some(stream_property),
    stream_free: Some(stream_free),
};

/// What a runtime handle points to.
struct RuntimeBox {
    host: &'static NginxHost,
    runtime: Runtime,
}

/// What a stream handle points to.
struct StreamBox {
    stream: Stream,
    /// The local response's headers in the shim's layout.
    local_headers: Vec<ngx_proxy_wasm_pair_t>,
    /// The last property `stream_property` lent.
    property: Vec<u8>,
}

thread_local! {
    /// The last configuration error, lent to the shim until the next call.
    static LAST_ERROR: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

fn set_error(err: *mut ngx_proxy_wasm_str_t, message: &str) {
    LAST_ERROR.with(|last| {
        let mut last = last.borrow_mut();
        *last = message.as_bytes().to_vec();
        if !err.is_null() {
            // SAFETY: the shim passes a valid out-pointer or null; the
            // bytes stay in LAST_ERROR until the next error.
            unsafe { *err = str_of(&last) };
        }
    });
}

/// Runs an entry point, turning a panic into `fallback` (and a log line
/// when there is a host to log to).
fn guard<R>(host: Option<&'static NginxHost>, what: &str, fallback: R, body: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(panic) => {
            let cause = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            if let Some(host) = host {
                let message = format!("internal error in {what}: {cause}");
                host.log(None, LogLevel::Critical, "ngx_proxy_wasm", 0, message.as_bytes());
            }
            fallback
        }
    }
}

/// # Safety
/// `rt` must come from `runtime_new` and not be freed.
unsafe fn runtime<'a>(rt: *mut ngx_proxy_wasm_runtime_t) -> &'a mut RuntimeBox {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(rt as *mut RuntimeBox) }
}

/// # Safety
/// `s` must come from `stream_new` and not be freed.
unsafe fn stream<'a>(s: *mut ngx_proxy_wasm_stream_t) -> &'a mut StreamBox {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(s as *mut StreamBox) }
}

unsafe extern "C" fn version(out: *mut ngx_proxy_wasm_str_t) {
    // SAFETY: the shim passes a string to fill; the text is static.
    unsafe {
        (*out).data = crate::VERSION.as_ptr();
        (*out).len = crate::VERSION.len();
    }
}

unsafe extern "C" fn runtime_new(
    host: *const ngx_proxy_wasm_host_t,
    conf: *const ngx_proxy_wasm_runtime_conf_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> *mut ngx_proxy_wasm_runtime_t {
    guard(None, "runtime_new", std::ptr::null_mut(), || {
        // SAFETY: the shim passes valid pointers to its static table and
        // to the wasm{} block's settings.
        let (table, conf) = unsafe { (&*host, &*conf) };
        let Some(host) = NginxHost::install(table) else {
            set_error(err, "incomplete host function table");
            return std::ptr::null_mut();
        };
        // SAFETY: the shim's strings are valid for the call; the path is
        // copied.
        let cache = unsafe { bytes(conf.cache) };
        let config = RuntimeConfig {
            compiler: match conf.compiler {
                c if c == CompilerConf::NGX_PROXY_WASM_COMPILER_CRANELIFT as u32 => Compiler::Cranelift,
                c if c == CompilerConf::NGX_PROXY_WASM_COMPILER_WINCH as u32 => Compiler::Winch,
                _ => Compiler::Auto,
            },
            backtraces: conf.backtraces != 0,
            limits: InstanceLimits {
                memory: conf.memory_limit,
                callback_timeout: Duration::from_millis(conf.callback_timeout_ms),
            },
            cache: (!cache.is_empty()).then(|| Path::new(OsStr::from_bytes(cache)).to_path_buf()),
            instance_pool: (conf.instance_pool != 0).then_some(conf.instance_pool),
            calls: CallSettings {
                max_body_size: conf.http_call_max_body_size,
                failure_log: LogLevel::from_raw(conf.http_call_failure_log).unwrap_or(LogLevel::Error),
            },
        };
        crate::shared::metrics::set_max_name_length(conf.max_metric_name_length);
        match Runtime::new(host, config) {
            Ok(runtime) => {
                Box::into_raw(Box::new(RuntimeBox { host, runtime })) as *mut ngx_proxy_wasm_runtime_t
            }
            Err(e) => {
                set_error(err, &e.to_string());
                std::ptr::null_mut()
            }
        }
    })
}

unsafe extern "C" fn runtime_free(rt: *mut ngx_proxy_wasm_runtime_t) {
    if rt.is_null() {
        return;
    }
    // SAFETY: the shim frees each runtime once, from its pool cleanup.
    let boxed = unsafe { Box::from_raw(rt as *mut RuntimeBox) };
    let host = boxed.host;
    guard(Some(host), "runtime_free", (), move || drop(boxed));
}

unsafe extern "C" fn module_load(
    rt: *mut ngx_proxy_wasm_runtime_t,
    name: ngx_proxy_wasm_str_t,
    path: ngx_proxy_wasm_str_t,
    vm_config: ngx_proxy_wasm_str_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> i32 {
    // SAFETY: the shim passes its runtime and strings valid for the call.
    let (rt, name, path, vm_config) = unsafe { (runtime(rt), bytes(name), bytes(path), bytes(vm_config)) };
    guard(Some(rt.host), "module_load", -1, || {
        let name = String::from_utf8_lossy(name);
        let path = Path::new(OsStr::from_bytes(path));
        match rt.runtime.load_module(&name, path, vm_config) {
            Ok(()) => 0,
            Err(e) => {
                set_error(err, &e.to_string());
                -1
            }
        }
    })
}

unsafe extern "C" fn filter_add(
    rt: *mut ngx_proxy_wasm_runtime_t,
    module: ngx_proxy_wasm_str_t,
    config: ngx_proxy_wasm_str_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> i32 {
    // SAFETY: the shim passes its runtime and strings valid for the call.
    let (rt, module, config) = unsafe { (runtime(rt), bytes(module), bytes(config)) };
    guard(Some(rt.host), "filter_add", -1, || {
        match rt.runtime.add_filter(&String::from_utf8_lossy(module), config) {
            Ok(id) => id as i32,
            Err(e) => {
                set_error(err, &e.to_string());
                -1
            }
        }
    })
}

unsafe extern "C" fn worker_init(rt: *mut ngx_proxy_wasm_runtime_t) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "worker_init", (), || {
        rt.runtime.worker();
    })
}

unsafe extern "C" fn worker_exit(rt: *mut ngx_proxy_wasm_runtime_t) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "worker_exit", (), || rt.runtime.exit_worker())
}

unsafe extern "C" fn timer_fired(rt: *mut ngx_proxy_wasm_runtime_t, token: u64) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "timer_fired", (), || {
        if let Some(worker) = rt.runtime.running_worker() {
            worker.on_timer(token);
        }
    })
}

unsafe extern "C" fn call_data(
    rt: *mut ngx_proxy_wasm_runtime_t,
    token: u64,
    data: ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime and bytes it owns for the call.
    let (rt, data) = unsafe { (runtime(rt), bytes(data)) };
    let progress = guard(Some(rt.host), "call_data", CallProgress::Close, || {
        match rt.runtime.running_worker() {
            Some(worker) => worker.on_call_data(token as u32, data),
            None => CallProgress::Close,
        }
    });
    (match progress {
        CallProgress::More => CallRc::NGX_PROXY_WASM_CALL_MORE,
        CallProgress::KeepAlive => CallRc::NGX_PROXY_WASM_CALL_DONE_KEEPALIVE,
        CallProgress::Close => CallRc::NGX_PROXY_WASM_CALL_DONE_CLOSE,
    }) as u32
}

unsafe extern "C" fn call_end(
    rt: *mut ngx_proxy_wasm_runtime_t,
    token: u64,
    why: u32,
    detail: ngx_proxy_wasm_str_t,
) {
    // SAFETY: the shim passes its runtime and text it owns for the call.
    let (rt, detail) = unsafe { (runtime(rt), bytes(detail)) };
    let failure = match why {
        w if w == CallEnd::NGX_PROXY_WASM_CALL_CLOSED as u32 => None,
        w if w == CallEnd::NGX_PROXY_WASM_CALL_REFUSED as u32 => Some(CallFailure::Refused),
        w if w == CallEnd::NGX_PROXY_WASM_CALL_TIMEOUT as u32 => Some(CallFailure::Timeout),
        w if w == CallEnd::NGX_PROXY_WASM_CALL_RESOLVE as u32 => Some(CallFailure::Resolve),
        w if w == CallEnd::NGX_PROXY_WASM_CALL_TLS as u32 => Some(CallFailure::Tls),
        _ => Some(CallFailure::Reset),
    };
    let detail = String::from_utf8_lossy(detail);
    guard(Some(rt.host), "call_end", (), || {
        if let Some(worker) = rt.runtime.running_worker() {
            worker.on_call_end(token as u32, failure, &detail);
        }
    })
}

unsafe extern "C" fn queue_ready(rt: *mut ngx_proxy_wasm_runtime_t, token: u32) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "queue_ready", (), || {
        if let Some(worker) = rt.runtime.running_worker() {
            worker.on_queue_ready(token);
        }
    })
}

unsafe extern "C" fn stream_new(
    rt: *mut ngx_proxy_wasm_runtime_t,
    request: *mut c_void,
    filters: *const u32,
    nfilters: usize,
    conf: *const ngx_proxy_wasm_stream_conf_t,
) -> *mut ngx_proxy_wasm_stream_t {
    // SAFETY: the shim passes its runtime, its location's filter ids and
    // its location's limits.
    let (rt, filters, conf) = unsafe { (runtime(rt), std::slice::from_raw_parts(filters, nfilters), &*conf) };
    guard(Some(rt.host), "stream_new", std::ptr::null_mut(), || {
        let worker = rt.runtime.worker();
        let config = StreamConfig {
            limits: Limits {
                response_body: conf.response_body_limit,
                pass_on_overflow: conf.response_body_overflow_pass != 0,
            },
            failure: match conf.failure {
                f if f == Failure::NGX_PROXY_WASM_FAILURE_FAIL_CLOSED as u32 => FailurePolicy::FailClosed,
                f if f == Failure::NGX_PROXY_WASM_FAILURE_FAIL_OPEN as u32 => FailurePolicy::FailOpen,
                _ => FailurePolicy::Reload,
            },
            isolation: match conf.isolation {
                i if i == IsolationConf::NGX_PROXY_WASM_ISOLATION_STREAM as u32 => Isolation::Stream,
                i if i == IsolationConf::NGX_PROXY_WASM_ISOLATION_FILTER as u32 => Isolation::Filter,
                _ => Isolation::None,
            },
        };
        let stream = Stream::new(worker, RequestRef(request as usize), filters, config);
        let boxed = Box::new(StreamBox {
            stream,
            local_headers: Vec::new(),
            property: Vec::new(),
        });
        Box::into_raw(boxed) as *mut ngx_proxy_wasm_stream_t
    })
}

fn direction(raw: u32) -> Direction {
    if raw == Dir::NGX_PROXY_WASM_RESPONSE as u32 {
        Direction::Response
    } else {
        Direction::Request
    }
}

/// Writes a step for the shim; its data points into the stream.
fn write_step(s: &StreamBox, direction: Direction, step: Step, out: *mut ngx_proxy_wasm_step_t) {
    let action = match step.next {
        Next::Continue => Action::NGX_PROXY_WASM_ACTION_CONTINUE,
        Next::Pause => Action::NGX_PROXY_WASM_ACTION_PAUSE,
        Next::LocalResponse => Action::NGX_PROXY_WASM_ACTION_LOCAL_RESPONSE,
        Next::Fail => Action::NGX_PROXY_WASM_ACTION_FAIL,
        Next::Close => Action::NGX_PROXY_WASM_ACTION_CLOSE,
    };
    let output = match step.output {
        Output::Nothing => OutputKind::NGX_PROXY_WASM_OUTPUT_NONE,
        Output::Unchanged => OutputKind::NGX_PROXY_WASM_OUTPUT_UNCHANGED,
        Output::Data => OutputKind::NGX_PROXY_WASM_OUTPUT_DATA,
    };
    let step = ngx_proxy_wasm_step_t {
        action: action as u32,
        headers_done: step.headers_done as u32,
        output: output as u32,
        end_of_stream: step.end_of_stream as u32,
        data: str_of(s.stream.output(direction)),
    };
    // SAFETY: the shim passes a valid out-pointer.
    unsafe { *out = step };
}

/// Runs a step of a stream for the shim; a panic fails the request.
///
/// # Safety
/// `s` must be a live stream and `out` a valid pointer.
unsafe fn run_step(
    s: *mut ngx_proxy_wasm_stream_t,
    raw_direction: u32,
    out: *mut ngx_proxy_wasm_step_t,
    what: &str,
    body: impl FnOnce(&mut Stream, Direction) -> Step,
) {
    // SAFETY: guaranteed by the caller.
    let s = unsafe { stream(s) };
    let direction = direction(raw_direction);
    let failed = Step {
        next: Next::Fail,
        headers_done: false,
        output: Output::Nothing,
        end_of_stream: false,
    };
    let step = guard(None, what, failed, || body(&mut s.stream, direction));
    write_step(s, direction, step, out);
}

unsafe extern "C" fn stream_wants_body(s: *mut ngx_proxy_wasm_stream_t, raw_direction: u32) -> u32 {
    // SAFETY: the shim passes a live stream.
    let s = unsafe { stream(s) };
    guard(None, "wants_body", 0, || {
        s.stream.wants_body(direction(raw_direction)) as u32
    })
}

unsafe extern "C" fn stream_on_headers(
    s: *mut ngx_proxy_wasm_stream_t,
    direction: u32,
    eos: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes a live stream and a valid out-pointer.
    unsafe {
        run_step(s, direction, out, "on_headers", |stream, d| {
            stream.on_headers(d, eos != 0)
        })
    }
}

unsafe extern "C" fn stream_on_body(
    s: *mut ngx_proxy_wasm_stream_t,
    direction: u32,
    parts: *const ngx_proxy_wasm_str_t,
    nparts: usize,
    eos: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes parts that point into its buffers, valid for
    // the call.
    let parts: Vec<&[u8]> = unsafe { std::slice::from_raw_parts(parts, nparts) }
        .iter()
        // SAFETY: as above.
        .map(|part| unsafe { bytes(*part) })
        .collect();
    // SAFETY: the shim passes a live stream and a valid out-pointer.
    unsafe {
        run_step(s, direction, out, "on_body", |stream, d| {
            stream.on_body(d, &parts, eos != 0)
        })
    }
}

unsafe extern "C" fn stream_on_trailers(
    s: *mut ngx_proxy_wasm_stream_t,
    direction: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes a live stream and a valid out-pointer.
    unsafe {
        run_step(s, direction, out, "on_trailers", |stream, d| {
            stream.on_trailers(d)
        })
    }
}

unsafe extern "C" fn stream_resume(
    s: *mut ngx_proxy_wasm_stream_t,
    direction: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes a live stream and a valid out-pointer.
    unsafe { run_step(s, direction, out, "resume", |stream, d| stream.resume(d)) }
}

unsafe extern "C" fn stream_response_sent(s: *mut ngx_proxy_wasm_stream_t) {
    // SAFETY: the shim passes a live stream.
    let s = unsafe { stream(s) };
    guard(None, "response_sent", (), || s.stream.response_sent())
}

unsafe extern "C" fn stream_local_response(
    s: *mut ngx_proxy_wasm_stream_t,
    out: *mut ngx_proxy_wasm_local_response_t,
) -> i32 {
    // SAFETY: the shim passes a live stream and a valid out-pointer.
    let (s, out) = unsafe { (stream(s), &mut *out) };
    guard(None, "local_response", -1, || {
        let Some(response) = s.stream.take_local_response() else {
            return -1;
        };
        s.local_headers = response
            .headers
            .iter()
            .map(|(key, value)| ngx_proxy_wasm_pair_t {
                key: str_of(key),
                value: str_of(value),
            })
            .collect();
        // The pointers stay valid until the stream is freed: the response
        // is never changed once sent.
        *out = ngx_proxy_wasm_local_response_t {
            status: response.status,
            body: str_of(&response.body),
            details: str_of(&response.details),
            headers: s.local_headers.as_ptr(),
            nheaders: s.local_headers.len(),
        };
        0
    })
}

unsafe extern "C" fn stream_on_log(s: *mut ngx_proxy_wasm_stream_t) {
    // SAFETY: the shim passes a live stream.
    let s = unsafe { stream(s) };
    guard(None, "on_log", (), || {
        s.stream.on_log();
        s.stream.end();
    })
}

unsafe extern "C" fn stream_property(
    s: *mut ngx_proxy_wasm_stream_t,
    path: ngx_proxy_wasm_str_t,
    out: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes a live stream, a path it owns for the call
    // and a valid out-pointer.
    let (s, path, out) = unsafe { (stream(s), bytes(path), &mut *out) };
    guard(
        None,
        "stream_property",
        HostRc::NGX_PROXY_WASM_HOST_ERROR as u32,
        || {
            let found = s.stream.with_property(path, |value| {
                value.map(|value| {
                    s.property.clear();
                    s.property.extend_from_slice(value);
                })
            });
            if found.is_none() {
                return HostRc::NGX_PROXY_WASM_HOST_DECLINED as u32;
            }
            // lent until the next call on the stream
            *out = str_of(&s.property);
            HostRc::NGX_PROXY_WASM_HOST_OK as u32
        },
    )
}

unsafe extern "C" fn stream_free(s: *mut ngx_proxy_wasm_stream_t) {
    if s.is_null() {
        return;
    }
    // SAFETY: the shim frees each stream once, from the request's cleanup.
    let boxed = unsafe { Box::from_raw(s as *mut StreamBox) };
    guard(None, "stream_free", (), move || drop(boxed))
}
