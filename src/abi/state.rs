//! The state host functions work on: one `HostState` per instance (the
//! wasmtime store's data) and one `StreamState` per request, shared by the
//! contexts of all filters of that request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use wasmtime::{Memory, TypedFunc};

use crate::abi::{LogLevel, Status};
use crate::host::{Host, RequestRef};
use crate::runtime::module::WasmModule;

/// The guest callback being run; decides which buffers and maps exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Callback {
    None,
    Start,
    ContextCreate,
    VmStart,
    Configure,
    RequestHeaders,
    ResponseHeaders,
    Log,
    Done,
    Delete,
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
            Callback::ResponseHeaders => "proxy_on_response_headers",
            Callback::Log => "proxy_on_log",
            Callback::Done => "proxy_on_done",
            Callback::Delete => "proxy_on_delete",
        }
    }
}

/// A filter as its contexts see it: what `proxy_wasm` configured.
#[derive(Debug)]
pub struct FilterInfo {
    /// The module name, used to attribute log lines.
    pub name: Arc<str>,
    pub config: Arc<[u8]>,
}

pub enum Context {
    Root {
        filter: Arc<FilterInfo>,
    },
    Http {
        filter: Arc<FilterInfo>,
        stream: Rc<RefCell<StreamState>>,
    },
}

impl Context {
    pub fn filter(&self) -> &Arc<FilterInfo> {
        match self {
            Context::Root { filter } | Context::Http { filter, .. } => filter,
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

/// One request, as seen by the filters' contexts.
#[derive(Debug)]
pub struct StreamState {
    pub request: RequestRef,
    /// The response header map exists once response headers are produced.
    pub response_headers: bool,
    /// No response can be produced any more (the response is under way).
    pub response_started: bool,
    pub local_response: Option<LocalResponse>,
}

impl StreamState {
    pub fn new(request: RequestRef) -> StreamState {
        StreamState {
            request,
            response_headers: false,
            response_started: false,
            local_response: None,
        }
    }
}

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

pub struct HostState {
    pub host: &'static dyn Host,
    pub module: Arc<WasmModule>,
    pub memory: Option<Memory>,
    pub allocator: Option<TypedFunc<i32, i32>>,
    pub contexts: HashMap<u32, Context>,
    pub frame: Frame,
}

impl HostState {
    pub fn new(host: &'static dyn Host, module: Arc<WasmModule>) -> HostState {
        HostState {
            host,
            module,
            memory: None,
            allocator: None,
            contexts: HashMap::new(),
            frame: Frame::IDLE,
        }
    }

    /// The context host functions act on: the effective one if set.
    pub fn context_id(&self) -> u32 {
        self.frame.effective_context.unwrap_or(self.frame.context_id)
    }

    pub fn context(&self) -> Option<&Context> {
        self.contexts.get(&self.context_id())
    }

    /// The request of the current context; `BAD_ARGUMENT` in a root context.
    pub fn stream(&self) -> Result<&Rc<RefCell<StreamState>>, Status> {
        match self.context() {
            Some(Context::Http { stream, .. }) => Ok(stream),
            _ => Err(Status::BadArgument),
        }
    }

    pub fn request(&self) -> Option<RequestRef> {
        self.stream().ok().map(|stream| stream.borrow().request)
    }

    /// Logs on behalf of the current context.
    pub fn log(&self, level: LogLevel, message: &[u8]) {
        let filter = self
            .context()
            .map(|context| context.filter().name.clone())
            .unwrap_or_else(|| self.module.name.clone());
        self.host
            .log(self.request(), level, &filter, self.context_id(), message);
    }
}
