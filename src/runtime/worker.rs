//! A worker process's side of the runtime: the shared instance of each
//! module, instances made for one request (isolation) and reset for the
//! next one (see `snapshot`), the replacement of
//! failed instances (at once, or paced by a backoff in a crash loop), and
//! the root contexts' ticks.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Engine;

use super::limits::EpochTicker;
use super::module::WasmModule;
use super::services::Services;
use super::snapshot::PageMap;
use super::vm::Vm;
use super::{Filter, RuntimeConfig};
use crate::abi::LogLevel;
use crate::callout::{self, grpc, http1::Response, CallFailure, Calls, Fed, Origin};
use crate::host::prelude::*;
use crate::host::{RequestRef, TimerRef};
use crate::runtime::state::{FilterInfo, IdMap};
use crate::shared::queues;
use crate::shared::Zones;

/// An instance slot. A failed shared instance is replaced in place;
/// requests still holding the old one notice by its generation.
pub type VmSlot = Rc<RefCell<Option<Vm>>>;

/// A module in a crash loop is replaced at once the first time, then
/// after waiting twice as long each time, up to `BACKOFF_MAX`.
const BACKOFF_BASE: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Where a filter runs for a request.
pub struct FilterHandle {
    pub slot: VmSlot,
    pub generation: u64,
    pub root_id: u32,
    pub module: usize,
    /// The worker's shared instance (not one made for the request).
    pub shared: bool,
}

/// Paces the replacement of a module's shared instance where replacing
/// cannot help: instances that cannot start, or that fail before any
/// guest call of theirs returned (a crash loop). An instance that served
/// and then failed (a bad request, not a bad module) is replaced at once
/// and ends the loop.
#[derive(Debug, Default)]
struct Backoff {
    /// Crash-loop failures in a row.
    failures: u32,
    /// The generation of the failed instance last counted.
    counted: u64,
    not_before: Option<Instant>,
}

impl Backoff {
    /// Counts a failure; `crash_loop`: of an instance that never served.
    fn note_failure(&mut self, crash_loop: bool) {
        if !crash_loop {
            self.failures = 0;
            self.not_before = None;
            return;
        }
        self.failures += 1;
        let delay = match self.failures {
            0 | 1 => Duration::ZERO,
            n => BACKOFF_BASE.saturating_mul(1 << (n - 2).min(16)).min(BACKOFF_MAX),
        };
        self.not_before = Some(Instant::now() + delay);
    }

    /// How long until a replacement may start.
    fn wait(&self) -> Option<Duration> {
        let left = self.not_before?.saturating_duration_since(Instant::now());
        (!left.is_zero()).then_some(left)
    }
}

/// The timer that will replace a failed shared instance.
struct Replacement {
    token: u64,
    timer: TimerRef,
}

/// What became of bytes of a call's response: `More` to come; `KeepAlive`:
/// whole, and the connection may serve another call; `Close`: whole or
/// broken, the connection closes.
pub use crate::sys::CallProgress;

/// A root context's tick: `on_tick` every `period`, in a shared instance.
struct Tick {
    module: usize,
    generation: u64,
    root_id: u32,
    period: Duration,
    /// The pending timer, if armed.
    timer: Option<TimerRef>,
}

pub struct Worker {
    pub host: &'static dyn Host,
    /// What the worker's instances reach beyond themselves.
    services: Rc<Services>,
    modules: Vec<Arc<WasmModule>>,
    /// The configuration's filters, then those the proxy's own code (Lua)
    /// adds in this worker.
    filters: RefCell<Vec<Filter>>,
    /// The shared instance of each module.
    vms: Vec<VmSlot>,
    backoff: RefCell<Vec<Backoff>>,
    /// The pending replacement of each module's shared instance.
    replacements: RefCell<Vec<Option<Replacement>>>,
    /// Ticks by the token their timers carry.
    ticks: RefCell<HashMap<u64, Tick>>,
    next_token: RefCell<u64>,
    /// Every live instance by generation: where calls come back to.
    instances: RefCell<IdMap<u64, Weak<RefCell<Option<Vm>>>>>,
    /// Root contexts finishing after `on_done` returned false.
    finishing: RefCell<Finishing>,
    /// Per-request instances put back to their start, waiting for the
    /// next request of the same filters (see `snapshot`).
    idle: RefCell<IdleInstances>,
    /// Where the kernel says which pages were written (opened in the
    /// worker on first use; None: instances are not reused).
    pagemap: OnceCell<Option<PageMap>>,
    /// Instances come from wasmtime's pool (`instance_pool`): idle ones
    /// hold slots.
    pooled: bool,
    _epoch: Option<EpochTicker>,
}

/// Reset instances of a module for a set of its filters.
struct Idle {
    key: (usize, Vec<usize>),
    vms: Vec<Vm>,
}

/// The reset instances of a worker, by set of filters, within IDLE_LIMIT
/// and IDLE_TOTAL_LIMIT.
#[derive(Default)]
struct IdleInstances {
    sets: Vec<Idle>,
    count: usize,
}

impl IdleInstances {
    fn take(&mut self, module: usize, filter_ids: &[usize]) -> Option<Vm> {
        let set = self
            .sets
            .iter_mut()
            .find(|set| set.key.0 == module && set.key.1 == filter_ids)?;
        let vm = set.vms.pop()?;
        self.count -= 1;
        Some(vm)
    }

    /// Resets an instance whose request ended and keeps it, if it can be
    /// reset and there is room; else it is dropped.
    fn keep(&mut self, mut vm: Vm, pagemap: &PageMap) {
        let Some(key) = vm.fresh_key() else {
            return;
        };
        if self.count >= IDLE_TOTAL_LIMIT {
            return;
        }
        let position = match self.sets.iter().position(|set| set.key == *key) {
            Some(position) => position,
            None => {
                self.sets.push(Idle {
                    key: key.clone(),
                    vms: Vec::new(),
                });
                self.sets.len() - 1
            }
        };
        let vms = &mut self.sets[position].vms;
        if vms.len() < IDLE_LIMIT && vm.reset(pagemap) {
            vms.push(vm);
            self.count += 1;
        }
    }

    fn clear(&mut self) {
        self.sets.clear();
        self.count = 0;
    }
}

/// Reset instances kept for one set of filters: enough for the requests a
/// worker serves at once in most places; beyond it instances are made and
/// dropped as before.
pub const IDLE_LIMIT: usize = 16;

/// Reset instances kept in a worker for all sets of filters together: a
/// gateway with many isolated chains keeps a bounded memory (each holds
/// its written pages and its image, some hundreds of KiB).
pub const IDLE_TOTAL_LIMIT: usize = 128;

/// How long root contexts may take to call `proxy_done` after their
/// `on_done` returned false: then their `on_delete` comes anyway.
pub const FINISH_LIMIT: Duration = Duration::from_secs(5);

/// The timer of FINISH_LIMIT: with an instance's generation, or 0 for
/// the worker's shutdown.
const FINISH_TIMER: u64 = 1 << 60;

/// Where root contexts that finish later are.
#[derive(Default)]
struct Finishing {
    /// The worker is shutting down; the timer it waits for while shared
    /// instances' roots finish.
    shutdown: Option<Option<TimerRef>>,
    /// Instances made for requests that ended, kept while their roots
    /// finish, with their FINISH_TIMER.
    lingering: Vec<(VmSlot, u64, Option<TimerRef>)>,
}

impl Worker {
    pub fn start(
        host: &'static dyn Host,
        zones: Rc<Zones>,
        engine: &Engine,
        modules: &[Arc<WasmModule>],
        filters: &[Filter],
        config: &RuntimeConfig,
    ) -> Rc<Worker> {
        let epoch = match EpochTicker::start(engine) {
            Ok(ticker) => Some(ticker),
            Err(e) => {
                let message =
                    format!("cannot start the epoch thread ({e}): callback_timeout is not enforced");
                host.log(None, LogLevel::Critical, "ngx_proxy_wasm", 0, message.as_bytes());
                None
            }
        };
        let worker = Worker {
            host,
            services: Services::new(
                host,
                zones,
                Calls::enabled(config.calls),
                config.metric_naming.clone(),
            ),
            modules: modules.to_vec(),
            filters: RefCell::new(filters.to_vec()),
            vms: modules.iter().map(|_| Rc::new(RefCell::new(None))).collect(),
            backoff: RefCell::new(modules.iter().map(|_| Backoff::default()).collect()),
            replacements: RefCell::new(modules.iter().map(|_| None).collect()),
            ticks: RefCell::new(HashMap::new()),
            next_token: RefCell::new(1),
            instances: RefCell::new(IdMap::default()),
            finishing: RefCell::new(Finishing::default()),
            idle: RefCell::new(IdleInstances::default()),
            pagemap: OnceCell::new(),
            pooled: config.instance_pool.is_some(),
            _epoch: epoch,
        };
        for module in 0..modules.len() {
            if filters.iter().any(|filter| filter.module == module) {
                worker.install(module);
            }
        }
        Rc::new(worker)
    }

    /// The worker starts shutting down: the root contexts of the shared
    /// instances get `on_done` (they stay for the requests still served,
    /// and get `on_delete` at the worker's exit); those that finish later
    /// keep the worker until they call `proxy_done`, up to FINISH_LIMIT.
    pub fn on_shutdown(&self) {
        if self.finishing.borrow().shutdown.is_some() {
            return;
        }
        let mut finishing = false;
        for (module, slot) in self.vms.iter().enumerate() {
            let ended = slot.borrow_mut().as_mut().map(|vm| {
                let later = vm.done_roots();
                (later, vm.generation, vm.take_tick_requests())
            });
            if let Some((later, generation, ticks)) = ended {
                finishing |= later;
                // a finishing root may tick until it is done
                self.apply_ticks(module, generation, ticks);
            }
        }
        finishing |= !self.finishing.borrow().lingering.is_empty();
        let hold = finishing
            .then(|| self.host.timer_hold(FINISH_LIMIT, FINISH_TIMER))
            .flatten();
        self.finishing.borrow_mut().shutdown = Some(hold);
    }

    /// An instance made for a request ended with root contexts that finish
    /// later: it stays until they call `proxy_done`, up to FINISH_LIMIT.
    pub fn linger(&self, slot: VmSlot, generation: u64) {
        let timer = self.host.timer_add(FINISH_LIMIT, FINISH_TIMER | generation);
        self.finishing
            .borrow_mut()
            .lingering
            .push((slot, generation, timer));
    }

    /// After a guest call: instances whose roots finished go, and a worker
    /// shutting down stops waiting once none is left.
    fn settle_finishing(&self) {
        let mut finishing = self.finishing.borrow_mut();
        if finishing.lingering.is_empty() && !matches!(finishing.shutdown, Some(Some(_))) {
            return;
        }
        let still = |slot: &VmSlot| slot.borrow().as_ref().is_some_and(Vm::finishing);
        let mut gone = Vec::new();
        finishing.lingering.retain(|(slot, generation, timer)| {
            let keep = still(slot);
            if !keep {
                gone.push((*generation, *timer));
            }
            keep
        });
        if finishing.lingering.is_empty() && !self.vms.iter().any(still) {
            if let Some(Some(hold)) = finishing.shutdown.replace(None) {
                self.host.timer_cancel(hold);
            }
        }
        drop(finishing);
        for (generation, timer) in gone {
            if let Some(timer) = timer {
                self.host.timer_cancel(timer);
            }
            self.forget_instance(generation);
        }
    }

    /// FINISH_LIMIT passed: the roots still finishing end now.
    fn on_finish_timer(&self, generation: u64) {
        let slots: Vec<VmSlot> = {
            let mut finishing = self.finishing.borrow_mut();
            if generation == 0 {
                finishing.shutdown = Some(None);
                let mut slots: Vec<VmSlot> = self.vms.to_vec();
                slots.extend(finishing.lingering.iter_mut().map(|(slot, _, timer)| {
                    // the lingering instances end with the worker's wait
                    if let Some(timer) = timer.take() {
                        self.host.timer_cancel(timer);
                    }
                    slot.clone()
                }));
                slots
            } else {
                finishing
                    .lingering
                    .iter_mut()
                    .filter(|(_, g, _)| *g == generation)
                    .map(|(slot, _, timer)| {
                        *timer = None;
                        slot.clone()
                    })
                    .collect()
            }
        };
        for slot in slots {
            let mut vm = slot.borrow_mut();
            let Some(vm) = vm.as_mut() else {
                continue;
            };
            let late = vm.end_finishing();
            if !late.is_empty() {
                let message = format!(
                    "root contexts {late:?} did not call proxy_done within {} s of on_done: ended",
                    FINISH_LIMIT.as_secs()
                );
                self.host
                    .log(None, LogLevel::Warn, &vm.module.name, 0, message.as_bytes());
            }
        }
        self.settle_finishing();
    }

    /// Stops the ticks and the calls in flight, and ends the shared roots
    /// that got `on_done` (at worker exit).
    pub fn shutdown(&self) {
        self.idle.borrow_mut().clear();
        for slot in &self.vms {
            if let Some(vm) = slot.borrow_mut().as_mut() {
                vm.delete_done_roots();
            }
        }
        self.services.calls.borrow_mut().disable();
        callout::cancel_where(&self.services.calls, self.host, |_| true);
        self.services.grpc.borrow_mut().exit(self.host);
        for (_, tick) in self.ticks.borrow_mut().drain() {
            if let Some(timer) = tick.timer {
                self.host.timer_cancel(timer);
            }
        }
        for replacement in self.replacements.borrow_mut().iter_mut() {
            if let Some(replacement) = replacement.take() {
                self.host.timer_cancel(replacement.timer);
            }
        }
    }

    /// What the worker's instances reach beyond themselves; the proxy's
    /// own code (the Lua API) reaches it too.
    pub fn services(&self) -> &Rc<Services> {
        &self.services
    }

    pub fn filter_info(&self, filter_id: usize) -> Option<Arc<FilterInfo>> {
        self.filters
            .borrow()
            .get(filter_id)
            .map(|filter| filter.info.clone())
    }

    pub fn filter_module(&self, filter_id: usize) -> Option<usize> {
        self.filters.borrow().get(filter_id).map(|filter| filter.module)
    }

    /// A filter added after the worker started (by the proxy's own code):
    /// its root context starts in its module's shared instance now (the
    /// instance starts if the module had no filter). Why it did not start.
    pub fn add_filter(&self, filter_id: usize, filter: Filter) -> Result<(), String> {
        let module = filter.module;
        let info = filter.info.clone();
        {
            let mut filters = self.filters.borrow_mut();
            if filter_id == filters.len() {
                filters.push(filter);
            }
        }
        let mut slot = self.vms[module].borrow_mut();
        let Some(vm) = slot.as_mut() else {
            // the module's first filter: its instance starts with it
            drop(slot);
            self.install(module);
            return match self.vms[module].borrow().as_ref() {
                Some(vm) if vm.root_context(filter_id).is_some() => Ok(()),
                Some(_) => Err("it failed to start in this worker (see the log)".into()),
                None => Err("its module's instance could not start (see the log)".into()),
            };
        };
        // a failed instance's replacement starts it
        if vm.failed() || vm.root_context(filter_id).is_some() {
            return Ok(());
        }
        vm.start_filter(filter_id, &info)?;
        let (generation, requests) = (vm.generation, vm.take_tick_requests());
        drop(slot);
        // a tick period its on_configure set starts now
        self.apply_ticks(module, generation, requests);
        Ok(())
    }

    /// Puts a new shared instance of a module in its slot. One that
    /// cannot start counts as a crash-loop failure and is tried again
    /// after the backoff.
    fn install(&self, module: usize) {
        if let Some(replacement) = self.replacements.borrow_mut()[module].take() {
            self.host.timer_cancel(replacement.timer);
        }
        let ids: Vec<usize> = self
            .filters
            .borrow()
            .iter()
            .enumerate()
            .filter(|(_, filter)| filter.module == module)
            .map(|(id, _)| id)
            .collect();
        let old = self.vms[module].borrow().as_ref().map(|vm| vm.generation);
        if let Some(generation) = old {
            self.forget_generation(module, generation);
        }
        let mut vm = self.instantiate(module, &ids);
        let started = vm.as_ref().map(|vm| vm.generation);
        if let Some(generation) = started {
            self.instances
                .borrow_mut()
                .insert(generation, Rc::downgrade(&self.vms[module]));
        }
        let requests = vm.as_mut().map(|vm| vm.take_tick_requests()).unwrap_or_default();
        *self.vms[module].borrow_mut() = vm;
        match started {
            Some(generation) => self.apply_ticks(module, generation, requests),
            None => {
                self.backoff.borrow_mut()[module].note_failure(true);
                self.schedule_replacement(module);
            }
        }
    }

    /// What the worker keeps for an instance that goes: its ticks, the
    /// calls its root contexts made, the way back to it.
    fn forget_generation(&self, module: usize, generation: u64) {
        self.stop_ticks(module, generation);
        callout::cancel_where(&self.services.calls, self.host, |origin| {
            origin.instance == generation
        });
        self.services
            .grpc
            .borrow_mut()
            .cancel_where(self.host, |origin| origin.instance == generation);
        self.instances.borrow_mut().remove(&generation);
    }

    /// A new instance of a module with the root contexts of some of its
    /// filters. A filter that fails to start is logged and left out.
    fn instantiate(&self, module: usize, filter_ids: &[usize]) -> Option<Vm> {
        let vm = self.try_instantiate(module, filter_ids);
        vm.map_err(|e| self.log_error(&self.modules[module], &e)).ok()
    }

    fn try_instantiate(&self, module: usize, filter_ids: &[usize]) -> Result<Vm, String> {
        let wasm = &self.modules[module];
        let mut vm = Vm::new(wasm, &self.services).map_err(|e| format!("cannot start an instance: {e}"))?;
        for &id in filter_ids {
            let Some(info) = self.filter_info(id) else {
                continue;
            };
            if let Err(e) = vm.start_filter(id, &info) {
                self.log_error(wasm, &format!("filter failed to start: {e}"));
            }
        }
        vm.mark_started();
        Ok(vm)
    }

    fn log_error(&self, module: &WasmModule, message: &str) {
        self.host
            .log(None, LogLevel::Error, &module.name, 0, message.as_bytes());
    }

    /// How many header changes filters made in this worker: see
    /// `Services::header_changes`.
    pub fn header_changes(&self) -> u64 {
        self.services.header_changes()
    }

    /// Where a filter runs in the worker's shared instance. A failed
    /// instance is replaced first when `replace` is set and its backoff
    /// allows. Why the filter cannot run otherwise.
    pub fn filter(&self, filter_id: usize, replace: bool) -> Result<FilterHandle, String> {
        let module = self.filter_module(filter_id).ok_or("no such filter")?;
        let slot = &self.vms[module];
        let state = slot.borrow().as_ref().map(Vm::failed);
        match state {
            Some(false) => {}
            Some(true) => self.replace(module, replace, "its instance failed")?,
            None => self.replace(module, replace, "its instance could not start")?,
        }
        let vm = slot.borrow();
        let vm = vm
            .as_ref()
            .filter(|vm| !vm.failed())
            .ok_or("its instance failed")?;
        Ok(FilterHandle {
            slot: slot.clone(),
            generation: vm.generation,
            root_id: vm
                .root_context(filter_id)
                .ok_or("it failed to start in this worker")?,
            module,
            shared: true,
        })
    }

    /// Counts the failure of a module's failed shared instance, once.
    fn count_failure(&self, module: usize) {
        let Some((generation, served)) = self.vms[module]
            .borrow()
            .as_ref()
            .filter(|vm| vm.failed())
            .map(|vm| (vm.generation, vm.served()))
        else {
            return;
        };
        let mut backoff = self.backoff.borrow_mut();
        let backoff = &mut backoff[module];
        if backoff.counted != generation {
            backoff.counted = generation;
            backoff.note_failure(!served);
            self.stop_ticks(module, generation);
        }
    }

    /// Replaces a module's failed (or missing) shared instance, after
    /// counting the failure, if `replace` and the backoff allow; why not.
    fn replace(&self, module: usize, replace: bool, why: &str) -> Result<(), String> {
        self.count_failure(module);
        if !replace {
            return Err(why.to_string());
        }
        if let Some(wait) = self.backoff.borrow()[module].wait() {
            return Err(format!(
                "{why}; the next one starts in {:.1}s",
                wait.as_secs_f64()
            ));
        }
        self.host.log(
            None,
            LogLevel::Info,
            &self.modules[module].name,
            0,
            b"starting a new instance",
        );
        self.install(module);
        Ok(())
    }

    /// A guest call failed a module's shared instance. With `replace`, a
    /// new one starts from the event loop (its root contexts must not
    /// wait for a request): at once, or after the backoff of a crash loop.
    pub fn instance_failed(&self, module: usize, replace: bool) {
        self.count_failure(module);
        if replace {
            self.schedule_replacement(module);
        }
    }

    /// Arms the timer that replaces a module's shared instance, unless
    /// one is armed.
    fn schedule_replacement(&self, module: usize) {
        let mut replacements = self.replacements.borrow_mut();
        if replacements[module].is_some() {
            return;
        }
        let delay = self.backoff.borrow()[module].wait().unwrap_or(Duration::ZERO);
        let token = self.new_token();
        match self.host.timer_add(delay, token) {
            Some(timer) => replacements[module] = Some(Replacement { token, timer }),
            None => self.log_error(
                &self.modules[module],
                "cannot start a timer to replace the instance",
            ),
        }
    }

    /// A replacement timer fired: the instance is replaced unless a
    /// request did it meanwhile.
    fn on_replacement_timer(&self, module: usize) {
        let healthy = self.vms[module].borrow().as_ref().is_some_and(|vm| !vm.failed());
        // refused only while a crash loop's backoff runs
        if !healthy && self.replace(module, true, "").is_err() {
            self.schedule_replacement(module);
        }
    }

    fn new_token(&self) -> u64 {
        let mut next = self.next_token.borrow_mut();
        *next += 1;
        *next
    }

    /// An instance of a module for one request (`proxy_wasm_isolation`),
    /// with the root contexts of the given filters: a reset one if one is
    /// idle, else a new one.
    pub fn private_instance(&self, module: usize, filter_ids: &[usize]) -> Option<VmSlot> {
        let vm = match self.take_idle(module, filter_ids) {
            Some(vm) => vm,
            None => self.new_private_instance(module, filter_ids)?,
        };
        let generation = vm.generation;
        let slot = Rc::new(RefCell::new(Some(vm)));
        self.instances
            .borrow_mut()
            .insert(generation, Rc::downgrade(&slot));
        Some(slot)
    }

    fn take_idle(&self, module: usize, filter_ids: &[usize]) -> Option<Vm> {
        let mut vm = self.idle.borrow_mut().take(module, filter_ids)?;
        vm.renew(self.services.next_generation());
        Some(vm)
    }

    fn new_private_instance(&self, module: usize, filter_ids: &[usize]) -> Option<Vm> {
        let vm = match self.try_instantiate(module, filter_ids) {
            // a full pool: the idle instances' slots make room
            Err(_) if self.pooled && self.idle.borrow().count > 0 => {
                self.idle.borrow_mut().clear();
                self.try_instantiate(module, filter_ids)
            }
            other => other,
        };
        let mut vm = vm.map_err(|e| self.log_error(&self.modules[module], &e)).ok()?;
        if let Some(pagemap) = self.pagemap().filter(|_| !self.awaited_by_start(vm.generation)) {
            vm.keep_fresh((module, filter_ids.to_vec()), pagemap);
        }
        Some(vm)
    }

    /// Whether the start of an instance left something that will come back
    /// to it: a call in flight, or a queue whose items it gets. Reset to its
    /// start, the instance would wait for what no longer comes (the calls of
    /// an instance end with its request): it is not reused.
    fn awaited_by_start(&self, generation: u64) -> bool {
        let mine = |origin: &Origin| origin.instance == generation;
        self.services.calls.borrow().any_where(mine)
            || self.services.grpc.borrow().any_where(mine)
            || self.services.queues.borrow().any_in(generation)
    }

    fn pagemap(&self) -> Option<&PageMap> {
        self.pagemap.get_or_init(PageMap::open).as_ref()
    }

    /// The request of an instance made for it ended (its roots ended): the
    /// instance is reset and kept for the next request of the same
    /// filters, or dropped.
    pub fn release_instance(&self, slot: &VmSlot, generation: u64) {
        self.forget_instance(generation);
        let Some(pagemap) = self.pagemap.get().and_then(Option::as_ref) else {
            return;
        };
        let Some(vm) = slot.borrow_mut().take() else {
            return;
        };
        self.idle.borrow_mut().keep(vm, pagemap);
    }

    /// The guest calls that returned in a module's shared instance
    /// (tests).
    pub fn returned_calls(&self, module: usize) -> u64 {
        self.vms[module].borrow().as_ref().map_or(0, Vm::returned_calls)
    }

    /// The reset instances waiting for a request: for each, whether its
    /// memory is its start's image again (tests).
    pub fn idle_instances(&self) -> Vec<bool> {
        let idle = self.idle.borrow();
        idle.sets
            .iter()
            .flat_map(|set| set.vms.iter().map(Vm::is_fresh))
            .collect()
    }

    /// A live instance by generation.
    fn instance(&self, generation: u64) -> Option<VmSlot> {
        self.instances.borrow().get(&generation).and_then(Weak::upgrade)
    }

    /// Cancels the calls a request's contexts made (it ended, or answered
    /// locally).
    pub fn cancel_calls_of(&self, request: RequestRef) {
        callout::cancel_where(&self.services.calls, self.host, |origin| {
            origin.request == Some(request)
        });
        self.services
            .grpc
            .borrow_mut()
            .cancel_where(self.host, |origin| origin.request == Some(request));
    }

    /// An instance made for a request goes with it.
    pub fn forget_instance(&self, generation: u64) {
        self.instances.borrow_mut().remove(&generation);
    }

    /// Bytes of a call's response came: whether the response is whole,
    /// and then whether its connection may serve another call.
    pub fn on_call_data(&self, token: u32, bytes: &[u8]) -> CallProgress {
        if grpc::is_channel(token) {
            let grpc = &self.services.grpc;
            grpc.borrow_mut().set_feeding(Some(token));
            grpc.borrow_mut().feed(self.host, token, bytes);
            self.deliver_grpc();
            let mut grpc = grpc.borrow_mut();
            grpc.set_feeding(None);
            // a channel that ended, while fed or by the deliveries, is
            // closed by nginx now
            return if grpc.has_channel(token) {
                CallProgress::More
            } else {
                CallProgress::Close
            };
        }
        let fed = self.services.calls.borrow_mut().feed(token, bytes);
        match fed {
            Fed::More => CallProgress::More,
            Fed::Unknown => CallProgress::Close,
            Fed::Done(origin, outcome) => {
                let keep_alive = outcome.as_ref().is_ok_and(|response| response.keep_alive);
                self.deliver(origin, outcome, "");
                if keep_alive {
                    CallProgress::KeepAlive
                } else {
                    CallProgress::Close
                }
            }
        }
    }

    /// A call ended without a whole response: a failure, or a connection
    /// closed at the end of a body that ends so.
    pub fn on_call_end(&self, token: u32, failure: Option<CallFailure>, detail: &str) {
        if grpc::is_channel(token) {
            let why = failure.map(|failure| match detail {
                "" => failure.as_str().to_string(),
                _ => format!("{} ({detail})", failure.as_str()),
            });
            self.services.grpc.borrow_mut().end(self.host, token, why);
            self.deliver_grpc();
            return;
        }
        let ended = self.services.calls.borrow_mut().end(token, failure);
        if let Some((origin, outcome)) = ended {
            self.deliver(origin, outcome, detail);
        }
    }

    /// `on_http_call_response` in the instance that made the call, if it
    /// still lives; a failure is logged first.
    fn deliver(&self, origin: Origin, outcome: Result<Rc<Response>, CallFailure>, detail: &str) {
        let slot = self.instance(origin.instance);
        if let Err(failure) = &outcome {
            self.log_call_failure(&origin, failure, detail, slot.as_ref());
        }
        if let Some(slot) = slot {
            self.run_in(&slot, origin.instance, |vm| {
                let _ = vm.on_http_call_response(origin.root_id, origin.token, outcome);
            });
        }
    }

    /// What gRPC calls came to, to the root contexts that made them (in
    /// their instances, if they still live), until their callbacks cause
    /// nothing more.
    fn deliver_grpc(&self) {
        loop {
            let batch = self.services.grpc.borrow_mut().take_pending();
            if batch.is_empty() {
                return;
            }
            for delivered in batch {
                let origin = delivered.origin;
                if let grpc::Delivery::Close(status) = &delivered.what {
                    if status.code != grpc::code::OK {
                        self.log_grpc_failure(&origin, status);
                    }
                }
                if let Some(slot) = self.instance(origin.instance) {
                    self.run_in(&slot, origin.instance, |vm| {
                        let _ = vm.on_grpc(origin.root_id, origin.token, delivered.what);
                    });
                }
            }
        }
    }

    /// A gRPC call that failed is logged when the host ended it (a status
    /// the server sent is the filter's business).
    fn log_grpc_failure(&self, origin: &Origin, status: &grpc::GrpcStatus) {
        if status.local {
            let why = format!("{} (status {})", status.message, status.code);
            self.log_callout_failure("grpc", origin, &why, self.instance(origin.instance).as_ref());
        }
    }

    /// Runs a callback in an instance if it is still that generation and
    /// has not failed, then acts on the tick periods it set.
    fn run_in(&self, slot: &VmSlot, generation: u64, callback: impl FnOnce(&mut Vm)) {
        let (requests, failed) = {
            let mut vm = slot.borrow_mut();
            let Some(vm) = vm.as_mut().filter(|vm| vm.runs(generation)) else {
                return;
            };
            callback(vm);
            (vm.take_tick_requests(), vm.failed())
        };
        self.settle_finishing();
        if let Some(module) = self.vms.iter().position(|shared| Rc::ptr_eq(shared, slot)) {
            if failed {
                // root callbacks have no location: their instance is
                // replaced as with proxy_wasm_failure reload
                self.instance_failed(module, true);
            } else {
                self.apply_ticks(module, generation, requests);
            }
        }
    }

    /// The host woke the worker for queue items: `on_queue_ready` for the
    /// items it was credited, a batch per queue; whether more are left.
    pub fn on_queues_wakeup(&self) -> bool {
        queues::wakeup(self.host, &self.services.zones, &mut |token| {
            self.on_queue_ready(token)
        })
    }

    /// The worker leaves its queues (it exits, or starts shutting down).
    pub fn leave_queues(&self) {
        queues::leave_all(self.host, &self.services.zones);
    }

    /// An item waits in a queue: `on_queue_ready` in the root context that
    /// registered the queue last in this worker, if its instance lives.
    fn on_queue_ready(&self, token: u32) {
        let Some(subscriber) = self.services.queues.borrow().subscriber(token) else {
            return;
        };
        if let Some(slot) = self.instance(subscriber.instance) {
            self.run_in(&slot, subscriber.instance, |vm| {
                let _ = vm.on_queue_ready(subscriber.root_id, token);
            });
        }
    }

    /// Logs why an HTTP call failed.
    fn log_call_failure(&self, origin: &Origin, failure: &CallFailure, detail: &str, slot: Option<&VmSlot>) {
        let why = match failure {
            CallFailure::Malformed(why) => format!("malformed response: {why}"),
            other if detail.is_empty() => other.as_str().to_string(),
            other => format!("{} ({detail})", other.as_str()),
        };
        self.log_callout_failure("http", origin, &why, slot);
    }

    /// Logs why a call of a kind ("http", "grpc") failed, at
    /// `http_call_failure_log`'s level, in the name of the module that
    /// made it.
    fn log_callout_failure(&self, kind: &str, origin: &Origin, why: &str, slot: Option<&VmSlot>) {
        let message = format!(
            "{kind} call #{} to \"{}\" failed: {why}",
            origin.token, origin.target
        );
        let name = slot.and_then(|slot| slot.borrow().as_ref().map(|vm| vm.module.name.clone()));
        let level = self
            .services
            .calls
            .borrow()
            .settings()
            .unwrap_or_default()
            .failure_log;
        self.host.log(
            origin.request,
            level,
            name.as_deref().unwrap_or("ngx_proxy_wasm"),
            origin.root_id,
            message.as_bytes(),
        );
    }

    /// Acts on the tick periods a shared instance's root contexts set.
    pub fn apply_ticks(&self, module: usize, generation: u64, requests: Vec<(u32, u32)>) {
        for (root_id, period) in requests {
            let mut ticks = self.ticks.borrow_mut();
            let token = ticks
                .iter()
                .find(|(_, tick)| {
                    tick.module == module && tick.generation == generation && tick.root_id == root_id
                })
                .map(|(token, _)| *token);
            if let Some(timer) = token.and_then(|token| ticks.get_mut(&token)?.timer.take()) {
                self.host.timer_cancel(timer);
            }
            if period == 0 {
                if let Some(token) = token {
                    ticks.remove(&token);
                }
                continue;
            }
            let token = token.unwrap_or_else(|| self.new_token());
            let tick = ticks.entry(token).or_insert(Tick {
                module,
                generation,
                root_id,
                period: Duration::ZERO,
                timer: None,
            });
            tick.period = Duration::from_millis(period.into());
            self.arm(token, tick);
        }
    }

    fn arm(&self, token: u64, tick: &mut Tick) {
        tick.timer = self.host.timer_add(tick.period, token);
        if tick.timer.is_none() {
            self.log_error(&self.modules[tick.module], "cannot start a timer for on_tick");
        }
    }

    fn stop_ticks(&self, module: usize, generation: u64) {
        self.ticks.borrow_mut().retain(|_, tick| {
            let stop = tick.module == module && tick.generation == generation;
            if let (true, Some(timer)) = (stop, tick.timer) {
                self.host.timer_cancel(timer);
            }
            !stop
        });
    }

    /// A tick's timer fired: `on_tick`, then the next timer. A failed
    /// instance's ticks stop.
    pub fn on_timer(&self, token: u64) {
        if token & FINISH_TIMER != 0 {
            return self.on_finish_timer(token & !FINISH_TIMER);
        }
        if token & grpc::DEADLINE_TIMER != 0 {
            self.services.grpc.borrow_mut().expire(self.host, token as u32);
            self.deliver_grpc();
            return;
        }
        if token == grpc::FLUSH_TIMER {
            self.services.grpc.borrow_mut().flushed();
            self.deliver_grpc();
            return;
        }
        let replaced = self
            .replacements
            .borrow()
            .iter()
            .position(|r| r.as_ref().is_some_and(|r| r.token == token));
        if let Some(module) = replaced {
            self.replacements.borrow_mut()[module] = None;
            self.on_replacement_timer(module);
            return;
        }
        let (module, generation, root_id) = {
            let mut ticks = self.ticks.borrow_mut();
            let Some(tick) = ticks.get_mut(&token) else {
                return;
            };
            tick.timer = None;
            (tick.module, tick.generation, tick.root_id)
        };
        let outcome = {
            let mut slot = self.vms[module].borrow_mut();
            match slot.as_mut() {
                Some(vm) if vm.runs(generation) => {
                    let ok = vm.on_tick(root_id).is_ok();
                    Some((ok, vm.take_tick_requests()))
                }
                _ => None,
            }
        };
        let requests = match outcome {
            Some((true, requests)) => requests,
            Some((false, _)) => {
                self.instance_failed(module, true);
                return;
            }
            None => {
                self.stop_ticks(module, generation);
                return;
            }
        };
        self.apply_ticks(module, generation, requests);
        self.settle_finishing();
        let mut ticks = self.ticks.borrow_mut();
        if let Some(tick) = ticks.get_mut(&token).filter(|tick| tick.timer.is_none()) {
            self.arm(token, tick);
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_maximum_in_a_crash_loop() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..10)
            .map(|_| {
                backoff.note_failure(true);
                backoff
                    .wait()
                    .map_or(0, |wait| (wait.as_millis() as u64).div_ceil(1000))
            })
            .collect();
        assert_eq!(delays, [0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    }

    #[test]
    fn an_instance_that_served_is_replaced_at_once_and_ends_the_loop() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.note_failure(true);
        }
        assert!(backoff.wait().is_some());
        backoff.note_failure(false);
        assert_eq!(backoff.wait(), None);
        // any number of bad requests: never a wait
        for _ in 0..1000 {
            backoff.note_failure(false);
            assert_eq!(backoff.wait(), None);
        }
        // a crash loop starts over with an immediate replacement
        backoff.note_failure(true);
        assert_eq!(backoff.wait(), None);
        backoff.note_failure(true);
        assert!(backoff.wait().is_some());
    }
}
