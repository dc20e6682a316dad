//! The entries of the API table that the proxy's own code reaches through
//! the shim (the Lua API): properties of a request as its filters see
//! them, the namespace of properties Lua serves, and shared memory acting
//! for a module. No guest code runs here.

use std::ffi::c_void;

use super::api::{chain, guard, runtime, RuntimeBox};
use super::{bytes, str_of};
use crate::abi::{self, Status};
use crate::host::{MetricType, RequestRef};
use crate::runtime::hostcalls::properties::{self, ProxyScope, SetError};
use crate::runtime::services::Services;
use crate::shared::metrics::DefineError;
use crate::shared::{kv, queues, SharedError};
use crate::sys::{
    ngx_proxy_wasm_chain_t, ngx_proxy_wasm_runtime_t, ngx_proxy_wasm_str_t, Lookup, MetricOp, Shared,
};

/// Runs `body` with the worker's services; an error without a running
/// runtime.
fn with_services<R>(
    rt: &mut RuntimeBox,
    err: *mut ngx_proxy_wasm_str_t,
    fallback: R,
    body: impl FnOnce(&Services, &mut Vec<u8>) -> Result<R, String>,
) -> R {
    let outcome = match rt.runtime.as_mut() {
        Some(runtime) => {
            let worker = runtime.worker();
            body(worker.services(), &mut rt.lent)
        }
        None => Err("no wasm{} block is configured".to_string()),
    };
    outcome.unwrap_or_else(|why| {
        rt.fail(err, &why);
        fallback
    })
}

/// What went wrong with shared memory, for the caller's message.
fn shared_error(what: &str, name: &[u8], error: SharedError) -> String {
    let why = match error {
        SharedError::NoZone => "no zone of wasm{} holds it",
        SharedError::Denied => "its zone is not given to this module (share=), or another module owns it",
        SharedError::Full => "its zone is full",
        SharedError::TypeConflict => "the name has another type",
        SharedError::CasMismatch => "the CAS is not the stored one",
        SharedError::Unavailable => "no shared memory",
    };
    format!("{what} \"{}\": {why}", String::from_utf8_lossy(name))
}

/// Sets the first segment of the paths Lua serves.
pub(super) unsafe extern "C" fn host_properties_namespace(
    rt: *mut ngx_proxy_wasm_runtime_t,
    namespace: ngx_proxy_wasm_str_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> i32 {
    // SAFETY: the shim passes its runtime, a string valid for the call and
    // a valid out-pointer.
    let (rt, namespace) = unsafe { (runtime(rt), bytes(namespace)) };
    guard(Some(rt.host), "host_properties_namespace", -1, || {
        if let Err(why) = abi::properties::check_host_namespace(namespace) {
            return rt.fail(err, why);
        }
        with_services(rt, err, -1, |services, _| {
            *services.host_namespace.borrow_mut() = namespace.to_vec();
            Ok(0)
        })
    })
}

/// The scope of a request (and of its chain, when it has one).
///
/// # Safety
/// `request` is null or a live request; `c` is null or a live chain.
unsafe fn scope(rt: &RuntimeBox, request: *mut c_void, c: *mut ngx_proxy_wasm_chain_t) -> ProxyScope {
    ProxyScope {
        host: rt.host,
        request: (!request.is_null()).then_some(RequestRef(request as usize)),
        // SAFETY: guaranteed by the caller.
        state: (!c.is_null()).then(|| unsafe { chain(c) }.chain.state().clone()),
    }
}

pub(super) unsafe extern "C" fn property_get(
    rt: *mut ngx_proxy_wasm_runtime_t,
    request: *mut c_void,
    c: *mut ngx_proxy_wasm_chain_t,
    path: ngx_proxy_wasm_str_t,
    value: *mut ngx_proxy_wasm_str_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime, a live request (or null), its
    // chain (or null), a path valid for the call and valid out-pointers.
    let (rt, path, value) = unsafe { (runtime(rt), bytes(path), &mut *value) };
    // SAFETY: as above.
    let scope = unsafe { scope(rt, request, c) };
    let found = guard(Some(rt.host), "property_get", Lookup::Error, || {
        rt.lent.clear();
        match properties::get(&scope, path, &mut rt.lent) {
            Ok(()) => Lookup::Found,
            Err(Status::NotFound) => Lookup::Absent,
            Err(status) => {
                rt.fail(err, &format!("cannot read it: {status:?}"));
                Lookup::Error
            }
        }
    });
    if found == Lookup::Found {
        // lent until the next call on the runtime
        *value = str_of(&rt.lent);
    }
    found.into()
}

pub(super) unsafe extern "C" fn property_set(
    rt: *mut ngx_proxy_wasm_runtime_t,
    request: *mut c_void,
    c: *mut ngx_proxy_wasm_chain_t,
    path: ngx_proxy_wasm_str_t,
    value: ngx_proxy_wasm_str_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> i32 {
    // SAFETY: as in property_get.
    let (rt, path, value) = unsafe { (runtime(rt), bytes(path), bytes(value)) };
    // SAFETY: as in property_get.
    let mut scope = unsafe { scope(rt, request, c) };
    guard(Some(rt.host), "property_set", -1, || {
        match properties::set(&mut scope, path, value) {
            Ok(()) => 0,
            Err(SetError::NoRequest) => rt.fail(err, "no filter chain runs for this request to store it"),
            Err(e) => rt.fail(err, &e.to_string()),
        }
    })
}

pub(super) unsafe extern "C" fn kv_get(
    rt: *mut ngx_proxy_wasm_runtime_t,
    owner: ngx_proxy_wasm_str_t,
    key: ngx_proxy_wasm_str_t,
    value: *mut ngx_proxy_wasm_str_t,
    cas: *mut u32,
    err: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime, strings valid for the call and
    // valid out-pointers.
    let (rt, owner, key, value, cas) =
        unsafe { (runtime(rt), bytes(owner), bytes(key), &mut *value, &mut *cas) };
    let host = rt.host;
    let outcome = guard(Some(host), "kv_get", Shared::Error, || {
        with_services(rt, err, Shared::Error, |services, lent| {
            lent.clear();
            match kv::get(host, &services.zones, owner, key, lent) {
                Ok(Some(found)) => {
                    *cas = found;
                    Ok(Shared::Done)
                }
                Ok(None) => Ok(Shared::Absent),
                Err(e) => Err(shared_error("key", key, e)),
            }
        })
    });
    if outcome == Shared::Done {
        *value = str_of(&rt.lent);
    }
    outcome.into()
}

pub(super) unsafe extern "C" fn kv_set(
    rt: *mut ngx_proxy_wasm_runtime_t,
    owner: ngx_proxy_wasm_str_t,
    key: ngx_proxy_wasm_str_t,
    value: ngx_proxy_wasm_str_t,
    cas: u32,
    err: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime and strings valid for the call.
    let (rt, owner, key, value) = unsafe { (runtime(rt), bytes(owner), bytes(key), bytes(value)) };
    let host = rt.host;
    guard(Some(host), "kv_set", Shared::Error, || {
        with_services(rt, err, Shared::Error, |services, _| {
            match kv::set(host, &services.zones, owner, key, value, cas) {
                Ok(()) => Ok(Shared::Done),
                Err(SharedError::CasMismatch) => Ok(Shared::CasMismatch),
                Err(e) => Err(shared_error("key", key, e)),
            }
        })
    })
    .into()
}

pub(super) unsafe extern "C" fn queue_enqueue(
    rt: *mut ngx_proxy_wasm_runtime_t,
    owner: ngx_proxy_wasm_str_t,
    queue_owner: ngx_proxy_wasm_str_t,
    name: ngx_proxy_wasm_str_t,
    item: ngx_proxy_wasm_str_t,
    err: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime and strings valid for the call.
    let (rt, owner, queue_owner, name, item) = unsafe {
        (
            runtime(rt),
            bytes(owner),
            bytes(queue_owner),
            bytes(name),
            bytes(item),
        )
    };
    let host = rt.host;
    guard(Some(host), "queue_enqueue", Shared::Error, || {
        with_services(rt, err, Shared::Error, |services, _| {
            let zones = &services.zones;
            let token = match queue_owner.is_empty() {
                // whoever registered it
                true => zones.queue_by_name(name).map(|(token, _)| token),
                false => queues::resolve(host, zones, owner, queue_owner, name)
                    .map_err(|e| shared_error("queue", name, e))?,
            };
            let Some(token) = token else {
                return Ok(Shared::Absent);
            };
            match queues::enqueue(host, zones, owner, token, item) {
                Ok(()) => Ok(Shared::Done),
                Err(e) => Err(shared_error("queue", name, e)),
            }
        })
    })
    .into()
}

pub(super) unsafe extern "C" fn metric_define(
    rt: *mut ngx_proxy_wasm_runtime_t,
    owner: ngx_proxy_wasm_str_t,
    raw_type: u32,
    name: ngx_proxy_wasm_str_t,
    id: *mut u32,
    err: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime, strings valid for the call and
    // a valid out-pointer.
    let (rt, owner, name, id) = unsafe { (runtime(rt), bytes(owner), bytes(name), &mut *id) };
    let host = rt.host;
    guard(Some(host), "metric_define", Shared::Error, || {
        let Some(kind) = host.decode::<MetricType>(raw_type) else {
            rt.fail(err, "no such metric type");
            return Shared::Error;
        };
        let owner: std::sync::Arc<str> = String::from_utf8_lossy(owner).into();
        with_services(rt, err, Shared::Error, |services, _| {
            if name.is_empty() {
                return Err("a metric needs a name".into());
            }
            match services.metrics.borrow_mut().define(host, kind, &owner, name) {
                Ok(defined) => {
                    *id = defined;
                    Ok(Shared::Done)
                }
                Err(DefineError::TooLong(max)) => Err(format!(
                    "metric \"{}\": the name with its prefix is longer than {max} (max_metric_name_length)",
                    String::from_utf8_lossy(name)
                )),
                Err(DefineError::Host(e)) => Err(shared_error("metric", name, e)),
            }
        })
    })
    .into()
}

pub(super) unsafe extern "C" fn metric_apply(
    rt: *mut ngx_proxy_wasm_runtime_t,
    owner: ngx_proxy_wasm_str_t,
    id: u32,
    raw_op: u32,
    arg: i64,
    value: *mut u64,
    err: *mut ngx_proxy_wasm_str_t,
) -> u32 {
    // SAFETY: the shim passes its runtime, a string valid for the call and
    // a valid out-pointer.
    let (rt, owner, value) = unsafe { (runtime(rt), bytes(owner), &mut *value) };
    let host = rt.host;
    guard(Some(host), "metric_apply", Shared::Error, || {
        let Some(op) = host.decode::<MetricOp>(raw_op) else {
            rt.fail(err, "no such metric operation");
            return Shared::Error;
        };
        let owner = String::from_utf8_lossy(owner);
        with_services(rt, err, Shared::Error, |services, _| {
            let Some(metric) = services.metrics.borrow().lookup(&owner, id) else {
                return Ok(Shared::Absent);
            };
            match op {
                MetricOp::Increment => metric
                    .increment(host, arg)
                    .map_err(|_| "a counter only goes up (and by more than 0)".to_string())?,
                MetricOp::Record => metric.record(host, arg),
                MetricOp::Get => *value = metric.get(host).map_err(|_| "no shared memory".to_string())?,
            }
            Ok(Shared::Done)
        })
    })
    .into()
}
