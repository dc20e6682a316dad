//! One request's run through its filter chain, as Envoy's filter manager
//! runs it: each direction's headers go through the filters in order (the
//! response in reverse order) and stop where a filter pauses, until it is
//! continued; body data goes from filter to filter, and a filter that
//! pauses keeps what it was given, then gets it again with the data that
//! follows (its callbacks see the cumulative size) until it lets it
//! through.
//!
//! HTTP contexts are created on a filter's first callback.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use smallvec::SmallVec;

use crate::abi::Direction;
use crate::abi::{Action, LogLevel, PeerType};
use crate::host::{HeaderMap, RequestRef};
use crate::runtime::state::{FilterInfo, Held, LocalResponse, RequestState, Trailers};
use crate::runtime::vm::{Trapped, Vm};
use crate::runtime::{FailurePolicy, FilterHandle, Isolation, VmSlot, Worker};

/// What nginx does next (`Continue`, `Pause` until a filter continues,
/// send the `LocalResponse` a filter asked for, `Fail` the request,
/// `Close` it), and the body data that left the chain: `Nothing`, exactly
/// what was handed in (`Unchanged`: nginx passes its own buffers on), or
/// other `Data` (in `output`).
pub use crate::sys::{Next, Output};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub next: Next,
    /// The direction's headers have gone through the whole chain.
    pub headers_done: bool,
    pub output: Output,
    /// The output ends the body.
    pub end_of_stream: bool,
    /// The body bytes of the direction the filters hold after the step.
    pub held: usize,
}

/// What filters may hold of a response's body, and what happens beyond.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub response_body: usize,
    /// Pass the data on to the next filter (true) or fail the request.
    pub pass_on_overflow: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            response_body: 1024 * 1024,
            pass_on_overflow: false,
        }
    }
}

/// How a location runs its chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ChainConfig {
    /// A TCP connection of stream{} (network filters): the request
    /// direction carries the downstream's data (after `on_new_connection`
    /// in place of request headers), the response direction the
    /// upstream's, and nginx keeps what filters hold within bounds by not
    /// reading.
    pub connection: bool,
    pub limits: Limits,
    pub failure: FailurePolicy,
    pub isolation: Isolation,
}

/// Why a filter whose context lived in a failed instance stops.
const LOST: &str = "its instance failed while the request had a context in it";

/// One filter of the chain for this request.
struct FilterRun {
    /// The worker's id of the filter.
    id: usize,
    info: Option<Arc<FilterInfo>>,
    /// None when the filter cannot run (see `unavailable`).
    slot: Option<VmSlot>,
    generation: u64,
    root_id: u32,
    module: usize,
    /// Runs in the worker's shared instance.
    shared: bool,
    /// Why the filter cannot run, until that is reported.
    unavailable: Option<String>,
    /// Failed, with `fail_open`: not called any more.
    skipped: bool,
    /// One of its callbacks for this request failed its instance.
    trapped: bool,
    context_id: Option<u32>,
}

impl FilterRun {
    fn new(id: usize, info: Option<Arc<FilterInfo>>, handle: Result<FilterHandle, String>) -> FilterRun {
        let mut run = FilterRun {
            id,
            info,
            slot: None,
            generation: 0,
            root_id: 0,
            module: 0,
            shared: false,
            unavailable: None,
            skipped: false,
            trapped: false,
            context_id: None,
        };
        run.take(handle);
        run
    }

    fn take(&mut self, handle: Result<FilterHandle, String>) {
        match handle {
            Ok(handle) => {
                self.slot = Some(handle.slot);
                self.generation = handle.generation;
                self.root_id = handle.root_id;
                self.module = handle.module;
                self.shared = handle.shared;
            }
            Err(why) => {
                self.slot = None;
                self.unavailable = Some(why);
            }
        }
    }

    /// Whether the instance it started in still runs.
    fn alive(&self) -> bool {
        self.slot
            .as_ref()
            .is_some_and(|slot| slot.borrow().as_ref().is_some_and(|vm| vm.runs(self.generation)))
    }
}

/// The progress of one direction through the chain.
#[derive(Default)]
struct Flow {
    headers_started: bool,
    /// The position of the next filter to get the headers.
    headers_next: usize,
    headers_end_of_stream: bool,
    headers_done: bool,
    /// Body data that arrived while the headers were held.
    queued: Option<Held>,
    /// Body data that left the chain, lent to nginx until the next call.
    output: Vec<u8>,
}

pub struct Chain {
    worker: Rc<Worker>,
    state: Rc<RefCell<RequestState>>,
    filters: Vec<FilterRun>,
    flows: [Flow; 2],
    limits: Limits,
    failure: FailurePolicy,
    /// The local response being sent; nginx holds pointers into it.
    sent_response: Option<LocalResponse>,
    /// The close callbacks of each side of a connection ran.
    closed: [bool; 2],
    logged: bool,
    /// The request's calls were cancelled: its contexts are ending.
    calls_cancelled: bool,
    ended: bool,
}

/// What a finished chain leaves for the next one (`Chain::reusing`): its
/// allocations, emptied. A request whose chain reuses one allocates
/// nothing for it.
#[derive(Default)]
pub struct Spare {
    filters: Vec<FilterRun>,
    /// The request state, cleared, when nothing else held it any more.
    state: Option<Rc<RefCell<RequestState>>>,
    outputs: [Vec<u8>; 2],
}

/// The body buffer a spare keeps at most: a large body's buffer is not
/// held for a small one.
const SPARE_OUTPUT_LIMIT: usize = 64 * 1024;

impl Chain {
    pub fn new(worker: Rc<Worker>, request: RequestRef, filter_ids: &[u32], config: ChainConfig) -> Chain {
        Chain::reusing(Spare::default(), worker, request, filter_ids, config)
    }

    /// A chain in the allocations a finished one left.
    pub fn reusing(
        spare: Spare,
        worker: Rc<Worker>,
        request: RequestRef,
        filter_ids: &[u32],
        config: ChainConfig,
    ) -> Chain {
        let Spare {
            mut filters,
            state,
            outputs,
        } = spare;
        let run = |id: usize, handle| FilterRun::new(id, worker.filter_info(id), handle);
        match config.isolation {
            // the common case, once per request: no list but the chain's
            Isolation::None => filters.extend(filter_ids.iter().map(|&id| {
                let id = id as usize;
                run(id, worker.filter(id, config.failure == FailurePolicy::Reload))
            })),
            Isolation::Request | Isolation::Filter => {
                let handles = PrivateHandles::new(&worker, filter_ids, config.isolation);
                filters.extend(handles.map(|(id, handle)| run(id, handle)));
            }
        }
        let state = match state {
            Some(state) => {
                state
                    .borrow_mut()
                    .begin(request, config.connection, filters.len());
                state
            }
            None => Rc::new(RefCell::new(RequestState::new(
                request,
                config.connection,
                filters.len(),
            ))),
        };
        let mut flows = outputs.map(|output| Flow {
            output,
            ..Flow::default()
        });
        if config.connection {
            // the upstream's data has no headers to wait for
            flows[Direction::Response as usize].headers_done = true;
        }
        Chain {
            worker,
            state,
            filters,
            flows,
            limits: config.limits,
            failure: config.failure,
            sent_response: None,
            closed: [false; 2],
            logged: false,
            calls_cancelled: false,
            ended: false,
        }
    }

    /// Whether a filter of the chain has a body callback for a direction.
    /// nginx only hands bodies to chains that have one.
    pub fn wants_body(&self, direction: Direction) -> bool {
        let connection = self.connection();
        self.filters.iter().any(|run| {
            let vm = run.slot.as_ref().map(|slot| slot.borrow());
            vm.is_some_and(|vm| {
                vm.as_ref()
                    .is_some_and(|vm| vm.has_data_callback(connection, direction))
            })
        })
    }

    /// The direction's headers, through the chain from the start.
    pub fn on_headers(&mut self, direction: Direction, end_of_stream: bool) -> Step {
        self.flows[direction as usize].output.clear();
        if direction == Direction::Response {
            self.state.borrow_mut().response_headers = true;
        }
        let flow = &mut self.flows[direction as usize];
        flow.headers_started = true;
        flow.headers_end_of_stream = end_of_stream;
        let next = self.run_headers(direction);
        self.step(direction, next, Output::Nothing, false)
    }

    /// Body data for a direction (the parts of one chunk, in order). While
    /// the headers are held it waits for them.
    pub fn on_body(&mut self, direction: Direction, parts: &[&[u8]], end_of_stream: bool) -> Step {
        let flow = &mut self.flows[direction as usize];
        // the last output's buffer (lent to nginx until this call) takes
        // the data
        let mut data = std::mem::take(&mut flow.output);
        data.clear();
        data.reserve(parts.iter().map(|part| part.len()).sum());
        for part in parts {
            data.extend_from_slice(part);
        }
        if !flow.headers_done {
            let queued = flow.queued.get_or_insert_with(Held::default);
            queued.data.append(&mut data);
            queued.end_of_stream |= end_of_stream;
            let held = queued.data.len();
            flow.output = data;
            if self.over_limit(direction, held) && !self.limits.pass_on_overflow {
                self.log_overflow(0, held, "the headers are held: failing the request");
                return self.step(direction, Next::Fail, Output::Nothing, false);
            }
            return self.step(direction, Next::Pause, Output::Nothing, false);
        }
        self.feed(direction, 0, data, end_of_stream, false)
    }

    /// The response trailers, through the chain (after its body, which
    /// ended without end_of_stream). nginx never carries request trailers.
    pub fn on_trailers(&mut self, direction: Direction) -> Step {
        self.flows[direction as usize].output.clear();
        self.state.borrow_mut().response_trailers = Trailers::Present;
        for position in 0..self.filters.len() {
            let i = self.filter_at(direction, position);
            let trailers = self.header_count(HeaderMap::ResponseTrailers);
            let result = self.callback(i, direction, |vm, id| vm.on_trailers(direction, id, trailers));
            match self.after(i, direction, result, |status| status != 0) {
                Next::Continue => {}
                Next::Pause => self.log(
                    i,
                    LogLevel::Warn,
                    "pausing in on_response_trailers is not supported: continuing",
                ),
                next => return self.step(direction, next, Output::Nothing, false),
            }
        }
        self.step(direction, Next::Continue, Output::Nothing, false)
    }

    /// Acts on what filters asked for from outside the stream's callbacks:
    /// a local response, a close, or continuing the direction (the headers
    /// where they stopped, or the body data of the filters that asked).
    /// `Pause` if the direction is still held.
    pub fn resume(&mut self, direction: Direction) -> Step {
        self.flows[direction as usize].output.clear();
        let requested = {
            let state = self.state.borrow();
            if state.close_requested {
                return self.step(direction, Next::Close, Output::Nothing, false);
            }
            if state.local_response.is_some() {
                return self.step(direction, Next::LocalResponse, Output::Nothing, false);
            }
            drop(state);
            if self.drop_lost_filters(direction) == Next::Fail {
                return self.step(direction, Next::Fail, Output::Nothing, false);
            }
            std::mem::take(&mut self.state.borrow_mut().continue_requested[direction as usize])
        };
        let flow = &self.flows[direction as usize];
        if !flow.headers_done {
            if requested.is_empty() || !flow.headers_started {
                return self.step(direction, Next::Pause, Output::Nothing, false);
            }
            let next = self.run_headers(direction);
            if next != Next::Continue {
                return self.step(direction, next, Output::Nothing, false);
            }
            return match self.flows[direction as usize].queued.take() {
                Some(queued) => self.feed(direction, 0, queued.data, queued.end_of_stream, true),
                None => self.step(direction, Next::Continue, Output::Nothing, false),
            };
        }
        for position in 0..self.filters.len() {
            let i = self.filter_at(direction, position);
            if !requested.contains(&i) {
                continue;
            }
            let held = self.state.borrow_mut().body_mut(direction, i).take();
            if let Some(held) = held {
                return self.feed(direction, position + 1, held.data, held.end_of_stream, true);
            }
        }
        let holding = self.state.borrow().holds_body(direction);
        let next = if holding { Next::Pause } else { Next::Continue };
        self.step(direction, next, Output::Nothing, false)
    }

    /// The filters whose contexts lived in an instance that failed since
    /// (another request's callback failed it) end as `proxy_wasm_failure`
    /// says: `Fail`, or skipped; one skipped while it held the direction
    /// lets it go on.
    fn drop_lost_filters(&mut self, direction: Direction) -> Next {
        for i in 0..self.filters.len() {
            let run = &mut self.filters[i];
            if run.skipped || run.trapped || run.context_id.is_none() || run.alive() {
                continue;
            }
            run.unavailable.get_or_insert_with(|| LOST.into());
            if self.failed(i) == Next::Fail {
                return Next::Fail;
            }
            let flow = &self.flows[direction as usize];
            let headers_held_here = !flow.headers_done
                && flow.headers_started
                && flow.headers_next > 0
                && self.filter_at(direction, flow.headers_next - 1) == i;
            let mut state = self.state.borrow_mut();
            let body_held_here = state.body(direction, i).is_some();
            if headers_held_here || body_held_here {
                let requested = &mut state.continue_requested[direction as usize];
                if !requested.contains(&i) {
                    requested.push(i);
                }
            }
        }
        Next::Continue
    }

    /// The body data of the last step with `Output::Data`.
    pub fn output(&self, direction: Direction) -> &[u8] {
        &self.flows[direction as usize].output
    }

    /// The response headers left for the client: no local response can
    /// replace them any more.
    pub fn response_sent(&mut self) {
        self.state.borrow_mut().response_started = true;
    }

    /// The local response a filter asked for, once: nginx sends it.
    pub fn take_local_response(&mut self) -> Option<&LocalResponse> {
        let mut state = self.state.borrow_mut();
        let pending = state.local_response.take()?;
        // the request is answered: its calls are of no use any more
        self.worker.cancel_calls_of(state.request);
        if !pending.details.is_empty() {
            state.response_code_details = Some(pending.details.clone());
        }
        drop(state);
        Some(self.sent_response.insert(pending))
    }

    /// Lends a property the request's filters stored (by dotted path).
    /// The request's state, for the proxy's own code reading properties.
    pub fn state(&self) -> &Rc<RefCell<RequestState>> {
        &self.state
    }

    pub fn with_property<R>(&self, key: &[u8], visit: impl FnOnce(Option<&[u8]>) -> R) -> R {
        visit(self.state.borrow().properties.get(key))
    }

    /// `on_log` for every context, in chain order.
    pub fn on_log(&mut self) {
        if self.logged {
            return;
        }
        self.logged = true;
        // one filter: its context's end follows its log at once (as in
        // `end`, no other filter comes between), so both run in one guest
        // call; then no call may come back to the context (those it made
        // in on_log too)
        if self.filters.len() == 1 && self.filters[0].context_id.is_some() {
            let _ = self.call(0, |vm, id| vm.log_and_end_context(id));
            self.filters[0].context_id = None;
            self.cancel_calls();
            return;
        }
        for i in 0..self.filters.len() {
            if self.filters[i].context_id.is_some() {
                let _ = self.call(i, |vm, id| vm.on_log(id));
            }
        }
    }

    /// The filter at a position of a direction: responses go through the
    /// chain in reverse, as through Envoy's encoders.
    fn filter_at(&self, direction: Direction, position: usize) -> usize {
        match direction {
            Direction::Request => position,
            Direction::Response => self.filters.len() - 1 - position,
        }
    }

    /// Whether the chain runs a connection's network filters.
    fn connection(&self) -> bool {
        self.state.borrow().connection
    }

    fn step(&self, direction: Direction, next: Next, output: Output, end_of_stream: bool) -> Step {
        let flow = &self.flows[direction as usize];
        let state = self.state.borrow();
        // what filters hold bounds a connection's reading (HTTP has limits
        // of its own)
        let held = match state.connection {
            true => flow.queued.as_ref().map_or(0, |queued| queued.data.len()) + state.held_bytes(direction),
            false => 0,
        };
        Step {
            next,
            headers_done: flow.headers_done,
            output,
            end_of_stream,
            held,
        }
    }

    /// A side of the connection closed: `on_downstream_connection_close`
    /// (the request direction) or `on_upstream_connection_close` of every
    /// filter with a context, once per side.
    pub fn on_close(&mut self, direction: Direction, peer: PeerType) {
        let connection = self.connection();
        let closed = &mut self.closed[direction as usize];
        if !connection || *closed {
            return;
        }
        *closed = true;
        for i in 0..self.filters.len() {
            if self.filters[i].context_id.is_some() {
                let _ = self.call(i, |vm, id| vm.on_connection_close(direction, id, peer));
            }
        }
    }

    /// The headers through the filters from where they stopped.
    fn run_headers(&mut self, direction: Direction) -> Next {
        let map = match direction {
            Direction::Request => HeaderMap::Request,
            Direction::Response => HeaderMap::Response,
        };
        // counted once, and again only after a filter changed headers
        let mut counted: Option<(u64, usize)> = None;
        while self.flows[direction as usize].headers_next < self.filters.len() {
            let flow = &mut self.flows[direction as usize];
            let position = flow.headers_next;
            let end_of_stream = flow.headers_end_of_stream;
            flow.headers_next += 1;
            let i = self.filter_at(direction, position);
            if self.connection() {
                let result = self.callback(i, direction, |vm, id| vm.on_new_connection(id));
                let next = self.after(i, direction, result, |status| status != 0);
                if next != Next::Continue {
                    return next;
                }
                continue;
            }
            let changes = self.worker.header_changes();
            let headers = match counted {
                Some((seen, count)) if seen == changes => count,
                _ => {
                    let count = self.header_count(map);
                    counted = Some((changes, count));
                    count
                }
            };
            let result = self.callback(i, direction, |vm, id| {
                vm.on_headers(direction, id, headers, end_of_stream)
            });
            let next = self.after(i, direction, result, |status| {
                Action::from_headers_status(status) == Action::Pause
            });
            if next != Next::Continue {
                return next;
            }
        }
        self.flows[direction as usize].headers_done = true;
        Next::Continue
    }

    /// Body data through the filters from `start`. Each filter gets what
    /// it held joined with the new data; one that pauses keeps it all.
    /// `changed`: the data is not what nginx just handed in.
    fn feed(
        &mut self,
        direction: Direction,
        start: usize,
        mut data: Vec<u8>,
        end_of_stream: bool,
        mut changed: bool,
    ) -> Step {
        if direction == Direction::Response && end_of_stream {
            let mut state = self.state.borrow_mut();
            if state.response_trailers == Trailers::None {
                state.response_trailers = Trailers::Addable;
            }
        }
        for position in start..self.filters.len() {
            let i = self.filter_at(direction, position);
            let size = {
                let mut state = self.state.borrow_mut();
                state.body_changed = false;
                let slot = state.body_mut(direction, i);
                let mut held = match slot.take() {
                    Some(mut held) => {
                        changed = true;
                        held.data.append(&mut data);
                        held
                    }
                    None => Held { data, end_of_stream },
                };
                held.end_of_stream = end_of_stream;
                let size = held.data.len();
                *slot = Some(held);
                size
            };
            let connection = self.connection();
            let result = self.callback(i, direction, |vm, id| {
                vm.on_data(connection, direction, id, size, end_of_stream)
            });
            let mut next = self.after(i, direction, result, |status| status != 0);
            if next == Next::Pause && self.over_limit(direction, size) {
                if self.limits.pass_on_overflow {
                    self.log_overflow(i, size, "passing it on");
                    next = Next::Continue;
                } else {
                    self.log_overflow(i, size, "failing the request");
                    next = Next::Fail;
                }
            }
            let mut state = self.state.borrow_mut();
            changed |= state.body_changed;
            if next == Next::Pause {
                drop(state);
                return self.step(direction, Next::Pause, Output::Nothing, false);
            }
            data = state
                .body_mut(direction, i)
                .take()
                .map(|held| held.data)
                .unwrap_or_default();
            drop(state);
            if next != Next::Continue {
                return self.step(direction, next, Output::Nothing, false);
            }
        }
        self.flows[direction as usize].output = data;
        let output = if changed { Output::Data } else { Output::Unchanged };
        self.step(direction, Next::Continue, output, end_of_stream)
    }

    /// What a callback's outcome means for the stream: a failure, a close
    /// or a local response asked for during it, a pause (unless the filter
    /// continued the direction meanwhile), or going on.
    fn after(
        &mut self,
        i: usize,
        direction: Direction,
        result: Result<i32, Trapped>,
        pauses: fn(i32) -> bool,
    ) -> Next {
        let continued = std::mem::take(&mut self.state.borrow_mut().continue_in_callback[direction as usize]);
        let Ok(status) = result else {
            return self.failed(i);
        };
        let state = self.state.borrow();
        if state.close_requested {
            return Next::Close;
        }
        if state.local_response.is_some() {
            return Next::LocalResponse;
        }
        if pauses(status) && !continued {
            Next::Pause
        } else {
            Next::Continue
        }
    }

    /// A filter failed, or cannot run: with `fail_open` it is skipped from
    /// now on; otherwise the request fails.
    fn failed(&mut self, i: usize) -> Next {
        let run = &mut self.filters[i];
        if run.skipped {
            return Next::Continue;
        }
        let why = run.unavailable.take();
        if self.failure == FailurePolicy::FailOpen {
            run.skipped = true;
            let message = match why {
                Some(why) => format!("filter unavailable ({why}): skipped (proxy_wasm_failure fail_open)"),
                None => {
                    "filter failed: skipped for the rest of the request (proxy_wasm_failure fail_open)".into()
                }
            };
            self.log(i, LogLevel::Warn, &message);
            return Next::Continue;
        }
        if let Some(why) = why {
            self.log(
                i,
                LogLevel::Error,
                &format!("filter unavailable: {why}: failing the request"),
            );
        }
        Next::Fail
    }

    fn over_limit(&self, direction: Direction, held: usize) -> bool {
        // a connection's data is bounded by nginx, which stops reading
        direction == Direction::Response && held > self.limits.response_body && !self.connection()
    }

    fn log_overflow(&self, i: usize, held: usize, outcome: &str) {
        let message = format!(
            "{held} bytes of response body held, over wasm_response_body_buffers ({}): {outcome}",
            self.limits.response_body
        );
        self.log(i, LogLevel::Error, &message);
    }

    fn header_count(&self, map: HeaderMap) -> usize {
        let request = self.state.borrow().request;
        self.worker.host.header_count(request, map)
    }

    /// A callback of the stream for a direction: what filters ask for
    /// meanwhile takes effect when it returns.
    fn callback<R>(
        &mut self,
        i: usize,
        direction: Direction,
        body: impl FnOnce(&mut Vm, u32) -> Result<R, Trapped>,
    ) -> Result<R, Trapped> {
        self.state.borrow_mut().in_callback = Some(direction);
        let result = self.call(i, body);
        self.state.borrow_mut().in_callback = None;
        result
    }

    /// Runs a callback in filter `i`'s HTTP context, creating the context
    /// on first use. Fails if the filter cannot run or its instance was
    /// replaced since the request started.
    fn call<R>(
        &mut self,
        i: usize,
        body: impl FnOnce(&mut Vm, u32) -> Result<R, Trapped>,
    ) -> Result<R, Trapped> {
        let run = &mut self.filters[i];
        if run.skipped {
            return Err(Trapped);
        }
        // a filter with no context yet may move to the instance that
        // replaced a failed one
        if run.shared && run.context_id.is_none() && !run.alive() {
            run.take(self.worker.filter(run.id, self.failure == FailurePolicy::Reload));
        }
        let (Some(slot), Some(info)) = (&run.slot, &run.info) else {
            return Err(Trapped);
        };
        let mut guard = slot.borrow_mut();
        let Some(vm) = guard.as_mut().filter(|vm| vm.runs(run.generation)) else {
            if run.context_id.is_some() && !run.trapped {
                run.unavailable.get_or_insert_with(|| LOST.into());
            }
            return Err(Trapped);
        };
        let result = match run.context_id {
            Some(id) => body(vm, id),
            None => {
                let (id, result) = vm.create_http_context(run.root_id, info, &self.state, i, body);
                run.context_id = Some(id);
                result
            }
        };
        let failed = vm.failed();
        run.trapped |= failed;
        // a shared instance's root contexts tick in the worker
        let ticks = vm.take_tick_requests();
        drop(guard);
        if run.shared && failed {
            self.worker
                .instance_failed(run.module, self.failure == FailurePolicy::Reload);
        } else if run.shared && !ticks.is_empty() {
            self.worker.apply_ticks(run.module, run.generation, ticks);
        }
        result
    }

    fn log(&self, i: usize, level: LogLevel, message: &str) {
        let run = &self.filters[i];
        let name = run.info.as_ref().map_or("?", |info| &info.name);
        let request = Some(self.state.borrow().request);
        self.worker.host.log(
            request,
            level,
            name,
            run.context_id.unwrap_or(0),
            message.as_bytes(),
        );
    }
}

impl Chain {
    /// Ends every context, once: `on_log` if the log phase did not run,
    /// then `on_done` and `on_delete`; then the root contexts of the
    /// instances made for this request. What filters stored stays readable
    /// until the stream goes.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.cancel_calls();
        self.on_log();
        for i in 0..self.filters.len() {
            if self.filters[i].context_id.is_some() {
                let _ = self.call(i, |vm, id| vm.end_context(id));
            }
        }
        let mut ended: ChainList<&VmSlot> = ChainList::new();
        for run in &self.filters {
            let Some(slot) = run.slot.as_ref().filter(|_| !run.shared) else {
                continue;
            };
            if !ended.iter().any(|other| Rc::ptr_eq(other, slot)) {
                // roots that finish later keep their instance
                let outcome = slot
                    .borrow_mut()
                    .as_mut()
                    .map(|vm| (vm.end_roots(), vm.generation));
                match outcome {
                    Some((true, generation)) => self.worker.linger(slot.clone(), generation),
                    Some((false, generation)) => self.worker.release_instance(slot, generation),
                    None => {}
                }
                ended.push(slot);
            }
        }
    }
}

impl Chain {
    /// No call may come back to contexts that are ending: the request's
    /// calls are cancelled (once: an ended context makes no more).
    fn cancel_calls(&mut self) {
        if !std::mem::replace(&mut self.calls_cancelled, true) {
            let request = self.state.borrow().request;
            self.worker.cancel_calls_of(request);
        }
    }

    /// Ends the chain and gives back its allocations for the next one:
    /// what is left of it is only to be dropped.
    pub fn take_spare(&mut self) -> Spare {
        self.end();
        let mut filters = std::mem::take(&mut self.filters);
        filters.clear();
        let outputs = [Direction::Request, Direction::Response].map(|direction| {
            let mut output = std::mem::take(&mut self.flows[direction as usize].output);
            if output.capacity() > SPARE_OUTPUT_LIMIT {
                return Vec::new();
            }
            output.clear();
            output
        });
        // contexts are gone with the chain's end: what still holds the
        // state keeps it; a spare keeps none of the request's data
        let state = (Rc::strong_count(&self.state) == 1 && Rc::weak_count(&self.state) == 0).then(|| {
            self.state.borrow_mut().clear();
            self.state.clone()
        });
        Spare {
            filters,
            state,
            outputs,
        }
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        self.end();
    }
}

/// Small lists a chain builds while it starts and ends (its filters'
/// ids by module, its instances): on the stack for chains of up to
/// eight filters, so that a request allocates nothing for them.
type ChainList<T> = SmallVec<[T; 8]>;

/// The handles of a chain's filters in instances made for one request:
/// one per module of the chain (`stream`), or one per filter (`filter`),
/// each with the root contexts of the filters it runs. An iterator of
/// (filter id, handle), in the chain's order.
struct PrivateHandles<'a> {
    worker: &'a Worker,
    ids: &'a [u32],
    isolation: Isolation,
    position: usize,
    /// Each module's instance so far (`stream`), None if it could not start.
    made: ChainList<(usize, Option<VmSlot>)>,
}

impl<'a> PrivateHandles<'a> {
    fn new(worker: &'a Worker, ids: &'a [u32], isolation: Isolation) -> Self {
        PrivateHandles {
            worker,
            ids,
            isolation,
            position: 0,
            made: ChainList::new(),
        }
    }

    /// The instance for a filter of `module`: the chain's one for that
    /// module, made with the root contexts of all its filters in the
    /// chain (`stream`), or the filter's own.
    fn instance(&mut self, module: usize, id: usize) -> Option<VmSlot> {
        if self.isolation != Isolation::Request {
            return self.worker.private_instance(module, &[id]);
        }
        if let Some((_, slot)) = self.made.iter().find(|(m, _)| *m == module) {
            return slot.clone();
        }
        let mut same: ChainList<usize> = self
            .ids
            .iter()
            .map(|&other| other as usize)
            .filter(|&other| self.worker.filter_module(other) == Some(module))
            .collect();
        same.sort_unstable();
        same.dedup();
        let slot = self.worker.private_instance(module, &same);
        self.made.push((module, slot.clone()));
        slot
    }

    fn handle(&mut self, id: usize) -> Result<FilterHandle, String> {
        let module = self.worker.filter_module(id).ok_or("no such filter")?;
        let slot = self.instance(module, id).ok_or("its instance could not start")?;
        let (generation, root_id) = {
            let vm = slot.borrow();
            let vm = vm.as_ref().ok_or("its instance could not start")?;
            let root = vm.root_context(id).ok_or("it failed to start")?;
            (vm.generation, root)
        };
        Ok(FilterHandle {
            slot,
            generation,
            root_id,
            module,
            shared: false,
        })
    }
}

impl Iterator for PrivateHandles<'_> {
    type Item = (usize, Result<FilterHandle, String>);

    fn next(&mut self) -> Option<Self::Item> {
        let id = *self.ids.get(self.position)? as usize;
        self.position += 1;
        Some((id, self.handle(id)))
    }
}
