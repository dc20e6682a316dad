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
/// Declared by the boundary header: the facts of a request only the host
/// knows (the Envoy attributes not read from header maps), the header maps
/// a request has, the ways to change them, and the metric types and
/// operations of the host's metric store.
pub use crate::sys::{Attribute, HeaderMap, HeaderOp, MetricOp, MetricType};

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
/// method of `&dyn Host` is called through the trait that declares it.
pub mod prelude {
    pub use super::{
        Headers, Host, HttpCalls, Logging, Metrics, Properties, RequestFlow, SharedData, SharedQueues, Timers,
    };
}

/// Everything the core needs from a host.
pub trait Host:
    Logging + Headers + Properties + RequestFlow + Timers + HttpCalls + SharedData + SharedQueues + Metrics
{
}

impl<T> Host for T where
    T: Logging
        + Headers
        + Properties
        + RequestFlow
        + Timers
        + HttpCalls
        + SharedData
        + SharedQueues
        + Metrics
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

    /// Stops a timer that has not fired.
    fn timer_cancel(&self, timer: TimerRef);
}

pub trait HttpCalls {
    /// Starts an HTTP call; its outcome comes later, from the event loop,
    /// never from within this function. Why the target is not valid.
    fn call_start(&self, request: Option<RequestRef>, params: &CallParams<'_>) -> Result<CallRef, String>;

    /// Drops a call that has not ended: its outcome is not reported.
    fn call_cancel(&self, call: CallRef);
}

pub trait SharedData {
    /// The value and CAS of a key of the shared key-value store, for the
    /// module `vm_id` (a zone without `share=` keeps each module's keys
    /// apart), into `value`; None when the key is absent.
    fn kv_get(&self, vm_id: &[u8], key: &[u8], value: &mut Vec<u8>) -> Result<Option<u32>, SharedError>;

    /// Stores a value for `vm_id`; a `cas` other than 0 must be the stored
    /// one's.
    fn kv_set(&self, vm_id: &[u8], key: &[u8], value: &[u8], cas: u32) -> Result<(), SharedError>;
}

pub trait SharedQueues {
    /// A shared queue by name, registered by `vm_id` (a queue without
    /// `share=` is its first registrant's); the worker is told of its
    /// items (`Worker::on_queue_ready`).
    fn queue_register(&self, vm_id: &[u8], name: &[u8]) -> Result<u32, SharedError>;

    /// A queue `owner` registered, for `vm_id`; None if `owner` did not.
    fn queue_resolve(&self, vm_id: &[u8], owner: &[u8], name: &[u8]) -> Result<Option<u32>, SharedError>;

    fn queue_enqueue(&self, vm_id: &[u8], token: u32, value: &[u8]) -> Result<(), SharedError>;

    /// The oldest item, into `value`, removed; false when empty. Only the
    /// modules given the queue may take items.
    fn queue_dequeue(&self, vm_id: &[u8], token: u32, value: &mut Vec<u8>) -> Result<bool, SharedError>;
}

pub trait Metrics {
    /// A metric of the worker-shared store by its full name, made by
    /// `filter` if new (`Denied`: another filter's).
    fn metric_define(&self, kind: MetricType, filter: &str, name: &[u8]) -> Result<MetricRef, SharedError>;

    fn metric_update(&self, metric: MetricRef, op: MetricOp, value: i64);

    /// A counter's or gauge's value.
    fn metric_get(&self, metric: MetricRef) -> u64;
}

/// Why an operation on memory shared by the workers failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedError {
    /// No zone holds the key, or no queue has the name.
    NoZone,
    /// The CAS is not the stored one.
    CasMismatch,
    /// The zone has no room (and nothing it may evict).
    Full,
    /// A metric of that name has another type.
    TypeConflict,
    /// The zone or queue is not the module's: its `share=` does not name
    /// it, or another module owns the queue.
    Denied,
    /// The host has no shared memory, or failed.
    Unavailable,
}

/// A metric in the host's shared memory; `MetricRef(0)` stands for one
/// that is not backed (while the configuration is checked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricRef(pub usize);
