//! The state host functions work on: one `HostState` per instance (the
//! wasmtime store's data) and one `RequestState` per request, shared by the
//! contexts of all filters of that request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use wasmtime::{Memory, TypedFunc};

use crate::abi::properties::PropertyStore;
use crate::abi::{Direction, LogLevel, Status};
use crate::callout::grpc::Metadata;
use crate::callout::http1::Response;
use crate::host::prelude::*;
use crate::host::RequestRef;
use crate::runtime::limits::MemoryLimiter;
use crate::runtime::module::WasmModule;
use crate::runtime::services::Services;

/// The guest callback being run; decides which buffers and maps exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    None,
    Start,
    ContextCreate,
    VmStart,
    Configure,
    RequestHeaders,
    RequestBody,
    RequestTrailers,
    ResponseHeaders,
    ResponseBody,
    ResponseTrailers,
    NewConnection,
    DownstreamData,
    UpstreamData,
    DownstreamClose,
    UpstreamClose,
    Log,
    Done,
    Delete,
    Tick,
    HttpCallResponse,
    QueueReady,
    GrpcInitialMetadata,
    GrpcReceive,
    GrpcTrailingMetadata,
    GrpcClose,
}

impl Callback {
    pub fn export_name(self) -> &'static str {
        match self {
            Callback::None => "-",
            Callback::Start => "_initialize",
            Callback::ContextCreate => "proxy_on_context_create",
            Callback::VmStart => "proxy_on_vm_start",
            Callback::Configure => "proxy_on_configure",
            Callback::RequestHeaders => "proxy_on_request_headers",
            Callback::RequestBody => "proxy_on_request_body",
            Callback::RequestTrailers => "proxy_on_request_trailers",
            Callback::ResponseHeaders => "proxy_on_response_headers",
            Callback::ResponseBody => "proxy_on_response_body",
            Callback::ResponseTrailers => "proxy_on_response_trailers",
            Callback::NewConnection => "proxy_on_new_connection",
            Callback::DownstreamData => "proxy_on_downstream_data",
            Callback::UpstreamData => "proxy_on_upstream_data",
            Callback::DownstreamClose => "proxy_on_downstream_connection_close",
            Callback::UpstreamClose => "proxy_on_upstream_connection_close",
            Callback::Log => "proxy_on_log",
            Callback::Done => "proxy_on_done",
            Callback::Delete => "proxy_on_delete",
            Callback::Tick => "proxy_on_tick",
            Callback::HttpCallResponse => "proxy_on_http_call_response",
            Callback::QueueReady => "proxy_on_queue_ready",
            Callback::GrpcInitialMetadata => "proxy_on_grpc_receive_initial_metadata",
            Callback::GrpcReceive => "proxy_on_grpc_receive",
            Callback::GrpcTrailingMetadata => "proxy_on_grpc_receive_trailing_metadata",
            Callback::GrpcClose => "proxy_on_grpc_close",
        }
    }
}

/// The type of a declared property (Envoy's `WasmType`): values are
/// stored and read back as bytes whatever it is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum PropertyType {
    #[default]
    Bytes,
    String,
    FlatBuffers,
    Protobuf,
}

impl PropertyType {
    pub fn from_raw(raw: u64) -> Option<PropertyType> {
        Some(match raw {
            0 => PropertyType::Bytes,
            1 => PropertyType::String,
            2 => PropertyType::FlatBuffers,
            3 => PropertyType::Protobuf,
            _ => return None,
        })
    }
}

/// What `declare_property` said of a property.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Declaration {
    /// Set once, then refused.
    pub readonly: bool,
    pub kind: PropertyType,
}

/// A filter as its contexts see it: what `proxy_wasm` configured.
#[derive(Debug)]
pub struct FilterInfo {
    /// The module name, used to attribute log lines.
    pub name: Arc<str>,
    pub config: Arc<[u8]>,
}

#[derive(Clone)]
pub enum Context {
    Root {
        filter: Arc<FilterInfo>,
        /// What the root context stored with `proxy_set_property`.
        properties: PropertyStore,
    },
    Http {
        filter: Arc<FilterInfo>,
        /// The filter's root context.
        root: u32,
        request_state: Rc<RefCell<RequestState>>,
        /// The filter's place in the request's chain.
        index: usize,
    },
}

impl Context {
    pub fn filter(&self) -> &Arc<FilterInfo> {
        match self {
            Context::Root { filter, .. } | Context::Http { filter, .. } => filter,
        }
    }
}

/// A response a filter asked for with `proxy_send_local_response`.
#[derive(Debug, Default)]
pub struct LocalResponse {
    pub status: u32,
    pub details: Vec<u8>,
    pub body: Vec<u8>,
    pub headers: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Body data in a filter's hands: what it sees in its body callback, and
/// keeps while it pauses (buffering, or waiting to be continued).
#[derive(Debug, Default)]
pub struct Held {
    pub data: Vec<u8>,
    pub end_of_stream: bool,
}

/// Whether filters can reach the response trailers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trailers {
    /// Not yet: the response body has not ended.
    None,
    /// The body is ending without trailers: filters may add some.
    Addable,
    /// The trailers exist.
    Present,
}

/// One request, as seen by the filters' contexts.
#[derive(Debug)]
pub struct RequestState {
    pub request: RequestRef,
    /// A TCP connection of nginx's stream{} (network filters), not an
    /// HTTP request: `request` is its session.
    pub connection: bool,
    /// Body data by direction and filter (its place in the chain), both
    /// directions in one allocation: see `body`.
    bodies: Vec<Option<Held>>,
    /// A filter changed the body it was given (`proxy_set_buffer_bytes`).
    pub body_changed: bool,
    /// The response header map exists once response headers are produced.
    pub response_headers: bool,
    pub response_trailers: Trailers,
    /// No response can be produced any more: its headers went out.
    pub response_started: bool,
    pub local_response: Option<LocalResponse>,
    /// A callback of this request, for this direction, is running: what
    /// filters ask for takes effect when it returns, without asking the
    /// host to come back.
    pub in_callback: Option<Direction>,
    /// Filters (by place in the chain) that asked to continue a direction
    /// from outside the request's own callbacks.
    pub continue_requested: [Vec<usize>; 2],
    /// Filters that asked to continue a direction during the callback
    /// running now.
    pub continue_in_callback: [bool; 2],
    pub close_requested: bool,
    /// What filters stored with `proxy_set_property`: shared by the
    /// chain, and shown to nginx as `$proxy_wasm_property_<name>`.
    pub properties: PropertyStore,
    /// `response.code_details` of a local response a filter sent.
    pub response_code_details: Option<Vec<u8>>,
}

impl RequestState {
    pub fn new(request: RequestRef, connection: bool, filters: usize) -> RequestState {
        RequestState {
            request,
            connection,
            bodies: (0..2 * filters).map(|_| None).collect(),
            body_changed: false,
            response_headers: false,
            response_trailers: Trailers::None,
            response_started: false,
            local_response: None,
            in_callback: None,
            continue_requested: [Vec::new(), Vec::new()],
            continue_in_callback: [false, false],
            close_requested: false,
            properties: PropertyStore::default(),
            response_code_details: None,
        }
    }

    /// Forgets the request, all of its data, and keeps the allocations
    /// for the next one (`begin`).
    pub fn clear(&mut self) {
        let mut bodies = std::mem::take(&mut self.bodies);
        bodies.clear();
        let mut continue_requested = std::mem::take(&mut self.continue_requested);
        continue_requested.iter_mut().for_each(Vec::clear);
        *self = RequestState {
            bodies,
            continue_requested,
            ..RequestState::new(RequestRef(0), false, 0)
        };
    }

    /// A cleared state (`clear`) taken by a new request.
    pub fn begin(&mut self, request: RequestRef, connection: bool, filters: usize) {
        debug_assert!(self.bodies.is_empty(), "begun without clear");
        self.request = request;
        self.connection = connection;
        self.bodies.resize_with(2 * filters, || None);
    }

    /// The body data the filter at `index` holds for a direction.
    pub fn body(&self, direction: Direction, index: usize) -> &Option<Held> {
        &self.bodies[self.body_slot(direction, index)]
    }

    pub fn body_mut(&mut self, direction: Direction, index: usize) -> &mut Option<Held> {
        let slot = self.body_slot(direction, index);
        &mut self.bodies[slot]
    }

    /// The body bytes the filters hold for a direction.
    pub fn held_bytes(&self, direction: Direction) -> usize {
        let filters = self.bodies.len() / 2;
        self.bodies[direction as usize * filters..][..filters]
            .iter()
            .flatten()
            .map(|held| held.data.len())
            .sum()
    }

    /// Whether a filter holds body data for a direction.
    pub fn holds_body(&self, direction: Direction) -> bool {
        let filters = self.bodies.len() / 2;
        self.bodies[direction as usize * filters..][..filters]
            .iter()
            .any(Option::is_some)
    }

    fn body_slot(&self, direction: Direction, index: usize) -> usize {
        direction as usize * (self.bodies.len() / 2) + index
    }

    /// Records a filter's request to continue a direction; false when the
    /// host must be asked to come back to the request for it.
    pub fn request_continue(&mut self, direction: Direction, filter: usize) -> bool {
        if self.in_callback == Some(direction) {
            self.continue_in_callback[direction as usize] = true;
            return true;
        }
        let requested = &mut self.continue_requested[direction as usize];
        if !requested.contains(&filter) {
            requested.push(filter);
        }
        false
    }
}

/// Output lines longer than this are logged in pieces.
const OUTPUT_LINE_MAX: usize = 4096;

/// The callback in progress on an instance.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub context_id: u32,
    pub callback: Callback,
    /// Set by `proxy_set_effective_context` for the rest of this callback.
    pub effective_context: Option<u32>,
    /// The guest allocator is running: only a few host functions may be
    /// called.
    pub in_allocator: bool,
}

impl Frame {
    pub const IDLE: Frame = Frame {
        context_id: 0,
        callback: Callback::None,
        effective_context: None,
        in_allocator: false,
    };
}

/// Hashes ids the host chooses (context ids, filter ids): small integers,
/// so SipHash's protection against chosen keys buys nothing, at a cost
/// paid several times per request.
#[derive(Default)]
pub struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(b as u32);
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.write_u64(id as u64);
    }

    fn write_usize(&mut self, id: usize) {
        self.write_u64(id as u64);
    }

    fn write_u64(&mut self, id: u64) {
        // Fibonacci hashing: spreads consecutive ids over the high bits
        self.0 = (self.0 ^ id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A map keyed by ids the host chooses.
pub type IdMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<IdHasher>>;

pub type ContextMap = IdMap<u32, Context>;

pub struct HostState {
    pub host: &'static dyn Host,
    /// What host functions reach beyond the instance.
    pub services: Rc<Services>,
    pub module: Arc<WasmModule>,
    pub memory: Option<Memory>,
    /// Shared so that a host function can call it while the store is
    /// borrowed (cloning a typed function takes registry references).
    pub allocator: Option<Rc<TypedFunc<i32, i32>>>,
    pub contexts: ContextMap,
    pub frame: Frame,
    pub limiter: MemoryLimiter,
    /// `proxy_set_tick_period_milliseconds` calls not acted on yet: root
    /// context id and period in milliseconds (0: stop).
    pub tick_requests: Vec<(u32, u32)>,
    /// Where host values (properties, shared data) are copied before they
    /// go to the guest, kept between calls.
    pub scratch: Vec<u8>,
    /// The instance's generation: calls it makes come back to it.
    pub generation: u64,
    /// The response `on_http_call_response` is given (empty for a failed
    /// call; None outside that callback).
    pub call_response: Option<Rc<Response>>,
    /// `proxy_get_status`: the last call's outcome (code, message).
    pub call_status: (u32, Vec<u8>),
    /// Root contexts whose `on_done` returned false: they finish when they
    /// call `proxy_done`.
    pub pending_done: Vec<u32>,
    /// Those of them that called `proxy_done` in the current guest call.
    pub done_called: Vec<u32>,
    /// Properties declared with the `declare_property` foreign function,
    /// by key.
    pub declared: HashMap<Vec<u8>, Declaration>,
    /// The message `on_grpc_receive` is given (None outside it).
    pub grpc_message: Option<Bytes>,
    /// The metadata `on_grpc_receive_initial_metadata` (false) or
    /// `on_grpc_receive_trailing_metadata` (true) is given.
    pub grpc_metadata: Option<(bool, Rc<Metadata>)>,
    /// WASI stdout and stderr text not logged yet: the start of a line.
    output: Vec<(LogLevel, Vec<u8>)>,
}

impl HostState {
    pub fn new(services: &Rc<Services>, module: Arc<WasmModule>) -> HostState {
        let limiter = MemoryLimiter::new(module.limits.memory);
        HostState {
            host: services.host,
            services: services.clone(),
            module,
            memory: None,
            allocator: None,
            contexts: ContextMap::default(),
            frame: Frame::IDLE,
            limiter,
            tick_requests: Vec::new(),
            scratch: Vec::new(),
            generation: 0,
            call_response: None,
            call_status: (0, Vec::new()),
            pending_done: Vec::new(),
            done_called: Vec::new(),
            declared: HashMap::new(),
            grpc_message: None,
            grpc_metadata: None,
            output: Vec::new(),
        }
    }

    /// Logs what a guest writes to stdout or stderr (at `level`) line by
    /// line; the rest waits for its end of line, or the end of the call.
    pub fn write_output(&mut self, level: LogLevel, text: &[u8]) {
        let pending = match self.output.iter().position(|(l, _)| *l == level) {
            Some(i) => &mut self.output[i].1,
            None => {
                self.output.push((level, Vec::new()));
                &mut self.output.last_mut().expect("just pushed").1
            }
        };
        pending.extend_from_slice(text);
        let mut pending = std::mem::take(pending);
        let mut start = 0;
        while let Some(end) = pending[start..].iter().position(|&b| b == b'\n') {
            self.log(level, &pending[start..start + end]);
            start += end + 1;
        }
        pending.drain(..start);
        // a guest that never ends its line still gets logged
        if pending.len() >= OUTPUT_LINE_MAX {
            self.log(level, &pending);
            pending.clear();
        }
        if let Some(slot) = self.output.iter_mut().find(|(l, _)| *l == level) {
            slot.1 = pending;
        }
    }

    /// Logs what is left of the guest's output lines.
    pub fn flush_output(&mut self) {
        // after every guest call: most write nothing
        if self.output.is_empty() {
            return;
        }
        for (level, pending) in std::mem::take(&mut self.output) {
            if !pending.is_empty() {
                self.log(level, &pending);
            }
        }
    }

    /// The root context of the current context (itself for a root).
    pub fn root_id(&self) -> Option<u32> {
        match self.context()? {
            Context::Root { .. } => Some(self.context_id()),
            Context::Http { root, .. } => Some(*root),
        }
    }

    /// The context host functions act on: the effective one if set.
    pub fn context_id(&self) -> u32 {
        self.frame.effective_context.unwrap_or(self.frame.context_id)
    }

    pub fn context(&self) -> Option<&Context> {
        self.contexts.get(&self.context_id())
    }

    /// The store of the current context if it is a root context.
    pub fn root_properties(&self) -> Option<&PropertyStore> {
        match self.context()? {
            Context::Root { properties, .. } => Some(properties),
            Context::Http { .. } => None,
        }
    }

    pub fn root_properties_mut(&mut self) -> Option<&mut PropertyStore> {
        let id = self.context_id();
        match self.contexts.get_mut(&id)? {
            Context::Root { properties, .. } => Some(properties),
            Context::Http { .. } => None,
        }
    }

    /// The request of the current context; `BAD_ARGUMENT` in a root context.
    pub fn request_state(&self) -> Result<&Rc<RefCell<RequestState>>, Status> {
        self.http().map(|(stream, _)| stream)
    }

    /// The request of the current context and the filter's place in its
    /// chain.
    pub fn http(&self) -> Result<(&Rc<RefCell<RequestState>>, usize), Status> {
        match self.context() {
            Some(Context::Http {
                request_state, index, ..
            }) => Ok((request_state, *index)),
            _ => Err(Status::BadArgument),
        }
    }

    pub fn request(&self) -> Option<RequestRef> {
        self.request_state().ok().map(|stream| stream.borrow().request)
    }

    /// The name of the current context's filter (else the module's).
    pub fn filter_name(&self) -> Arc<str> {
        self.context()
            .map(|context| context.filter().name.clone())
            .unwrap_or_else(|| self.module.name.clone())
    }

    /// Logs on behalf of the current context.
    pub fn log(&self, level: LogLevel, message: &[u8]) {
        self.host.log(
            self.request(),
            level,
            &self.filter_name(),
            self.context_id(),
            message,
        );
    }
}
