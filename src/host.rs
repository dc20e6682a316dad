//! What the Proxy-Wasm core needs from the proxy around it, split by
//! concern as Envoy's host interface is: logging, headers, properties,
//! the request's flow, timers, HTTP calls, shared data, shared queues and
//! metrics. `Host` is all of them.
//!
//! The core never calls nginx: it reaches the request through these
//! traits. `ffi::Nginx` implements them with the C shim's functions; the
//! tests implement them with an in-memory mock, so `cargo test` runs real
//! filters without nginx. No method has a default that stands for "not
//! supported": each host says what it does.

use std::time::Duration;

use crate::abi::headers::HeaderName;
use crate::abi::pairs::Pair;
use crate::abi::{HostResult, LogLevel};
/// What the rules of `crate::shared` keep in a key-value zone and in a
/// queue zone, laid out by the boundary header.
pub use crate::sys::{ngx_proxy_wasm_kv_state_t as KvState, ngx_proxy_wasm_queue_state_t as QueueState};
/// Declared by the boundary header: the facts of a request only the host
/// knows (the Envoy attributes not read from header maps), the header maps
/// a request has, the ways to change them, and the metric types and
/// operations of the host's metric store.
pub use crate::sys::{Attribute, HeaderMap, HeaderOp, MetricType, Wake, ZoneKind};

/// An opaque handle to a request of the host (an `ngx_http_request_t *`
/// for nginx). Only the host interprets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RequestRef(pub usize);

/// An opaque handle to a timer of the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerRef(pub usize);

/// An opaque handle to an HTTP call the host runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CallRef(pub usize);

/// An HTTP call to start.
#[derive(Debug, Clone, Copy)]
pub struct CallParams<'a> {
    /// What the host reports the outcome with (`Worker::on_call_data`,
    /// `Worker::on_call_end`).
    pub token: u32,
    /// `ip:port`, `host:port`, `unix:/path`.
    pub target: &'a [u8],
    /// The request, as it goes on the wire.
    pub data: &'a [u8],
    /// None: the host's default.
    pub timeout: Option<Duration>,
    /// Over TLS, to this server name (SNI, certificate checks).
    pub tls: Option<&'a [u8]>,
    /// A connection that stays open both ways (an HTTP/2 channel, ALPN
    /// `h2` over TLS): `data` is its first bytes, `call_send` adds more,
    /// every byte read goes to `Worker::on_call_data`, and its end to
    /// `Worker::on_call_end`; no timeout but the sockets'.
    pub duplex: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderError {
    /// The header cannot be changed (e.g. a read-only pseudo-header).
    ReadOnly,
    /// The host failed (out of memory).
    Failed,
}

/// An attribute's value, borrowed from the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fact<'a> {
    String(&'a [u8]),
    Int(i64),
    Bool(bool),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariableError {
    /// No variable has that name.
    Unknown,
    /// The variable cannot be set.
    ReadOnly,
    /// The host failed (out of memory).
    Failed,
}

/// The traits a host implements, for `use crate::host::prelude::*`: a
/// method of a host of a concrete type is called through the trait that
/// declares it.
pub mod prelude {
    pub use super::{
        Headers, Host, HttpCalls, LockedZone, Logging, Metrics, Properties, RequestFlow, SharedMemory, Timers,
    };
}

/// Everything the core needs from a host.
pub trait Host:
    Logging + Headers + Properties + RequestFlow + Timers + HttpCalls + SharedMemory + Metrics
{
}

impl<T> Host for T where
    T: Logging + Headers + Properties + RequestFlow + Timers + HttpCalls + SharedMemory + Metrics
{
}

pub trait Logging {
    /// Writes a log line attributed to a filter and one of its contexts
    /// (0 for none), in the request's log when there is one.
    fn log(
        &self,
        request: Option<RequestRef>,
        level: LogLevel,
        filter: &str,
        context_id: u32,
        message: &[u8],
    );

    /// The level at and above which `log` writes anything.
    fn log_level(&self, request: Option<RequestRef>) -> LogLevel;
}

pub trait Headers {
    /// Lends every entry of a header map, pseudo-headers first, to `visit`.
    fn with_headers(
        &self,
        request: RequestRef,
        map: HeaderMap,
        visit: &mut dyn FnMut(&[Pair<'_>]) -> HostResult,
    ) -> HostResult;

    /// The number of entries of a header map (what header callbacks are
    /// given); a host may count without lending them.
    fn header_count(&self, request: RequestRef, map: HeaderMap) -> usize {
        let mut count = 0;
        let _ = self.with_headers(request, map, &mut |pairs| {
            count = pairs.len();
            Ok(())
        });
        count
    }

    /// Lends the first value of a header (`name` matched ignoring case;
    /// None if absent) to `visit`; a host may find it without gathering
    /// the map.
    fn with_header_value(
        &self,
        request: RequestRef,
        map: HeaderMap,
        name: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        let name = HeaderName::lookup(map, name);
        self.with_headers(request, map, &mut |pairs| {
            visit(
                pairs
                    .iter()
                    .find(|(key, _)| name.matches(key))
                    .map(|(_, value)| *value),
            )
        })
    }

    fn set_header(
        &self,
        request: RequestRef,
        map: HeaderMap,
        op: HeaderOp,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HeaderError>;
}

pub trait Properties {
    /// Lends an attribute of a request to `visit` (None: it has no value
    /// now).
    fn with_attribute(
        &self,
        request: RequestRef,
        attribute: Attribute,
        visit: &mut dyn FnMut(Option<Fact<'_>>) -> HostResult,
    ) -> HostResult;

    /// Lends the value of a host variable (nginx's `$name`) to `visit`:
    /// `Err(Unknown)` if there is no such variable, None if it has no
    /// value.
    fn with_variable(
        &self,
        request: RequestRef,
        name: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> Result<HostResult, VariableError>;

    fn set_variable(&self, request: RequestRef, name: &[u8], value: &[u8]) -> Result<(), VariableError>;

    /// Lends a static property configured for the request (or, without
    /// one, for every request) by its key to `visit`.
    fn with_static_property(
        &self,
        request: Option<RequestRef>,
        key: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult;

    /// Lends a property of the namespace the proxy's own code serves (see
    /// `Services::host_namespace`), by its dotted path, to `visit`; an
    /// error if the code serving it failed (the host logs why).
    fn with_host_property(
        &self,
        request: Option<RequestRef>,
        path: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult;

    /// Sets a property of that namespace.
    fn set_host_property(
        &self,
        request: Option<RequestRef>,
        path: &[u8],
        value: &[u8],
    ) -> Result<(), VariableError>;
}

pub trait RequestFlow {
    /// Asks the host to come back to the request (to continue, close or
    /// answer it) once the current guest call has returned: it must not
    /// re-enter the request from within.
    fn schedule_resume(&self, request: RequestRef);
}

pub trait Timers {
    /// Starts a one-shot timer: after `delay`, from its event loop, the
    /// host calls `Worker::on_timer(token)`. None if it cannot.
    fn timer_add(&self, delay: Duration, token: u64) -> Option<TimerRef>;

    /// As `timer_add`, but a worker that shuts down waits for it.
    fn timer_hold(&self, delay: Duration, token: u64) -> Option<TimerRef>;

    /// Stops a timer that has not fired.
    fn timer_cancel(&self, timer: TimerRef);
}

pub trait HttpCalls {
    /// Starts an HTTP call; its outcome comes later, from the event loop,
    /// never from within this function. Why the target is not valid.
    fn call_start(&self, request: Option<RequestRef>, params: &CallParams<'_>) -> Result<CallRef, String>;

    /// Drops a call that has not ended: its outcome is not reported.
    fn call_cancel(&self, call: CallRef);

    /// More bytes for a duplex call's connection, sent as it can take
    /// them; false if it is broken (its end is reported from the event
    /// loop).
    fn call_send(&self, call: CallRef, data: &[u8]) -> bool;
}

/// A zone of wasm{} by its kind and its place among the zones of its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ZoneRef {
    pub kind: ZoneKind,
    pub index: u32,
}

/// The memory shared by the workers: zones, each with a lock. The host
/// keeps bytes; `crate::shared` keeps the rules.
pub trait SharedMemory {
    /// Runs `f` with the zone locked; false (without running it) if the
    /// zone is not mapped yet (while the configuration is checked).
    fn with_zone(&self, zone: ZoneRef, f: &mut dyn FnMut(&mut dyn LockedZone)) -> bool;

    /// This worker process, as queue credits name it.
    fn worker_pid(&self) -> i64;

    /// This worker starts listening for wakeups (it registered a queue);
    /// false if it cannot.
    fn wakeup_listen(&self) -> bool;

    /// Tells a worker (maybe this one) that it was credited items of a
    /// queue: the host then runs `Worker::on_queues_wakeup` in it.
    fn wake(&self, pid: i64, queue: &[u8]) -> Wake;
}

/// A zone's contents while its lock is held.
pub trait LockedZone {
    /// What the rules keep in a key-value zone.
    fn kv_state(&mut self) -> &mut KvState;

    /// A key's value, into `out`, and its CAS; counts as a use of the
    /// entry (for eviction).
    fn kv_read(&mut self, key: &[u8], out: &mut Vec<u8>) -> Option<u32>;

    /// A key's CAS, without counting a use.
    fn kv_cas(&mut self, key: &[u8]) -> Option<u32>;

    /// Stores a key's value with its CAS; false if there is no room. To
    /// make room it evicts only entries whose keys start with the key's
    /// first `namespace` bytes (0: any entry).
    fn kv_write(&mut self, key: &[u8], namespace: usize, value: &[u8], cas: u32) -> bool;

    /// What the rules keep in a queue zone.
    fn queue_state(&mut self) -> &mut QueueState;

    /// Appends an item; false if there is no room.
    fn queue_push(&mut self, item: &[u8]) -> bool;

    /// Takes the oldest item into `out`; false if the queue is empty.
    fn queue_pop(&mut self, out: &mut Vec<u8>) -> bool;

    fn queue_len(&mut self) -> usize;
}

/// The host's store of metrics, shared by the workers: named values in
/// slots, updated without a lock.
pub trait Metrics {
    /// The metric of that name; made, its `slots` zeroed, of that type for
    /// `owner` if it is new. None: the store is not mapped yet.
    fn metric_find_or_add(
        &self,
        name: &[u8],
        kind: MetricType,
        owner: &str,
        slots: usize,
    ) -> Result<Option<StoredMetric>, NoRoom>;

    fn metric_add(&self, metric: MetricRef, slot: usize, delta: u64);

    fn metric_store(&self, metric: MetricRef, slot: usize, value: u64);

    fn metric_load(&self, metric: MetricRef, slot: usize) -> u64;
}

/// The host's store has no room left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

/// A metric as the store has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMetric {
    pub metric: MetricRef,
    /// The type and module it was made with.
    pub kind: MetricType,
    pub owner: Vec<u8>,
}

/// A metric in the host's store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricRef(pub usize);
