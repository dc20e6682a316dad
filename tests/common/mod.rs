//! A host without nginx: requests are header lists in memory and log lines
//! are collected, so the Proxy-Wasm core runs real filters in `cargo test`.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;

use ngx_proxy_wasm::abi::pairs::Pair;
use ngx_proxy_wasm::abi::{HostResult, LogLevel};
use ngx_proxy_wasm::chain::Chain;
use ngx_proxy_wasm::host::prelude::*;
use ngx_proxy_wasm::host::{
    Attribute, CallParams, CallRef, Fact, HeaderError, HeaderMap, HeaderOp, MetricOp, MetricRef, MetricType,
    RequestRef, SharedError, TimerRef, VariableError,
};
use ngx_proxy_wasm::runtime::{Runtime, RuntimeConfig, Worker};

type HeaderList = Vec<(String, String)>;

/// The request headers, response headers and response trailers of a
/// request.
type Maps = [HeaderList; 3];

#[derive(Default)]
pub struct MockHost {
    requests: RefCell<HashMap<usize, Maps>>,
    logs: RefCell<Vec<(LogLevel, String)>>,
    next_request: Cell<usize>,
    resumes: RefCell<Vec<RequestRef>>,
    /// Timers started and not cancelled: id, token and delay.
    timers: RefCell<Vec<(usize, u64, std::time::Duration)>>,
    next_timer: Cell<usize>,
}

impl MockHost {
    /// A host that lives for the rest of the test process, as nginx's.
    pub fn new() -> &'static MockHost {
        Box::leak(Box::default())
    }

    pub fn request(&self, headers: &[(&str, &str)]) -> RequestRef {
        let id = self.next_request.get() + 1;
        self.next_request.set(id);
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let response = vec![(":status".to_string(), "200".to_string())];
        self.requests
            .borrow_mut()
            .insert(id, [headers, response, Vec::new()]);
        RequestRef(id)
    }

    pub fn headers(&self, request: RequestRef, map: HeaderMap) -> HeaderList {
        self.requests.borrow()[&request.0][map_index(map)].clone()
    }

    /// Fires the timers due (all of them, in order), as nginx's event loop
    /// would; returns their tokens.
    pub fn take_timers(&self) -> Vec<u64> {
        std::mem::take(&mut *self.timers.borrow_mut())
            .into_iter()
            .map(|(_, token, _)| token)
            .collect()
    }

    pub fn timer_delays(&self) -> Vec<std::time::Duration> {
        self.timers.borrow().iter().map(|(_, _, delay)| *delay).collect()
    }

    /// The requests the core asked to come back to, once each.
    pub fn take_resumes(&self) -> Vec<RequestRef> {
        std::mem::take(&mut self.resumes.borrow_mut())
    }

    pub fn header(&self, request: RequestRef, map: HeaderMap, name: &str) -> Option<String> {
        self.headers(request, map)
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        self.logs.borrow().clone()
    }

    /// Whether a log line contains `text`, and at which level.
    pub fn logged(&self, text: &str) -> Option<LogLevel> {
        self.logs
            .borrow()
            .iter()
            .find(|(_, line)| line.contains(text))
            .map(|(level, _)| *level)
    }

    pub fn count(&self, text: &str) -> usize {
        self.logs
            .borrow()
            .iter()
            .filter(|(_, line)| line.contains(text))
            .count()
    }

    pub fn dump(&self) -> String {
        self.logs
            .borrow()
            .iter()
            .map(|(level, line)| format!("{level:?} {line}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Logging for MockHost {
    fn log(&self, _: Option<RequestRef>, level: LogLevel, filter: &str, context_id: u32, message: &[u8]) {
        let line = format!("{filter} #{context_id}: {}", String::from_utf8_lossy(message));
        self.logs.borrow_mut().push((level, line));
    }

    fn log_level(&self, _: Option<RequestRef>) -> LogLevel {
        LogLevel::Info
    }
}

impl Headers for MockHost {
    fn with_headers(
        &self,
        request: RequestRef,
        map: HeaderMap,
        visit: &mut dyn FnMut(&[Pair<'_>]) -> HostResult,
    ) -> HostResult {
        let list = self.headers(request, map);
        let pairs: Vec<Pair> = list.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())).collect();
        visit(&pairs)
    }

    fn set_header(
        &self,
        request: RequestRef,
        map: HeaderMap,
        op: HeaderOp,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HeaderError> {
        let key = String::from_utf8_lossy(key).to_ascii_lowercase();
        let value = String::from_utf8_lossy(value).into_owned();
        if key == ":scheme" {
            return Err(HeaderError::ReadOnly);
        }
        let mut requests = self.requests.borrow_mut();
        let list = &mut requests.get_mut(&request.0).expect("known request")[map_index(map)];
        match op {
            HeaderOp::Add => list.push((key, value)),
            HeaderOp::Replace => {
                list.retain(|(k, _)| !k.eq_ignore_ascii_case(&key));
                list.push((key, value));
            }
            HeaderOp::Remove => list.retain(|(k, _)| !k.eq_ignore_ascii_case(&key)),
        }
        Ok(())
    }
}

impl RequestFlow for MockHost {
    fn schedule_resume(&self, request: RequestRef) {
        self.resumes.borrow_mut().push(request);
    }
}

impl Timers for MockHost {
    fn timer_add(&self, delay: std::time::Duration, token: u64) -> Option<TimerRef> {
        let id = self.next_timer.get() + 1;
        self.next_timer.set(id);
        self.timers.borrow_mut().push((id, token, delay));
        Some(TimerRef(id))
    }

    fn timer_cancel(&self, timer: TimerRef) {
        self.timers.borrow_mut().retain(|(id, _, _)| *id != timer.0);
    }
}

impl Properties for MockHost {
    fn with_attribute(
        &self,
        _: RequestRef,
        _: Attribute,
        visit: &mut dyn FnMut(Option<Fact<'_>>) -> HostResult,
    ) -> HostResult {
        visit(None)
    }

    fn with_variable(
        &self,
        _: RequestRef,
        _: &[u8],
        _: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> Result<HostResult, VariableError> {
        Err(VariableError::Unknown)
    }

    fn set_variable(&self, _: RequestRef, _: &[u8], _: &[u8]) -> Result<(), VariableError> {
        Err(VariableError::Unknown)
    }

    fn with_static_property(
        &self,
        _: Option<RequestRef>,
        _: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        visit(None)
    }
}

impl HttpCalls for MockHost {
    fn call_start(&self, _: Option<RequestRef>, _: &CallParams<'_>) -> Result<CallRef, String> {
        Err("the mock host makes no HTTP calls".into())
    }

    fn call_cancel(&self, _: CallRef) {}
}

impl SharedData for MockHost {
    fn kv_get(&self, _: &[u8], _: &[u8], _: &mut Vec<u8>) -> Result<Option<u32>, SharedError> {
        Err(SharedError::Unavailable)
    }

    fn kv_set(&self, _: &[u8], _: &[u8], _: &[u8], _: u32) -> Result<(), SharedError> {
        Err(SharedError::Unavailable)
    }
}

impl SharedQueues for MockHost {
    fn queue_register(&self, _: &[u8], _: &[u8]) -> Result<u32, SharedError> {
        Err(SharedError::Unavailable)
    }

    fn queue_resolve(&self, _: &[u8], _: &[u8], _: &[u8]) -> Result<Option<u32>, SharedError> {
        Err(SharedError::Unavailable)
    }

    fn queue_enqueue(&self, _: &[u8], _: u32, _: &[u8]) -> Result<(), SharedError> {
        Err(SharedError::Unavailable)
    }

    fn queue_dequeue(&self, _: &[u8], _: u32, _: &mut Vec<u8>) -> Result<bool, SharedError> {
        Err(SharedError::Unavailable)
    }
}

impl Metrics for MockHost {
    fn metric_define(&self, _: MetricType, _: &str, _: &[u8]) -> Result<MetricRef, SharedError> {
        Err(SharedError::Unavailable)
    }

    fn metric_update(&self, _: MetricRef, _: MetricOp, _: i64) {}

    fn metric_get(&self, _: MetricRef) -> u64 {
        0
    }
}

fn map_index(map: HeaderMap) -> usize {
    match map {
        HeaderMap::Request => 0,
        HeaderMap::Response => 1,
        HeaderMap::ResponseTrailers => 2,
    }
}

/// A built test filter, or None (with a note) when the filters are not
/// built: `make test-rust` builds them and sets the variable.
pub fn filter(name: &str) -> Option<PathBuf> {
    let Ok(dir) = std::env::var("NGX_PROXY_WASM_TEST_FILTERS") else {
        eprintln!("NGX_PROXY_WASM_TEST_FILTERS is not set: skipping the test of {name}");
        return None;
    };
    let path = PathBuf::from(dir).join(name);
    assert!(path.exists(), "{} is not built", path.display());
    Some(path)
}

/// A `.wat` fixture of `t/wat/`.
pub fn wat(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("t/wat").join(name)
}

/// Writes a module given as text to a temporary file.
pub fn wat_text(text: &str) -> PathBuf {
    temp_file("wat", text.as_bytes())
}

/// Writes bytes to a new temporary file with that extension.
pub fn temp_file(extension: &str, bytes: &[u8]) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!(
        "ngx_proxy_wasm_test_{}_{n}.{extension}",
        std::process::id()
    ));
    std::fs::write(&path, bytes).unwrap();
    path
}

pub fn runtime(host: &'static MockHost) -> Runtime {
    Runtime::new(host, RuntimeConfig::default()).expect("runtime")
}

/// A runtime with one module and one filter of it.
pub fn single_filter(
    host: &'static MockHost,
    path: &std::path::Path,
    vm_config: &str,
    config: &str,
) -> (Runtime, Rc<Worker>, u32) {
    let mut runtime = runtime(host);
    runtime
        .load_module("m", path, vm_config.as_bytes())
        .expect("module loads");
    let id = runtime.add_filter("m", config.as_bytes()).expect("filter starts") as u32;
    let worker = runtime.worker();
    (runtime, worker, id)
}

pub fn stream(worker: &Rc<Worker>, request: RequestRef, filters: &[u32]) -> Chain {
    Chain::new(worker.clone(), request, filters, Default::default())
}

/// A filter loaded alone, scripted by its configurations, and requests
/// through it.
pub struct Loaded {
    pub host: &'static MockHost,
    pub worker: Rc<Worker>,
    pub filter: u32,
    _runtime: Runtime,
}

impl Loaded {
    pub fn new(path: &std::path::Path, vm_config: &str, config: &str) -> Loaded {
        let host = MockHost::new();
        let (runtime, worker, filter) = single_filter(host, path, vm_config, config);
        Loaded {
            host,
            worker,
            filter,
            _runtime: runtime,
        }
    }

    /// The test filter `testbed.wasm`, if built.
    pub fn testbed(vm_config: &str, config: &str) -> Option<Loaded> {
        filter("testbed.wasm").map(|path| Loaded::new(&path, vm_config, config))
    }

    /// A request with these headers, and its stream through the filter.
    pub fn request(&self, headers: &[(&str, &str)]) -> (RequestRef, Chain) {
        let request = self.host.request(headers);
        (request, stream(&self.worker, request, &[self.filter]))
    }
}
