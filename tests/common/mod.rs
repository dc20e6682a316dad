//! A host without nginx: requests are header lists in memory and log lines
//! are collected, so the Proxy-Wasm core runs real filters in `cargo test`.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::rc::Rc;

use ngx_proxy_wasm::abi::pairs::Pair;
use ngx_proxy_wasm::abi::{HostResult, LogLevel};
use ngx_proxy_wasm::chain::Chain;
use ngx_proxy_wasm::host::prelude::*;
use ngx_proxy_wasm::host::{
    Attribute, CallParams, CallRef, Fact, HeaderError, HeaderMap, HeaderOp, KvState, MetricRef, MetricType,
    NoRoom, QueueState, RequestRef, StoredMetric, TimerRef, VariableError, Wake, ZoneRef,
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
    /// Shared memory: zones, metrics, and the worker it stands for.
    zones: RefCell<HashMap<ZoneRef, MockZone>>,
    metrics: RefCell<Vec<MockMetric>>,
    /// Zones and metrics are not mapped (the configuration check).
    unmapped: Cell<bool>,
    pid: Cell<i64>,
    /// Workers woken, with the queue; workers that are gone.
    wakes: RefCell<Vec<(i64, Vec<u8>)>>,
    gone: RefCell<Vec<i64>>,
    /// What every request's connection is (no attribute: none).
    facts: RefCell<Vec<(Attribute, MockFact)>>,
    variables: RefCell<HashMap<Vec<u8>, MockVariable>>,
    /// proxy_wasm_property values, by key.
    static_properties: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
    /// What the proxy's own code serves (Lua's handlers), by dotted path.
    pub host_properties: RefCell<HashMap<Vec<u8>, Vec<u8>>>,
}

impl MockHost {
    /// A host that lives for the rest of the test process, as nginx's.
    pub fn new() -> &'static MockHost {
        let host: &'static MockHost = Box::leak(Box::default());
        host.pid.set(1);
        host
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

    /// An attribute every request has.
    pub fn fact(&self, attribute: Attribute, fact: MockFact) {
        self.facts.borrow_mut().push((attribute, fact));
    }

    /// A variable (None: it has no value), changeable or not.
    pub fn variable(&self, name: &str, value: Option<&str>, changeable: bool) {
        let value = value.map(|v| v.as_bytes().to_vec());
        self.variables
            .borrow_mut()
            .insert(name.as_bytes().to_vec(), (value, changeable));
    }

    /// A `proxy_wasm_property`, by its key.
    pub fn static_property(&self, key: &str, value: &str) {
        self.static_properties
            .borrow_mut()
            .insert(key.as_bytes().to_vec(), value.as_bytes().to_vec());
    }

    /// The worker the host stands for (its shared memory is every
    /// worker's).
    pub fn as_worker(&self, pid: i64) {
        self.pid.set(pid);
    }

    /// Zones and metrics are not mapped yet, as while nginx checks the
    /// configuration (or they are again).
    pub fn set_unmapped(&self, unmapped: bool) {
        self.unmapped.set(unmapped);
    }

    /// A worker that exited without leaving its queues.
    pub fn worker_gone(&self, pid: i64) {
        self.gone.borrow_mut().push(pid);
    }

    /// The workers woken so far, with the queue.
    pub fn take_wakes(&self) -> Vec<(i64, Vec<u8>)> {
        std::mem::take(&mut self.wakes.borrow_mut())
    }

    /// The bytes a zone holds at most.
    pub fn set_capacity(&self, zone: ZoneRef, bytes: usize) {
        let mut zones = self.zones.borrow_mut();
        zones.entry(zone).or_default().capacity = bytes;
    }

    /// The slots of a metric, by name.
    pub fn metric(&self, name: &str) -> Option<Vec<u64>> {
        let metrics = self.metrics.borrow();
        metrics
            .iter()
            .find(|m| m.name == name.as_bytes())
            .map(|m| m.slots.clone())
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

    fn timer_hold(&self, delay: std::time::Duration, token: u64) -> Option<TimerRef> {
        self.timer_add(delay, token)
    }

    fn timer_cancel(&self, timer: TimerRef) {
        self.timers.borrow_mut().retain(|(id, _, _)| *id != timer.0);
    }
}

impl Properties for MockHost {
    fn with_attribute(
        &self,
        _: RequestRef,
        attribute: Attribute,
        visit: &mut dyn FnMut(Option<Fact<'_>>) -> HostResult,
    ) -> HostResult {
        let facts = self.facts.borrow();
        let fact = facts
            .iter()
            .find(|(a, _)| *a == attribute)
            .map(|(_, fact)| match fact {
                MockFact::String(s) => Fact::String(s),
                MockFact::Int(n) => Fact::Int(*n),
                MockFact::Bool(b) => Fact::Bool(*b),
            });
        visit(fact)
    }

    fn with_variable(
        &self,
        _: RequestRef,
        name: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> Result<HostResult, VariableError> {
        let variables = self.variables.borrow();
        let (value, _) = variables.get(name).ok_or(VariableError::Unknown)?;
        Ok(visit(value.as_deref()))
    }

    fn set_variable(&self, _: RequestRef, name: &[u8], value: &[u8]) -> Result<(), VariableError> {
        let mut variables = self.variables.borrow_mut();
        match variables.get_mut(name) {
            None => Err(VariableError::Unknown),
            Some((_, false)) => Err(VariableError::ReadOnly),
            Some((old, true)) => {
                *old = Some(value.to_vec());
                Ok(())
            }
        }
    }

    fn with_static_property(
        &self,
        _: Option<RequestRef>,
        key: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        visit(self.static_properties.borrow().get(key).map(Vec::as_slice))
    }

    fn with_host_property(
        &self,
        _: Option<RequestRef>,
        path: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        let value = self.host_properties.borrow().get(path).cloned();
        visit(value.as_deref())
    }

    fn set_host_property(
        &self,
        _: Option<RequestRef>,
        path: &[u8],
        value: &[u8],
    ) -> Result<(), VariableError> {
        self.host_properties
            .borrow_mut()
            .insert(path.to_vec(), value.to_vec());
        Ok(())
    }
}

/// A variable's value (None: no value) and whether it can be set.
type MockVariable = (Option<Vec<u8>>, bool);

/// An attribute's value the mock host knows.
pub enum MockFact {
    String(Vec<u8>),
    Int(i64),
    Bool(bool),
}

impl HttpCalls for MockHost {
    fn call_start(&self, _: Option<RequestRef>, _: &CallParams<'_>) -> Result<CallRef, String> {
        Err("the mock host makes no HTTP calls".into())
    }

    fn call_cancel(&self, _: CallRef) {}

    fn call_send(&self, _: CallRef, _: &[u8]) -> bool {
        false
    }
}

/// A zone of the mock host's shared memory.
#[derive(Default)]
struct MockZone {
    /// Key, value, CAS; the most recently used last.
    kv: Vec<(Vec<u8>, Vec<u8>, u32)>,
    kv_state: KvState,
    items: VecDeque<Vec<u8>>,
    queue_state: Box<QueueState>,
    /// Bytes of keys, values and items the zone holds at most.
    capacity: usize,
}

impl MockZone {
    fn used(&self) -> usize {
        self.kv.iter().map(|(k, v, _)| k.len() + v.len()).sum::<usize>()
            + self.items.iter().map(Vec::len).sum::<usize>()
    }
}

struct MockLocked<'a>(&'a mut MockZone);

impl LockedZone for MockLocked<'_> {
    fn kv_state(&mut self) -> &mut KvState {
        &mut self.0.kv_state
    }

    fn kv_read(&mut self, key: &[u8], out: &mut Vec<u8>) -> Option<u32> {
        let i = self.0.kv.iter().position(|(k, _, _)| k == key)?;
        let entry = self.0.kv.remove(i);
        out.clear();
        out.extend_from_slice(&entry.1);
        let cas = entry.2;
        self.0.kv.push(entry);
        Some(cas)
    }

    fn kv_cas(&mut self, key: &[u8]) -> Option<u32> {
        self.0
            .kv
            .iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, cas)| *cas)
    }

    fn kv_write(&mut self, key: &[u8], namespace: usize, value: &[u8], cas: u32) -> bool {
        let old = self
            .0
            .kv
            .iter()
            .position(|(k, _, _)| k == key)
            .map(|i| self.0.kv.remove(i));
        // the least recently used entries of the namespace go first
        while self.0.used() + key.len() + value.len() > self.0.capacity {
            let prefix = &key[..namespace];
            match self.0.kv.iter().position(|(k, _, _)| k.starts_with(prefix)) {
                Some(victim) => {
                    self.0.kv.remove(victim);
                }
                None => {
                    self.0.kv.extend(old);
                    return false;
                }
            }
        }
        self.0.kv.push((key.to_vec(), value.to_vec(), cas));
        true
    }

    fn queue_state(&mut self) -> &mut QueueState {
        &mut self.0.queue_state
    }

    fn queue_push(&mut self, item: &[u8]) -> bool {
        if self.0.used() + item.len() > self.0.capacity {
            return false;
        }
        self.0.items.push_back(item.to_vec());
        true
    }

    fn queue_pop(&mut self, out: &mut Vec<u8>) -> bool {
        let Some(item) = self.0.items.pop_front() else {
            return false;
        };
        *out = item;
        true
    }

    fn queue_len(&mut self) -> usize {
        self.0.items.len()
    }
}

impl SharedMemory for MockHost {
    fn with_zone(&self, zone: ZoneRef, f: &mut dyn FnMut(&mut dyn LockedZone)) -> bool {
        if self.unmapped.get() {
            return false;
        }
        let mut zones = self.zones.borrow_mut();
        let zone = zones.entry(zone).or_insert_with(|| MockZone {
            capacity: 1 << 20,
            ..MockZone::default()
        });
        f(&mut MockLocked(zone));
        true
    }

    fn worker_pid(&self) -> i64 {
        self.pid.get()
    }

    fn wakeup_listen(&self) -> bool {
        true
    }

    fn wake(&self, pid: i64, queue: &[u8]) -> Wake {
        self.wakes.borrow_mut().push((pid, queue.to_vec()));
        if self.gone.borrow().contains(&pid) {
            Wake::Gone
        } else {
            Wake::Sent
        }
    }
}

impl Metrics for MockHost {
    fn metric_find_or_add(
        &self,
        name: &[u8],
        kind: MetricType,
        owner: &str,
        slots: usize,
    ) -> Result<Option<StoredMetric>, NoRoom> {
        if self.unmapped.get() {
            return Ok(None);
        }
        let mut metrics = self.metrics.borrow_mut();
        let index = match metrics.iter().position(|m| m.name == name) {
            Some(index) => index,
            None => {
                metrics.push(MockMetric {
                    name: name.to_vec(),
                    kind,
                    owner: owner.as_bytes().to_vec(),
                    slots: vec![0; slots],
                });
                metrics.len() - 1
            }
        };
        let metric = &metrics[index];
        Ok(Some(StoredMetric {
            metric: MetricRef(index + 1),
            kind: metric.kind,
            owner: metric.owner.clone(),
        }))
    }

    fn metric_add(&self, metric: MetricRef, slot: usize, delta: u64) {
        if let Some(value) = self.metrics.borrow_mut()[metric.0 - 1].slots.get_mut(slot) {
            *value = value.wrapping_add(delta);
        }
    }

    fn metric_store(&self, metric: MetricRef, slot: usize, value: u64) {
        if let Some(slot) = self.metrics.borrow_mut()[metric.0 - 1].slots.get_mut(slot) {
            *slot = value;
        }
    }

    fn metric_load(&self, metric: MetricRef, slot: usize) -> u64 {
        self.metrics.borrow()[metric.0 - 1]
            .slots
            .get(slot)
            .copied()
            .unwrap_or(0)
    }
}

/// A metric of the mock host's store.
pub struct MockMetric {
    pub name: Vec<u8>,
    pub kind: MetricType,
    pub owner: Vec<u8>,
    pub slots: Vec<u64>,
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

pub fn chain(worker: &Rc<Worker>, request: RequestRef, filters: &[u32]) -> Chain {
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
        (request, chain(&self.worker, request, &[self.filter]))
    }
}
