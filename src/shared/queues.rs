//! Shared queues (`proxy_register_shared_queue` and the rest): who owns a
//! queue and who may use it, which worker is told of an item, and which
//! root context of a worker is.
//!
//! Without `share=`, a queue belongs to the module that registered it
//! first (while the configuration has that module); others may resolve it
//! by the owner's vm id and enqueue to it, as Envoy's VMs do, but only
//! the owner takes items. With `share=`, the modules it names share it.
//!
//! Every item is credited to one worker that registered the queue, in
//! turn, and that worker is woken; it then runs `on_queue_ready` once per
//! credit while items remain. Credits of a worker that leaves (or is
//! gone) go to another.

use std::collections::HashMap;

use super::zones::{Zone, Zones};
use super::SharedError;
use crate::abi::LogLevel;
use crate::host::{Host, LockedZone, QueueState, Wake};

/// `on_queue_ready` calls per queue in one wakeup: a long queue does not
/// keep the worker from its other events.
pub const WAKEUP_BATCH: u64 = 64;

/// A registered queue's token, or the error.
pub fn register(host: &dyn Host, zones: &Zones, vm_id: &[u8], name: &[u8]) -> Result<u32, SharedError> {
    let (token, zone) = zones.queue_by_name(name).ok_or(SharedError::NoZone)?;
    if !zone.allows(vm_id) {
        return Err(SharedError::Denied);
    }
    // not mapped while the configuration is checked: nothing to take part in
    if !host.with_zone(zone.zone, &mut |_| {}) {
        return Ok(token);
    }
    // listening first: a worker found without its socket is taken as gone
    if !host.wakeup_listen() {
        return Err(SharedError::Unavailable);
    }
    let me = host.worker_pid();
    let mut outcome = Err(SharedError::Unavailable);
    host.with_zone(zone.zone, &mut |z| outcome = join(z, zones, zone, vm_id, me));
    match outcome? {
        Joined::Credited(credits) => {
            if credits > 0 {
                notify(host, zone, me);
            }
        }
        Joined::NoRoom => {
            let message = format!(
                "more than {} workers registered queue \"{}\": this one is not told of its items",
                QueueState::default().workers.len(),
                String::from_utf8_lossy(&zone.name)
            );
            host.log(None, LogLevel::Warn, "ngx_proxy_wasm", 0, message.as_bytes());
        }
    }
    Ok(token)
}

enum Joined {
    /// The worker takes part, with the items no worker was told of.
    Credited(u64),
    /// Every entry is taken.
    NoRoom,
}

/// Makes `vm_id` the owner (refused if another module of the
/// configuration owns the queue) and `me` one of its workers.
fn join(
    z: &mut dyn LockedZone,
    zones: &Zones,
    zone: &Zone,
    vm_id: &[u8],
    me: i64,
) -> Result<Joined, SharedError> {
    let items = z.queue_len() as u64;
    let state = z.queue_state();
    let owner = owner(state);
    if zone.per_module() && !owner.is_empty() && !owned_by(state, vm_id) && zones.is_module(owner) {
        return Err(SharedError::Denied);
    }
    let len = vm_id.len().min(state.owner.len());
    state.owner[..len].copy_from_slice(&vm_id[..len]);
    state.owner_len = len as u32;
    if let Some(worker) = state.workers.iter().find(|w| w.pid == me) {
        return Ok(Joined::Credited(worker.credits));
    }
    // items no worker was told of (all left) are the newcomer's
    let credited: u64 = state.workers.iter().map(|w| w.credits).sum();
    let Some(free) = state.workers.iter_mut().find(|w| w.pid == 0) else {
        return Ok(Joined::NoRoom);
    };
    free.pid = me;
    free.credits = items.saturating_sub(credited);
    Ok(Joined::Credited(free.credits))
}

fn owner(state: &QueueState) -> &[u8] {
    &state.owner[..(state.owner_len as usize).min(state.owner.len())]
}

/// Whether the queue's owner is that module (as `join` kept its name).
fn owned_by(state: &QueueState, vm_id: &[u8]) -> bool {
    let owner = owner(state);
    !owner.is_empty() && owner == &vm_id[..vm_id.len().min(state.owner.len())]
}

/// The token of the queue `owner` registered, for `vm_id`; None if the
/// queue has another owner.
pub fn resolve(
    host: &dyn Host,
    zones: &Zones,
    vm_id: &[u8],
    owner: &[u8],
    name: &[u8],
) -> Result<Option<u32>, SharedError> {
    let (token, zone) = zones.queue_by_name(name).ok_or(SharedError::NoZone)?;
    if !zone.allows(vm_id) {
        return Err(SharedError::Denied);
    }
    let mut found = Some(token);
    host.with_zone(zone.zone, &mut |z| {
        found = owned_by(z.queue_state(), owner).then_some(token);
    });
    Ok(found)
}

/// Appends an item, credits it to a worker and wakes that worker.
pub fn enqueue(
    host: &dyn Host,
    zones: &Zones,
    vm_id: &[u8],
    token: u32,
    item: &[u8],
) -> Result<(), SharedError> {
    let zone = zones.queue_by_token(token).ok_or(SharedError::NoZone)?;
    if !zone.allows(vm_id) {
        return Err(SharedError::Denied);
    }
    let mut outcome = Ok(0);
    host.with_zone(zone.zone, &mut |z| {
        outcome = if z.queue_push(item) {
            Ok(credit(z.queue_state(), 1))
        } else {
            Err(SharedError::Full)
        };
    });
    let pid = outcome?;
    if pid != 0 {
        notify(host, zone, pid);
    }
    Ok(())
}

/// Takes the oldest item into `out`; false when the queue is empty. Only
/// the owner (or, with `share=`, the modules named) take items.
pub fn dequeue(
    host: &dyn Host,
    zones: &Zones,
    vm_id: &[u8],
    token: u32,
    out: &mut Vec<u8>,
) -> Result<bool, SharedError> {
    let zone = zones.queue_by_token(token).ok_or(SharedError::NoZone)?;
    if !zone.allows(vm_id) {
        return Err(SharedError::Denied);
    }
    let mut outcome = Ok(false);
    host.with_zone(zone.zone, &mut |z| {
        outcome = if zone.per_module() && !owned_by(z.queue_state(), vm_id) {
            Err(SharedError::Denied)
        } else {
            Ok(z.queue_pop(out))
        };
    });
    outcome
}

/// Credits the next registered worker, in turn, with `n` items; the pid
/// to wake, or 0 when no worker registered the queue (the items wait).
fn credit(state: &mut QueueState, n: u64) -> i64 {
    let workers = state.workers.len();
    for k in 0..workers {
        let i = (state.next as usize + k) % workers;
        if state.workers[i].pid != 0 {
            state.workers[i].credits += n;
            state.next = ((i + 1) % workers) as u32;
            return state.workers[i].pid;
        }
    }
    0
}

/// Takes a worker off a queue; its credits go to another, whose pid is
/// returned (0: none).
fn leave(state: &mut QueueState, pid: i64) -> i64 {
    let Some(worker) = state.workers.iter_mut().find(|w| w.pid == pid) else {
        return 0;
    };
    let credits = std::mem::take(&mut worker.credits);
    worker.pid = 0;
    if credits == 0 {
        return 0;
    }
    credit(state, credits)
}

/// Wakes a worker that was credited items; a worker that is gone leaves
/// the queue, and the one its credits went to is woken instead.
fn notify(host: &dyn Host, zone: &Zone, mut pid: i64) {
    let tries = QueueState::default().workers.len();
    for _ in 0..tries {
        if pid == 0 {
            return;
        }
        match host.wake(pid, &zone.name) {
            Wake::Sent | Wake::Failed => return,
            Wake::Gone => {
                let message = format!(
                    "worker {pid} of queue \"{}\" is gone",
                    String::from_utf8_lossy(&zone.name)
                );
                host.log(None, LogLevel::Info, "ngx_proxy_wasm", 0, message.as_bytes());
                let gone = pid;
                pid = 0;
                host.with_zone(zone.zone, &mut |z| pid = leave(z.queue_state(), gone));
            }
        }
    }
}

/// This worker was woken: `on_ready(token)` once per item it was
/// credited, at most a batch per queue, while items remain. Whether
/// credits are left (the worker should be woken again).
pub fn wakeup(host: &dyn Host, zones: &Zones, on_ready: &mut dyn FnMut(u32)) -> bool {
    let me = host.worker_pid();
    let mut more = false;
    for (token, zone) in zones.queues() {
        let mut taken = 0;
        host.with_zone(zone.zone, &mut |z| {
            if let Some(worker) = z.queue_state().workers.iter_mut().find(|w| w.pid == me) {
                taken = worker.credits.min(WAKEUP_BATCH);
                worker.credits -= taken;
                more |= worker.credits > 0;
            }
        });
        for _ in 0..taken {
            let mut items = 0;
            host.with_zone(zone.zone, &mut |z| items = z.queue_len());
            if items == 0 {
                // others drained it
                break;
            }
            on_ready(token);
        }
    }
    more
}

/// This worker leaves every queue (it exits, or starts shutting down):
/// its credits go to other workers, which are woken.
pub fn leave_all(host: &dyn Host, zones: &Zones) {
    let me = host.worker_pid();
    for (_, zone) in zones.queues() {
        let mut heir = 0;
        host.with_zone(zone.zone, &mut |z| heir = leave(z.queue_state(), me));
        notify(host, zone, heir);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// The generation of the instance the root context lives in.
    pub instance: u64,
    pub root_id: u32,
}

/// Which root context a queue's items are told to in this worker: the one
/// that registered it last, as in Envoy; by token.
#[derive(Debug, Default)]
pub struct QueueSubscribers(HashMap<u32, Subscriber>);

impl QueueSubscribers {
    pub fn subscribe(&mut self, token: u32, subscriber: Subscriber) {
        self.0.insert(token, subscriber);
    }

    pub fn subscriber(&self, token: u32) -> Option<Subscriber> {
        self.0.get(&token).copied()
    }

    /// Whether a root context of that instance gets a queue's items.
    pub fn any_in(&self, instance: u64) -> bool {
        self.0.values().any(|subscriber| subscriber.instance == instance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(pids: &[i64]) -> QueueState {
        let mut state = QueueState::default();
        for (worker, pid) in state.workers.iter_mut().zip(pids) {
            worker.pid = *pid;
        }
        state
    }

    #[test]
    fn items_are_credited_to_the_workers_in_turn() {
        let mut state = state(&[10, 0, 30]);
        let woken: Vec<i64> = (0..4).map(|_| credit(&mut state, 1)).collect();
        assert_eq!(woken, [10, 30, 10, 30]);
        assert_eq!(state.workers[0].credits, 2);
        assert_eq!(credit(&mut QueueState::default(), 1), 0);
    }

    #[test]
    fn a_worker_that_leaves_passes_its_credits_on() {
        let mut state = state(&[10, 20]);
        state.workers[0].credits = 5;
        assert_eq!(leave(&mut state, 10), 20);
        assert_eq!(state.workers[1].credits, 5);
        assert_eq!(state.workers[0].pid, 0);
        // the last one keeps them for whoever comes
        assert_eq!(leave(&mut state, 20), 0);
        assert_eq!(leave(&mut state, 99), 0);
    }

    #[test]
    fn the_owner_is_matched_as_it_was_kept() {
        let mut state = QueueState::default();
        assert!(!owned_by(&state, b""));
        let long = vec![b'm'; 200];
        state.owner.copy_from_slice(&long[..128]);
        state.owner_len = 128;
        assert!(owned_by(&state, &long));
        assert!(!owned_by(&state, b"m"));
    }
}
