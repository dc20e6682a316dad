//! `Host` implemented with the functions of the C shim.

use std::ffi::c_void;
use std::sync::OnceLock;
use std::time::Duration;

use super::bindings::{
    ngx_proxy_wasm_attribute_e as Attr, ngx_proxy_wasm_call_params_t, ngx_proxy_wasm_header_op_e as Op,
    ngx_proxy_wasm_headers_e as Map, ngx_proxy_wasm_host_rc_e as Rc, ngx_proxy_wasm_host_t,
    ngx_proxy_wasm_metric_op_e as MetricOpC, ngx_proxy_wasm_pair_t, ngx_proxy_wasm_str_t,
    ngx_proxy_wasm_value_kind_e as Kind, ngx_proxy_wasm_value_t,
};
use super::{bytes, str_of};
use crate::abi::pairs::Pair;
use crate::abi::{HostResult, LogLevel, Status};
use crate::host::{
    Attribute, CallParams, CallRef, Fact, HeaderError, HeaderMap, HeaderOp, Host, MetricOp, MetricRef,
    MetricType, RequestRef, SharedError, TimerRef, VariableError,
};

type LogFn = unsafe extern "C" fn(*mut c_void, u32, ngx_proxy_wasm_str_t, u32, ngx_proxy_wasm_str_t);
type LogLevelFn = unsafe extern "C" fn(*mut c_void) -> u32;
type HeadersGetFn =
    unsafe extern "C" fn(*mut c_void, u32, *mut ngx_proxy_wasm_pair_t, usize, *mut usize) -> u32;
type HeaderGetFn =
    unsafe extern "C" fn(*mut c_void, u32, ngx_proxy_wasm_str_t, *mut ngx_proxy_wasm_str_t) -> u32;
type HeaderSetFn =
    unsafe extern "C" fn(*mut c_void, u32, u32, ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t) -> u32;
type AttributeGetFn = unsafe extern "C" fn(*mut c_void, u32, *mut ngx_proxy_wasm_value_t) -> u32;
type VariableGetFn =
    unsafe extern "C" fn(*mut c_void, ngx_proxy_wasm_str_t, *mut ngx_proxy_wasm_str_t) -> u32;
type VariableSetFn = unsafe extern "C" fn(*mut c_void, ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t) -> u32;
type ScheduleResumeFn = unsafe extern "C" fn(*mut c_void);
type TimerAddFn = unsafe extern "C" fn(u64, u64) -> *mut c_void;
type TimerCancelFn = unsafe extern "C" fn(*mut c_void);
type CallStartFn = unsafe extern "C" fn(
    *mut c_void,
    *const ngx_proxy_wasm_call_params_t,
    *mut ngx_proxy_wasm_str_t,
) -> *mut c_void;
type CallCancelFn = unsafe extern "C" fn(*mut c_void);
type KvGetFn = unsafe extern "C" fn(
    ngx_proxy_wasm_str_t,
    ngx_proxy_wasm_str_t,
    *mut u8,
    usize,
    *mut usize,
    *mut u32,
) -> u32;
type KvSetFn =
    unsafe extern "C" fn(ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t, u32) -> u32;
type QueueRegisterFn = unsafe extern "C" fn(ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t, *mut u32) -> u32;
type QueueResolveFn =
    unsafe extern "C" fn(ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t, *mut u32) -> u32;
type QueueEnqueueFn = unsafe extern "C" fn(ngx_proxy_wasm_str_t, u32, ngx_proxy_wasm_str_t) -> u32;
type QueueDequeueFn = unsafe extern "C" fn(ngx_proxy_wasm_str_t, u32, *mut u8, usize, *mut usize) -> u32;
type MetricDefineFn =
    unsafe extern "C" fn(u32, ngx_proxy_wasm_str_t, ngx_proxy_wasm_str_t, *mut *mut c_void) -> u32;
type MetricUpdateFn = unsafe extern "C" fn(*mut c_void, u32, i64);
type MetricGetFn = unsafe extern "C" fn(*mut c_void) -> u64;

pub struct NginxHost {
    log: LogFn,
    log_level: LogLevelFn,
    headers_get: HeadersGetFn,
    header_get: HeaderGetFn,
    header_set: HeaderSetFn,
    attribute_get: AttributeGetFn,
    variable_get: VariableGetFn,
    variable_set: VariableSetFn,
    static_property_get: VariableGetFn,
    schedule_resume: ScheduleResumeFn,
    timer_add: TimerAddFn,
    timer_cancel: TimerCancelFn,
    call_start: CallStartFn,
    call_cancel: CallCancelFn,
    kv_get: KvGetFn,
    kv_set: KvSetFn,
    queue_register: QueueRegisterFn,
    queue_resolve: QueueResolveFn,
    queue_enqueue: QueueEnqueueFn,
    queue_dequeue: QueueDequeueFn,
    metric_define: MetricDefineFn,
    metric_update: MetricUpdateFn,
    metric_get: MetricGetFn,
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
            attribute_get: table.attribute_get?,
            variable_get: table.variable_get?,
            variable_set: table.variable_set?,
            static_property_get: table.static_property_get?,
            schedule_resume: table.schedule_resume?,
            timer_add: table.timer_add?,
            timer_cancel: table.timer_cancel?,
            call_start: table.call_start?,
            call_cancel: table.call_cancel?,
            kv_get: table.kv_get?,
            kv_set: table.kv_set?,
            queue_register: table.queue_register?,
            queue_resolve: table.queue_resolve?,
            queue_enqueue: table.queue_enqueue?,
            queue_dequeue: table.queue_dequeue?,
            metric_define: table.metric_define?,
            metric_update: table.metric_update?,
            metric_get: table.metric_get?,
        };
        Some(HOST.get_or_init(|| host))
    }
}

/// The error of a shared-memory function's return code.
fn shared_error(rc: u32) -> SharedError {
    match rc {
        rc if rc == Rc::NGX_PROXY_WASM_HOST_NOT_FOUND as u32 => SharedError::NoZone,
        rc if rc == Rc::NGX_PROXY_WASM_HOST_MISMATCH as u32 => SharedError::CasMismatch,
        rc if rc == Rc::NGX_PROXY_WASM_HOST_FULL as u32 => SharedError::Full,
        rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => SharedError::TypeConflict,
        rc if rc == Rc::NGX_PROXY_WASM_HOST_DENIED as u32 => SharedError::Denied,
        _ => SharedError::Unavailable,
    }
}

/// Copies a value out of shared memory into `value` with `copy(buf, size,
/// len)`, growing `value` once the shim said how much it needs (AGAIN); the
/// code copy returned last.
fn copy_shared(value: &mut Vec<u8>, mut copy: impl FnMut(*mut u8, usize, &mut usize) -> u32) -> u32 {
    loop {
        value.clear();
        let mut len = 0;
        let rc = copy(value.as_mut_ptr(), value.capacity(), &mut len);
        if rc == Rc::NGX_PROXY_WASM_HOST_AGAIN as u32 {
            // another worker may change the value meanwhile: ask again
            value.reserve(len);
            continue;
        }
        if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 {
            // SAFETY: the shim wrote `len` (<= capacity) bytes.
            unsafe { value.set_len(len) };
        }
        return rc;
    }
}

fn request_ptr(request: Option<RequestRef>) -> *mut c_void {
    request.map_or(std::ptr::null_mut(), |r| r.0 as *mut c_void)
}

fn attribute_of(attribute: Attribute) -> u32 {
    (match attribute {
        Attribute::RequestTime => Attr::NGX_PROXY_WASM_ATTR_REQUEST_TIME,
        Attribute::RequestDuration => Attr::NGX_PROXY_WASM_ATTR_REQUEST_DURATION,
        Attribute::RequestProtocol => Attr::NGX_PROXY_WASM_ATTR_REQUEST_PROTOCOL,
        Attribute::RequestSize => Attr::NGX_PROXY_WASM_ATTR_REQUEST_SIZE,
        Attribute::RequestTotalSize => Attr::NGX_PROXY_WASM_ATTR_REQUEST_TOTAL_SIZE,
        Attribute::RequestId => Attr::NGX_PROXY_WASM_ATTR_REQUEST_ID,
        Attribute::ResponseCode => Attr::NGX_PROXY_WASM_ATTR_RESPONSE_CODE,
        Attribute::ResponseCodeDetails => Attr::NGX_PROXY_WASM_ATTR_RESPONSE_CODE_DETAILS,
        Attribute::ResponseSize => Attr::NGX_PROXY_WASM_ATTR_RESPONSE_SIZE,
        Attribute::ResponseTotalSize => Attr::NGX_PROXY_WASM_ATTR_RESPONSE_TOTAL_SIZE,
        Attribute::ResponseBackendLatency => Attr::NGX_PROXY_WASM_ATTR_RESPONSE_BACKEND_LATENCY,
        Attribute::SourceAddress => Attr::NGX_PROXY_WASM_ATTR_SOURCE_ADDRESS,
        Attribute::SourcePort => Attr::NGX_PROXY_WASM_ATTR_SOURCE_PORT,
        Attribute::DestinationAddress => Attr::NGX_PROXY_WASM_ATTR_DESTINATION_ADDRESS,
        Attribute::DestinationPort => Attr::NGX_PROXY_WASM_ATTR_DESTINATION_PORT,
        Attribute::ConnectionId => Attr::NGX_PROXY_WASM_ATTR_CONNECTION_ID,
        Attribute::ConnectionMtls => Attr::NGX_PROXY_WASM_ATTR_CONNECTION_MTLS,
        Attribute::ConnectionRequestedServerName => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_REQUESTED_SERVER_NAME
        }
        Attribute::ConnectionTlsVersion => Attr::NGX_PROXY_WASM_ATTR_CONNECTION_TLS_VERSION,
        Attribute::ConnectionSubjectLocalCertificate => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_LOCAL_CERTIFICATE
        }
        Attribute::ConnectionSubjectPeerCertificate => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_SUBJECT_PEER_CERTIFICATE
        }
        Attribute::ConnectionSha256PeerCertificateDigest => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_SHA256_PEER_CERTIFICATE_DIGEST
        }
        Attribute::ConnectionDnsSanLocalCertificate => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_LOCAL_CERTIFICATE
        }
        Attribute::ConnectionDnsSanPeerCertificate => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_DNS_SAN_PEER_CERTIFICATE
        }
        Attribute::ConnectionUriSanLocalCertificate => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_LOCAL_CERTIFICATE
        }
        Attribute::ConnectionUriSanPeerCertificate => {
            Attr::NGX_PROXY_WASM_ATTR_CONNECTION_URI_SAN_PEER_CERTIFICATE
        }
        Attribute::ConnectionPeerCertificate => Attr::NGX_PROXY_WASM_ATTR_CONNECTION_PEER_CERTIFICATE,
        Attribute::UpstreamAddress => Attr::NGX_PROXY_WASM_ATTR_UPSTREAM_ADDRESS,
        Attribute::UpstreamPort => Attr::NGX_PROXY_WASM_ATTR_UPSTREAM_PORT,
        Attribute::UpstreamTlsVersion => Attr::NGX_PROXY_WASM_ATTR_UPSTREAM_TLS_VERSION,
        Attribute::UpstreamRequestAttemptCount => Attr::NGX_PROXY_WASM_ATTR_UPSTREAM_REQUEST_ATTEMPT_COUNT,
    }) as u32
}

/// What a shim function that lends a string returned, as a lent value.
///
/// # Safety
/// On OK, `value` must point to memory that outlives the returned slice.
unsafe fn lent<'a>(rc: u32, value: ngx_proxy_wasm_str_t) -> Result<Option<&'a [u8]>, Status> {
    match rc {
        // SAFETY: guaranteed by the caller.
        rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(Some(unsafe { bytes(value) })),
        rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => Ok(None),
        _ => Err(Status::InternalFailure),
    }
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
        // SAFETY: the value points into the request's memory, unchanged
        // while `visit` runs (as in `with_headers`).
        visit(unsafe { lent(rc, value) }?)
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

    fn with_attribute(
        &self,
        request: RequestRef,
        attribute: Attribute,
        visit: &mut dyn FnMut(Option<Fact<'_>>) -> HostResult,
    ) -> HostResult {
        let mut value = ngx_proxy_wasm_value_t::default();
        // SAFETY: see above; `value` is a valid out-pointer.
        let rc =
            unsafe { (self.attribute_get)(request_ptr(Some(request)), attribute_of(attribute), &mut value) };
        if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 {
            return visit(None);
        }
        if rc != Rc::NGX_PROXY_WASM_HOST_OK as u32 {
            return Err(Status::InternalFailure);
        }
        let fact = match value.kind {
            k if k == Kind::NGX_PROXY_WASM_VALUE_INT as u32 => Fact::Int(value.integer),
            k if k == Kind::NGX_PROXY_WASM_VALUE_BOOL as u32 => Fact::Bool(value.integer != 0),
            // SAFETY: strings live in the request's pool, which outlives
            // this call.
            _ => Fact::String(unsafe { bytes(value.string) }),
        };
        visit(Some(fact))
    }

    fn with_variable(
        &self,
        request: RequestRef,
        name: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> Result<HostResult, VariableError> {
        let mut value = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above; `value` is a valid out-pointer.
        let rc = unsafe { (self.variable_get)(request_ptr(Some(request)), str_of(name), &mut value) };
        if rc == Rc::NGX_PROXY_WASM_HOST_NOT_FOUND as u32 {
            return Err(VariableError::Unknown);
        }
        // SAFETY: variable values live in the request's memory, unchanged
        // while `visit` runs (it cannot reach nginx).
        match unsafe { lent(rc, value) } {
            Ok(value) => Ok(visit(value)),
            Err(_) => Err(VariableError::Failed),
        }
    }

    fn set_variable(&self, request: RequestRef, name: &[u8], value: &[u8]) -> Result<(), VariableError> {
        // SAFETY: see above.
        let rc = unsafe { (self.variable_set)(request_ptr(Some(request)), str_of(name), str_of(value)) };
        match rc {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(()),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_NOT_FOUND as u32 => Err(VariableError::Unknown),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => Err(VariableError::ReadOnly),
            _ => Err(VariableError::Failed),
        }
    }

    fn with_static_property(
        &self,
        request: Option<RequestRef>,
        path: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        let mut value = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above; `value` is a valid out-pointer.
        let rc = unsafe { (self.static_property_get)(request_ptr(request), str_of(path), &mut value) };
        // SAFETY: values live in the configuration or the request's pool.
        visit(unsafe { lent(rc, value) }?)
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

    fn call_start(&self, request: Option<RequestRef>, params: &CallParams<'_>) -> Result<CallRef, String> {
        let raw = ngx_proxy_wasm_call_params_t {
            token: params.token.into(),
            target: str_of(params.target),
            data: str_of(params.data),
            timeout_ms: params
                .timeout
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
            tls: params.tls.is_some().into(),
            server_name: str_of(params.tls.unwrap_or_default()),
        };
        let mut err = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above; the shim copies what it keeps of the params,
        // and an error it returns is static text.
        let call = unsafe { (self.call_start)(request_ptr(request), &raw, &mut err) };
        if call.is_null() {
            // SAFETY: static text, per the shim's contract.
            return Err(String::from_utf8_lossy(unsafe { bytes(err) }).into_owned());
        }
        Ok(CallRef(call as usize))
    }

    fn call_cancel(&self, call: CallRef) {
        // SAFETY: `call` came from call_start and has not ended: the
        // worker forgets a call once it ended or was cancelled.
        unsafe { (self.call_cancel)(call.0 as *mut c_void) }
    }

    fn kv_get(&self, vm_id: &[u8], key: &[u8], value: &mut Vec<u8>) -> Result<Option<u32>, SharedError> {
        let mut cas = 0;
        let rc = copy_shared(value, |buf, size, len| {
            // SAFETY: `buf` has room for `size` bytes; the out-pointers are
            // valid; the shim copies under the zone's lock.
            unsafe { (self.kv_get)(str_of(vm_id), str_of(key), buf, size, len, &mut cas) }
        });
        match rc {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(Some(cas)),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => Ok(None),
            rc => Err(shared_error(rc)),
        }
    }

    fn kv_set(&self, vm_id: &[u8], key: &[u8], value: &[u8], cas: u32) -> Result<(), SharedError> {
        // SAFETY: plain byte strings in, copied by the shim.
        match unsafe { (self.kv_set)(str_of(vm_id), str_of(key), str_of(value), cas) } {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(()),
            rc => Err(shared_error(rc)),
        }
    }

    fn queue_register(&self, vm_id: &[u8], name: &[u8]) -> Result<u32, SharedError> {
        let mut token = 0;
        // SAFETY: see kv_set; `token` is a valid out-pointer.
        match unsafe { (self.queue_register)(str_of(vm_id), str_of(name), &mut token) } {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(token),
            rc => Err(shared_error(rc)),
        }
    }

    fn queue_resolve(&self, vm_id: &[u8], owner: &[u8], name: &[u8]) -> Result<Option<u32>, SharedError> {
        let mut token = 0;
        // SAFETY: see queue_register.
        match unsafe { (self.queue_resolve)(str_of(vm_id), str_of(owner), str_of(name), &mut token) } {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(Some(token)),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_NOT_FOUND as u32 => Ok(None),
            rc => Err(shared_error(rc)),
        }
    }

    fn queue_enqueue(&self, vm_id: &[u8], token: u32, value: &[u8]) -> Result<(), SharedError> {
        // SAFETY: see kv_set.
        match unsafe { (self.queue_enqueue)(str_of(vm_id), token, str_of(value)) } {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(()),
            rc => Err(shared_error(rc)),
        }
    }

    fn queue_dequeue(&self, vm_id: &[u8], token: u32, value: &mut Vec<u8>) -> Result<bool, SharedError> {
        let rc = copy_shared(value, |buf, size, len| {
            // SAFETY: see kv_get.
            unsafe { (self.queue_dequeue)(str_of(vm_id), token, buf, size, len) }
        });
        match rc {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(true),
            rc if rc == Rc::NGX_PROXY_WASM_HOST_DECLINED as u32 => Ok(false),
            rc => Err(shared_error(rc)),
        }
    }

    fn metric_define(&self, kind: MetricType, filter: &str, name: &[u8]) -> Result<MetricRef, SharedError> {
        let mut metric = std::ptr::null_mut();
        // SAFETY: see kv_set; `metric` is a valid out-pointer.
        match unsafe {
            (self.metric_define)(kind as u32, str_of(filter.as_bytes()), str_of(name), &mut metric)
        } {
            rc if rc == Rc::NGX_PROXY_WASM_HOST_OK as u32 => Ok(MetricRef(metric as usize)),
            rc => Err(shared_error(rc)),
        }
    }

    fn metric_update(&self, metric: MetricRef, op: MetricOp, value: i64) {
        let op = match op {
            MetricOp::Add => MetricOpC::NGX_PROXY_WASM_METRIC_ADD,
            MetricOp::Set => MetricOpC::NGX_PROXY_WASM_METRIC_SET,
            MetricOp::Observe => MetricOpC::NGX_PROXY_WASM_METRIC_OBSERVE,
        };
        // SAFETY: `metric` came from metric_define (or is 0, which the shim
        // ignores); metrics live as long as their zone.
        unsafe { (self.metric_update)(metric.0 as *mut c_void, op as u32, value) }
    }

    fn metric_get(&self, metric: MetricRef) -> u64 {
        // SAFETY: see metric_update.
        unsafe { (self.metric_get)(metric.0 as *mut c_void) }
    }
}
