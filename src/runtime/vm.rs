//! A live instance of a module in a worker (a wasmtime store), its root
//! contexts, and the one wrapper every guest call goes through.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;
use wasmtime::{FrameInfo, Global, Instance, Store, Trap, Val, WasmBacktrace};

use crate::abi::Direction;
use crate::abi::{LogLevel, PeerType, Status};
use crate::callout::grpc::Delivery;
use crate::callout::http1::Response;
use crate::callout::CallFailure;
use crate::runtime::callbacks::{get, Callbacks, HeadersCallback};
use crate::runtime::hostcalls::ProcExit;
use crate::runtime::module::WasmModule;
use crate::runtime::prepare;
use crate::runtime::services::Services;
use crate::runtime::snapshot::{MemoryImage, PageMap};
use crate::runtime::state::{
    Callback, Context, ContextMap, Declaration, FilterInfo, Frame, HostState, IdMap, RequestState,
};

/// A guest call that did not complete: the instance is now unusable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trapped;

pub struct Vm {
    pub module: Arc<WasmModule>,
    store: Store<HostState>,
    /// Shared so that a call can hold them while the store is borrowed.
    callbacks: Rc<Callbacks>,
    next_context_id: u32,
    /// The epoch deadline of every guest call (computed once: it divides).
    deadline_ticks: u64,
    /// Root context id of each filter started in this instance.
    roots: IdMap<usize, u32>,
    /// Distinguishes this instance from the one that replaces it.
    pub generation: u64,
    /// Why a guest call failed it: the instance is unusable.
    failure: Option<String>,
    /// Guest calls that returned, and how many of them started it: an
    /// instance that fails before any other returns is in a crash loop.
    completed: u64,
    completed_at_start: u64,
    /// `done_roots` ran (the worker shuts down).
    roots_done: bool,
    instance: Instance,
    /// What a per-request instance is put back to after its request.
    fresh: Option<Box<Fresh>>,
    /// An HTTP context (and its root) whose `on_context_create` waits to
    /// run with its `on_request_headers` in one entry (`START_REQUEST`);
    /// any other guest call runs it first. Only while
    /// `create_http_context` runs the context's first callback.
    pending_create: Option<(u32, u32)>,
}

/// A per-request instance as its start left it (see `snapshot`): its
/// memory and globals, and the host's record of its root contexts.
struct Fresh {
    /// The module's index in the worker and the filters whose roots it
    /// runs: which requests may take it.
    key: (usize, Vec<usize>),
    memory: MemoryImage,
    globals: Vec<(Global, Val)>,
    roots: IdMap<usize, u32>,
    next_context_id: u32,
    /// The root contexts (no request has one yet).
    contexts: ContextMap,
    declared: HashMap<Vec<u8>, Declaration>,
}

impl Vm {
    /// Instantiates the module and runs its start function.
    pub fn new(module: &Arc<WasmModule>, services: &Rc<Services>) -> Result<Vm, String> {
        let engine = module.pre.module().engine();
        let mut store = Store::new(engine, HostState::new(services, module.clone()));
        store.limiter(|state| &mut state.limiter);
        store.epoch_deadline_trap();
        // a start section runs during instantiation
        let deadline_ticks = module.limits.deadline_ticks();
        store.set_epoch_deadline(deadline_ticks);
        let instance = module.pre.instantiate(&mut store).map_err(|e| {
            let cause = with_backtrace(cause(&e, module), &e, &module.name, false);
            format!("cannot instantiate: {cause}")
        })?;
        let callbacks = Rc::new(Callbacks::new(instance, module));
        let memory = instance.get_memory(&mut store, "memory");
        let allocator = get(&instance, &mut store, module, "proxy_on_memory_allocate")
            .or_else(|| get(&instance, &mut store, module, "malloc"))
            .map(Rc::new);
        let state = store.data_mut();
        state.memory = memory;
        state.allocator = allocator;
        let mut vm = Vm {
            module: module.clone(),
            store,
            callbacks,
            next_context_id: 1,
            deadline_ticks,
            roots: IdMap::default(),
            generation: services.next_generation(),
            failure: None,
            completed: 0,
            completed_at_start: 0,
            roots_done: false,
            instance,
            fresh: None,
            pending_create: None,
        };
        vm.store.data_mut().generation = vm.generation;
        vm.start(&instance)?;
        Ok(vm)
    }

    /// WASI start: `_initialize` (then `main` if exported), else `_start`.
    /// A `_start` that ends with `proc_exit(0)` has finished initializing.
    fn start(&mut self, instance: &Instance) -> Result<(), String> {
        let module = self.module.clone();
        let func = |store: &mut Store<HostState>, name| get::<(), ()>(instance, store, &module, name);
        if let Some(initialize) = func(&mut self.store, "_initialize") {
            self.call(0, Callback::Start, |store| initialize.call(store, ()))
                .map_err(|_| self.failed_because("_initialize"))?;
            if let Some(main) = get::<(i32, i32), i32>(instance, &mut self.store, &module, "main") {
                self.call(0, Callback::Start, |store| main.call(store, (0, 0)))
                    .map_err(|_| self.failed_because("main"))?;
            }
        } else if let Some(start) = func(&mut self.store, "_start") {
            self.call(0, Callback::Start, |store| match start.call(&mut *store, ()) {
                Err(e) if matches!(e.downcast_ref::<ProcExit>(), Some(ProcExit(0))) => Ok(()),
                other => other,
            })
            .map_err(|_| self.failed_because("_start"))?;
        }
        Ok(())
    }

    fn next_context_id(&mut self) -> u32 {
        loop {
            let id = self.next_context_id;
            self.next_context_id = self.next_context_id.checked_add(1).unwrap_or(1);
            if !self.store.data().contexts.contains_key(&id) {
                return id;
            }
        }
    }

    /// Creates the root context of a filter: `on_context_create`,
    /// `on_vm_start`, `on_configure`. Returns why it failed.
    pub fn start_filter(&mut self, filter_id: usize, filter: &Arc<FilterInfo>) -> Result<u32, String> {
        let id = self.next_context_id();
        self.store.data_mut().contexts.insert(
            id,
            Context::Root {
                filter: filter.clone(),
                properties: Default::default(),
            },
        );
        let callbacks = self.callbacks.clone();
        self.call(id, Callback::ContextCreate, |store| {
            match callbacks.context_create.get(store) {
                Some(f) => f.call(store, (id as i32, 0)),
                None => Ok(()),
            }
        })
        .map_err(|_| self.failed_because("on_context_create"))?;
        let vm_config_len = self.module.vm_config.len() as i32;
        if let Some(vm_start) = callbacks.vm_start.get(&mut self.store) {
            let ok = self
                .call(id, Callback::VmStart, |store| {
                    vm_start.call(store, (id as i32, vm_config_len))
                })
                .map_err(|_| self.failed_because("on_vm_start"))?;
            if ok == 0 {
                return Err("on_vm_start returned false".into());
            }
        }
        if let Some(configure) = callbacks.configure.get(&mut self.store) {
            let len = filter.config.len() as i32;
            let ok = self
                .call(id, Callback::Configure, |store| {
                    configure.call(store, (id as i32, len))
                })
                .map_err(|_| self.failed_because("on_configure"))?;
            if ok == 0 {
                return Err("on_configure returned false".into());
            }
        }
        self.roots.insert(filter_id, id);
        Ok(id)
    }

    /// `<callback> failed: <cause>`, after a failed start callback.
    fn failed_because(&self, callback: &str) -> String {
        match &self.failure {
            Some(cause) => format!("{callback} failed: {cause}"),
            None => format!("{callback} failed"),
        }
    }

    pub fn failed(&self) -> bool {
        self.failure.is_some()
    }

    /// Whether it is that generation and has not failed: what a context
    /// made in it may still run in.
    pub fn runs(&self, generation: u64) -> bool {
        self.generation == generation && !self.failed()
    }

    /// Its root contexts are started: guest calls from now on are its
    /// work.
    pub fn mark_started(&mut self) {
        self.completed_at_start = self.completed;
    }

    /// Keeps what this instance is now (its roots started) to be put back
    /// to after each request; `key` names the requests that may take it.
    /// Nothing is kept if its module cannot be reset.
    pub fn keep_fresh(&mut self, key: (usize, Vec<usize>), pagemap: &PageMap) {
        let module = self.module.clone();
        let (Some(exports), Some(memory)) = (&module.reset_globals, self.store.data().memory) else {
            return;
        };
        let mut globals = Vec::with_capacity(exports.len());
        for export in exports {
            let Some(global) = self
                .instance
                .get_module_export(&mut self.store, export)
                .and_then(|export| export.into_global())
            else {
                return;
            };
            globals.push((global, global.get(&mut self.store)));
        }
        let image = MemoryImage::take(memory.data_mut(&mut self.store), pagemap);
        let state = self.store.data();
        self.fresh = Some(Box::new(Fresh {
            key,
            memory: image,
            globals,
            roots: self.roots.clone(),
            next_context_id: self.next_context_id,
            contexts: state.contexts.clone(),
            declared: state.declared.clone(),
        }));
    }

    /// The module and filters of a per-request instance that can be reset.
    pub fn fresh_key(&self) -> Option<&(usize, Vec<usize>)> {
        self.fresh.as_ref().map(|fresh| &fresh.key)
    }

    /// Puts a per-request instance whose request ended back to what
    /// `keep_fresh` kept: false if it cannot serve again (it failed, a
    /// root finishes later, its memory grew, or the kernel could not say
    /// which pages were written).
    pub fn reset(&mut self, pagemap: &PageMap) -> bool {
        if self.failed() || self.finishing() {
            return false;
        }
        let (Some(fresh), Some(memory)) = (self.fresh.take(), self.store.data().memory) else {
            return false;
        };
        let restored = fresh.memory.restore(memory.data_mut(&mut self.store), pagemap)
            && fresh
                .globals
                .iter()
                .all(|(global, value)| global.set(&mut self.store, *value).is_ok());
        if !restored {
            return false;
        }
        // clone_from: the maps keep their allocations, request after request
        self.roots.clone_from(&fresh.roots);
        self.next_context_id = fresh.next_context_id;
        self.roots_done = false;
        self.mark_started();
        let state = self.store.data_mut();
        state.contexts.clone_from(&fresh.contexts);
        state.declared.clone_from(&fresh.declared);
        state.tick_requests.clear();
        state.call_status = (0, Vec::new());
        self.fresh = Some(fresh);
        true
    }

    /// A reset instance taken by a new request: calls of its last one
    /// cannot come back to it.
    pub fn renew(&mut self, generation: u64) {
        self.generation = generation;
        self.store.data_mut().generation = generation;
    }

    /// The guest calls that returned, a merged entry counting once (tests).
    pub fn returned_calls(&self) -> u64 {
        self.completed
    }

    /// Whether its memory is what `keep_fresh` kept (tests).
    pub fn is_fresh(&self) -> bool {
        match (&self.fresh, self.store.data().memory) {
            (Some(fresh), Some(memory)) => fresh.memory.matches(memory.data(&self.store)),
            _ => false,
        }
    }

    /// Whether a guest call returned since it started: if it fails now, a
    /// request or an event failed it, not its start.
    pub fn served(&self) -> bool {
        self.completed > self.completed_at_start
    }

    pub fn root_context(&self, filter_id: usize) -> Option<u32> {
        self.roots.get(&filter_id).copied()
    }

    /// The tick periods root contexts set since the last call.
    pub fn take_tick_requests(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.store.data_mut().tick_requests)
    }

    pub fn on_tick(&mut self, root_id: u32) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        match callbacks.tick.get(&mut self.store) {
            Some(f) => self.call(root_id, Callback::Tick, |store| f.call(store, root_id as i32)),
            None => Ok(()),
        }
    }

    /// An item waits in a queue the root context registered.
    pub fn on_queue_ready(&mut self, root_id: u32, token: u32) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        match callbacks.queue_ready.get(&mut self.store) {
            Some(f) => self.call(root_id, Callback::QueueReady, |store| {
                f.call(store, (root_id as i32, token as i32))
            }),
            None => Ok(()),
        }
    }

    /// A call of a root context ended: `on_http_call_response` with the
    /// response's maps and body in reach, or with none for a failure
    /// (`proxy_get_status` tells why).
    pub fn on_http_call_response(
        &mut self,
        root_id: u32,
        token: u32,
        outcome: Result<Rc<Response>, CallFailure>,
    ) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        let Some(f) = callbacks.http_call_response.get(&mut self.store) else {
            return Ok(());
        };
        let (args, response, status) = match outcome {
            Ok(response) => (
                (
                    response.headers.len(),
                    response.body.len(),
                    response.trailers.len(),
                ),
                Some(response),
                (Status::Ok as u32, Vec::new()),
            ),
            // a failed call's maps are empty, not missing: SDKs panic on
            // an error status when they read them
            Err(failure) => (
                (0, 0, 0),
                Some(Rc::new(Response::default())),
                (
                    Status::BrokenConnection as u32,
                    failure.as_str().as_bytes().to_vec(),
                ),
            ),
        };
        let state = self.store.data_mut();
        state.call_response = response;
        state.call_status = status;
        let (headers, body, trailers) = args;
        let result = self.call(root_id, Callback::HttpCallResponse, |store| {
            f.call(
                store,
                (
                    root_id as i32,
                    token as i32,
                    headers as i32,
                    body as i32,
                    trailers as i32,
                ),
            )
        });
        self.store.data_mut().call_response = None;
        result
    }

    /// Something came of a gRPC call or stream of a root context: its
    /// metadata, a message, or its close (the status message through
    /// `proxy_get_status`), each in the callback Envoy makes for it.
    pub fn on_grpc(&mut self, root_id: u32, token: u32, what: Delivery) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        let (lazy, callback, arg) = match what {
            Delivery::InitialMetadata(metadata) => {
                let count = metadata.len() as u32;
                self.store.data_mut().grpc_metadata = Some((false, Rc::new(metadata)));
                (
                    &callbacks.grpc_initial_metadata,
                    Callback::GrpcInitialMetadata,
                    count,
                )
            }
            Delivery::TrailingMetadata(metadata) => {
                let count = metadata.len() as u32;
                self.store.data_mut().grpc_metadata = Some((true, Rc::new(metadata)));
                (
                    &callbacks.grpc_trailing_metadata,
                    Callback::GrpcTrailingMetadata,
                    count,
                )
            }
            Delivery::Message(message) => {
                let size = message.len();
                self.store.data_mut().grpc_message = Some(message);
                (&callbacks.grpc_receive, Callback::GrpcReceive, size as u32)
            }
            Delivery::Close(status) => {
                self.store.data_mut().call_status = (status.code, status.message.into_bytes());
                (&callbacks.grpc_close, Callback::GrpcClose, status.code)
            }
        };
        let result = match lazy.get(&mut self.store) {
            Some(f) => self.call(root_id, callback, |store| {
                f.call(store, (root_id as i32, token as i32, arg as i32))
            }),
            None => Ok(()),
        };
        let state = self.store.data_mut();
        state.grpc_metadata = None;
        state.grpc_message = None;
        result
    }

    /// Ends the root contexts (`on_done`, then `on_delete`), before the
    /// instance goes. A root whose `on_done` returns false finishes later,
    /// when it calls `proxy_done` (Envoy's rule): whether some do.
    pub fn end_roots(&mut self) -> bool {
        // on the stack: per-request instances end with every request
        let mut roots: SmallVec<[u32; 8]> = self.roots.drain().map(|(_, id)| id).collect();
        roots.sort_unstable();
        for id in roots {
            match self.on_done(id) {
                Ok(false) => self.store.data_mut().pending_done.push(id),
                _ => self.delete_context(id),
            }
        }
        self.finishing()
    }

    /// A worker shuts down: its shared instance's roots get `on_done`, and
    /// stay for requests that still come (their `on_delete` waits for the
    /// worker's exit, or for `proxy_done` from those that returned false).
    /// Whether some finish later. Once only.
    pub fn done_roots(&mut self) -> bool {
        if std::mem::replace(&mut self.roots_done, true) {
            return self.finishing();
        }
        let mut roots: Vec<u32> = self.roots.values().copied().collect();
        roots.sort_unstable();
        for id in roots {
            if let Ok(false) = self.on_done(id) {
                self.store.data_mut().pending_done.push(id);
            }
        }
        self.finishing()
    }

    /// The worker exits: the roots `done_roots` ended get their
    /// `on_delete` (a fast stop, which never called `on_done`, calls
    /// nothing).
    pub fn delete_done_roots(&mut self) {
        if !self.roots_done || self.failed() {
            return;
        }
        let mut roots: Vec<u32> = self.roots.drain().map(|(_, id)| id).collect();
        roots.sort_unstable();
        for id in roots {
            self.delete_context(id);
        }
    }

    /// Some root context has yet to call `proxy_done`.
    pub fn finishing(&self) -> bool {
        !self.failed() && !self.store.data().pending_done.is_empty()
    }

    /// The roots that did not call `proxy_done` in time end now.
    pub fn end_finishing(&mut self) -> Vec<u32> {
        let pending = std::mem::take(&mut self.store.data_mut().pending_done);
        for &id in &pending {
            self.delete_context(id);
        }
        self.roots.retain(|_, id| !pending.contains(id));
        pending
    }

    /// Creates the HTTP context of a request for the filter at `index` in
    /// its chain, and runs its first callback (`first`): `on_context_create`
    /// runs in the same guest call when that is the request's headers
    /// (`START_REQUEST`), else before it (before `first` ends, if `first`
    /// makes no guest call). The context's id, and what `first` returned
    /// (Err: `on_context_create` failed, or `first`).
    pub fn create_http_context<R>(
        &mut self,
        root_id: u32,
        filter: &Arc<FilterInfo>,
        stream: &Rc<RefCell<RequestState>>,
        index: usize,
        first: impl FnOnce(&mut Vm, u32) -> Result<R, Trapped>,
    ) -> (u32, Result<R, Trapped>) {
        let id = self.next_context_id();
        let context = Context::Http {
            filter: filter.clone(),
            root: root_id,
            request_state: stream.clone(),
            index,
        };
        self.store.data_mut().contexts.insert(id, context);
        if !self.callbacks.start_request.resolves(&mut self.store) {
            let created = self.context_create(id, root_id);
            return (id, created.and_then(|()| first(self, id)));
        }
        self.pending_create = Some((id, root_id));
        let result = first(self, id);
        // still waiting: the first callback made no guest call
        let created = self.flush_pending_create();
        (id, created.and(result))
    }

    /// Runs the `on_context_create` that waits, if one does.
    fn flush_pending_create(&mut self) -> Result<(), Trapped> {
        match self.pending_create.take() {
            Some((id, root)) => self.context_create(id, root),
            None => Ok(()),
        }
    }

    fn context_create(&mut self, id: u32, root_id: u32) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        self.call(id, Callback::ContextCreate, |store| {
            match callbacks.context_create.get(store) {
                Some(f) => f.call(store, (id as i32, root_id as i32)),
                None => Ok(()),
            }
        })
    }

    /// `proxy_on_{request,response}_headers`; 0 (continue) when not
    /// exported.
    pub fn on_headers(
        &mut self,
        direction: Direction,
        id: u32,
        headers: usize,
        end_of_stream: bool,
    ) -> Result<i32, Trapped> {
        let callbacks = self.callbacks.clone();
        if let Some((_, root)) = self
            .pending_create
            .filter(|&(pending, _)| pending == id && direction == Direction::Request)
        {
            self.pending_create = None;
            let args = (id as i32, root as i32, headers as i32, end_of_stream as i32);
            let stages = [Callback::ContextCreate, Callback::RequestHeaders];
            return self.call_stages(id, &stages, |store| callbacks.start_request.call(store, args));
        }
        let (func, callback) = match direction {
            Direction::Request => (&callbacks.request_headers, Callback::RequestHeaders),
            Direction::Response => (&callbacks.response_headers, Callback::ResponseHeaders),
        };
        let args = (id as i32, headers as i32, end_of_stream as i32);
        match func {
            HeadersCallback::V1(f) => match f.get(&mut self.store) {
                Some(f) => self.call(id, callback, |store| f.call(store, (args.0, args.1))),
                None => Ok(0),
            },
            HeadersCallback::V2(f) => match f.get(&mut self.store) {
                Some(f) => self.call(id, callback, |store| f.call(store, args)),
                None => Ok(0),
            },
        }
    }

    /// Whether the module has the data callback of a direction.
    pub fn has_data_callback(&self, connection: bool, direction: Direction) -> bool {
        self.callbacks.data(connection, direction).0.exists()
    }

    /// `proxy_on_{request,response}_body`, or for a connection
    /// `proxy_on_{downstream,upstream}_data`; 0 (continue) when not
    /// exported.
    pub fn on_data(
        &mut self,
        connection: bool,
        direction: Direction,
        id: u32,
        size: usize,
        end_of_stream: bool,
    ) -> Result<i32, Trapped> {
        let callbacks = self.callbacks.clone();
        let (func, callback) = callbacks.data(connection, direction);
        match func.get(&mut self.store) {
            Some(f) => self.call(id, callback, |store| {
                f.call(store, (id as i32, size as i32, end_of_stream as i32))
            }),
            None => Ok(0),
        }
    }

    /// `proxy_on_{request,response}_trailers`; 0 (continue) when not
    /// exported.
    pub fn on_trailers(&mut self, direction: Direction, id: u32, trailers: usize) -> Result<i32, Trapped> {
        let callbacks = self.callbacks.clone();
        let (func, callback) = match direction {
            Direction::Request => (&callbacks.request_trailers, Callback::RequestTrailers),
            Direction::Response => (&callbacks.response_trailers, Callback::ResponseTrailers),
        };
        match func.get(&mut self.store) {
            Some(f) => self.call(id, callback, |store| f.call(store, (id as i32, trailers as i32))),
            None => Ok(0),
        }
    }

    /// `proxy_on_new_connection`; 0 (continue) when not exported.
    pub fn on_new_connection(&mut self, id: u32) -> Result<i32, Trapped> {
        let callbacks = self.callbacks.clone();
        match callbacks.new_connection.get(&mut self.store) {
            Some(f) => self.call(id, Callback::NewConnection, |store| f.call(store, id as i32)),
            None => Ok(0),
        }
    }

    /// `proxy_on_{downstream,upstream}_connection_close`, with the peer
    /// that closed (`PeerType`).
    pub fn on_connection_close(
        &mut self,
        direction: Direction,
        id: u32,
        peer: PeerType,
    ) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        let (func, callback) = match direction {
            Direction::Request => (&callbacks.downstream_close, Callback::DownstreamClose),
            Direction::Response => (&callbacks.upstream_close, Callback::UpstreamClose),
        };
        match func.get(&mut self.store) {
            Some(f) => self.call(id, callback, |store| {
                f.call(store, (id as i32, u32::from(peer) as i32))
            }),
            None => Ok(()),
        }
    }

    pub fn on_log(&mut self, id: u32) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        match callbacks.log.get(&mut self.store) {
            Some(f) => self.call(id, Callback::Log, |store| f.call(store, id as i32)),
            None => Ok(()),
        }
    }

    /// `on_done` then `on_delete`; the context is forgotten either way.
    pub fn end_context(&mut self, id: u32) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        if let Some(end) = callbacks.end_context.get(&mut self.store) {
            let result = self.call_stages(id, &[Callback::Done, Callback::Delete], |store| {
                end.call(store, id as i32)
            });
            self.store.data_mut().contexts.remove(&id);
            return result;
        }
        // what an HTTP context's on_done returns means nothing (Envoy)
        let result = self.on_done(id).map(|_| ());
        match result {
            Ok(()) => self.delete_context(id),
            Err(_) => {
                self.store.data_mut().contexts.remove(&id);
            }
        }
        result
    }

    /// `on_log`, then the context's end (`end_context`): in one guest call
    /// where the module has the three callbacks (`prepare::LOG_END`).
    pub fn log_and_end_context(&mut self, id: u32) -> Result<(), Trapped> {
        let callbacks = self.callbacks.clone();
        let Some(log_end) = callbacks.log_end.get(&mut self.store) else {
            self.on_log(id)?;
            return self.end_context(id);
        };
        let stages = [Callback::Log, Callback::Done, Callback::Delete];
        let result = self.call_stages(id, &stages, |store| log_end.call(store, id as i32));
        self.store.data_mut().contexts.remove(&id);
        result
    }

    /// `on_done`: whether the context is done (true when it is not
    /// exported).
    fn on_done(&mut self, id: u32) -> Result<bool, Trapped> {
        let callbacks = self.callbacks.clone();
        match callbacks.done.get(&mut self.store) {
            Some(done) => self.call(id, Callback::Done, |store| {
                done.call(store, id as i32).map(|done| done != 0)
            }),
            None => Ok(true),
        }
    }

    /// `on_delete`, and the context is gone.
    fn delete_context(&mut self, id: u32) {
        let callbacks = self.callbacks.clone();
        if let Some(delete) = callbacks.delete.get(&mut self.store) {
            let _ = self.call(id, Callback::Delete, |store| delete.call(store, id as i32));
        }
        self.store.data_mut().contexts.remove(&id);
    }

    /// Roots that called `proxy_done` in the last guest call end now.
    fn end_done_roots(&mut self) {
        let called = std::mem::take(&mut self.store.data_mut().done_called);
        for id in called {
            self.store
                .data_mut()
                .pending_done
                .retain(|&pending| pending != id);
            self.roots.retain(|_, root| *root != id);
            self.delete_context(id);
        }
    }

    /// Runs one guest call for a context. A trap is logged with the
    /// callback, the context and a backtrace, and marks the instance failed.
    fn call<R>(
        &mut self,
        context_id: u32,
        callback: Callback,
        body: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Trapped> {
        self.call_stages(context_id, &[callback], body)
    }

    /// A guest call that runs `stages`, the callbacks in it: one, or the
    /// two of a merged entry (see `prepare`), whose failure names the one
    /// the guest was in.
    fn call_stages<R>(
        &mut self,
        context_id: u32,
        stages: &[Callback],
        body: impl FnOnce(&mut Store<HostState>) -> wasmtime::Result<R>,
    ) -> Result<R, Trapped> {
        // the guest sees its calls in the host's order (a failure shows)
        let _ = self.flush_pending_create();
        if self.failed() {
            return Err(Trapped);
        }
        self.store.data_mut().frame = Frame {
            context_id,
            callback: stages[0],
            ..Frame::IDLE
        };
        self.store.set_epoch_deadline(self.deadline_ticks);
        let result = body(&mut self.store);
        self.store.data_mut().flush_output();
        let refused = self.store.data_mut().limiter.take_refusal();
        if let Some(size) = refused {
            let message = format!(
                "memory growth to {size} bytes refused: over memory_limit ({} bytes)",
                self.module.limits.memory
            );
            self.store.data().log(LogLevel::Warn, message.as_bytes());
        }
        match &result {
            Ok(_) => self.completed += 1,
            Err(error) => {
                let merged = stages.len() > 1;
                let stage = if merged { self.stage(stages.len()) } else { 0 };
                // the callbacks before the one that failed returned
                self.completed += stage as u64;
                self.fail(stages[stage], error, merged)
            }
        }
        self.store.data_mut().frame = Frame::IDLE;
        if !self.store.data().done_called.is_empty() {
            self.end_done_roots();
        }
        result.map_err(|_| Trapped)
    }

    /// Where the last merged entry of `stages` callbacks was
    /// (`prepare::STAGE`): from 0 to `stages - 1`.
    fn stage(&mut self, stages: usize) -> usize {
        self.instance
            .get_global(&mut self.store, prepare::STAGE)
            .and_then(|global| global.get(&mut self.store).i32())
            .and_then(|stage| usize::try_from(stage).ok())
            .filter(|&stage| stage < stages)
            .unwrap_or(0)
    }

    /// A guest call failed: the instance is unusable. The requests with
    /// other contexts in it cannot go on: each is asked to come back, to
    /// end as `proxy_wasm_failure` says. The log line counts them.
    /// `merged`: the call was a merged entry, whose frame is not shown.
    fn fail(&mut self, callback: Callback, error: &wasmtime::Error, merged: bool) {
        let cause = cause(error, &self.module);
        self.failure = Some(cause.clone());
        let taken_down = self.take_down_other_requests();
        let mut message = format!("{} failed: {cause}", callback.export_name());
        if taken_down > 0 {
            let other = if taken_down == 1 { "request" } else { "requests" };
            message.push_str(&format!(
                "; {taken_down} other {other} with contexts in this instance end with it"
            ));
        }
        let message = with_backtrace(message, error, &self.module.name, merged);
        self.store.data().log(LogLevel::Error, message.as_bytes());
    }

    /// Asks the host to come back to every request that has a context in
    /// this instance, except the one whose callback is running (it sees
    /// the failure when the callback returns). How many there are.
    fn take_down_other_requests(&self) -> usize {
        let state = self.store.data();
        let current = match state.contexts.get(&state.frame.context_id) {
            Some(Context::Http { request_state, .. }) => Some(request_state),
            _ => None,
        };
        // a request has a context per filter of its chain in the instance
        let mut others = HashSet::new();
        for context in state.contexts.values() {
            if let Context::Http {
                request_state: stream,
                ..
            } = context
            {
                if !current.is_some_and(|current| Rc::ptr_eq(current, stream))
                    && others.insert(Rc::as_ptr(stream))
                {
                    // contexts of ended requests are gone, so each request
                    // lives
                    if let Ok(stream) = stream.try_borrow() {
                        state.host.schedule_resume(stream.request);
                    }
                }
            }
        }
        others.len()
    }

    #[cfg(test)]
    pub fn store(&mut self) -> &mut Store<HostState> {
        &mut self.store
    }
}

/// Why a guest call failed: a trap's cause, or the deadline that stopped
/// it, named by its setting.
fn cause(error: &wasmtime::Error, module: &WasmModule) -> String {
    if is_interrupt(error) {
        format!(
            "stopped after callback_timeout ({} ms)",
            module.limits.callback_timeout.as_millis()
        )
    } else {
        error.root_cause().to_string()
    }
}

/// Whether a guest call was stopped at its epoch deadline.
fn is_interrupt(error: &wasmtime::Error) -> bool {
    error.downcast_ref::<Trap>() == Some(&Trap::Interrupt)
}

/// The cause of a failed guest call, and the guest's call stack when
/// wasmtime captured one.
/// `merged`: the outermost frame is a merged entry (see `prepare`), which
/// the module does not have: it is left out.
fn with_backtrace(cause: String, error: &wasmtime::Error, module: &str, merged: bool) -> String {
    let frames = match error.downcast_ref::<WasmBacktrace>() {
        Some(backtrace) => backtrace.frames(),
        None => &[],
    };
    let frames = match merged {
        true => &frames[..frames.len().saturating_sub(1)],
        false => frames,
    };
    match frames.is_empty() {
        true => cause,
        false => format!("{cause}\nwasm backtrace:\n{}", format_backtrace(frames, module)),
    }
}

/// One line per frame: `#0 module!function at offset 0x1a7`, with the
/// source position when the module has DWARF info and backtraces are on.
fn format_backtrace(frames: &[FrameInfo], module: &str) -> String {
    let mut lines = Vec::new();
    for (i, frame) in frames.iter().enumerate() {
        let name = match frame.func_name() {
            Some(name) => rustc_demangle::demangle(name).to_string(),
            None => format!("<wasm function {}>", frame.func_index()),
        };
        let mut line = format!("  #{i} {module}!{name}");
        if let Some(offset) = frame.module_offset() {
            line.push_str(&format!(" at offset {offset:#x}"));
        }
        for symbol in frame.symbols() {
            if let (Some(file), Some(row)) = (symbol.file(), symbol.line()) {
                line.push_str(&format!(" ({file}:{row})"));
            }
        }
        lines.push(line);
    }
    lines.join("\n")
}
