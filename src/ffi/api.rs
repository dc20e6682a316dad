//! The API table the C shim calls (`ngx_proxy_wasm_api`, the crate's only
//! exported symbol). Every entry catches panics: none may unwind into
//! nginx.

use std::cell::RefCell;
use std::ffi::{c_void, OsStr};
use std::mem::MaybeUninit;
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use super::nginx::Nginx;
use super::{api_lua, bytes, str_of};
use crate::abi::properties;
use crate::abi::Direction;
use crate::abi::LogLevel;
use crate::callout::{CallFailure, CallSettings};
use crate::chain::{Chain, ChainConfig, Limits, Next, Output, Spare, Step};
use crate::host::prelude::*;
use crate::host::{MetricType, RequestRef, ZoneRef};
use crate::runtime::limits::InstanceLimits;
use crate::runtime::{CallProgress, ModuleSpec, Runtime, RuntimeConfig};
use crate::shared::metrics::{self, MetricNaming, TagRule};
use crate::sys::{
    ngx_proxy_wasm_api_t, ngx_proxy_wasm_chain_conf_t, ngx_proxy_wasm_chain_t, ngx_proxy_wasm_host_t,
    ngx_proxy_wasm_local_response_t, ngx_proxy_wasm_metric_view_t, ngx_proxy_wasm_module_source_t,
    ngx_proxy_wasm_pair_t, ngx_proxy_wasm_runtime_conf_t, ngx_proxy_wasm_runtime_t, ngx_proxy_wasm_step_t,
    ngx_proxy_wasm_str_t, ngx_proxy_wasm_zone_conf_t, CallEnd, Lookup, PropertyKey,
};

#[no_mangle]
pub static ngx_proxy_wasm_api: ngx_proxy_wasm_api_t = ngx_proxy_wasm_api_t {
    version: Some(version),
    property_key: Some(property_key),
    runtime_new: Some(runtime_new),
    runtime_configure: Some(runtime_configure),
    runtime_free: Some(runtime_free),
    modules_load: Some(modules_load),
    filter_add: Some(filter_add),
    worker_init: Some(worker_init),
    worker_exit: Some(worker_exit),
    worker_shutdown: Some(worker_shutdown),
    timer_fired: Some(timer_fired),
    call_data: Some(call_data),
    call_end: Some(call_end),
    zone_add: Some(zone_add),
    queues_wakeup: Some(queues_wakeup),
    queues_leave: Some(queues_leave),
    metrics_text: Some(metrics_text),
    metric_tag_check: Some(metric_tag_check),
    chain_new: Some(chain_new),
    chain_wants_body: Some(chain_wants_body),
    chain_on_headers: Some(chain_on_headers),
    chain_on_body: Some(chain_on_body),
    chain_on_trailers: Some(chain_on_trailers),
    chain_resume: Some(chain_resume),
    chain_on_close: Some(chain_on_close),
    chain_response_sent: Some(chain_response_sent),
    chain_local_response: Some(chain_local_response),
    chain_on_log: Some(chain_on_log),
    chain_property: Some(chain_property),
    chain_free: Some(chain_free),
    host_properties_namespace: Some(api_lua::host_properties_namespace),
    property_get: Some(api_lua::property_get),
    property_set: Some(api_lua::property_set),
    kv_get: Some(api_lua::kv_get),
    kv_set: Some(api_lua::kv_set),
    queue_enqueue: Some(api_lua::queue_enqueue),
    metric_define: Some(api_lua::metric_define),
    metric_apply: Some(api_lua::metric_apply),
};

/// What a runtime handle points to.
pub(super) struct RuntimeBox {
    pub(super) host: &'static Nginx,
    /// Made by `runtime_configure`.
    pub(super) runtime: Option<Runtime>,
    /// The last configuration error, lent to the shim until the next call.
    error: Vec<u8>,
    /// The last value lent to the proxy's own code (api_lua).
    pub(super) lent: Vec<u8>,
    spares: Rc<ChainSpares>,
}

impl RuntimeBox {
    pub(super) fn fail(&mut self, err: *mut ngx_proxy_wasm_str_t, message: &str) -> i32 {
        self.error = message.as_bytes().to_vec();
        if !err.is_null() {
            // SAFETY: the shim passes a valid out-pointer or null; the
            // bytes stay in the runtime until its next error.
            unsafe { *err = str_of(&self.error) };
        }
        -1
    }

    fn configured(&mut self) -> Result<&mut Runtime, &'static str> {
        self.runtime.as_mut().ok_or("the runtime is not configured")
    }
}

/// What a chain handle points to.
pub(super) struct ChainBox {
    host: &'static Nginx,
    pub(super) chain: Chain,
    /// The local response's headers in the shim's layout.
    local_headers: Vec<ngx_proxy_wasm_pair_t>,
    /// The last property `chain_property` lent.
    property: Vec<u8>,
    /// Where its memory goes when it is freed.
    spares: Rc<ChainSpares>,
}

/// What freed chains leave for the next requests of the worker: their
/// memory and the chain's own allocations (`Spare`), so that a request's
/// chain allocates nothing.
#[derive(Default)]
pub(super) struct ChainSpares(RefCell<Vec<(Box<MaybeUninit<ChainBox>>, Spare)>>);

/// Spares kept at most: as many chains as end together in a busy worker.
const CHAIN_SPARES: usize = 64;

impl ChainSpares {
    fn take(&self) -> (Box<MaybeUninit<ChainBox>>, Spare) {
        self.0
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| (Box::new_uninit(), Spare::default()))
    }

    fn keep(&self, memory: Box<MaybeUninit<ChainBox>>, spare: Spare) {
        let mut spares = self.0.borrow_mut();
        if spares.len() < CHAIN_SPARES {
            spares.push((memory, spare));
        }
    }
}

/// Runs an entry point, turning a panic into `fallback` (and a log line
/// when there is a host to log to).
pub(super) fn guard<R>(host: Option<&'static Nginx>, what: &str, fallback: R, body: impl FnOnce() -> R) -> R {
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
pub(super) unsafe fn runtime<'a>(rt: *mut ngx_proxy_wasm_runtime_t) -> &'a mut RuntimeBox {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(rt as *mut RuntimeBox) }
}

/// # Safety
/// `c` must come from `chain_new` and not be freed.
pub(super) unsafe fn chain<'a>(c: *mut ngx_proxy_wasm_chain_t) -> &'a mut ChainBox {
    // SAFETY: guaranteed by the caller.
    unsafe { &mut *(c as *mut ChainBox) }
}

unsafe extern "C" fn version(out: *mut ngx_proxy_wasm_str_t) {
    // SAFETY: the shim passes a string to fill; the text is static.
    unsafe { *out = str_of(crate::VERSION.as_bytes()) };
}

unsafe extern "C" fn property_key(path: ngx_proxy_wasm_str_t, buf: *mut u8, len: *mut usize) -> u32 {
    // SAFETY: the shim passes a path it owns for the call.
    let path = unsafe { bytes(path) };
    let result = guard(None, "property_key", Err(PropertyKey::Invalid), || {
        properties::configured_key(path)
    });
    match result {
        Ok(key) if key.len() <= path.len() + 4 => {
            // SAFETY: the shim passes path.len + 4 writable bytes, and an
            // out-pointer for the length.
            unsafe {
                std::ptr::copy_nonoverlapping(key.as_ptr(), buf, key.len());
                *len = key.len();
            }
            PropertyKey::Valid.into()
        }
        Ok(_) => PropertyKey::Invalid.into(),
        Err(why) => why.into(),
    }
}

unsafe extern "C" fn runtime_new(host: *const ngx_proxy_wasm_host_t) -> *mut ngx_proxy_wasm_runtime_t {
    guard(None, "runtime_new", std::ptr::null_mut(), || {
        // SAFETY: the shim passes its table, a static of the nginx module,
        // which outlives every runtime (cycles end before modules unload).
        let table: &'static ngx_proxy_wasm_host_t = unsafe { &*host };
        let Some(host) = Nginx::of(table) else {
            return std::ptr::null_mut();
        };
        let boxed = Box::new(RuntimeBox {
            host,
            runtime: None,
            error: Vec::new(),
            lent: Vec::new(),
            spares: Rc::default(),
        });
        Box::into_raw(boxed) as *mut ngx_proxy_wasm_runtime_t
    })
}

unsafe extern "C" fn runtime_configure(
    rt: *mut ngx_proxy_wasm_runtime_t,
    conf: *const ngx_proxy_wasm_runtime_conf_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> i32 {
    // SAFETY: the shim passes its runtime and the wasm{} block's settings,
    // whose strings are valid for the call (the cache path is copied).
    let (rt, conf) = unsafe { (runtime(rt), &*conf) };
    let cache = unsafe { bytes(conf.cache) };
    let tag_pairs = if conf.nmetric_tags == 0 {
        &[][..]
    } else {
        // SAFETY: as above, nmetric_tags pairs.
        unsafe { std::slice::from_raw_parts(conf.metric_tags, conf.nmetric_tags) }
    };
    guard(Some(rt.host), "runtime_configure", -1, || {
        let mut tags = Vec::with_capacity(tag_pairs.len());
        for pair in tag_pairs {
            // SAFETY: as above.
            let (name, pattern) = unsafe { (bytes(pair.key), bytes(pair.value)) };
            let rule = TagRule::new(&String::from_utf8_lossy(name), &String::from_utf8_lossy(pattern));
            match rule {
                Ok(rule) => tags.push(rule),
                Err(why) => return rt.fail(err, &why),
            }
        }
        let (Some(compiler), Some(failure_log)) = (
            rt.host.decode(conf.compiler),
            rt.host.decode(conf.http_call_failure_log),
        ) else {
            return rt.fail(err, "the nginx module does not match this library");
        };
        let config = RuntimeConfig {
            compiler,
            backtraces: conf.backtraces != 0,
            limits: InstanceLimits {
                memory: conf.memory_limit,
                callback_timeout: Duration::from_millis(conf.callback_timeout_ms),
            },
            cache: (!cache.is_empty()).then(|| Path::new(OsStr::from_bytes(cache)).to_path_buf()),
            instance_pool: (conf.instance_pool != 0).then_some(conf.instance_pool),
            calls: CallSettings {
                max_body_size: conf.http_call_max_body_size,
                failure_log,
            },
            metric_naming: MetricNaming {
                max_length: conf.max_metric_name_length,
                tags: tags.into(),
            },
        };
        match Runtime::new(rt.host, config) {
            Ok(runtime) => {
                rt.runtime = Some(runtime);
                0
            }
            Err(e) => rt.fail(err, &e.to_string()),
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

unsafe extern "C" fn modules_load(
    rt: *mut ngx_proxy_wasm_runtime_t,
    modules: *const ngx_proxy_wasm_module_source_t,
    n: usize,
    err: *mut ngx_proxy_wasm_str_t,
    failed: *mut usize,
) -> i32 {
    // SAFETY: the shim passes its runtime and n module lines whose
    // strings are valid for the call.
    let (rt, modules) = unsafe { (runtime(rt), std::slice::from_raw_parts(modules, n)) };
    guard(Some(rt.host), "modules_load", -1, || {
        let names: Vec<_> = modules
            .iter()
            // SAFETY: see above.
            .map(|m| unsafe { String::from_utf8_lossy(bytes(m.name)).into_owned() })
            .collect();
        let specs: Vec<ModuleSpec> = modules
            .iter()
            .zip(&names)
            // SAFETY: see above.
            .map(|(m, name)| unsafe {
                ModuleSpec {
                    name,
                    path: Path::new(OsStr::from_bytes(bytes(m.path))),
                    vm_config: bytes(m.vm_config),
                }
            })
            .collect();
        let loaded = match rt.configured() {
            Ok(runtime) => runtime.load_modules(&specs).map_err(|(i, e)| (i, e.to_string())),
            Err(e) => Err((0, e.to_string())),
        };
        match loaded {
            Ok(()) => 0,
            Err((i, e)) => {
                // SAFETY: the shim passes a place for the index.
                unsafe { *failed = i };
                rt.fail(err, &e)
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
        let added = match rt.configured() {
            Ok(runtime) => runtime
                .add_filter(&String::from_utf8_lossy(module), config)
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match added {
            Ok(id) => i32::try_from(id).unwrap_or(-1),
            Err(e) => rt.fail(err, &e),
        }
    })
}

unsafe extern "C" fn worker_init(rt: *mut ngx_proxy_wasm_runtime_t) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "worker_init", (), || {
        if let Some(runtime) = rt.runtime.as_mut() {
            runtime.worker();
        }
    })
}

unsafe extern "C" fn worker_exit(rt: *mut ngx_proxy_wasm_runtime_t) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "worker_exit", (), || {
        if let Some(runtime) = rt.runtime.as_mut() {
            runtime.exit_worker();
        }
    })
}

unsafe extern "C" fn worker_shutdown(rt: *mut ngx_proxy_wasm_runtime_t) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "worker_shutdown", (), || {
        if let Some(worker) = rt.runtime.as_ref().and_then(Runtime::running_worker) {
            worker.on_shutdown();
        }
    })
}

unsafe extern "C" fn timer_fired(rt: *mut ngx_proxy_wasm_runtime_t, token: u64) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "timer_fired", (), || {
        if let Some(worker) = rt.runtime.as_ref().and_then(Runtime::running_worker) {
            worker.on_timer(token);
        }
    })
}

unsafe extern "C" fn call_data(
    rt: *mut ngx_proxy_wasm_runtime_t,
    token: u32,
    data: ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime and bytes it owns for the call.
    let (rt, data) = unsafe { (runtime(rt), bytes(data)) };
    let progress = guard(Some(rt.host), "call_data", CallProgress::Close, || {
        match rt.runtime.as_ref().and_then(Runtime::running_worker) {
            Some(worker) => worker.on_call_data(token, data),
            None => CallProgress::Close,
        }
    });
    progress.into()
}

unsafe extern "C" fn call_end(
    rt: *mut ngx_proxy_wasm_runtime_t,
    token: u32,
    why: u32,
    detail: ngx_proxy_wasm_str_t,
) {
    // SAFETY: the shim passes its runtime and text it owns for the call.
    let (rt, detail) = unsafe { (runtime(rt), bytes(detail)) };
    let failure = match rt.host.decode(why) {
        Some(CallEnd::Closed) => None,
        Some(CallEnd::Refused) => Some(CallFailure::Refused),
        Some(CallEnd::Timeout) => Some(CallFailure::Timeout),
        Some(CallEnd::Resolve) => Some(CallFailure::Resolve),
        Some(CallEnd::Tls) => Some(CallFailure::Tls),
        Some(CallEnd::Reset) | None => Some(CallFailure::Reset),
    };
    let detail = String::from_utf8_lossy(detail);
    guard(Some(rt.host), "call_end", (), || {
        if let Some(worker) = rt.runtime.as_ref().and_then(Runtime::running_worker) {
            worker.on_call_end(token, failure, &detail);
        }
    })
}

unsafe extern "C" fn zone_add(
    rt: *mut ngx_proxy_wasm_runtime_t,
    zone: *const ngx_proxy_wasm_zone_conf_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> i32 {
    // SAFETY: the shim passes its runtime and a zone whose strings are
    // valid for the call (they are copied).
    let (rt, zone) = unsafe { (runtime(rt), &*zone) };
    let (name, share) = unsafe {
        let share = (zone.shared != 0).then(|| {
            let names = if zone.nshare == 0 {
                &[][..]
            } else {
                std::slice::from_raw_parts(zone.share, zone.nshare)
            };
            names.iter().map(|name| bytes(*name).to_vec()).collect::<Vec<_>>()
        });
        (bytes(zone.name), share)
    };
    guard(Some(rt.host), "zone_add", -1, || {
        let Some(kind) = rt.host.decode(zone.kind) else {
            return rt.fail(err, "the nginx module does not match this library");
        };
        let zone_ref = ZoneRef {
            kind,
            index: zone.index,
        };
        let added = match rt.configured() {
            Ok(runtime) => runtime.add_zone(zone_ref, name, share).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        match added {
            Ok(()) => 0,
            Err(e) => rt.fail(err, &e),
        }
    })
}

unsafe extern "C" fn queues_wakeup(rt: *mut ngx_proxy_wasm_runtime_t) -> u32 {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "queues_wakeup", 0, || {
        match rt.runtime.as_ref().and_then(Runtime::running_worker) {
            Some(worker) => worker.on_queues_wakeup().into(),
            None => 0,
        }
    })
}

unsafe extern "C" fn queues_leave(rt: *mut ngx_proxy_wasm_runtime_t) {
    // SAFETY: the shim passes its runtime.
    let rt = unsafe { runtime(rt) };
    guard(Some(rt.host), "queues_leave", (), || {
        if let Some(worker) = rt.runtime.as_ref().and_then(Runtime::running_worker) {
            worker.leave_queues();
        }
    })
}

unsafe extern "C" fn metrics_text(
    metrics: *const ngx_proxy_wasm_metric_view_t,
    n: usize,
    buf: *mut u8,
    size: usize,
) -> usize {
    // SAFETY: the shim passes n metrics it read, valid for the call.
    let views = if n == 0 {
        &[][..]
    } else {
        unsafe { std::slice::from_raw_parts(metrics, n) }
    };
    let text = guard(None, "metrics_text", Vec::new(), || {
        let stored: Vec<metrics::Stored> = views
            .iter()
            .filter_map(|view| {
                Some(metrics::Stored {
                    kind: MetricType::try_from(view.type_).ok()?,
                    // SAFETY: as above.
                    name: unsafe { bytes(view.name) },
                    // SAFETY: as above, nslots values.
                    slots: if view.nslots == 0 {
                        &[][..]
                    } else {
                        unsafe { std::slice::from_raw_parts(view.slots, view.nslots) }
                    },
                })
            })
            .collect();
        metrics::exposition(&stored)
    });
    if !buf.is_null() && text.len() <= size {
        // SAFETY: the shim passes `size` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(text.as_ptr(), buf, text.len()) };
    }
    text.len()
}

unsafe extern "C" fn metric_tag_check(
    name: ngx_proxy_wasm_str_t,
    regex: ngx_proxy_wasm_str_t,
    buf: *mut u8,
    size: usize,
) -> usize {
    // SAFETY: the shim passes the directive's arguments, valid for the call.
    let (name, regex) = unsafe { (bytes(name), bytes(regex)) };
    let why = guard(
        None,
        "metric_tag_check",
        String::from("cannot be checked"),
        || match TagRule::new(&String::from_utf8_lossy(name), &String::from_utf8_lossy(regex)) {
            Ok(_) => String::new(),
            Err(why) => why,
        },
    );
    let written = why.len().min(size);
    if !buf.is_null() && written > 0 {
        // SAFETY: the shim passes `size` writable bytes.
        unsafe { std::ptr::copy_nonoverlapping(why.as_ptr(), buf, written) };
    }
    written
}

unsafe extern "C" fn chain_new(
    rt: *mut ngx_proxy_wasm_runtime_t,
    request: *mut c_void,
    filters: *const u32,
    nfilters: usize,
    conf: *const ngx_proxy_wasm_chain_conf_t,
) -> *mut ngx_proxy_wasm_chain_t {
    // SAFETY: the shim passes its runtime, its location's filter ids and
    // its location's settings.
    let (rt, filters, conf) = unsafe { (runtime(rt), std::slice::from_raw_parts(filters, nfilters), &*conf) };
    let host = rt.host;
    guard(Some(host), "chain_new", std::ptr::null_mut(), || {
        let (Some(failure), Some(isolation)) = (rt.host.decode(conf.failure), rt.host.decode(conf.isolation))
        else {
            return std::ptr::null_mut();
        };
        let Some(runtime) = rt.runtime.as_mut() else {
            return std::ptr::null_mut();
        };
        let config = ChainConfig {
            connection: conf.connection != 0,
            limits: Limits {
                response_body: conf.response_body_limit,
                pass_on_overflow: conf.response_body_overflow_pass != 0,
            },
            failure,
            isolation,
        };
        let (memory, spare) = rt.spares.take();
        let chain = Chain::reusing(
            spare,
            runtime.worker(),
            RequestRef(request as usize),
            filters,
            config,
        );
        let boxed = Box::write(
            memory,
            ChainBox {
                host,
                chain,
                local_headers: Vec::new(),
                property: Vec::new(),
                spares: rt.spares.clone(),
            },
        );
        Box::into_raw(boxed) as *mut ngx_proxy_wasm_chain_t
    })
}

/// Writes a step for the shim; its data points into the chain.
fn write_step(c: &ChainBox, direction: Direction, step: Step, out: *mut ngx_proxy_wasm_step_t) {
    let step = ngx_proxy_wasm_step_t {
        next: step.next.into(),
        headers_done: step.headers_done.into(),
        output: step.output.into(),
        end_of_stream: step.end_of_stream.into(),
        data: str_of(c.chain.output(direction)),
        held: step.held,
    };
    // SAFETY: the shim passes a valid out-pointer.
    unsafe { *out = step };
}

/// Runs a step of a chain for the shim; a panic, or a direction this
/// library does not know, fails the request.
///
/// # Safety
/// `c` must be a live chain and `out` a valid pointer.
unsafe fn run_step(
    c: *mut ngx_proxy_wasm_chain_t,
    raw_direction: u32,
    out: *mut ngx_proxy_wasm_step_t,
    what: &str,
    body: impl FnOnce(&mut Chain, Direction) -> Step,
) {
    // SAFETY: guaranteed by the caller.
    let c = unsafe { chain(c) };
    let failed = Step {
        next: Next::Fail,
        headers_done: false,
        output: Output::Nothing,
        end_of_stream: false,
        held: 0,
    };
    let Some(direction) = c.host.decode(raw_direction) else {
        return write_step(c, Direction::Request, failed, out);
    };
    let step = guard(Some(c.host), what, failed, || body(&mut c.chain, direction));
    write_step(c, direction, step, out);
}

unsafe extern "C" fn chain_wants_body(c: *mut ngx_proxy_wasm_chain_t, raw_direction: u32) -> u32 {
    // SAFETY: the shim passes a live chain.
    let c = unsafe { chain(c) };
    let Some(direction) = c.host.decode(raw_direction) else {
        return 0;
    };
    guard(Some(c.host), "wants_body", 0, || {
        c.chain.wants_body(direction).into()
    })
}

unsafe extern "C" fn chain_on_headers(
    c: *mut ngx_proxy_wasm_chain_t,
    direction: u32,
    eos: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes a live chain and a valid out-pointer.
    unsafe {
        run_step(c, direction, out, "on_headers", |chain, d| {
            chain.on_headers(d, eos != 0)
        })
    }
}

/// The parts of a body chunk listed without allocating.
const INLINE_PARTS: usize = 8;

unsafe extern "C" fn chain_on_body(
    c: *mut ngx_proxy_wasm_chain_t,
    direction: u32,
    parts: *const ngx_proxy_wasm_str_t,
    nparts: usize,
    eos: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes parts that point into its buffers, valid for
    // the call.
    let raw = unsafe { std::slice::from_raw_parts(parts, nparts) };
    // SAFETY: as above.
    let part = |part: &ngx_proxy_wasm_str_t| unsafe { bytes(*part) };
    // a chunk is a few buffers: their list is not allocated
    let mut inline: [&[u8]; INLINE_PARTS] = [&[]; INLINE_PARTS];
    let listed: Vec<&[u8]>;
    let parts: &[&[u8]] = if nparts <= INLINE_PARTS {
        for (slot, raw) in inline.iter_mut().zip(raw) {
            *slot = part(raw);
        }
        &inline[..nparts]
    } else {
        listed = raw.iter().map(part).collect();
        &listed
    };
    // SAFETY: the shim passes a live chain and a valid out-pointer.
    unsafe {
        run_step(c, direction, out, "on_body", |chain, d| {
            chain.on_body(d, parts, eos != 0)
        })
    }
}

unsafe extern "C" fn chain_on_trailers(
    c: *mut ngx_proxy_wasm_chain_t,
    direction: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes a live chain and a valid out-pointer.
    unsafe { run_step(c, direction, out, "on_trailers", |chain, d| chain.on_trailers(d)) }
}

unsafe extern "C" fn chain_resume(
    c: *mut ngx_proxy_wasm_chain_t,
    direction: u32,
    out: *mut ngx_proxy_wasm_step_t,
) {
    // SAFETY: the shim passes a live chain and a valid out-pointer.
    unsafe { run_step(c, direction, out, "resume", |chain, d| chain.resume(d)) }
}

unsafe extern "C" fn chain_on_close(c: *mut ngx_proxy_wasm_chain_t, raw_direction: u32, raw_peer: u32) {
    // SAFETY: the shim passes a live chain.
    let c = unsafe { chain(c) };
    let (Some(direction), Some(peer)) = (c.host.decode(raw_direction), c.host.decode(raw_peer)) else {
        return;
    };
    guard(Some(c.host), "on_close", (), || c.chain.on_close(direction, peer))
}

unsafe extern "C" fn chain_response_sent(c: *mut ngx_proxy_wasm_chain_t) {
    // SAFETY: the shim passes a live chain.
    let c = unsafe { chain(c) };
    guard(Some(c.host), "response_sent", (), || c.chain.response_sent())
}

unsafe extern "C" fn chain_local_response(
    c: *mut ngx_proxy_wasm_chain_t,
    out: *mut ngx_proxy_wasm_local_response_t,
) -> i32 {
    // SAFETY: the shim passes a live chain and a valid out-pointer.
    let (c, out) = unsafe { (chain(c), &mut *out) };
    guard(Some(c.host), "local_response", -1, || {
        let Some(response) = c.chain.take_local_response() else {
            return -1;
        };
        c.local_headers = response
            .headers
            .iter()
            .map(|(key, value)| ngx_proxy_wasm_pair_t {
                key: str_of(key),
                value: str_of(value),
            })
            .collect();
        // The pointers stay valid until the chain is freed: the response
        // is never changed once sent.
        *out = ngx_proxy_wasm_local_response_t {
            status: response.status,
            body: str_of(&response.body),
            details: str_of(&response.details),
            headers: c.local_headers.as_ptr(),
            nheaders: c.local_headers.len(),
        };
        0
    })
}

unsafe extern "C" fn chain_on_log(c: *mut ngx_proxy_wasm_chain_t) {
    // SAFETY: the shim passes a live chain.
    let c = unsafe { chain(c) };
    guard(Some(c.host), "on_log", (), || {
        c.chain.on_log();
        c.chain.end();
    })
}

unsafe extern "C" fn chain_property(
    c: *mut ngx_proxy_wasm_chain_t,
    key: ngx_proxy_wasm_str_t,
    out: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes a live chain, a key it owns for the call and
    // a valid out-pointer.
    let (c, key, out) = unsafe { (chain(c), bytes(key), &mut *out) };
    let found = guard(Some(c.host), "chain_property", Lookup::Error, || {
        let property = &mut c.property;
        let found = c.chain.with_property(key, |value| {
            value.map(|value| {
                property.clear();
                property.extend_from_slice(value);
            })
        });
        match found {
            Some(()) => Lookup::Found,
            None => Lookup::Absent,
        }
    });
    if found == Lookup::Found {
        // lent until the next call on the chain
        *out = str_of(&c.property);
    }
    found.into()
}

unsafe extern "C" fn chain_free(c: *mut ngx_proxy_wasm_chain_t) {
    if c.is_null() {
        return;
    }
    // SAFETY: the shim frees each chain once, from the request's cleanup.
    let boxed = unsafe { chain(c) };
    let host = boxed.host;
    let spares = boxed.spares.clone();
    guard(Some(host), "chain_free", (), move || {
        let spare = boxed.chain.take_spare();
        let c = c as *mut ChainBox;
        // SAFETY: the chain is live and dropped once, here, in place; its
        // memory, uninitialized then, is kept or freed.
        let memory = unsafe {
            std::ptr::drop_in_place(c);
            Box::from_raw(c as *mut MaybeUninit<ChainBox>)
        };
        spares.keep(memory, spare);
    })
}
