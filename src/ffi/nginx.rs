//! The `Host` nginx provides: the C shim's function table, behind the
//! `Host` trait.

use std::ffi::c_void;
use std::time::Duration;

use super::{bytes, str_of};
use crate::abi::pairs::Pair;
use crate::abi::{HostResult, LogLevel, Status};
use crate::host::prelude::*;
use crate::host::{
    Attribute, CallParams, CallRef, Fact, HeaderError, HeaderMap, HeaderOp, KvState, MetricRef, MetricType,
    NoRoom, QueueState, RequestRef, StoredMetric, TimerRef, VariableError, Wake, ZoneRef,
};
use crate::sys::{
    ngx_proxy_wasm_call_params_t, ngx_proxy_wasm_host_t, ngx_proxy_wasm_metric_found_t,
    ngx_proxy_wasm_pair_t, ngx_proxy_wasm_str_t, ngx_proxy_wasm_value_t, Change, List, Lookup, Store,
    UnknownValue, ValueKind, Variable,
};

/// The shim's table (a static of the nginx module), checked to have every
/// function.
#[repr(transparent)]
pub struct Nginx(ngx_proxy_wasm_host_t);

/// A function of the shim's table.
macro_rules! shim {
    ($nginx:expr, $f:ident) => {
        match $nginx.0.$f {
            Some(f) => f,
            None => unreachable!(concat!("Nginx::of checked that the table has ", stringify!($f))),
        }
    };
}

/// Header maps this small are lent from the stack.
const STACK_PAIRS: usize = 64;

impl Nginx {
    /// The host of the shim's table; None if the table lacks a function.
    pub fn of(table: &'static ngx_proxy_wasm_host_t) -> Option<&'static Nginx> {
        // every field named: a function added to the table must be checked
        let ngx_proxy_wasm_host_t {
            log: Some(_),
            log_level: Some(_),
            headers_get: Some(_),
            header_get: Some(_),
            header_set: Some(_),
            attribute_get: Some(_),
            variable_get: Some(_),
            variable_set: Some(_),
            static_property_get: Some(_),
            host_property_get: Some(_),
            host_property_set: Some(_),
            schedule_resume: Some(_),
            timer_add: Some(_),
            timer_hold: Some(_),
            timer_cancel: Some(_),
            call_start: Some(_),
            call_cancel: Some(_),
            call_send: Some(_),
            zone_lock: Some(_),
            zone_unlock: Some(_),
            kv_state: Some(_),
            kv_read: Some(_),
            kv_cas: Some(_),
            kv_write: Some(_),
            queue_state: Some(_),
            queue_push: Some(_),
            queue_peek: Some(_),
            queue_drop: Some(_),
            queue_len: Some(_),
            worker_pid: Some(_),
            wakeup_listen: Some(_),
            wake: Some(_),
            metric_find_or_add: Some(_),
            metric_add: Some(_),
            metric_store: Some(_),
            metric_load: Some(_),
        } = table
        else {
            return None;
        };
        // SAFETY: Nginx is a transparent wrapper of the table.
        Some(unsafe { &*(table as *const ngx_proxy_wasm_host_t as *const Nginx) })
    }

    /// A value of a boundary enum the shim passed or returned; one this
    /// library does not know is logged and taken as a failure.
    pub(super) fn decode<T: TryFrom<u32, Error = UnknownValue>>(&self, raw: u32) -> Option<T> {
        match T::try_from(raw) {
            Ok(value) => Some(value),
            Err(unknown) => {
                let message = format!("the nginx module sent an {unknown}: it does not match this library");
                self.log(None, LogLevel::Critical, "ngx_proxy_wasm", 0, message.as_bytes());
                None
            }
        }
    }

    /// What a shim function that lends a string returned, as a lent value.
    ///
    /// # Safety
    /// On FOUND, `value` must point to memory that outlives the returned
    /// slice.
    unsafe fn lent<'a>(&self, rc: u32, value: ngx_proxy_wasm_str_t) -> Result<Option<&'a [u8]>, Status> {
        match self.decode(rc) {
            // SAFETY: guaranteed by the caller.
            Some(Lookup::Found) => Ok(Some(unsafe { bytes(value) })),
            Some(Lookup::Absent) => Ok(None),
            Some(Lookup::Error) | None => Err(Status::InternalFailure),
        }
    }
}

fn request_ptr(request: Option<RequestRef>) -> *mut c_void {
    request.map_or(std::ptr::null_mut(), |r| r.0 as *mut c_void)
}

// SAFETY (for every call of the shim's functions below): they accept a
// null request or one handed over by `chain_new`, which stays valid while
// its chain exists; chains are freed by the request's pool cleanup.
// Strings passed in are borrowed for the duration of the call only.

impl Logging for Nginx {
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
            shim!(self, log)(
                request_ptr(request),
                level.into(),
                str_of(filter.as_bytes()),
                context_id,
                str_of(message),
            )
        }
    }

    fn log_level(&self, request: Option<RequestRef>) -> LogLevel {
        // SAFETY: see above.
        let raw = unsafe { shim!(self, log_level)(request_ptr(request)) };
        self.decode(raw).unwrap_or(LogLevel::Critical)
    }
}

impl Headers for Nginx {
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
        let headers_get = shim!(self, headers_get);
        // SAFETY: see above; the array holds STACK_PAIRS entries.
        let mut rc =
            self.decode(unsafe { headers_get(request, map.into(), stack.as_mut_ptr(), STACK_PAIRS, &mut n) });
        let raw: &[ngx_proxy_wasm_pair_t] = if rc == Some(List::TooSmall) {
            heap.resize(n, empty);
            // SAFETY: see above; the vector holds n entries.
            rc = self.decode(unsafe { headers_get(request, map.into(), heap.as_mut_ptr(), n, &mut n) });
            &heap[..n.min(heap.len())]
        } else {
            &stack[..n.min(STACK_PAIRS)]
        };
        if rc != Some(List::Done) {
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
            shim!(self, headers_get)(
                request_ptr(Some(request)),
                map.into(),
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
        // SAFETY: see above; `value` is written on FOUND only.
        let rc = unsafe {
            shim!(self, header_get)(request_ptr(Some(request)), map.into(), str_of(name), &mut value)
        };
        // SAFETY: the value points into the request's memory, unchanged
        // while `visit` runs (as in `with_headers`).
        visit(unsafe { self.lent(rc, value) }?)
    }

    fn set_header(
        &self,
        request: RequestRef,
        map: HeaderMap,
        op: HeaderOp,
        key: &[u8],
        value: &[u8],
    ) -> Result<(), HeaderError> {
        // SAFETY: see above.
        let rc = unsafe {
            shim!(self, header_set)(
                request_ptr(Some(request)),
                map.into(),
                op.into(),
                str_of(key),
                str_of(value),
            )
        };
        match self.decode(rc) {
            Some(Change::Done) => Ok(()),
            Some(Change::ReadOnly) => Err(HeaderError::ReadOnly),
            Some(Change::Unknown | Change::Error) | None => Err(HeaderError::Failed),
        }
    }
}

impl Properties for Nginx {
    fn with_attribute(
        &self,
        request: RequestRef,
        attribute: Attribute,
        visit: &mut dyn FnMut(Option<Fact<'_>>) -> HostResult,
    ) -> HostResult {
        let mut value = ngx_proxy_wasm_value_t::default();
        // SAFETY: see above; `value` is a valid out-pointer.
        let rc =
            unsafe { shim!(self, attribute_get)(request_ptr(Some(request)), attribute.into(), &mut value) };
        match self.decode(rc) {
            Some(Lookup::Found) => {}
            Some(Lookup::Absent) => return visit(None),
            Some(Lookup::Error) | None => return Err(Status::InternalFailure),
        }
        let fact = match self.decode(value.kind).ok_or(Status::InternalFailure)? {
            ValueKind::Int => Fact::Int(value.integer),
            ValueKind::Bool => Fact::Bool(value.integer != 0),
            // SAFETY: strings live in the request's pool, which outlives
            // this call.
            ValueKind::String => Fact::String(unsafe { bytes(value.string) }),
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
        let rc = unsafe { shim!(self, variable_get)(request_ptr(Some(request)), str_of(name), &mut value) };
        match self.decode(rc) {
            // SAFETY: variable values live in the request's memory,
            // unchanged while `visit` runs (it cannot reach nginx).
            Some(Variable::Found) => Ok(visit(Some(unsafe { bytes(value) }))),
            Some(Variable::NoValue) => Ok(visit(None)),
            Some(Variable::Unknown) => Err(VariableError::Unknown),
            Some(Variable::Error) | None => Err(VariableError::Failed),
        }
    }

    fn set_variable(&self, request: RequestRef, name: &[u8], value: &[u8]) -> Result<(), VariableError> {
        // SAFETY: see above.
        let rc =
            unsafe { shim!(self, variable_set)(request_ptr(Some(request)), str_of(name), str_of(value)) };
        match self.decode(rc) {
            Some(Change::Done) => Ok(()),
            Some(Change::Unknown) => Err(VariableError::Unknown),
            Some(Change::ReadOnly) => Err(VariableError::ReadOnly),
            Some(Change::Error) | None => Err(VariableError::Failed),
        }
    }

    fn with_static_property(
        &self,
        request: Option<RequestRef>,
        key: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        let mut value = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above; `value` is a valid out-pointer.
        let rc = unsafe { shim!(self, static_property_get)(request_ptr(request), str_of(key), &mut value) };
        // SAFETY: values live in the configuration or the request's pool.
        visit(unsafe { self.lent(rc, value) }?)
    }

    fn with_host_property(
        &self,
        request: Option<RequestRef>,
        path: &[u8],
        visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult,
    ) -> HostResult {
        let mut value = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above; `value` is a valid out-pointer.
        let rc = unsafe { shim!(self, host_property_get)(request_ptr(request), str_of(path), &mut value) };
        // SAFETY: the shim keeps the value until its next call.
        visit(unsafe { self.lent(rc, value) }?)
    }

    fn set_host_property(
        &self,
        request: Option<RequestRef>,
        path: &[u8],
        value: &[u8],
    ) -> Result<(), VariableError> {
        // SAFETY: see above.
        let rc = unsafe { shim!(self, host_property_set)(request_ptr(request), str_of(path), str_of(value)) };
        match self.decode(rc) {
            Some(Change::Done) => Ok(()),
            Some(Change::ReadOnly) => Err(VariableError::ReadOnly),
            Some(Change::Unknown) => Err(VariableError::Unknown),
            Some(Change::Error) | None => Err(VariableError::Failed),
        }
    }
}

impl RequestFlow for Nginx {
    fn schedule_resume(&self, request: RequestRef) {
        // SAFETY: see above.
        unsafe { shim!(self, schedule_resume)(request_ptr(Some(request))) }
    }
}

impl Timers for Nginx {
    fn timer_add(&self, delay: Duration, token: u64) -> Option<TimerRef> {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: plain values in; the shim owns the timer it returns.
        let timer = unsafe { shim!(self, timer_add)(token, delay_ms) };
        (!timer.is_null()).then_some(TimerRef(timer as usize))
    }

    fn timer_hold(&self, delay: Duration, token: u64) -> Option<TimerRef> {
        let delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        // SAFETY: as timer_add.
        let timer = unsafe { shim!(self, timer_hold)(token, delay_ms) };
        (!timer.is_null()).then_some(TimerRef(timer as usize))
    }

    fn timer_cancel(&self, timer: TimerRef) {
        // SAFETY: `timer` came from timer_add or timer_hold and has not fired: the
        // worker forgets a timer once it fired or was cancelled.
        unsafe { shim!(self, timer_cancel)(timer.0 as *mut c_void) }
    }
}

impl HttpCalls for Nginx {
    fn call_start(&self, request: Option<RequestRef>, params: &CallParams<'_>) -> Result<CallRef, String> {
        let raw = ngx_proxy_wasm_call_params_t {
            token: params.token,
            target: str_of(params.target),
            data: str_of(params.data),
            timeout_ms: params
                .timeout
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX).max(1)),
            tls: params.tls.is_some().into(),
            server_name: str_of(params.tls.unwrap_or_default()),
            duplex: params.duplex.into(),
        };
        let mut err = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above; the shim copies what it keeps of the params,
        // and an error it returns is static text.
        let call = unsafe { shim!(self, call_start)(request_ptr(request), &raw, &mut err) };
        if call.is_null() {
            // SAFETY: static text, per the shim's contract.
            return Err(String::from_utf8_lossy(unsafe { bytes(err) }).into_owned());
        }
        Ok(CallRef(call as usize))
    }

    fn call_cancel(&self, call: CallRef) {
        // SAFETY: `call` came from call_start and has not ended: the
        // worker forgets a call once it ended or was cancelled.
        unsafe { shim!(self, call_cancel)(call.0 as *mut c_void) }
    }

    fn call_send(&self, call: CallRef, data: &[u8]) -> bool {
        // SAFETY: `call` came from call_start (duplex) and has not ended;
        // the shim copies the bytes it cannot send at once.
        unsafe { shim!(self, call_send)(call.0 as *mut c_void, str_of(data)) == 0 }
    }
}

impl SharedMemory for Nginx {
    fn with_zone(&self, zone: ZoneRef, f: &mut dyn FnMut(&mut dyn LockedZone)) -> bool {
        // SAFETY: plain values in; the shim returns the zone locked, or
        // NULL.
        let handle = unsafe { shim!(self, zone_lock)(zone.kind.into(), zone.index) };
        if handle.is_null() {
            return false;
        }
        let mut locked = Locked {
            nginx: self,
            zone: handle,
        };
        f(&mut locked);
        // `locked` unlocks when dropped, a panic of `f` included
        true
    }

    fn worker_pid(&self) -> i64 {
        // SAFETY: no arguments.
        unsafe { shim!(self, worker_pid)() }
    }

    fn wakeup_listen(&self) -> bool {
        // SAFETY: no arguments.
        unsafe { shim!(self, wakeup_listen)() == 0 }
    }

    fn wake(&self, pid: i64, queue: &[u8]) -> Wake {
        // SAFETY: plain values in; the name is borrowed for the call.
        let rc = unsafe { shim!(self, wake)(pid, str_of(queue)) };
        self.decode(rc).unwrap_or(Wake::Failed)
    }
}

/// A zone the shim locked; unlocked when dropped.
struct Locked<'a> {
    nginx: &'a Nginx,
    zone: *mut c_void,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        // SAFETY: the zone was locked by zone_lock, once.
        unsafe { shim!(self.nginx, zone_unlock)(self.zone) }
    }
}

// SAFETY (for every call below): `self.zone` is locked until `self` is
// dropped; what the shim lends points into the zone and is copied before
// the lock is released; the states it returns live in the zone (as long as
// the configuration), and the borrow of `self` keeps them to the lock.
impl LockedZone for Locked<'_> {
    fn kv_state(&mut self) -> &mut KvState {
        // SAFETY: see above; a key-value zone always has its state.
        unsafe { &mut *shim!(self.nginx, kv_state)(self.zone) }
    }

    fn kv_read(&mut self, key: &[u8], out: &mut Vec<u8>) -> Option<u32> {
        let mut value = ngx_proxy_wasm_str_t::default();
        let mut cas = 0;
        // SAFETY: see above.
        let rc = unsafe { shim!(self.nginx, kv_read)(self.zone, str_of(key), &mut value, &mut cas) };
        // SAFETY: see above.
        let value = unsafe { self.nginx.lent(rc, value) }.ok()??;
        out.clear();
        out.extend_from_slice(value);
        Some(cas)
    }

    fn kv_cas(&mut self, key: &[u8]) -> Option<u32> {
        let mut cas = 0;
        // SAFETY: see above.
        let rc = unsafe { shim!(self.nginx, kv_cas)(self.zone, str_of(key), &mut cas) };
        (self.nginx.decode(rc) == Some(Lookup::Found)).then_some(cas)
    }

    fn kv_write(&mut self, key: &[u8], namespace: usize, value: &[u8], cas: u32) -> bool {
        // SAFETY: see above; the shim copies the key and the value.
        let rc =
            unsafe { shim!(self.nginx, kv_write)(self.zone, str_of(key), namespace, str_of(value), cas) };
        self.nginx.decode(rc) == Some(Store::Done)
    }

    fn queue_state(&mut self) -> &mut QueueState {
        // SAFETY: see above; a queue zone always has its state.
        unsafe { &mut *shim!(self.nginx, queue_state)(self.zone) }
    }

    fn queue_push(&mut self, item: &[u8]) -> bool {
        // SAFETY: see above; the shim copies the item.
        let rc = unsafe { shim!(self.nginx, queue_push)(self.zone, str_of(item)) };
        self.nginx.decode(rc) == Some(Store::Done)
    }

    fn queue_pop(&mut self, out: &mut Vec<u8>) -> bool {
        let mut item = ngx_proxy_wasm_str_t::default();
        // SAFETY: see above.
        let rc = unsafe { shim!(self.nginx, queue_peek)(self.zone, &mut item) };
        // SAFETY: see above.
        let Ok(Some(item)) = (unsafe { self.nginx.lent(rc, item) }) else {
            return false;
        };
        out.clear();
        out.extend_from_slice(item);
        // SAFETY: see above; the item was copied.
        unsafe { shim!(self.nginx, queue_drop)(self.zone) };
        true
    }

    fn queue_len(&mut self) -> usize {
        // SAFETY: see above.
        unsafe { shim!(self.nginx, queue_len)(self.zone) }
    }
}

impl Metrics for Nginx {
    fn metric_find_or_add(
        &self,
        name: &[u8],
        kind: MetricType,
        owner: &str,
        slots: usize,
    ) -> Result<Option<StoredMetric>, NoRoom> {
        let mut found = ngx_proxy_wasm_metric_found_t::default();
        // SAFETY: byte strings in, copied by the shim; `found` is a valid
        // out-pointer; the owner it lends lives in the metrics zone.
        let rc = unsafe {
            shim!(self, metric_find_or_add)(
                str_of(name),
                kind.into(),
                str_of(owner.as_bytes()),
                slots,
                &mut found,
            )
        };
        match self.decode(rc) {
            Some(Store::Done) => {}
            Some(Store::Unmapped) => return Ok(None),
            Some(Store::Full) | None => return Err(NoRoom),
        }
        let kind = self.decode(found.type_).ok_or(NoRoom)?;
        Ok(Some(StoredMetric {
            metric: MetricRef(found.metric as usize),
            kind,
            // SAFETY: see above.
            owner: unsafe { bytes(found.owner) }.to_vec(),
        }))
    }

    fn metric_add(&self, metric: MetricRef, slot: usize, delta: u64) {
        // SAFETY: `metric` came from metric_find_or_add; metrics live as
        // long as their zone; the shim checks the slot.
        unsafe { shim!(self, metric_add)(metric.0 as *mut c_void, slot, delta) }
    }

    fn metric_store(&self, metric: MetricRef, slot: usize, value: u64) {
        // SAFETY: see metric_add.
        unsafe { shim!(self, metric_store)(metric.0 as *mut c_void, slot, value) }
    }

    fn metric_load(&self, metric: MetricRef, slot: usize) -> u64 {
        // SAFETY: see metric_add.
        unsafe { shim!(self, metric_load)(metric.0 as *mut c_void, slot) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn no_pid() -> i64 {
        0
    }

    #[test]
    fn a_table_without_every_function_is_refused() {
        let empty: &'static ngx_proxy_wasm_host_t = Box::leak(Box::default());
        assert!(Nginx::of(empty).is_none());
        let one: &'static ngx_proxy_wasm_host_t = Box::leak(Box::new(ngx_proxy_wasm_host_t {
            worker_pid: Some(no_pid),
            ..Default::default()
        }));
        assert!(Nginx::of(one).is_none());
    }
}
