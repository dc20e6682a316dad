//! HTTP callouts (`proxy_http_call`): the calls a worker has in flight,
//! the HTTP/1.1 they speak over the connections nginx opens for them, and
//! how they end.
//!
//! A worker process runs on one thread, and so does everything here: the
//! calls in flight are a thread-local table, which host functions add to
//! and the worker takes from when nginx reports an outcome.

pub mod http1;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::host::{CallRef, Host, RequestRef};
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

#[derive(Default)]
struct Table {
    pending: HashMap<u32, Pending>,
    next_token: u32,
}

thread_local! {
    static CALLS: RefCell<Table> = RefCell::new(Table::default());
}

thread_local! {
    /// Calls can be made (a worker runs, not the configuration check),
    /// with these settings.
    static ENABLED: std::cell::Cell<Option<CallSettings>> = const { std::cell::Cell::new(None) };
}

/// Calls can be made from now on (a worker started), or no more (None).
pub fn enable(settings: Option<CallSettings>) {
    ENABLED.with(|e| e.set(settings));
}

/// The settings calls are made with, if they can be made.
pub fn enabled() -> Option<CallSettings> {
    ENABLED.with(std::cell::Cell::get)
}

/// A token for a new call (never 0).
pub fn next_token() -> u32 {
    CALLS.with(|calls| {
        let mut calls = calls.borrow_mut();
        loop {
            calls.next_token = calls.next_token.wrapping_add(1);
            let token = calls.next_token;
            if token != 0 && !calls.pending.contains_key(&token) {
                return token;
            }
        }
    })
}

/// Records a call nginx started.
pub fn register(call: CallRef, origin: Origin, head_request: bool) {
    let limit = enabled().unwrap_or_default().max_body_size;
    let pending = Pending {
        call,
        parser: ResponseParser::new(head_request, limit),
        origin,
    };
    CALLS.with(|calls| calls.borrow_mut().pending.insert(pending.origin.token, pending));
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

pub fn feed(token: u32, bytes: &[u8]) -> Fed {
    CALLS.with(|calls| {
        let mut calls = calls.borrow_mut();
        let Some(pending) = calls.pending.get_mut(&token) else {
            return Fed::Unknown;
        };
        let outcome = match pending.parser.feed(bytes) {
            Ok(None) => return Fed::More,
            Ok(Some(response)) => Ok(Rc::new(response)),
            Err(error) => Err(CallFailure::of(error)),
        };
        let pending = calls.pending.remove(&token).expect("found above");
        Fed::Done(pending.origin, outcome)
    })
}

/// nginx ended a call without a whole response: a connection closed at
/// the end of a close-delimited body completes it.
pub fn end(token: u32, failure: Option<CallFailure>) -> Option<(Origin, Result<Rc<Response>, CallFailure>)> {
    let mut pending = CALLS.with(|calls| calls.borrow_mut().pending.remove(&token))?;
    let outcome = match failure {
        Some(failure) => Err(failure),
        None => pending.parser.finish().map(Rc::new).map_err(CallFailure::of),
    };
    Some((pending.origin, outcome))
}

/// Cancels the calls of a request (it ended, or answered locally).
pub fn cancel_request(host: &dyn Host, request: RequestRef) {
    cancel_where(host, |origin| origin.request == Some(request));
}

/// Cancels the calls an instance made (it was replaced).
pub fn cancel_instance(host: &dyn Host, generation: u64) {
    cancel_where(host, |origin| origin.instance == generation);
}

/// Cancels every call (at worker exit).
pub fn cancel_all(host: &dyn Host) {
    cancel_where(host, |_| true);
}

fn cancel_where(host: &dyn Host, select: impl Fn(&Origin) -> bool) {
    let cancelled: Vec<CallRef> = CALLS.with(|calls| {
        let mut calls = calls.borrow_mut();
        // every request ends here: most have no call to look for
        if calls.pending.is_empty() {
            return Vec::new();
        }
        let tokens: Vec<u32> = calls
            .pending
            .iter()
            .filter(|(_, pending)| select(&pending.origin))
            .map(|(token, _)| *token)
            .collect();
        tokens
            .iter()
            .filter_map(|token| calls.pending.remove(token))
            .map(|pending| pending.call)
            .collect()
    });
    for call in cancelled {
        host.call_cancel(call);
    }
}
