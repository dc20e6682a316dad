//! `Host` implemented with the functions of the C shim.

use std::ffi::c_void;
use std::sync::OnceLock;
use std::time::Duration;

use super::bindings::{
    ngx_proxy_wasm_header_op_e as Op, ngx_proxy_wasm_headers_e as Map, ngx_proxy_wasm_host_rc_e as Rc,
    ngx_proxy_wasm_host_t, ngx_proxy_wasm_pair_t, ngx_proxy_wasm_str_t,
};
use super::{bytes, str_of};
use crate::abi::pairs::Pair;
use crate::abi::{HostResult, LogLevel, Status};
use crate::host::{HeaderError, HeaderMap, HeaderOp, Host, RequestRef, TimerRef};

type LogFn = unsafe extern "C" fn(*mut c_void, u32, ngx_proxy_wasm_str_t, u32, ngx_proxy_wasm_str_t);
type LogLevelFn = unsafe extern "C" fn(*mut c_void) -> u32;
type HeadersGetFn =
    unsafe extern "C" fn(*mut c_void, u32, *mut ngx_proxy_wasm_pair_t, usize, *mut usize) -> u32;
type HeaderGetFn =
    unsafe extern "C" fn(*mut c_void, u32, ngx_proxy_wasm_str_t, *mut ngx_proxy_wasm_str_t) -> u32;
type HeaderSetFn =
    unsafe extern "C" fn(*mut c_void, u32, u32, ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t) -> u32;
type ScheduleResumeFn = unsafe extern "C" fn(*mut c_void);
type TimerAddFn = unsafe extern "C" fn(u64, u64) -> *mut c_void;
type TimerCancelFn = unsafe extern "C" fn(*mut c_void);

pub struct NginxHost {
    log: LogFn,
    log_level: LogLevelFn,
    headers_get: HeadersGetFn,
    header_get: HeaderGetFn,
    header_set: HeaderSetFn,
    schedule_resume: ScheduleResumeFn,
    timer_add: TimerAddFn,
    timer_cancel: TimerCancelFn,
}

static HOST: OnceLock<NginxHost> = OnceLock::new();

/// Header maps this small are lent from the stack.
const STACK_PAIRS: usize = 64;

impl NginxHost {
    /// The process-wide host, from the shim's table (the same table on
    /// every call). None if the table lacks a function.
    pub fn install(table: &ngx_proxy_wasm_host_t) -> Option<&'static NginxHost> {
        let host = NginxHost {
            log: table.log?,
            log_level: table.log_level?,
            headers_get: table.headers_get?,
            header_get: table.header_get?,
            header_set: table.header_set?,
            schedule_resume: table.schedule_resume?,
            timer_add: table.timer_add?,
            timer_cancel: table.timer_cancel?,
        };
        Some(HOST.get_or_init(|| host))
    }
}

fn request_ptr(request: Option<RequestRef>) -> *mut c_void {
    request.map_or(std::ptr::null_mut(), |r| r.0 as *mut c_void)
}

fn map_of(map: HeaderMap) -> u32 {
    match map {
        HeaderMap::Request => Map::NGX_PROXY_WASM_HEADERS_REQUEST as u32,
        HeaderMap::Response => Map::NGX_PROXY_WASM_HEADERS_RESPONSE as u32,
        HeaderMap::ResponseTrailers => Map::NGX_PROXY_WASM_HEADERS_RESPONSE_TRAILERS as u32,
    }
}

// SAFETY (for every call below): the shim's functions accept a null
// request or one handed over by `stream_new`, which stays valid while its
// stream exists; streams are freed by the request's pool cleanup. Strings
// passed in are borrowed for the duration of the call only.
impl Host for NginxHost {
    fn log(
        &self,
        request: Option<RequestRef>,
        level: LogLevel,
        filter: &str,
        context_id: u32,
        message: &[u8],
    ) {
        // SAFETY: see above.
        unsafe {
            (self.log)(
                request_ptr(request),
                level as u32,
                str_of(filter.as_bytes()),
                context_id,
                str_of(message),
            )
        }
    }

    fn log_level(&self, request: Option<RequestRef>) -> LogLevel {
        // SAFETY: see above.
        let raw = unsafe { (self.log_level)(request_ptr(request)) };
        LogLevel::from_raw(raw).unwrap_or(LogLevel::Critical)
    }

    fn with_headers(
        &self,
        request: RequestRef,
        map: HeaderMap,
        visit: &mut dyn FnMut(&[Pair<'_>]) -> HostResult,
    ) -> HostResult {
        let empty = ngx_proxy_wasm_pair_t::default();
        let mut stack = [empty; STACK_PAIRS];
        let mut heap = Vec::new();
        let mut n = 0;
        let request = request_ptr(Some(request));
        // SAFETY: see above; the array holds STACK_PAIRS entries.
        let mut rc =
            unsafe { (self.headers_get)(request, map_of(map), stack.as_mut_ptr(), STACK_PAIRS, &mut n) };
        let raw: &[ngx_proxy_wasm_pair_t] = if rc == Rc::NGX_PROXY_WASM_HOST_AGAIN as u32 {
            heap.resize(n, empty);
            // SAFETY: see above; the vector holds n entries.
            rc = unsafe { (self.headers_get)(request, map_of(map), heap.as_mut_ptr(), n, &mut n) };
            &heap[..n.min(heap.len())]
        } else {
            &stack[..n.min(STACK_PAIRS)]
        };
        if rc != Rc::NGX_PROXY_WASM_HOST_OK as u32 {
            return Err(Status::InternalFailure);
        }
        // SAFETY: the shim's pairs point into the request's memory, unchanged
        // while `visit` runs: host functions that change header maps cannot
        // run meanwhile (only the guest allocator may be called).
        let convert = |pair: &ngx_proxy_wasm_pair_t| unsafe { (bytes(pair.key), bytes(pair.value)) };
        if raw.len() <= STACK_PAIRS {
            let mut pairs: [Pair<'_>; STACK_PAIRS] = [(&[], &[]); STACK_PAIRS];
            for (dst, src) in pairs.iter_mut().zip(raw) {
                *dst = convert(src);
            }
            visit(&pairs[..raw.len()])
        } else {
            visit(&raw.iter().map(convert).collect::<Vec<_>>())
        }
    }

    fn header_count(&self, request: RequestRef, map: HeaderMap) -> usize {
        let mut n = 0;
        // SAFETY: see above; with no room for pairs, the shim only counts.
        unsafe {
            (self.headers_get)(
                request_ptr(Some(request)),
                map_of(map),
                std::ptr::null_mut(),
                0,
                &mut n,
            )
        };
        n
    }

    fn with_header_value(
        &self,
        request: RequestRef,
        map: HeaderMap,
        name: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        let mut value = str_of(&[]);
        // SAFETY: see above; `value` is written on OK only.
        let rc =
            unsafe { (self.header_get)(request_ptr(Some(request)), map_of(map), str_of(name), &mut value) };
        match rc {
            // SAFETY: the value points into the request's memory, unchanged
            // while `visit` runs (as in `with_headers`).
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => visit(Some(unsafe { bytes(value) })),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => visit(None),
            _ => Err(Status::InternalFailure),
        }
    }

    fn set_header(
        &self,
        request: RequestRef,
        map: HeaderMap,
        op: HeaderOp,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HeaderError> {
        let op = match op {
            HeaderOp::Add => Op::NGX_PROXY_WASM_HEADER_ADD,
            HeaderOp::Replace => Op::NGX_PROXY_WASM_HEADER_REPLACE,
            HeaderOp::Remove => Op::NGX_PROXY_WASM_HEADER_REMOVE,
        };
        // SAFETY: see above.
        let rc = unsafe {
            (self.header_set)(
                request_ptr(Some(request)),
                map_of(map),
                op as u32,
                str_of(key),
                str_of(value),
            )
        };
        match rc {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(()),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => Err(HeaderError::ReadOnly),
            _ => Err(HeaderError::Failed),
        }
    }

    fn schedule_resume(&self, request: RequestRef) {
        // SAFETY: see above.
        unsafe { (self.schedule_resume)(request_ptr(Some(request))) }
    }

    fn timer_add(&self, delay: Duration, token: u64) -> Option<TimerRef> {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: plain values in; the shim owns the timer it returns.
        let timer = unsafe { (self.timer_add)(token, delay_ms) };
        (!timer.is_null()).then_some(TimerRef(timer as usize))
    }

    fn timer_cancel(&self, timer: TimerRef) {
        // SAFETY: `timer` came from timer_add and has not fired: the
        // worker forgets a timer once it fired or was cancelled.
        unsafe { (self.timer_cancel)(timer.0 as *mut c_void) }
    }
}
