//! gRPC calls and streams (`proxy_grpc_*`): requests on HTTP/2 channels,
//! one channel per target and worker shared by every call to it and kept
//! for the next, and what their responses come to for the guest, as
//! Envoy's gRPC client reports them (initial metadata, messages,
//! trailing metadata, a status).
//!
//! A call's token says its kind in its low two bits, as Envoy's do: 1 a
//! unary call, 2 a stream; 3 marks a channel's token (nginx reports its
//! connection's bytes with it); HTTP calls have 0.

use std::collections::HashMap;
use std::time::Duration;

use bytes::{Buf, Bytes};
use h2::Reason;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Uri};

use super::h2::{Event, Session, StreamError};
use super::Origin;
use crate::abi::grpc::decode_message;
use crate::abi::proto::{self, Value};
use crate::host::{CallParams, CallRef, Host, TimerRef};

/// gRPC status codes the host produces itself.
pub mod code {
    pub const OK: u32 = 0;
    pub const CANCELLED: u32 = 1;
    pub const UNKNOWN: u32 = 2;
    pub const DEADLINE_EXCEEDED: u32 = 4;
    pub const PERMISSION_DENIED: u32 = 7;
    pub const RESOURCE_EXHAUSTED: u32 = 8;
    pub const INTERNAL: u32 = 13;
    pub const UNAVAILABLE: u32 = 14;
}

/// The HTTP/2 frames the host accepts (the protocol's smallest maximum):
/// larger messages come in several.
const MAX_FRAME_SIZE: u32 = 16 * 1024;

/// What a call's kind bits are.
const KIND_CALL: u32 = 1;
const KIND_STREAM: u32 = 2;
const KIND_CHANNEL: u32 = 3;

/// Whether nginx reports a channel's connection with this token.
pub fn is_channel(token: u32) -> bool {
    token & 3 == KIND_CHANNEL
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `proxy_grpc_call`: one message each way.
    Unary,
    /// `proxy_grpc_stream`: messages each way until either side closes.
    Stream,
}

/// Where a call goes, from its `upstream` argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// An upstream{} block's name, `host:port` or `ip:port`.
    pub address: String,
    /// `:authority` of its requests.
    pub authority: String,
    /// The server name over TLS; None for cleartext (h2c).
    pub tls: Option<String>,
    /// Metadata every request to it carries (a `GrpcService`'s).
    pub metadata: Vec<(String, Vec<u8>)>,
}

impl Target {
    /// A call's `upstream`: `name`, `http://name` or `https://name` (TLS),
    /// or Envoy's serialized `GrpcService` (`envoy_grpc.cluster_name`, or
    /// `google_grpc.target_uri` with TLS when it has `ssl_credentials`).
    pub fn parse(upstream: &[u8]) -> Result<Target, String> {
        if let Some(&first) = upstream.first() {
            // a protobuf's field 1 or 2, length-delimited: no text starts so
            if first == 0x0a || first == 0x12 {
                return grpc_service(upstream);
            }
        }
        let text = std::str::from_utf8(upstream).map_err(|_| "the target is not text".to_string())?;
        let (tls, address) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else {
            (false, text.strip_prefix("http://").unwrap_or(text))
        };
        Target::of(address, tls, None, Vec::new())
    }

    fn of(
        address: &str,
        tls: bool,
        authority: Option<String>,
        metadata: Vec<(String, Vec<u8>)>,
    ) -> Result<Target, String> {
        let address = address.strip_suffix('/').unwrap_or(address);
        if address.is_empty() || address.contains('/') && !address.starts_with("unix:") {
            return Err(format!(
                "{address:?} is not an upstream name, host:port or unix:path"
            ));
        }
        Ok(Target {
            address: address.to_string(),
            authority: authority.unwrap_or_else(|| address.to_string()),
            tls: tls.then(|| {
                String::from_utf8_lossy(super::http1::server_name_of(address.as_bytes())).into_owned()
            }),
            metadata,
        })
    }

    /// What calls sharing a channel have in common.
    fn key(&self) -> (String, bool) {
        (self.address.clone(), self.tls.is_some())
    }
}

/// A field that holds a message: its fields.
fn message(value: Value<'_>) -> Result<Vec<(u64, Value<'_>)>, String> {
    value
        .bytes()
        .and_then(proto::fields)
        .ok_or_else(|| "the target is not a valid GrpcService".to_string())
}

/// Envoy's `GrpcService` message, the parts that mean something here.
fn grpc_service(bytes: &[u8]) -> Result<Target, String> {
    let bad = || "the target is not a valid GrpcService".to_string();
    let text = |value: Value<'_>| {
        value
            .bytes()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .ok_or_else(bad)
    };
    let mut address = None;
    let mut authority = None;
    let mut tls = false;
    let mut metadata = Vec::new();
    for (field, value) in proto::fields(bytes).ok_or_else(bad)? {
        match field {
            // envoy_grpc { cluster_name = 1; authority = 2; }
            1 => {
                for (field, value) in message(value)? {
                    match field {
                        1 => address = Some(text(value)?),
                        2 => authority = Some(text(value)?),
                        _ => {}
                    }
                }
            }
            // google_grpc { target_uri = 1; channel_credentials = 2 { ssl_credentials = 1 } }
            2 => {
                for (field, value) in message(value)? {
                    match field {
                        1 => address = Some(text(value)?),
                        2 => tls |= message(value)?.iter().any(|(f, _)| *f == 1),
                        _ => {}
                    }
                }
            }
            // initial_metadata = 5 { key = 1; value = 2; }
            5 => {
                let (mut key, mut val) = (None, Vec::new());
                for (field, value) in message(value)? {
                    match field {
                        1 => key = Some(text(value)?),
                        2 => val = value.bytes().ok_or_else(bad)?.to_vec(),
                        _ => {}
                    }
                }
                metadata.push((key.ok_or_else(bad)?, val));
            }
            _ => {}
        }
    }
    let address = address.ok_or_else(|| "the GrpcService names no cluster or target".to_string())?;
    let address = address.strip_prefix("dns:///").unwrap_or(&address).to_string();
    Target::of(&address, tls, authority, metadata)
}

/// A header's name and value, as the guest reads them.
pub type Metadata = Vec<(Bytes, Bytes)>;

/// How a call ended: its gRPC status and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrpcStatus {
    pub code: u32,
    pub message: String,
    /// The host ended the call (not a status the server sent).
    pub local: bool,
}

impl GrpcStatus {
    fn new(code: u32, message: impl Into<String>) -> GrpcStatus {
        GrpcStatus {
            code,
            message: message.into(),
            local: true,
        }
    }

    /// The status of a response's trailers (or trailers-only headers).
    fn of_trailers(trailers: &HeaderMap) -> GrpcStatus {
        let code = trailers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(code::UNKNOWN);
        let message = trailers
            .get("grpc-message")
            .map(|v| String::from_utf8_lossy(&decode_message(v.as_bytes())).into_owned())
            .unwrap_or_default();
        GrpcStatus {
            code,
            message,
            local: false,
        }
    }

    /// A stream that failed below gRPC (gRPC's mapping of HTTP/2 errors).
    fn of_stream_error(error: &StreamError) -> GrpcStatus {
        match error {
            StreamError::Connection(why) => GrpcStatus::new(code::UNAVAILABLE, why.clone()),
            StreamError::Refused(why) => GrpcStatus::new(code::INTERNAL, why.clone()),
            StreamError::Reset(reason) => {
                let code = match *reason {
                    Reason::REFUSED_STREAM => code::UNAVAILABLE,
                    Reason::CANCEL => code::CANCELLED,
                    Reason::ENHANCE_YOUR_CALM => code::RESOURCE_EXHAUSTED,
                    Reason::INADEQUATE_SECURITY => code::PERMISSION_DENIED,
                    _ => code::INTERNAL,
                };
                GrpcStatus::new(code, format!("stream reset by the server: {reason:?}"))
            }
        }
    }
}

/// What a call's root context is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    InitialMetadata(Metadata),
    Message(Bytes),
    TrailingMetadata(Metadata),
    /// The call is over; nothing more comes.
    Close(GrpcStatus),
}

/// A delivery and the call it is for.
#[derive(Debug)]
pub struct Delivered {
    pub origin: Origin,
    pub what: Delivery,
}

struct Call {
    origin: Origin,
    kind: Kind,
    channel: u32,
    /// Bytes of a message not whole yet.
    inbound: Vec<u8>,
    /// A unary call's response message.
    response: Option<Bytes>,
    deadline: Option<TimerRef>,
    /// The guest closed its side of a stream.
    closed: bool,
}

struct Channel {
    /// None once nginx freed it (it reported the connection's end).
    connection: Option<CallRef>,
    session: Session,
    key: (String, bool),
}

/// The gRPC calls of a worker, and its channels.
#[derive(Default)]
pub struct GrpcCalls {
    calls: HashMap<u32, Call>,
    channels: HashMap<u32, Channel>,
    /// The channel new calls to a target go on.
    open: HashMap<(String, bool), u32>,
    next: u32,
    /// What host functions caused, for the worker to deliver.
    pending: Vec<Delivered>,
    /// The largest message a response may carry.
    max_message: usize,
    /// FLUSH_TIMER is armed.
    flush_armed: bool,
    /// The channel whose bytes nginx's read handler is handing over.
    feeding: Option<u32>,
}

/// A new call's request.
pub struct NewCall<'a> {
    pub target: &'a Target,
    pub kind: Kind,
    pub service: &'a [u8],
    pub method: &'a [u8],
    pub metadata: &'a [(&'a [u8], &'a [u8])],
    /// A unary call's message (a stream's come with `send`).
    pub message: Option<&'a [u8]>,
    pub timeout: Option<Duration>,
}

/// The timer tokens of deadlines: the call's token with this bit.
pub const DEADLINE_TIMER: u64 = 1 << 62;
/// The timer that delivers what host functions caused outside the
/// worker's own deliveries (a call that failed as it started).
pub const FLUSH_TIMER: u64 = 1 << 61;

impl GrpcCalls {
    pub fn new(max_message: usize) -> GrpcCalls {
        GrpcCalls {
            max_message,
            ..GrpcCalls::default()
        }
    }

    fn next_token(&mut self, kind: u32) -> u32 {
        loop {
            self.next = self.next.wrapping_add(1) & 0x3fff_ffff;
            let token = self.next << 2 | kind;
            if self.next != 0 && !self.calls.contains_key(&token) && !self.channels.contains_key(&token) {
                return token;
            }
        }
    }

    /// Starts a call (the origin's token is set here): the token, or why
    /// it could not start.
    pub fn start(&mut self, host: &dyn Host, call: NewCall<'_>, mut origin: Origin) -> Result<u32, String> {
        let request = request_of(&call)?;
        let token = self.next_token(match call.kind {
            Kind::Unary => KIND_CALL,
            Kind::Stream => KIND_STREAM,
        });
        let channel = self.channel_for(host, call.target)?;
        origin.token = token;
        let first = call
            .message
            .map(|message| (Bytes::from(crate::abi::grpc::frame(message)), true));
        let deadline = match call.timeout {
            Some(timeout) => Some(
                host.timer_add(timeout, DEADLINE_TIMER | u64::from(token))
                    .ok_or("cannot start the deadline's timer")?,
            ),
            None => None,
        };
        if let Some(channel) = self.channels.get_mut(&channel) {
            channel.session.open(token, request, first);
        }
        self.calls.insert(
            token,
            Call {
                origin,
                kind: call.kind,
                channel,
                inbound: Vec::new(),
                response: None,
                deadline,
                closed: false,
            },
        );
        self.drive(host, channel);
        Ok(token)
    }

    /// The open channel to a target, or a new one.
    fn channel_for(&mut self, host: &dyn Host, target: &Target) -> Result<u32, String> {
        let key = target.key();
        if let Some(&token) = self.open.get(&key) {
            if self
                .channels
                .get(&token)
                .is_some_and(|c| c.session.ended().is_none())
            {
                return Ok(token);
            }
            self.open.remove(&key);
        }
        let token = self.next_token(KIND_CHANNEL);
        let mut session = Session::new(MAX_FRAME_SIZE);
        let preface = session.take_output();
        let params = CallParams {
            token,
            target: target.address.as_bytes(),
            data: &preface,
            timeout: None,
            tls: target.tls.as_deref().map(str::as_bytes),
            duplex: true,
        };
        let connection = host.call_start(None, &params)?;
        self.channels.insert(
            token,
            Channel {
                connection: Some(connection),
                session,
                key: key.clone(),
            },
        );
        self.open.insert(key, token);
        Ok(token)
    }

    /// A message on a stream (`end`: the guest's last).
    pub fn send(&mut self, host: &dyn Host, token: u32, message: &[u8], end: bool) -> Result<(), SendError> {
        let call = self.calls.get_mut(&token).ok_or(SendError::NotFound)?;
        if call.kind != Kind::Stream || call.closed {
            return Err(SendError::Closed);
        }
        call.closed = end;
        let channel = call.channel;
        let frame = Bytes::from(crate::abi::grpc::frame(message));
        let sent = match self.channels.get_mut(&channel) {
            Some(channel) => channel.session.send(token, frame, end),
            None => Err(StreamError::Connection("closed".into())),
        };
        if let Err(why) = sent {
            self.fail(token, GrpcStatus::of_stream_error(&why), host);
        }
        self.drive(host, channel);
        Ok(())
    }

    /// `proxy_grpc_close`: a stream's side half-closes (its response still
    /// comes); a unary call is cancelled. Whether the token was a call.
    pub fn close(&mut self, host: &dyn Host, token: u32) -> bool {
        let Some(call) = self.calls.get_mut(&token) else {
            return false;
        };
        if call.kind == Kind::Unary {
            return self.cancel(host, token);
        }
        if !call.closed {
            call.closed = true;
            let channel = call.channel;
            if let Some(session) = self.channels.get_mut(&channel).map(|c| &mut c.session) {
                let _ = session.send(token, Bytes::new(), true);
            }
            self.drive(host, channel);
        }
        true
    }

    /// `proxy_grpc_cancel`: the call ends now (RST_STREAM), with no more
    /// callbacks. Whether the token was a call.
    pub fn cancel(&mut self, host: &dyn Host, token: u32) -> bool {
        let Some(call) = self.calls.remove(&token) else {
            return false;
        };
        if let Some(timer) = call.deadline {
            host.timer_cancel(timer);
        }
        if let Some(channel) = self.channels.get_mut(&call.channel) {
            channel.session.reset(token);
        }
        self.drive(host, call.channel);
        true
    }

    /// A call's deadline passed: it ends with DEADLINE_EXCEEDED.
    pub fn expire(&mut self, host: &dyn Host, token: u32) {
        let Some(call) = self.calls.get_mut(&token) else {
            return;
        };
        call.deadline = None;
        let channel = call.channel;
        if let Some(c) = self.channels.get_mut(&channel) {
            c.session.reset(token);
        }
        self.fail(
            token,
            GrpcStatus::new(code::DEADLINE_EXCEEDED, "deadline exceeded"),
            host,
        );
        self.drive(host, channel);
    }

    /// Bytes of a channel's connection (`set_feeding` says whose).
    pub fn feed(&mut self, host: &dyn Host, channel: u32, bytes: &[u8]) {
        if let Some(c) = self.channels.get_mut(&channel) {
            c.session.feed(bytes);
            self.drive(host, channel);
        }
    }

    /// nginx closed a channel's connection (`why`: its failure, or None
    /// when the server closed it): its calls end.
    pub fn end(&mut self, host: &dyn Host, channel: u32, why: Option<String>) {
        let Some(c) = self.channels.get_mut(&channel) else {
            return;
        };
        // nginx freed the connection before it told
        c.connection = None;
        if why.is_none() {
            // what the server sent last (a GOAWAY, the last trailers)
            // still counts
            c.session.feed_eof();
            self.drive(host, channel);
        }
        // what the session did not end yet ends now, with why
        let why = why.unwrap_or_else(|| "the server closed the connection".to_string());
        let left: Vec<u32> = self
            .calls
            .iter()
            .filter(|(_, call)| call.channel == channel)
            .map(|(token, _)| *token)
            .collect();
        for token in left {
            self.fail(token, GrpcStatus::new(code::UNAVAILABLE, why.clone()), host);
        }
        self.close_channel(host, channel);
    }

    /// A channel Rust is done with: nginx closes its connection, from
    /// here, or when the read handler that feeds it gets `false`.
    fn close_channel(&mut self, host: &dyn Host, channel: u32) {
        let connection = self.forget_channel(channel);
        // the connection being read must not go under its read handler
        if let Some(connection) = connection.filter(|_| self.feeding != Some(channel)) {
            host.call_cancel(connection);
        }
    }

    /// nginx's reading of a channel starts (Some) or ends (None): while it
    /// reads, what its bytes cause is delivered, and the channel must
    /// stay.
    pub fn set_feeding(&mut self, channel: Option<u32>) {
        self.feeding = channel;
    }

    /// Whether Rust still has a channel (nginx keeps its connection).
    pub fn has_channel(&self, channel: u32) -> bool {
        self.channels.contains_key(&channel)
    }

    /// A channel is gone from the tables: its connection, for whoever
    /// closes it.
    fn forget_channel(&mut self, channel: u32) -> Option<CallRef> {
        let c = self.channels.remove(&channel)?;
        if self.open.get(&c.key) == Some(&channel) {
            self.open.remove(&c.key);
        }
        c.connection
    }

    /// What host functions and events caused since the last take.
    pub fn take_pending(&mut self) -> Vec<Delivered> {
        std::mem::take(&mut self.pending)
    }

    /// Makes sure what host functions caused is delivered: from the
    /// event loop, as the guest call that caused it has to return first.
    pub fn schedule_delivery(&mut self, host: &dyn Host) {
        if !self.pending.is_empty() && !self.flush_armed {
            self.flush_armed = host.timer_add(Duration::ZERO, FLUSH_TIMER).is_some();
        }
    }

    /// FLUSH_TIMER fired.
    pub fn flushed(&mut self) {
        self.flush_armed = false;
    }

    /// Ends the calls `select` picks without callbacks (their request or
    /// instance is gone).
    /// Whether a call or stream in flight was made from where `select`
    /// says.
    pub fn any_where(&self, select: impl Fn(&Origin) -> bool) -> bool {
        self.calls.values().any(|call| select(&call.origin))
    }

    pub fn cancel_where(&mut self, host: &dyn Host, select: impl Fn(&Origin) -> bool) {
        for token in super::tokens_where(&self.calls, |call| &call.origin, select) {
            self.cancel(host, token);
        }
    }

    /// The worker exits: every call and connection goes, untold.
    pub fn exit(&mut self, host: &dyn Host) {
        for (_, call) in self.calls.drain() {
            if let Some(timer) = call.deadline {
                host.timer_cancel(timer);
            }
        }
        self.pending.clear();
        self.open.clear();
        for connection in self
            .channels
            .drain()
            .filter_map(|(_, channel)| channel.connection)
        {
            host.call_cancel(connection);
        }
    }

    /// Lets a channel's session progress: its events become deliveries,
    /// its output goes to nginx; a channel that ended and has no calls
    /// left is closed.
    fn drive(&mut self, host: &dyn Host, channel: u32) {
        let Some(c) = self.channels.get_mut(&channel) else {
            return;
        };
        let events = c.session.drive();
        let output = c.session.take_output();
        let (connection, ended) = (c.connection, c.session.ended().is_some());
        if let Some(connection) = connection.filter(|_| !output.is_empty()) {
            // a connection that cannot take it is reported broken by nginx,
            // from its event loop
            let _ = host.call_send(connection, &output);
        }
        for event in events {
            self.on_event(event, host);
        }
        // an ended channel takes no new calls (channel_for), and goes with
        // its last one
        if ended && self.calls.values().all(|call| call.channel != channel) {
            self.close_channel(host, channel);
        }
    }

    fn on_event(&mut self, event: Event, host: &dyn Host) {
        match event {
            Event::Headers {
                key,
                status,
                headers,
                end,
            } => self.on_headers(key, status, headers, end, host),
            Event::Data { key, data } => self.on_data(key, data, host),
            Event::End { key, trailers } => {
                let Some(call) = self.calls.get(&key) else {
                    return;
                };
                if !call.inbound.is_empty() {
                    return self.fail(
                        key,
                        GrpcStatus::new(code::INTERNAL, "the response ended within a message"),
                        host,
                    );
                }
                match trailers {
                    Some(trailers) => self.finish(key, &trailers, host),
                    // DATA with END_STREAM and no trailers: Envoy's Unknown
                    None => self.fail(
                        key,
                        GrpcStatus::new(code::UNKNOWN, "the response ended without a status"),
                        host,
                    ),
                }
            }
            Event::Failed { key, why } => self.fail(key, GrpcStatus::of_stream_error(&why), host),
        }
    }

    fn on_headers(&mut self, key: u32, status: u16, headers: HeaderMap, end: bool, host: &dyn Host) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.kind == Kind::Stream {
            // Envoy gives trailers-only responses empty initial metadata
            let metadata = if end { Vec::new() } else { metadata_of(&headers) };
            self.deliver(key, Delivery::InitialMetadata(metadata));
        }
        if status != 200 {
            if end && headers.contains_key("grpc-status") {
                return self.finish(key, &headers, host);
            }
            let code = crate::abi::grpc::status_of_http(status.into());
            return self.fail(key, GrpcStatus::new(code, format!("HTTP status {status}")), host);
        }
        if end {
            self.finish(key, &headers, host);
        }
    }

    fn on_data(&mut self, key: u32, data: Bytes, host: &dyn Host) {
        let max = self.max_message;
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        call.inbound.extend_from_slice(&data);
        loop {
            let Some(call) = self.calls.get_mut(&key) else {
                return;
            };
            if call.inbound.len() < 5 {
                return;
            }
            let mut head = &call.inbound[..5];
            let compressed = head.get_u8();
            let len = head.get_u32() as usize;
            if len > max {
                let why = format!("a response message of {len} bytes is larger than {max}");
                return self.abort(key, GrpcStatus::new(code::RESOURCE_EXHAUSTED, why), host);
            }
            if compressed != 0 {
                let why = "a compressed response message: no compression was asked for";
                return self.abort(key, GrpcStatus::new(code::INTERNAL, why), host);
            }
            if call.inbound.len() < 5 + len {
                return;
            }
            let message = Bytes::copy_from_slice(&call.inbound[5..5 + len]);
            call.inbound.drain(..5 + len);
            match call.kind {
                Kind::Stream => self.deliver(key, Delivery::Message(message)),
                Kind::Unary if call.response.is_none() => call.response = Some(message),
                Kind::Unary => {
                    let why = "a unary call's response has more than one message";
                    return self.abort(key, GrpcStatus::new(code::INTERNAL, why), host);
                }
            }
        }
    }

    /// The response ended with a status (in its trailers).
    fn finish(&mut self, key: u32, trailers: &HeaderMap, host: &dyn Host) {
        let status = GrpcStatus::of_trailers(trailers);
        let Some(call) = self.calls.get_mut(&key) else {
            return;
        };
        match call.kind {
            Kind::Stream => {
                self.deliver(key, Delivery::TrailingMetadata(metadata_of(trailers)));
                self.deliver(key, Delivery::Close(status));
            }
            Kind::Unary => match (status.code, call.response.take()) {
                (code::OK, Some(message)) => self.deliver(key, Delivery::Message(message)),
                (code::OK, None) => {
                    let status = GrpcStatus::new(code::INTERNAL, "the response has no message");
                    self.deliver(key, Delivery::Close(status))
                }
                _ => self.deliver(key, Delivery::Close(status)),
            },
        }
        self.release(key, host);
    }

    /// The call failed: a stream gets empty trailing metadata first, as
    /// Envoy's `streamError` does.
    fn fail(&mut self, key: u32, status: GrpcStatus, host: &dyn Host) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        if call.kind == Kind::Stream {
            self.deliver(key, Delivery::TrailingMetadata(Vec::new()));
        }
        self.deliver(key, Delivery::Close(status));
        self.release(key, host);
    }

    /// The call fails here: its stream is reset too.
    fn abort(&mut self, key: u32, status: GrpcStatus, host: &dyn Host) {
        if let Some(channel) = self.calls.get(&key).map(|call| call.channel) {
            if let Some(c) = self.channels.get_mut(&channel) {
                c.session.reset(key);
            }
        }
        self.fail(key, status, host);
    }

    /// The call is over: its deadline goes with it.
    fn release(&mut self, key: u32, host: &dyn Host) {
        if let Some(call) = self.calls.remove(&key) {
            if let Some(timer) = call.deadline {
                host.timer_cancel(timer);
            }
        }
    }

    fn deliver(&mut self, key: u32, what: Delivery) {
        let Some(call) = self.calls.get(&key) else {
            return;
        };
        self.pending.push(Delivered {
            origin: call.origin.clone(),
            what,
        });
    }
}

/// Why `proxy_grpc_send` failed.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    NotFound,
    /// Not a stream, or its side is closed.
    Closed,
}

/// Metadata as the guest reads it.
fn metadata_of(headers: &HeaderMap) -> Metadata {
    headers
        .iter()
        .map(|(name, value)| {
            (
                Bytes::copy_from_slice(name.as_str().as_bytes()),
                Bytes::copy_from_slice(value.as_bytes()),
            )
        })
        .collect()
}

/// Headers the transport owns: the guest's metadata cannot set them.
const RESERVED: &[&str] = &[
    "content-type",
    "te",
    "grpc-timeout",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// A call's HTTP/2 request.
fn request_of(call: &NewCall<'_>) -> Result<Request<()>, String> {
    let service = std::str::from_utf8(call.service).map_err(|_| "the service name is not text")?;
    let method = std::str::from_utf8(call.method).map_err(|_| "the method name is not text")?;
    if service.is_empty() || method.is_empty() {
        return Err("the service and the method are required".into());
    }
    let scheme = if call.target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let authority = if call.target.authority.starts_with("unix:") {
        "localhost"
    } else {
        &call.target.authority
    };
    let uri = format!("{scheme}://{authority}/{service}/{method}");
    let uri: Uri = uri
        .parse()
        .map_err(|_| format!("{uri:?} is not a valid request URI"))?;
    let mut request = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .version(http::Version::HTTP_2)
        .body(())
        .map_err(|e| e.to_string())?;
    let headers = request.headers_mut();
    headers.insert("content-type", HeaderValue::from_static("application/grpc"));
    headers.insert("te", HeaderValue::from_static("trailers"));
    if let Some(timeout) = call.timeout {
        let value = format!("{}m", timeout.as_millis().min(99_999_999));
        headers.insert(
            "grpc-timeout",
            HeaderValue::from_str(&value).map_err(|e| e.to_string())?,
        );
    }
    let target_metadata = call.target.metadata.iter().map(|(k, v)| (k.as_bytes(), &v[..]));
    for (name, value) in target_metadata.chain(call.metadata.iter().copied()) {
        if name.starts_with(b":") || RESERVED.iter().any(|r| r.as_bytes().eq_ignore_ascii_case(name)) {
            continue;
        }
        let name = HeaderName::from_bytes(name)
            .map_err(|_| format!("invalid metadata name {:?}", String::from_utf8_lossy(name)))?;
        let value =
            HeaderValue::from_bytes(value).map_err(|_| format!("invalid value of metadata {name}"))?;
        headers.append(name, value);
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_names_with_an_optional_scheme() {
        let t = Target::parse(b"grpc_backend").unwrap();
        assert_eq!((t.address.as_str(), t.tls.as_deref()), ("grpc_backend", None));
        let t = Target::parse(b"https://api.test:8443").unwrap();
        assert_eq!(
            (t.address.as_str(), t.tls.as_deref()),
            ("api.test:8443", Some("api.test"))
        );
        assert_eq!(t.authority, "api.test:8443");
        let t = Target::parse(b"http://127.0.0.1:50051").unwrap();
        assert_eq!((t.address.as_str(), t.tls.as_deref()), ("127.0.0.1:50051", None));
        assert!(Target::parse(b"").is_err());
        assert!(Target::parse(b"http://a/b").is_err());
    }

    fn field(number: u8, value: &[u8]) -> Vec<u8> {
        let mut out = vec![number << 3 | 2, value.len() as u8];
        out.extend_from_slice(value);
        out
    }

    #[test]
    fn targets_can_be_envoys_grpc_service() {
        // envoy_grpc { cluster_name: "backend" }, initial_metadata { key: "x-a", value: "1" }
        let mut service = field(1, &field(1, b"backend"));
        let mut md = field(1, b"x-a");
        md.extend(field(2, b"1"));
        service.extend(field(5, &md));
        let t = Target::parse(&service).unwrap();
        assert_eq!(t.address, "backend");
        assert_eq!(t.tls, None);
        assert_eq!(t.metadata, vec![("x-a".to_string(), b"1".to_vec())]);
        // google_grpc { target_uri: "dns:///api.test:443", channel_credentials { ssl_credentials {} } }
        let mut google = field(1, b"dns:///api.test:443");
        google.extend(field(2, &field(1, b"")));
        let t = Target::parse(&field(2, &google)).unwrap();
        assert_eq!(
            (t.address.as_str(), t.tls.as_deref()),
            ("api.test:443", Some("api.test"))
        );
        // truncated
        assert!(Target::parse(&service[..service.len() - 1]).is_err());
    }

    #[test]
    fn requests_carry_grpcs_headers_and_the_metadata() {
        let target = Target::parse(b"backend").unwrap();
        let call = NewCall {
            target: &target,
            kind: Kind::Unary,
            service: b"pkg.Service",
            method: b"Method",
            metadata: &[
                (b"x-user", b"alice"),
                (b"content-type", b"text/plain"),
                (b":path", b"/x"),
            ],
            message: Some(b"hi"),
            timeout: Some(Duration::from_millis(250)),
        };
        let request = request_of(&call).unwrap();
        assert_eq!(request.uri().path(), "/pkg.Service/Method");
        assert_eq!(request.uri().authority().unwrap().as_str(), "backend");
        let headers = request.headers();
        assert_eq!(headers["content-type"], "application/grpc");
        assert_eq!(headers["te"], "trailers");
        assert_eq!(headers["grpc-timeout"], "250m");
        assert_eq!(headers["x-user"], "alice");
        assert_eq!(headers.get_all("content-type").iter().count(), 1);
        let bad = NewCall {
            metadata: &[(b"bad name", b"x")],
            ..call
        };
        assert!(request_of(&bad).is_err());
    }

    #[test]
    fn statuses_of_trailers_and_resets() {
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("7"));
        trailers.insert("grpc-message", HeaderValue::from_static("no%20way"));
        let status = GrpcStatus::of_trailers(&trailers);
        assert_eq!(
            (status.code, status.message.as_str(), status.local),
            (7, "no way", false)
        );
        assert_eq!(GrpcStatus::of_trailers(&HeaderMap::new()).code, code::UNKNOWN);
        let reset = |reason| GrpcStatus::of_stream_error(&StreamError::Reset(reason)).code;
        assert_eq!(reset(Reason::CANCEL), code::CANCELLED);
        assert_eq!(reset(Reason::REFUSED_STREAM), code::UNAVAILABLE);
        assert_eq!(reset(Reason::PROTOCOL_ERROR), code::INTERNAL);
        let broken = StreamError::Connection("reset".into());
        assert_eq!(GrpcStatus::of_stream_error(&broken).code, code::UNAVAILABLE);
    }

    #[test]
    fn kinds_are_in_the_tokens_low_bits() {
        let mut calls = GrpcCalls::new(1024);
        let unary = calls.next_token(KIND_CALL);
        let stream = calls.next_token(KIND_STREAM);
        let channel = calls.next_token(KIND_CHANNEL);
        assert_eq!((unary & 3, stream & 3), (KIND_CALL, KIND_STREAM));
        assert!(is_channel(channel) && !is_channel(unary));
        assert_ne!(unary, 0);
    }
}
