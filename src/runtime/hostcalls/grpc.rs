//! `env.proxy_grpc_*`: gRPC calls and streams of a context, whose outcomes
//! come to its root context (`on_grpc_receive_initial_metadata`,
//! `on_grpc_receive`, `on_grpc_receive_trailing_metadata`, `on_grpc_close`).
//! The statuses are Envoy's: an unusable target or request is
//! `PARSE_FAILURE`, an unknown token `NOT_FOUND`.

use std::time::Duration;

use wasmtime::{Caller, Linker};

use super::{host_fn, memory, store_u32, Outcome};
use crate::abi::memory::{check, slice};
use crate::abi::pairs;
use crate::abi::{LogLevel, Status};
use crate::callout::grpc::{Kind, NewCall, SendError, Target};
use crate::callout::Origin;
use crate::runtime::state::HostState;

type Result = Outcome<Status>;
type Call<'a, 'b> = &'a mut Caller<'b, HostState>;

pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host_fn!(linker, "env", "proxy_grpc_call", grpc_call,
        (upstream_ptr: i32, upstream_len: i32, service_ptr: i32, service_len: i32, method_ptr: i32,
         method_len: i32, metadata_ptr: i32, metadata_len: i32, message_ptr: i32, message_len: i32,
         timeout_ms: i32, ret_token: i32));
    host_fn!(linker, "env", "proxy_grpc_stream", grpc_stream,
        (upstream_ptr: i32, upstream_len: i32, service_ptr: i32, service_len: i32, method_ptr: i32,
         method_len: i32, metadata_ptr: i32, metadata_len: i32, ret_token: i32));
    host_fn!(linker, "env", "proxy_grpc_send", grpc_send, (token: i32, message_ptr: i32, message_len: i32, end: i32));
    host_fn!(linker, "env", "proxy_grpc_cancel", grpc_cancel, (token: i32));
    host_fn!(linker, "env", "proxy_grpc_close", grpc_close, (token: i32));
    Ok(())
}

/// A call's arguments in guest memory: (pointer, length) each.
struct Request {
    upstream: (i32, i32),
    service: (i32, i32),
    method: (i32, i32),
    metadata: (i32, i32),
    message: Option<(i32, i32)>,
    timeout_ms: i32,
    ret_token: i32,
}

#[allow(clippy::too_many_arguments)]
fn grpc_call(
    caller: Call,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    message_ptr: i32,
    message_len: i32,
    timeout_ms: i32,
    ret_token: i32,
) -> Result {
    start(
        caller,
        Request {
            upstream: (upstream_ptr, upstream_len),
            service: (service_ptr, service_len),
            method: (method_ptr, method_len),
            metadata: (metadata_ptr, metadata_len),
            message: Some((message_ptr, message_len)),
            timeout_ms,
            ret_token,
        },
    )
}

#[allow(clippy::too_many_arguments)]
fn grpc_stream(
    caller: Call,
    upstream_ptr: i32,
    upstream_len: i32,
    service_ptr: i32,
    service_len: i32,
    method_ptr: i32,
    method_len: i32,
    metadata_ptr: i32,
    metadata_len: i32,
    ret_token: i32,
) -> Result {
    start(
        caller,
        Request {
            upstream: (upstream_ptr, upstream_len),
            service: (service_ptr, service_len),
            method: (method_ptr, method_len),
            metadata: (metadata_ptr, metadata_len),
            message: None,
            timeout_ms: 0,
            ret_token,
        },
    )
}

/// Starts a unary call (with a message) or a stream.
fn start(caller: Call, request: Request) -> Result {
    let mem = memory(caller)?;
    let data = mem.data(&*caller);
    let arg = |(ptr, len): (i32, i32)| slice(data, ptr as u32, len as u32);
    // the token's slot is checked before anything starts
    check(data, request.ret_token as u32, 4)?;
    let upstream = arg(request.upstream)?;
    let service = arg(request.service)?;
    let method = arg(request.method)?;
    let metadata = arg(request.metadata)?;
    let message = request.message.map(arg).transpose()?;
    let state = caller.data();
    let refuse = |why: String| {
        let shown = match upstream.first() {
            Some(0x0a | 0x12) => "a GrpcService".to_string(),
            _ => format!("{:?}", String::from_utf8_lossy(upstream)),
        };
        state.log(LogLevel::Error, format!("grpc call to {shown}: {why}").as_bytes());
        Status::ParseFailure
    };
    let target = Target::parse(upstream).map_err(refuse)?;
    let metadata = pairs::parse(metadata).map_err(|e| refuse(format!("bad metadata ({e:?})")))?;
    if state.services.calls.borrow().settings().is_none() {
        state.log(LogLevel::Error, b"grpc calls can be made once workers run");
        return Err(Status::InternalFailure.into());
    }
    let root_id = state.root_id().ok_or(Status::BadArgument)?;
    let call = NewCall {
        target: &target,
        kind: if message.is_some() {
            Kind::Unary
        } else {
            Kind::Stream
        },
        service,
        method,
        metadata: &metadata,
        message,
        timeout: (request.timeout_ms as u32 > 0)
            .then(|| Duration::from_millis(request.timeout_ms as u32 as u64)),
    };
    let origin = Origin {
        token: 0,
        instance: state.generation,
        root_id,
        request: state.request(),
        target: target.address.clone(),
    };
    let token = {
        let mut grpc = state.services.grpc.borrow_mut();
        let started = grpc.start(state.host, call, origin);
        grpc.schedule_delivery(state.host);
        started.map_err(refuse)?
    };
    store_u32(caller, request.ret_token, token)
}

/// A message on a stream; `end` half-closes it.
fn grpc_send(caller: Call, token: i32, message_ptr: i32, message_len: i32, end: i32) -> Result {
    let mem = memory(caller)?;
    let message = slice(mem.data(&*caller), message_ptr as u32, message_len as u32)?;
    let state = caller.data();
    let mut grpc = state.services.grpc.borrow_mut();
    let sent = grpc.send(state.host, token as u32, message, end != 0);
    grpc.schedule_delivery(state.host);
    match sent {
        Ok(()) => Ok(()),
        Err(SendError::NotFound) => Err(Status::NotFound.into()),
        Err(SendError::Closed) => Err(Status::BadArgument.into()),
    }
}

/// Ends a call or stream at once: no more callbacks come of it.
fn grpc_cancel(caller: Call, token: i32) -> Result {
    let state = caller.data();
    let mut grpc = state.services.grpc.borrow_mut();
    let found = grpc.cancel(state.host, token as u32);
    grpc.schedule_delivery(state.host);
    if found {
        Ok(())
    } else {
        Err(Status::NotFound.into())
    }
}

/// Closes the guest's side of a stream (its response still comes), or
/// cancels a unary call, as Envoy does.
fn grpc_close(caller: Call, token: i32) -> Result {
    let state = caller.data();
    let mut grpc = state.services.grpc.borrow_mut();
    let found = grpc.close(state.host, token as u32);
    grpc.schedule_delivery(state.host);
    if found {
        Ok(())
    } else {
        Err(Status::NotFound.into())
    }
}
