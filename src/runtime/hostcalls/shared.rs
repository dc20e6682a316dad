//! `env.proxy_*` of what filters share across workers: the key-value
//! store, queues and metrics. The host keeps them in shared memory; the
//! rules of the ABI (and Envoy's answers to bad calls) are applied here.

use wasmtime::{Caller, Linker};

use super::{check_out_pointers, copy_out, host_fn, read_bytes, store_u32, store_u64, with_scratch, Outcome};
use crate::abi::{LogLevel, Status};
use crate::host::MetricType;
use crate::runtime::state::HostState;
use crate::shared::metrics::{DefineError, Metric};
use crate::shared::queues::{self, Subscriber};
use crate::shared::{kv, SharedError};

type Result = Outcome<Status>;
type Call<'a, 'b> = &'a mut Caller<'b, HostState>;

pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host_fn!(linker, "env", "proxy_get_shared_data", get_shared_data,
        (key_ptr: i32, key_len: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32));
    host_fn!(linker, "env", "proxy_set_shared_data", set_shared_data,
        (key_ptr: i32, key_len: i32, value_ptr: i32, value_len: i32, cas: i32));
    host_fn!(linker, "env", "proxy_register_shared_queue", register_shared_queue,
        (name_ptr: i32, name_len: i32, ret_id: i32));
    host_fn!(linker, "env", "proxy_resolve_shared_queue", resolve_shared_queue,
        (vm_id_ptr: i32, vm_id_len: i32, name_ptr: i32, name_len: i32, ret_id: i32));
    host_fn!(linker, "env", "proxy_enqueue_shared_queue", enqueue_shared_queue,
        (queue_id: i32, value_ptr: i32, value_len: i32));
    host_fn!(linker, "env", "proxy_dequeue_shared_queue", dequeue_shared_queue,
        (queue_id: i32, ret_ptr: i32, ret_size: i32));
    host_fn!(linker, "env", "proxy_define_metric", define_metric,
        (kind: i32, name_ptr: i32, name_len: i32, ret_id: i32));
    host_fn!(linker, "env", "proxy_increment_metric", increment_metric, (id: i32, offset: i64));
    host_fn!(linker, "env", "proxy_record_metric", record_metric, (id: i32, value: i64));
    host_fn!(linker, "env", "proxy_get_metric", get_metric, (id: i32, ret_value: i32));
    Ok(())
}

const NO_KV_ZONE: &str =
    "no shm_kv zone holds it: declare \"shm_kv * <size>;\" or a zone for its \"name/\" prefix in wasm{}";
const NO_QUEUE_ZONE: &str = "no such shm_queue in wasm{}";
const DENIED: &str = "not given to this module: its zone has a share= that does not name it, or another module registered the queue";

/// Logs why a shared-memory operation failed (`function` on the key,
/// queue or metric `name`; `no_zone` says why no zone was found, when that
/// is the error); its status for the guest.
fn failed(caller: Call, function: &str, name: &[u8], no_zone: &str, error: SharedError) -> Status {
    let (status, why) = match error {
        SharedError::CasMismatch => return Status::CasMismatch,
        SharedError::NoZone => (Status::NotFound, no_zone),
        // as if it did not exist: a module learns nothing of others' data
        SharedError::Denied => (Status::NotFound, DENIED),
        SharedError::Full => (Status::InternalFailure, "its zone is full"),
        SharedError::TypeConflict => (Status::BadArgument, "the name has another type"),
        SharedError::Unavailable => (Status::InternalFailure, "no shared memory"),
    };
    let message = format!("{function} \"{}\" failed: {why}", String::from_utf8_lossy(name));
    caller.data().log(LogLevel::Error, message.as_bytes());
    status
}

/// A queue's name for the log: its id.
fn queue_name(queue_id: i32) -> Vec<u8> {
    format!("#{}", queue_id as u32).into_bytes()
}

fn get_shared_data(
    caller: Call,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_size: i32,
    ret_cas: i32,
) -> Result {
    let key = read_bytes(caller, key_ptr, key_len)?;
    with_scratch(caller, |caller, value| {
        let state = caller.data();
        match kv::get(
            state.host,
            &state.services.zones,
            state.module.name.as_bytes(),
            &key,
            value,
        ) {
            Ok(Some(cas)) => {
                store_u32(caller, ret_cas, cas)?;
                copy_out(caller, ret_ptr, ret_size, value.len(), |out| {
                    out.copy_from_slice(value)
                })
            }
            Ok(None) => Err(Status::NotFound.into()),
            Err(SharedError::NoZone) => Err(Status::NotFound.into()),
            Err(e) => Err(failed(caller, "get_shared_data", &key, NO_KV_ZONE, e).into()),
        }
    })
}

fn set_shared_data(
    caller: Call,
    key_ptr: i32,
    key_len: i32,
    value_ptr: i32,
    value_len: i32,
    cas: i32,
) -> Result {
    let key = read_bytes(caller, key_ptr, key_len)?;
    let value = read_bytes(caller, value_ptr, value_len)?;
    let state = caller.data();
    match kv::set(
        state.host,
        &state.services.zones,
        state.module.name.as_bytes(),
        &key,
        &value,
        cas as u32,
    ) {
        Ok(()) => Ok(()),
        Err(e) => Err(failed(caller, "set_shared_data", &key, NO_KV_ZONE, e).into()),
    }
}

fn register_shared_queue(caller: Call, name_ptr: i32, name_len: i32, ret_id: i32) -> Result {
    let name = read_bytes(caller, name_ptr, name_len)?;
    let state = caller.data();
    let root_id = state.root_id().ok_or(Status::BadArgument)?;
    let token = match queues::register(
        state.host,
        &state.services.zones,
        state.module.name.as_bytes(),
        &name,
    ) {
        Ok(token) => token,
        Err(e) => return Err(failed(caller, "register_shared_queue", &name, NO_QUEUE_ZONE, e).into()),
    };
    state.services.queues.borrow_mut().subscribe(
        token,
        Subscriber {
            instance: state.generation,
            root_id,
        },
    );
    store_u32(caller, ret_id, token)
}

fn resolve_shared_queue(
    caller: Call,
    vm_id_ptr: i32,
    vm_id_len: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> Result {
    let vm_id = read_bytes(caller, vm_id_ptr, vm_id_len)?;
    let name = read_bytes(caller, name_ptr, name_len)?;
    let state = caller.data();
    // an empty vm id is the caller's own
    let own = state.module.name.as_bytes();
    let owner = if vm_id.is_empty() { own } else { &vm_id };
    match queues::resolve(state.host, &state.services.zones, own, owner, &name) {
        Ok(Some(token)) => store_u32(caller, ret_id, token),
        Ok(None) | Err(SharedError::NoZone) => Err(Status::NotFound.into()),
        Err(e) => Err(failed(caller, "resolve_shared_queue", &name, NO_QUEUE_ZONE, e).into()),
    }
}

fn enqueue_shared_queue(caller: Call, queue_id: i32, value_ptr: i32, value_len: i32) -> Result {
    let value = read_bytes(caller, value_ptr, value_len)?;
    let state = caller.data();
    match queues::enqueue(
        state.host,
        &state.services.zones,
        state.module.name.as_bytes(),
        queue_id as u32,
        &value,
    ) {
        Ok(()) => Ok(()),
        Err(SharedError::NoZone) => Err(Status::NotFound.into()),
        Err(e) => Err(failed(
            caller,
            "enqueue_shared_queue",
            &queue_name(queue_id),
            NO_QUEUE_ZONE,
            e,
        )
        .into()),
    }
}

fn dequeue_shared_queue(caller: Call, queue_id: i32, ret_ptr: i32, ret_size: i32) -> Result {
    // an item taken from the queue could not be given back
    check_out_pointers(caller, &[ret_ptr, ret_size])?;
    with_scratch(caller, |caller, value| {
        let state = caller.data();
        match queues::dequeue(
            state.host,
            &state.services.zones,
            state.module.name.as_bytes(),
            queue_id as u32,
            value,
        ) {
            Ok(true) => copy_out(caller, ret_ptr, ret_size, value.len(), |out| {
                out.copy_from_slice(value)
            }),
            Ok(false) => Err(Status::Empty.into()),
            Err(SharedError::NoZone) => Err(Status::NotFound.into()),
            Err(e) => Err(failed(
                caller,
                "dequeue_shared_queue",
                &queue_name(queue_id),
                NO_QUEUE_ZONE,
                e,
            )
            .into()),
        }
    })
}

fn define_metric(caller: Call, kind: i32, name_ptr: i32, name_len: i32, ret_id: i32) -> Result {
    let kind = MetricType::try_from(kind as u32).map_err(|_| Status::BadArgument)?;
    let name = read_bytes(caller, name_ptr, name_len)?;
    if name.is_empty() {
        return Err(Status::BadArgument.into());
    }
    let state = caller.data();
    let defined = state
        .services
        .metrics
        .borrow_mut()
        .define(state.host, kind, &state.module.name, &name);
    match defined {
        Ok(id) => store_u32(caller, ret_id, id),
        Err(DefineError::TooLong(max)) => {
            let message = format!(
                "define_metric \"{}\" failed: the name with its prefix is longer than {max} (max_metric_name_length)",
                String::from_utf8_lossy(&name)
            );
            state.log(LogLevel::Error, message.as_bytes());
            Err(Status::BadArgument.into())
        }
        Err(DefineError::Host(SharedError::Denied)) => {
            let message = format!(
                "define_metric \"{}\" failed: another module has a metric of that name",
                String::from_utf8_lossy(&name)
            );
            state.log(LogLevel::Error, message.as_bytes());
            Err(Status::BadArgument.into())
        }
        Err(DefineError::Host(e)) => Err(failed(caller, "define_metric", &name, "no metrics zone", e).into()),
    }
}

/// The metric an id stands for, if the caller's filter defined it.
fn lookup_metric(caller: Call, id: i32) -> std::result::Result<Metric, Status> {
    let state = caller.data();
    let metric = state
        .services
        .metrics
        .borrow()
        .lookup(&state.module.name, id as u32);
    metric.ok_or(Status::NotFound)
}

fn increment_metric(caller: Call, id: i32, offset: i64) -> Result {
    let metric = lookup_metric(caller, id)?;
    metric
        .increment(caller.data().host, offset)
        .map_err(|_| Status::BadArgument.into())
}

fn record_metric(caller: Call, id: i32, value: i64) -> Result {
    lookup_metric(caller, id)?.record(caller.data().host, value);
    Ok(())
}

fn get_metric(caller: Call, id: i32, ret_value: i32) -> Result {
    let value = lookup_metric(caller, id)?
        .get(caller.data().host)
        .map_err(|_| Status::BadArgument)?;
    store_u64(caller, ret_value, value)
}
