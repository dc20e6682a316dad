//! `env.proxy_*`: the Proxy-Wasm host functions.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use wasmtime::{Caller, Linker};

use super::properties::{self, SetError};
use super::{copy_out, host_fn, memory, read_bytes, store_u32, store_u64, with_scratch, Outcome};
use crate::abi::grpc;
use crate::abi::headers::{self, HeaderName};
use crate::abi::memory::slice;
use crate::abi::pairs::{self, Pair};
use crate::abi::{stream_type, BufferType, Direction, LogLevel, MapType, Status};
use crate::callout::grpc::Metadata;
use crate::callout::http1::{self, RequestError, Response};
use crate::callout::Origin;
use crate::host::{CallParams, HeaderError, HeaderMap, HeaderOp, RequestRef};
use crate::runtime::state::{Callback, Context, HostState, LocalResponse, RequestState, Trailers};

type Result = Outcome<Status>;
type Call<'a, 'b> = &'a mut Caller<'b, HostState>;

pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host_fn!(linker, "env", "proxy_log", allocator_safe, log, (level: i32, ptr: i32, len: i32));
    host_fn!(linker, "env", "proxy_get_log_level", allocator_safe, get_log_level, (ret: i32));
    host_fn!(linker, "env", "proxy_get_current_time_nanoseconds", allocator_safe, get_current_time, (ret: i32));
    host_fn!(linker, "env", "proxy_set_effective_context", set_effective_context, (context_id: i32));
    host_fn!(linker, "env", "proxy_done", done, ());
    host_fn!(linker, "env", "proxy_set_tick_period_milliseconds", set_tick_period, (period: i32));
    host_fn!(linker, "env", "proxy_get_configuration", get_configuration, (ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_get_buffer_bytes", get_buffer_bytes,
        (buffer: i32, start: i32, max_size: i32, ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_get_buffer_status", get_buffer_status,
        (buffer: i32, ret_len: i32, ret_flags: i32));
    host_fn!(linker, "env", "proxy_set_buffer_bytes", set_buffer_bytes,
        (buffer: i32, start: i32, size: i32, ptr: i32, len: i32));
    host_fn!(linker, "env", "proxy_continue_stream", continue_stream, (stream: i32));
    host_fn!(linker, "env", "proxy_continue_request", continue_request, ());
    host_fn!(linker, "env", "proxy_continue_response", continue_response, ());
    host_fn!(linker, "env", "proxy_close_stream", close_stream, (stream: i32));
    host_fn!(linker, "env", "proxy_get_header_map_size", get_header_map_size, (map: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_get_header_map_pairs", get_header_map_pairs,
        (map: i32, ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_set_header_map_pairs", set_header_map_pairs, (map: i32, ptr: i32, size: i32));
    host_fn!(linker, "env", "proxy_get_header_map_value", get_header_map_value,
        (map: i32, key_ptr: i32, key_len: i32, ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_add_header_map_value", add_header_map_value,
        (map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32));
    host_fn!(linker, "env", "proxy_replace_header_map_value", replace_header_map_value,
        (map: i32, key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32));
    host_fn!(linker, "env", "proxy_remove_header_map_value", remove_header_map_value,
        (map: i32, key_ptr: i32, key_len: i32));
    host_fn!(linker, "env", "proxy_http_call", http_call,
        (upstream_ptr: i32, upstream_len: i32, headers_ptr: i32, headers_len: i32, body_ptr: i32,
         body_len: i32, trailers_ptr: i32, trailers_len: i32, timeout_ms: i32, ret_token: i32));
    host_fn!(linker, "env", "proxy_dispatch_http_call", http_call,
        (upstream_ptr: i32, upstream_len: i32, headers_ptr: i32, headers_len: i32, body_ptr: i32,
         body_len: i32, trailers_ptr: i32, trailers_len: i32, timeout_ms: i32, ret_token: i32));
    host_fn!(linker, "env", "proxy_get_status", get_status, (ret_code: i32, ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_get_property", get_property,
        (path_ptr: i32, path_len: i32, ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_set_property", set_property,
        (path_ptr: i32, path_len: i32, value_ptr: i32, value_len: i32));
    host_fn!(linker, "env", "proxy_send_local_response", send_local_response,
        (status: i32, details_ptr: i32, details_len: i32, body_ptr: i32, body_len: i32,
         headers_ptr: i32, headers_len: i32, grpc_status: i32));

    // Emscripten-built C++ SDK modules import these two.
    linker.func_wrap("env", "pthread_equal", |a: i32, b: i32| -> i32 {
        (a == b) as i32
    })?;
    linker.func_wrap("env", "emscripten_notify_memory_growth", |_: i32| {})?;

    define_unimplemented(linker)
}

/// Declares the host functions that are registered (so modules importing
/// them link) but not implemented yet: they log once per module at `warn`
/// and return `UNIMPLEMENTED`.
macro_rules! unimplemented_functions {
    ($($name:literal ($($ty:ty),*)),* $(,)?) => {
        /// The names of the host functions not implemented yet.
        pub const UNIMPLEMENTED: &[&str] = &[$($name),*];

        fn define_unimplemented(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
            $(
                linker.func_wrap(
                    "env",
                    $name,
                    |caller: Caller<'_, HostState>, $(_: $ty),*| -> i32 { unimplemented(&caller, $name) },
                )?;
            )*
            Ok(())
        }
    };
}

unimplemented_functions! {
    "proxy_clear_route_cache"(),
}

fn unimplemented(caller: &Caller<'_, HostState>, name: &'static str) -> i32 {
    let state = caller.data();
    if state.module.warn_once(name) {
        state.log(
            LogLevel::Warn,
            format!("host function {name} is not supported: returning UNIMPLEMENTED").as_bytes(),
        );
    }
    Status::Unimplemented as i32
}

/// A root context whose `on_done` returned false has finished: its
/// `on_delete` follows once the current guest call returns, as in Envoy.
/// `NOT_FOUND` for a context that was not finishing.
fn done(caller: Call) -> Result {
    let state = caller.data_mut();
    let id = state.context_id();
    if !state.pending_done.contains(&id) || state.done_called.contains(&id) {
        return Err(Status::NotFound.into());
    }
    state.done_called.push(id);
    Ok(())
}

fn log(caller: Call, level: i32, ptr: i32, len: i32) -> Result {
    let level = LogLevel::try_from(level as u32).map_err(|_| Status::BadArgument)?;
    let mem = memory(caller)?;
    let message = slice(mem.data(&*caller), ptr as u32, len as u32)?;
    caller.data().log(level, message);
    Ok(())
}

fn get_log_level(caller: Call, ret: i32) -> Result {
    let state = caller.data();
    let level = state.host.log_level(state.request());
    store_u32(caller, ret, level as u32)
}

fn get_current_time(caller: Call, ret: i32) -> Result {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos() as u64);
    store_u64(caller, ret, now)
}

fn set_effective_context(caller: Call, context_id: i32) -> Result {
    let state = caller.data_mut();
    if !state.contexts.contains_key(&(context_id as u32)) {
        return Err(Status::BadArgument.into());
    }
    state.frame.effective_context = Some(context_id as u32);
    Ok(())
}

/// Sets the tick period of the current context's root context (0 stops
/// its ticks). The worker acts on it when the guest call returns.
fn set_tick_period(caller: Call, period: i32) -> Result {
    let state = caller.data_mut();
    let root = state.root_id().ok_or(Status::BadArgument)?;
    state.tick_requests.push((root, period as u32));
    Ok(())
}

fn get_property(caller: Call, path_ptr: i32, path_len: i32, ret_ptr: i32, ret_size: i32) -> Result {
    let path = read_bytes(caller, path_ptr, path_len)?;
    with_scratch(caller, |caller, value| {
        match properties::get(caller.data(), &path, value) {
            Ok(()) => copy_out(caller, ret_ptr, ret_size, value.len(), |out| {
                out.copy_from_slice(value)
            }),
            Err(status) => Err(status.into()),
        }
    })
}

fn set_property(caller: Call, path_ptr: i32, path_len: i32, value_ptr: i32, value_len: i32) -> Result {
    let path = read_bytes(caller, path_ptr, path_len)?;
    let value = read_bytes(caller, value_ptr, value_len)?;
    let state = caller.data_mut();
    let error = match properties::set(state, &path, &value) {
        Ok(()) => return Ok(()),
        Err(SetError::NoRequest) => return Err(Status::NotFound.into()),
        Err(SetError::Failed) => return Err(Status::InternalFailure.into()),
        Err(e) => e,
    };
    let (status, level) = match error {
        SetError::UnknownVariable(_) => (Status::NotFound, LogLevel::Warn),
        SetError::Full(_) => (Status::InternalFailure, LogLevel::Error),
        _ => (Status::BadArgument, LogLevel::Error),
    };
    let why = error.to_string();
    state.log(level, why.as_bytes());
    Err(status.into())
}

/// Starts an HTTP call from the current context; its response comes to
/// the context's root context (`on_http_call_response`), with the token.
#[allow(clippy::too_many_arguments)]
fn http_call(
    caller: Call,
    upstream_ptr: i32,
    upstream_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    body_ptr: i32,
    body_len: i32,
    trailers_ptr: i32,
    trailers_len: i32,
    timeout_ms: i32,
    ret_token: i32,
) -> Result {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    // the token's slot is checked before anything starts
    memory::check(data, ret_token as u32, 4)?;
    let upstream = slice(data, upstream_ptr as u32, upstream_len as u32)?;
    let headers = slice(data, headers_ptr as u32, headers_len as u32)?;
    let body = slice(data, body_ptr as u32, body_len as u32)?;
    let trailers = slice(data, trailers_ptr as u32, trailers_len as u32)?;
    let state = caller.data();
    let refuse = |why: String| {
        state.log(
            LogLevel::Error,
            format!("http call to {:?}: {why}", String::from_utf8_lossy(upstream)).as_bytes(),
        );
        Status::BadArgument
    };
    let headers = pairs::parse(headers).map_err(|e| refuse(format!("bad headers ({e:?})")))?;
    let trailers = pairs::parse(trailers).map_err(|e| refuse(format!("bad trailers ({e:?})")))?;
    let request = http1::encode_request(&headers, body, &trailers, upstream).map_err(|e| {
        refuse(match e {
            RequestError::Missing(name) => format!("{name} is required"),
            RequestError::Invalid(what) => format!("invalid {what}"),
        })
    })?;
    if state.services.calls.borrow().settings().is_none() {
        state.log(LogLevel::Error, b"http calls can be made once workers run");
        return Err(Status::InternalFailure.into());
    }
    let root_id = state.root_id().ok_or(Status::BadArgument)?;
    let request_ref = state.request();
    let token = state.services.calls.borrow_mut().next_token();
    let params = CallParams {
        token,
        target: upstream,
        data: &request.bytes,
        timeout: (timeout_ms as u32 > 0).then(|| Duration::from_millis(timeout_ms as u32 as u64)),
        tls: request.tls_server_name(),
        duplex: false,
    };
    let call = state.host.call_start(request_ref, &params).map_err(refuse)?;
    let origin = Origin {
        token,
        instance: state.generation,
        root_id,
        request: request_ref,
        target: String::from_utf8_lossy(upstream).into_owned(),
    };
    state
        .services
        .calls
        .borrow_mut()
        .register(call, origin, request.head);
    store_u32(caller, ret_token, token)
}

/// The outcome of the last call: OK, or BROKEN_CONNECTION with why.
fn get_status(caller: Call, ret_code: i32, ret_ptr: i32, ret_size: i32) -> Result {
    let (code, message) = caller.data().call_status.clone();
    store_u32(caller, ret_code, code)?;
    copy_out(caller, ret_ptr, ret_size, message.len(), |out| {
        out.copy_from_slice(&message)
    })
}

/// A buffer a filter can reach now.
enum Buffer {
    Configuration(Arc<[u8]>),
    /// The body of the response `on_http_call_response` is given.
    CallBody(Rc<Response>),
    /// The message `on_grpc_receive` is given.
    GrpcMessage(Bytes),
    /// The body data in the hands of a filter (by its place in the chain).
    Body(Rc<RefCell<RequestState>>, Direction, usize),
}

impl Buffer {
    fn with<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        match self {
            Buffer::Configuration(bytes) => f(bytes),
            Buffer::CallBody(response) => f(&response.body),
            Buffer::GrpcMessage(message) => f(message),
            Buffer::Body(stream, direction, index) => {
                let stream = stream.borrow();
                let held = stream.body(*direction, *index).as_ref();
                f(held.map_or(&[][..], |held| &held.data))
            }
        }
    }
}

/// The buffer of a type, where it exists now: configurations in their
/// callbacks, a body while the filter has body data in its hands.
fn buffer(state: &HostState, kind: BufferType) -> Option<Buffer> {
    let direction = match kind {
        BufferType::VmConfiguration => return Some(Buffer::Configuration(state.module.vm_config.clone())),
        BufferType::PluginConfiguration if state.frame.callback == Callback::Configure => {
            return match state.context() {
                Some(Context::Root { filter, .. }) => Some(Buffer::Configuration(filter.config.clone())),
                _ => None,
            };
        }
        BufferType::HttpRequestBody | BufferType::DownstreamData => Direction::Request,
        BufferType::HttpResponseBody | BufferType::UpstreamData => Direction::Response,
        BufferType::HttpCallResponseBody => return state.call_response.clone().map(Buffer::CallBody),
        BufferType::GrpcReceiveBuffer => return state.grpc_message.clone().map(Buffer::GrpcMessage),
        _ => return None,
    };
    let (stream, index) = state.http().ok()?;
    let connection_data = matches!(kind, BufferType::DownstreamData | BufferType::UpstreamData);
    let has_body = {
        let stream = stream.borrow();
        stream.connection == connection_data && stream.body(direction, index).is_some()
    };
    has_body.then(|| Buffer::Body(stream.clone(), direction, index))
}

fn get_configuration(caller: Call, ret_ptr: i32, ret_size: i32) -> Result {
    let kind = if caller.data().frame.callback == Callback::VmStart {
        BufferType::VmConfiguration
    } else {
        BufferType::PluginConfiguration
    };
    let buffer = buffer(caller.data(), kind).ok_or(Status::NotFound)?;
    let len = buffer.with(<[u8]>::len);
    copy_out(caller, ret_ptr, ret_size, len, |out| {
        buffer.with(|bytes| out.copy_from_slice(bytes))
    })
}

fn get_buffer_bytes(
    caller: Call,
    kind: i32,
    start: i32,
    max_size: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> Result {
    let kind = BufferType::from_raw(kind as u32).ok_or(Status::BadArgument)?;
    let buffer = buffer(caller.data(), kind).ok_or(Status::NotFound)?;
    let range = clamp(buffer.with(<[u8]>::len), start, max_size);
    copy_out(caller, ret_ptr, ret_size, range.len(), |out| {
        buffer.with(|bytes| out.copy_from_slice(&bytes[range]))
    })
}

/// The part of a buffer of `len` bytes a (start, size) pair designates,
/// clamped to the buffer as Envoy does, in 64 bits so that no pair of u32
/// values can overflow.
fn clamp(len: usize, start: i32, size: i32) -> std::ops::Range<usize> {
    let len = len as u64;
    let start = (start as u32 as u64).min(len);
    let end = (start + size as u32 as u64).min(len);
    start as usize..end as usize
}

fn get_buffer_status(caller: Call, kind: i32, ret_len: i32, ret_flags: i32) -> Result {
    let kind = BufferType::from_raw(kind as u32).ok_or(Status::BadArgument)?;
    let len = buffer(caller.data(), kind)
        .ok_or(Status::NotFound)?
        .with(<[u8]>::len);
    store_u32(caller, ret_len, len as u32)?;
    store_u32(caller, ret_flags, 0)
}

/// Replaces the `(start, size)` part of a body with new bytes: prepend is
/// (0, 0), append any start past the end, replace all (0, the length or
/// more), and any range in between.
fn set_buffer_bytes(caller: Call, kind: i32, start: i32, size: i32, ptr: i32, len: i32) -> Result {
    let kind = BufferType::from_raw(kind as u32).ok_or(Status::BadArgument)?;
    let Some(Buffer::Body(stream, direction, index)) = buffer(caller.data(), kind) else {
        return Err(match kind {
            BufferType::HttpRequestBody
            | BufferType::HttpResponseBody
            | BufferType::DownstreamData
            | BufferType::UpstreamData => Status::NotFound,
            _ => Status::BadArgument,
        }
        .into());
    };
    let mem = memory(caller)?;
    let bytes = slice(mem.data(&*caller), ptr as u32, len as u32)?;
    let mut stream = stream.borrow_mut();
    let held = stream
        .body_mut(direction, index)
        .as_mut()
        .ok_or(Status::NotFound)?;
    let range = clamp(held.data.len(), start, size);
    held.data.splice(range, bytes.iter().copied());
    stream.body_changed = true;
    Ok(())
}

/// Continues a direction of the current context's stream: when the
/// running callback returns if it is one of that stream's, else later,
/// when the host comes back to the stream.
fn request_continue(state: &HostState, direction: Direction) -> Result {
    let (stream, index) = state.http()?;
    let mut stream = stream.borrow_mut();
    if !stream.request_continue(direction, index) {
        state.host.schedule_resume(stream.request);
    }
    Ok(())
}

/// The direction a stream type designates in the current context: HTTP
/// types in an HTTP context, DOWNSTREAM and UPSTREAM in a connection's.
fn own_direction(state: &HostState, raw: i32) -> std::result::Result<Direction, Status> {
    let (direction, connection) = stream_type(raw as u32).ok_or(Status::BadArgument)?;
    let stream = state.request_state()?.borrow();
    if stream.connection != connection {
        return Err(Status::BadArgument);
    }
    Ok(direction)
}

fn continue_stream(caller: Call, stream_type: i32) -> Result {
    let direction = own_direction(caller.data(), stream_type)?;
    request_continue(caller.data(), direction)
}

fn continue_request(caller: Call) -> Result {
    request_continue(caller.data(), Direction::Request)
}

fn continue_response(caller: Call) -> Result {
    request_continue(caller.data(), Direction::Response)
}

/// Ends the stream abruptly (the client sees a reset or a closed
/// connection) once the running callback has returned.
fn close_stream(caller: Call, stream_type: i32) -> Result {
    let state = caller.data();
    own_direction(state, stream_type)?;
    let mut stream = state.request_state()?.borrow_mut();
    stream.close_requested = true;
    if stream.in_callback.is_none() {
        state.host.schedule_resume(stream.request);
    }
    Ok(())
}

/// A header map, as a `proxy_map_type_t` designates it in the current
/// callback.
enum Map {
    /// One of the request's, kept by the host.
    Host(RequestRef, HeaderMap),
    /// The headers (false) or trailers (true) of the response
    /// `on_http_call_response` is given.
    CallResponse(Rc<Response>, bool),
    /// The metadata a gRPC callback is given.
    Grpc(Rc<Metadata>),
}

/// The map a map type designates here, decoded once. Maps that do not
/// exist here are a `BAD_ARGUMENT`, as in Envoy (the call response maps
/// outside `on_http_call_response` included).
fn resolve_map(state: &HostState, raw: i32) -> std::result::Result<Map, Status> {
    let map = MapType::from_raw(raw as u32).ok_or(Status::BadArgument)?;
    if let MapType::GrpcReceiveInitialMetadata | MapType::GrpcReceiveTrailingMetadata = map {
        let trailing = map == MapType::GrpcReceiveTrailingMetadata;
        return match &state.grpc_metadata {
            Some((kind, metadata)) if *kind == trailing => Ok(Map::Grpc(metadata.clone())),
            _ => Err(Status::BadArgument),
        };
    }
    if let MapType::HttpCallResponseHeaders | MapType::HttpCallResponseTrailers = map {
        let response = state.call_response.clone().ok_or(Status::BadArgument)?;
        return Ok(Map::CallResponse(
            response,
            map == MapType::HttpCallResponseTrailers,
        ));
    }
    let stream = state.request_state()?.borrow();
    if stream.connection {
        return Err(Status::BadArgument);
    }
    let host_map = match map {
        MapType::HttpRequestHeaders => HeaderMap::Request,
        MapType::HttpResponseHeaders if stream.response_headers => HeaderMap::Response,
        MapType::HttpResponseTrailers if stream.response_trailers != Trailers::None => {
            HeaderMap::ResponseTrailers
        }
        _ => return Err(Status::BadArgument),
    };
    Ok(Map::Host(stream.request, host_map))
}

/// A map filters may change: the request's (call responses are read-only).
fn host_map(state: &HostState, raw: i32) -> std::result::Result<(RequestRef, HeaderMap), Status> {
    match resolve_map(state, raw)? {
        Map::Host(request, map) => Ok((request, map)),
        Map::CallResponse(..) | Map::Grpc(_) => Err(Status::BadArgument),
    }
}

/// Lends the entries of a header map to `visit`, which may call the guest
/// allocator: the host functions that could change the map cannot run then.
fn with_headers(caller: Call, map: &Map, visit: impl FnOnce(Call, &[Pair<'_>]) -> Result) -> Result {
    let (request, map) = match map {
        Map::CallResponse(response, trailers) => {
            let fields = if *trailers {
                &response.trailers
            } else {
                &response.headers
            };
            let pairs: Vec<Pair<'_>> = fields.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            return visit(caller, &pairs);
        }
        Map::Grpc(metadata) => {
            let pairs: Vec<Pair<'_>> = metadata.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            return visit(caller, &pairs);
        }
        Map::Host(request, map) => (*request, *map),
    };
    let host = caller.data().host;
    let mut visit = Some(visit);
    let mut outcome = Ok(());
    host.with_headers(request, map, &mut |pairs| {
        if let Some(visit) = visit.take() {
            outcome = visit(caller, pairs);
        }
        Ok(())
    })?;
    outcome
}

fn get_header_map_size(caller: Call, map: i32, ret_size: i32) -> Result {
    let map = resolve_map(caller.data(), map)?;
    let mut size = 0;
    with_headers(caller, &map, |_, pairs| {
        size = pairs::serialized_size(pairs);
        Ok(())
    })?;
    store_u32(caller, ret_size, size as u32)
}

fn get_header_map_pairs(caller: Call, map: i32, ret_ptr: i32, ret_size: i32) -> Result {
    let map = resolve_map(caller.data(), map)?;
    with_headers(caller, &map, |caller, pairs| {
        let size = if pairs.is_empty() {
            0
        } else {
            pairs::serialized_size(pairs)
        };
        copy_out(caller, ret_ptr, ret_size, size, |out| {
            pairs::serialize_into(out, pairs, true)
        })
    })
}

fn get_header_map_value(
    caller: Call,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> Result {
    let key = read_bytes(caller, key_ptr, key_len)?;
    let map = resolve_map(caller.data(), map)?;
    if let Map::CallResponse(..) = map {
        let mut value = None;
        with_headers(caller, &map, |_, pairs| {
            value = pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&key))
                .map(|(_, v)| v.to_vec());
            Ok(())
        })?;
        let value = value.ok_or(Status::NotFound)?;
        return copy_out(caller, ret_ptr, ret_size, value.len(), |out| {
            out.copy_from_slice(&value)
        });
    }
    let Map::Host(request, map) = map else {
        return Err(Status::BadArgument.into());
    };
    let key = HeaderName::lookup(map, &key);
    let missing_is_empty = caller.data().module.abi.missing_header_is_empty();
    let host = caller.data().host;
    let mut outcome = Ok(());
    // the value is lent: copied straight into guest memory
    host.with_header_value(request, map, key.as_bytes(), &mut |value| {
        outcome = match value {
            Some(value) => copy_out(caller, ret_ptr, ret_size, value.len(), |out| {
                out.copy_from_slice(value)
            }),
            None if missing_is_empty => copy_out(caller, ret_ptr, ret_size, 0, |_| {}),
            None => Err(Status::NotFound.into()),
        };
        Ok(())
    })?;
    outcome
}

fn set_header(
    caller: Call,
    map: i32,
    op: HeaderOp,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> Result {
    let (request, map) = host_map(caller.data(), map)?;
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let key = slice(data, key_ptr as u32, key_len as u32)?;
    let value = slice(data, value_ptr as u32, value_len as u32)?;
    apply_header(caller.data(), request, map, op, key, value)
}

/// Validates and applies one header change. Changes nginx cannot make
/// (such as removing `:method`) are logged and otherwise ignored: SDKs
/// treat any error status of these calls as fatal, and Envoy accepts them.
fn apply_header(
    state: &HostState,
    request: RequestRef,
    map: HeaderMap,
    op: HeaderOp,
    key: &[u8],
    value: &[u8],
) -> Result {
    let name = HeaderName::lookup(map, key);
    if !headers::valid_name(name.as_bytes()) || (op != HeaderOp::Remove && !headers::valid_value(value)) {
        state.log(
            LogLevel::Error,
            format!(
                "invalid header {:?}: {:?}",
                String::from_utf8_lossy(key),
                String::from_utf8_lossy(value)
            )
            .as_bytes(),
        );
        return Err(Status::BadArgument.into());
    }
    let result = state.host.set_header(request, map, op, name.as_bytes(), value);
    // even a failed change may have changed something
    state.services.header_changed();
    match result {
        Ok(()) => Ok(()),
        Err(HeaderError::ReadOnly) => {
            state.log(
                LogLevel::Warn,
                format!(
                    "header {:?} cannot be changed in nginx: ignored",
                    String::from_utf8_lossy(key)
                )
                .as_bytes(),
            );
            Ok(())
        }
        Err(HeaderError::Failed) => Err(Status::InternalFailure.into()),
    }
}

fn add_header_map_value(
    caller: Call,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> Result {
    set_header(caller, map, HeaderOp::Add, key_ptr, key_len, value_ptr, value_len)
}

fn replace_header_map_value(
    caller: Call,
    map: i32,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
) -> Result {
    set_header(
        caller,
        map,
        HeaderOp::Replace,
        key_ptr,
        key_len,
        value_ptr,
        value_len,
    )
}

fn remove_header_map_value(caller: Call, map: i32, key_ptr: i32, key_len: i32) -> Result {
    set_header(caller, map, HeaderOp::Remove, key_ptr, key_len, 0, 0)
}

/// Replaces a whole map, as Envoy does: every header is removed, then the
/// new ones are added. Pseudo-headers cannot be removed in nginx: those in
/// the new map replace the current values, the others are left as they are.
fn set_header_map_pairs(caller: Call, map: i32, ptr: i32, size: i32) -> Result {
    let (request, map) = host_map(caller.data(), map)?;
    let bytes = read_bytes(caller, ptr, size)?;
    let new = pairs::parse(&bytes).map_err(|_| Status::BadArgument)?;
    let mut old: Vec<Vec<u8>> = Vec::new();
    with_headers(caller, &Map::Host(request, map), |_, pairs| {
        for (name, _) in pairs {
            if !name.starts_with(b":") && !old.iter().any(|seen| seen.eq_ignore_ascii_case(name)) {
                old.push(name.to_vec());
            }
        }
        Ok(())
    })?;
    let state = caller.data();
    for name in &old {
        apply_header(state, request, map, HeaderOp::Remove, name, b"")?;
    }
    for (name, value) in new {
        let op = if name.starts_with(b":") {
            HeaderOp::Replace
        } else {
            HeaderOp::Add
        };
        apply_header(state, request, map, op, name, value)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn send_local_response(
    caller: Call,
    status: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    grpc_status: i32,
) -> Result {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let details = slice(data, details_ptr as u32, details_len as u32)?;
    let body = slice(data, body_ptr as u32, body_len as u32)?;
    let header_bytes = slice(data, headers_ptr as u32, headers_len as u32)?;
    let state = caller.data();
    let stream = state.request_state()?;
    if stream.borrow().connection {
        // a TCP connection has no HTTP response to replace
        return Err(Status::BadArgument.into());
    }
    if stream.borrow().local_response.is_some() || stream.borrow().response_started {
        state.log(
            LogLevel::Error,
            b"proxy_send_local_response: a response is already under way",
        );
        return Err(Status::BadArgument.into());
    }
    if !(200..=999).contains(&status) {
        state.log(
            LogLevel::Error,
            format!("proxy_send_local_response: invalid status {status}").as_bytes(),
        );
        return Err(Status::BadArgument.into());
    }
    let parsed = pairs::parse(header_bytes).map_err(|_| Status::BadArgument)?;
    let mut headers = Vec::with_capacity(parsed.len() + 1);
    for (name, value) in parsed {
        if !headers::valid_name(name) || name.starts_with(b":") || !headers::valid_value(value) {
            state.log(
                LogLevel::Error,
                format!(
                    "proxy_send_local_response: invalid header {:?}",
                    String::from_utf8_lossy(name)
                )
                .as_bytes(),
            );
            return Err(Status::BadArgument.into());
        }
        headers.push((name.to_vec(), value.to_vec()));
    }
    // a gRPC request gets a gRPC answer, as in Envoy; for any other,
    // grpc_status means nothing
    let request = stream.borrow().request;
    let mut grpc_request = false;
    state
        .host
        .with_header_value(request, HeaderMap::Request, b"content-type", &mut |value| {
            grpc_request = value.is_some_and(grpc::is_grpc);
            Ok(())
        })?;
    let (status, body) = if grpc_request {
        let (status, grpc_headers) = grpc::local_response(status as u32, grpc_status, body);
        headers.retain(|(name, _)| !grpc_headers.iter().any(|(set, _)| set.eq_ignore_ascii_case(name)));
        headers.extend(grpc_headers);
        (status, Vec::new())
    } else {
        (status as u32, body.to_vec())
    };
    let response = LocalResponse {
        status,
        details: details.to_vec(),
        body,
        headers,
    };
    let mut stream = stream.borrow_mut();
    stream.local_response = Some(response);
    if stream.in_callback.is_none() {
        state.host.schedule_resume(stream.request);
    }
    Ok(())
}
