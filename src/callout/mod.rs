//! HTTP callouts (`proxy_http_call`): the calls a worker has in flight,
//! the HTTP/1.1 they speak over the connections nginx opens for them, and
//! how they end.
//!
//! The calls in flight are a table of the worker's (`Calls`), which host
//! functions add to and the worker takes from when nginx reports an
//! outcome.

pub mod grpc;
pub mod h2;
pub mod http1;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::host::{CallRef, HttpCalls, RequestRef};
use http1::{Response, ResponseError, ResponseParser};

use crate::abi::LogLevel;

/// How calls behave (the wasm{} block's `http_call_*` settings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallSettings {
    /// The largest body of a response.
    pub max_body_size: usize,
    /// The level failed calls are logged at.
    pub failure_log: LogLevel,
}

impl Default for CallSettings {
    fn default() -> CallSettings {
        CallSettings {
            max_body_size: 8 * 1024 * 1024,
            failure_log: LogLevel::Error,
        }
    }
}

/// Why a call failed: its callback gets no headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallFailure {
    Refused,
    Timeout,
    Resolve,
    /// The TLS handshake or the server's certificate failed.
    Tls,
    /// The connection broke, or closed before the response ended.
    Reset,
    /// The response was larger than `max_body_size`.
    TooLarge,
    /// The response was not HTTP/1.x.
    Malformed(String),
}

impl CallFailure {
    /// What `proxy_get_status` reports, as Envoy's `status_message`.
    pub fn as_str(&self) -> &str {
        match self {
            CallFailure::Refused => "refused",
            CallFailure::Timeout => "timeout",
            CallFailure::Resolve => "resolve",
            CallFailure::Tls => "tls",
            CallFailure::Reset => "reset",
            CallFailure::TooLarge => "oversize",
            CallFailure::Malformed(_) => "malformed",
        }
    }

    fn of(error: ResponseError) -> CallFailure {
        match error {
            ResponseError::TooLarge => CallFailure::TooLarge,
            ResponseError::Truncated => CallFailure::Reset,
            ResponseError::Malformed(why) => CallFailure::Malformed(why),
        }
    }
}

/// Where a call's outcome goes: the root context that made it, in its
/// instance.
#[derive(Debug, Clone)]
pub struct Origin {
    pub token: u32,
    /// The instance's generation.
    pub instance: u64,
    pub root_id: u32,
    /// The request whose context made the call: it ends with it.
    pub request: Option<RequestRef>,
    /// The target, for logs.
    pub target: String,
}

struct Pending {
    call: CallRef,
    origin: Origin,
    parser: ResponseParser,
}

/// The calls a worker has in flight, and how calls behave there (None:
/// no calls can be made, as while the configuration is checked).
#[derive(Default)]
pub struct Calls {
    pending: HashMap<u32, Pending>,
    next_token: u32,
    settings: Option<CallSettings>,
}

impl Calls {
    /// A worker's table, whose calls behave per `settings`.
    pub fn enabled(settings: CallSettings) -> Calls {
        Calls {
            settings: Some(settings),
            ..Calls::default()
        }
    }

    /// The settings calls are made with, if they can be made.
    pub fn settings(&self) -> Option<CallSettings> {
        self.settings
    }

    /// No more calls can be made (the worker exits).
    pub fn disable(&mut self) {
        self.settings = None;
    }

    /// A token for a new call (never 0; a multiple of 4, as Envoy's HTTP
    /// call tokens are: gRPC tokens have other low bits).
    pub fn next_token(&mut self) -> u32 {
        loop {
            self.next_token = self.next_token.wrapping_add(4);
            let token = self.next_token;
            if token != 0 && !self.pending.contains_key(&token) {
                return token;
            }
        }
    }

    /// Records a call nginx started.
    pub fn register(&mut self, call: CallRef, origin: Origin, head_request: bool) {
        let limit = self.settings.unwrap_or_default().max_body_size;
        let pending = Pending {
            call,
            parser: ResponseParser::new(head_request, limit),
            origin,
        };
        self.pending.insert(pending.origin.token, pending);
    }

    pub fn feed(&mut self, token: u32, bytes: &[u8]) -> Fed {
        let Some(pending) = self.pending.get_mut(&token) else {
            return Fed::Unknown;
        };
        let outcome = match pending.parser.feed(bytes) {
            Ok(None) => return Fed::More,
            Ok(Some(response)) => Ok(Rc::new(response)),
            Err(error) => Err(CallFailure::of(error)),
        };
        match self.pending.remove(&token) {
            Some(pending) => Fed::Done(pending.origin, outcome),
            None => Fed::Unknown,
        }
    }

    /// nginx ended a call without a whole response: a connection closed
    /// at the end of a close-delimited body completes it.
    pub fn end(
        &mut self,
        token: u32,
        failure: Option<CallFailure>,
    ) -> Option<(Origin, Result<Rc<Response>, CallFailure>)> {
        let mut pending = self.pending.remove(&token)?;
        let outcome = match failure {
            Some(failure) => Err(failure),
            None => pending.parser.finish().map(Rc::new).map_err(CallFailure::of),
        };
        Some((pending.origin, outcome))
    }

    /// Takes the calls `select` picks out of the table, for the host to
    /// cancel (outside the table's borrow: cancelling reaches nginx).
    /// Whether a call in flight was made from where `select` says.
    pub fn any_where(&self, select: impl Fn(&Origin) -> bool) -> bool {
        self.pending.values().any(|pending| select(&pending.origin))
    }

    pub fn take_where(&mut self, select: impl Fn(&Origin) -> bool) -> Vec<CallRef> {
        let tokens = tokens_where(&self.pending, |pending| &pending.origin, select);
        tokens
            .iter()
            .filter_map(|token| self.pending.remove(token))
            .map(|pending| pending.call)
            .collect()
    }
}

/// The tokens of the calls of a table whose origin `select` picks.
fn tokens_where<T>(
    table: &HashMap<u32, T>,
    origin: impl Fn(&T) -> &Origin,
    select: impl Fn(&Origin) -> bool,
) -> Vec<u32> {
    // every request ends by looking: most have no call to find
    if table.is_empty() {
        return Vec::new();
    }
    table
        .iter()
        .filter(|(_, call)| select(origin(call)))
        .map(|(token, _)| *token)
        .collect()
}

/// What bytes of a response came to.
pub enum Fed {
    /// The response goes on.
    More,
    /// The call is over (taken out of the table).
    Done(Origin, Result<Rc<Response>, CallFailure>),
    /// No such call (cancelled).
    Unknown,
}

/// Cancels the calls `select` picks (of a request that ended, an instance
/// replaced, or all at worker exit).
pub fn cancel_where(calls: &RefCell<Calls>, host: &dyn HttpCalls, select: impl Fn(&Origin) -> bool) {
    let cancelled = calls.borrow_mut().take_where(select);
    for call in cancelled {
        host.call_cancel(call);
    }
}
