//! One request's run through its filter chain: the HTTP contexts of every
//! filter, created on their first callback, and the decision nginx acts on
//! after each phase.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use crate::abi::state::{FilterInfo, LocalResponse, StreamState};
use crate::abi::{Action, LogLevel};
use crate::host::{HeaderMap, RequestRef};
use crate::runtime::vm::{Trapped, Vm};
use crate::runtime::{VmSlot, Worker};

/// What nginx does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    Continue,
    Pause,
    LocalResponse,
    Fail,
}

/// One filter of the chain for this request.
struct FilterRun {
    info: Option<Arc<FilterInfo>>,
    /// None when the filter cannot run in this worker.
    slot: Option<VmSlot>,
    generation: u64,
    root_id: u32,
    context_id: Option<u32>,
}

pub struct Stream {
    worker: Rc<Worker>,
    state: Rc<RefCell<StreamState>>,
    filters: Vec<FilterRun>,
    /// The local response being sent; nginx holds pointers into it.
    sent_response: Option<LocalResponse>,
    logged: bool,
}

impl Stream {
    pub fn new(worker: Rc<Worker>, request: RequestRef, filter_ids: &[u32]) -> Stream {
        let filters = filter_ids
            .iter()
            .map(|&id| {
                let handle = worker.filter(id as usize);
                FilterRun {
                    info: worker.filter_info(id as usize).cloned(),
                    generation: handle.as_ref().map_or(0, |h| h.generation),
                    root_id: handle.as_ref().map_or(0, |h| h.root_id),
                    slot: handle.map(|h| h.slot),
                    context_id: None,
                }
            })
            .collect();
        Stream {
            worker,
            state: Rc::new(RefCell::new(StreamState::new(request))),
            filters,
            sent_response: None,
            logged: false,
        }
    }

    pub fn on_request_headers(&mut self, end_of_stream: bool) -> Next {
        for i in 0..self.filters.len() {
            let headers = self.header_count(HeaderMap::Request);
            let result = self.call(i, |vm, id| vm.on_request_headers(id, headers, end_of_stream));
            match self.next_after_headers(i, result) {
                Next::Continue => continue,
                next => return next,
            }
        }
        Next::Continue
    }

    /// Response callbacks run in reverse chain order, as Envoy's encoders.
    pub fn on_response_headers(&mut self, end_of_stream: bool) -> Next {
        {
            let mut state = self.state.borrow_mut();
            state.response_headers = true;
            state.response_started = true;
        }
        for i in (0..self.filters.len()).rev() {
            let headers = self.header_count(HeaderMap::Response);
            let result = self.call(i, |vm, id| vm.on_response_headers(id, headers, end_of_stream));
            match self.next_after_headers(i, result) {
                Next::Continue => continue,
                next => return next,
            }
        }
        Next::Continue
    }

    fn next_after_headers(&self, i: usize, result: Result<i32, Trapped>) -> Next {
        let Ok(status) = result else {
            return Next::Fail;
        };
        if self.state.borrow().local_response.is_some() {
            return Next::LocalResponse;
        }
        if Action::from_headers_status(status) == Action::Pause {
            self.log(
                i,
                LogLevel::Warn,
                "pausing a stream is not supported yet: continuing",
            );
        }
        Next::Continue
    }

    /// The local response a filter asked for, once: nginx sends it.
    pub fn take_local_response(&mut self) -> Option<&LocalResponse> {
        let pending = self.state.borrow_mut().local_response.take()?;
        Some(self.sent_response.insert(pending))
    }

    /// `on_log` for every context, in chain order.
    pub fn on_log(&mut self) {
        if self.logged {
            return;
        }
        self.logged = true;
        for i in 0..self.filters.len() {
            if self.filters[i].context_id.is_some() {
                let _ = self.call(i, |vm, id| vm.on_log(id));
            }
        }
    }

    fn header_count(&self, map: HeaderMap) -> usize {
        let request = self.state.borrow().request;
        let mut count = 0;
        let _ = self.worker.host.with_headers(request, map, &mut |pairs| {
            count = pairs.len();
            Ok(())
        });
        count
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
        let (Some(slot), Some(info)) = (&run.slot, &run.info) else {
            return Err(Trapped);
        };
        let mut guard = slot.borrow_mut();
        let vm = guard
            .as_mut()
            .filter(|vm| vm.generation == run.generation && !vm.failed)
            .ok_or(Trapped)?;
        let id = match run.context_id {
            Some(id) => id,
            None => {
                let id = vm.create_http_context(run.root_id, info, &self.state)?;
                run.context_id = Some(id);
                id
            }
        };
        body(vm, id)
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

impl Drop for Stream {
    /// Ends every context: `on_log` if the log phase did not run, then
    /// `on_done` and `on_delete`.
    fn drop(&mut self) {
        self.on_log();
        for i in 0..self.filters.len() {
            if self.filters[i].context_id.is_some() {
                let _ = self.call(i, |vm, id| vm.end_context(id));
            }
        }
    }
}
