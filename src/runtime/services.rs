//! What host functions reach beyond their own instance: the host, the
//! HTTP calls in flight, the queues this worker registered, the metric ids
//! it gave out, the generations of instances. A worker has its own; the
//! runtime has one for the instances that run while the configuration is
//! checked, which make no calls.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Instant;

use crate::callout::grpc::GrpcCalls;
use crate::callout::Calls;
use crate::host::Host;
use crate::shared::metrics::{MetricNaming, MetricRegistry};
use crate::shared::queues::QueueSubscribers;
use crate::shared::Zones;

pub struct Services {
    pub host: &'static dyn Host,
    /// The zones of wasm{}.
    pub zones: Rc<Zones>,
    pub calls: RefCell<Calls>,
    pub grpc: RefCell<GrpcCalls>,
    pub queues: RefCell<QueueSubscribers>,
    pub metrics: RefCell<MetricRegistry>,
    /// What WASI's monotonic clock counts from.
    pub clock_origin: Instant,
    next_generation: Cell<u64>,
    /// Header changes made by filters so far: a header count read before
    /// is still right while this has not moved.
    header_changes: Cell<u64>,
    /// The first segment of the property paths the proxy's own code (Lua)
    /// serves through the host; empty: none.
    pub host_namespace: RefCell<Vec<u8>>,
}

impl Services {
    pub fn new(
        host: &'static dyn Host,
        zones: Rc<Zones>,
        calls: Calls,
        metric_naming: MetricNaming,
    ) -> Rc<Services> {
        Rc::new(Services {
            host,
            zones,
            grpc: RefCell::new(GrpcCalls::new(calls.settings().unwrap_or_default().max_body_size)),
            calls: RefCell::new(calls),
            queues: RefCell::new(QueueSubscribers::default()),
            metrics: RefCell::new(MetricRegistry::new(metric_naming)),
            clock_origin: Instant::now(),
            next_generation: Cell::new(1),
            header_changes: Cell::new(0),
            host_namespace: RefCell::new(Vec::new()),
        })
    }

    /// A filter changed a header map (any request's).
    pub fn header_changed(&self) {
        self.header_changes.set(self.header_changes.get().wrapping_add(1));
    }

    pub fn header_changes(&self) -> u64 {
        self.header_changes.get()
    }

    /// A generation for a new instance: what calls and queues find it by.
    pub fn next_generation(&self) -> u64 {
        let generation = self.next_generation.get();
        self.next_generation.set(generation + 1);
        generation
    }
}
