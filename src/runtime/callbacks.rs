//! The guest callbacks of an instance, resolved to typed functions on
//! first use, with the merged entries the host added (see `prepare`).

use std::cell::OnceCell;

use wasmtime::{AsContextMut, Instance, ModuleExport, Store, TypedFunc, WasmParams, WasmResults};

use crate::abi::Direction;
use crate::runtime::module::WasmModule;
use crate::runtime::prepare;
use crate::runtime::state::{Callback, HostState};

/// A callback export, made callable on first use: an instance made for
/// one request calls few of its callbacks, and each costs.
pub(super) struct Lazy<P, R> {
    instance: Instance,
    export: Option<ModuleExport>,
    func: OnceCell<Option<TypedFunc<P, R>>>,
}

impl<P: WasmParams, R: WasmResults> Lazy<P, R> {
    fn new(instance: Instance, module: &WasmModule, name: &str) -> Self {
        Lazy {
            instance,
            export: module.export(name).copied(),
            func: OnceCell::new(),
        }
    }

    /// Whether the module exports it.
    pub(super) fn exists(&self) -> bool {
        self.export.is_some()
    }

    pub(super) fn get(&self, store: &mut Store<HostState>) -> Option<&TypedFunc<P, R>> {
        self.func
            .get_or_init(|| resolve(&self.instance, store, self.export.as_ref()?))
            .as_ref()
    }
}

/// The guest callbacks of an instance.
pub(super) struct Callbacks {
    pub(super) context_create: Lazy<(i32, i32), ()>,
    pub(super) vm_start: Lazy<(i32, i32), i32>,
    pub(super) configure: Lazy<(i32, i32), i32>,
    pub(super) request_headers: HeadersCallback,
    pub(super) request_body: Lazy<(i32, i32, i32), i32>,
    pub(super) request_trailers: Lazy<(i32, i32), i32>,
    pub(super) response_headers: HeadersCallback,
    pub(super) response_body: Lazy<(i32, i32, i32), i32>,
    pub(super) response_trailers: Lazy<(i32, i32), i32>,
    pub(super) new_connection: Lazy<i32, i32>,
    pub(super) downstream_data: Lazy<(i32, i32, i32), i32>,
    pub(super) upstream_data: Lazy<(i32, i32, i32), i32>,
    pub(super) downstream_close: Lazy<(i32, i32), ()>,
    pub(super) upstream_close: Lazy<(i32, i32), ()>,
    pub(super) log: Lazy<i32, ()>,
    pub(super) done: Lazy<i32, i32>,
    pub(super) delete: Lazy<i32, ()>,
    /// Merged entries (see `prepare`).
    pub(super) start_request: StartRequest,
    pub(super) end_context: Lazy<i32, ()>,
    pub(super) log_end: Lazy<i32, ()>,
    pub(super) tick: Lazy<i32, ()>,
    pub(super) http_call_response: Lazy<(i32, i32, i32, i32, i32), ()>,
    pub(super) queue_ready: Lazy<(i32, i32), ()>,
    pub(super) grpc_initial_metadata: Lazy<(i32, i32, i32), ()>,
    pub(super) grpc_receive: Lazy<(i32, i32, i32), ()>,
    pub(super) grpc_trailing_metadata: Lazy<(i32, i32, i32), ()>,
    pub(super) grpc_close: Lazy<(i32, i32, i32), ()>,
}

/// Header callbacks take `end_of_stream` since ABI 0.2.0.
pub(super) enum HeadersCallback {
    V1(Lazy<(i32, i32), i32>),
    V2(Lazy<(i32, i32, i32), i32>),
}

/// `on_context_create` and `on_request_headers` as one entry (see
/// `prepare`): `(context, root, headers[, end_of_stream])`.
pub(super) enum StartRequest {
    V1(Lazy<(i32, i32, i32), i32>),
    V2(Lazy<(i32, i32, i32, i32), i32>),
}

impl StartRequest {
    /// Whether the module has it, of the type the host calls.
    pub(super) fn resolves(&self, store: &mut Store<HostState>) -> bool {
        match self {
            StartRequest::V1(f) => f.get(store).is_some(),
            StartRequest::V2(f) => f.get(store).is_some(),
        }
    }

    /// `(context, root, headers, end_of_stream)`; ABI 0.1.0's takes no
    /// `end_of_stream`. Only called when it `resolves`.
    pub(super) fn call(
        &self,
        store: &mut Store<HostState>,
        args: (i32, i32, i32, i32),
    ) -> wasmtime::Result<i32> {
        let (context, root, headers, _) = args;
        let missing = || wasmtime::Error::msg(format!("no {}", prepare::START_REQUEST));
        match self {
            StartRequest::V1(f) => f
                .get(store)
                .ok_or_else(missing)?
                .call(store, (context, root, headers)),
            StartRequest::V2(f) => f.get(store).ok_or_else(missing)?.call(store, args),
        }
    }
}

impl Callbacks {
    /// The data callback of a direction: the body callbacks of HTTP
    /// requests, the data callbacks of connections (the request direction
    /// is the downstream's).
    pub(super) fn data(
        &self,
        connection: bool,
        direction: Direction,
    ) -> (&Lazy<(i32, i32, i32), i32>, Callback) {
        match (connection, direction) {
            (false, Direction::Request) => (&self.request_body, Callback::RequestBody),
            (false, Direction::Response) => (&self.response_body, Callback::ResponseBody),
            (true, Direction::Request) => (&self.downstream_data, Callback::DownstreamData),
            (true, Direction::Response) => (&self.upstream_data, Callback::UpstreamData),
        }
    }

    pub(super) fn new(instance: Instance, module: &WasmModule) -> Callbacks {
        let headers = |name| {
            if module.abi.headers_callbacks_have_eos() {
                HeadersCallback::V2(Lazy::new(instance, module, name))
            } else {
                HeadersCallback::V1(Lazy::new(instance, module, name))
            }
        };
        Callbacks {
            context_create: Lazy::new(instance, module, "proxy_on_context_create"),
            vm_start: Lazy::new(instance, module, "proxy_on_vm_start"),
            configure: Lazy::new(instance, module, "proxy_on_configure"),
            request_headers: headers("proxy_on_request_headers"),
            request_body: Lazy::new(instance, module, "proxy_on_request_body"),
            request_trailers: Lazy::new(instance, module, "proxy_on_request_trailers"),
            response_headers: headers("proxy_on_response_headers"),
            response_body: Lazy::new(instance, module, "proxy_on_response_body"),
            response_trailers: Lazy::new(instance, module, "proxy_on_response_trailers"),
            new_connection: Lazy::new(instance, module, "proxy_on_new_connection"),
            downstream_data: Lazy::new(instance, module, "proxy_on_downstream_data"),
            upstream_data: Lazy::new(instance, module, "proxy_on_upstream_data"),
            downstream_close: Lazy::new(instance, module, "proxy_on_downstream_connection_close"),
            upstream_close: Lazy::new(instance, module, "proxy_on_upstream_connection_close"),
            log: Lazy::new(instance, module, "proxy_on_log"),
            done: Lazy::new(instance, module, "proxy_on_done"),
            delete: Lazy::new(instance, module, "proxy_on_delete"),
            start_request: match module.abi.headers_callbacks_have_eos() {
                true => StartRequest::V2(Lazy::new(instance, module, prepare::START_REQUEST)),
                false => StartRequest::V1(Lazy::new(instance, module, prepare::START_REQUEST)),
            },
            end_context: Lazy::new(instance, module, prepare::END_CONTEXT),
            log_end: Lazy::new(instance, module, prepare::LOG_END),
            tick: Lazy::new(instance, module, "proxy_on_tick"),
            http_call_response: Lazy::new(instance, module, "proxy_on_http_call_response"),
            queue_ready: Lazy::new(instance, module, "proxy_on_queue_ready"),
            grpc_initial_metadata: Lazy::new(instance, module, "proxy_on_grpc_receive_initial_metadata"),
            grpc_receive: Lazy::new(instance, module, "proxy_on_grpc_receive"),
            grpc_trailing_metadata: {
                let spec = Lazy::new(instance, module, "proxy_on_grpc_receive_trailing_metadata");
                if spec.exists() {
                    spec
                } else {
                    Lazy::new(instance, module, "proxy_on_grpc_trailing_metadata")
                }
            },
            grpc_close: Lazy::new(instance, module, "proxy_on_grpc_close"),
        }
    }
}

/// A callback export, of the type checked when the module was loaded.
pub(super) fn get<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut impl AsContextMut,
    module: &WasmModule,
    name: &str,
) -> Option<TypedFunc<P, R>> {
    resolve(instance, store, module.export(name)?)
}

/// An export of the instance, as a typed function.
fn resolve<P: WasmParams, R: WasmResults>(
    instance: &Instance,
    store: &mut impl AsContextMut,
    export: &ModuleExport,
) -> Option<TypedFunc<P, R>> {
    let func = instance
        .get_module_export(store.as_context_mut(), export)?
        .into_func()?;
    func.typed::<P, R>(store.as_context()).ok()
}
