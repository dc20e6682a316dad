//! The hot paths of the host, without nginx: the time and the heap
//! allocations of each host function a filter calls per request, and of a
//! whole request through one filter and through a chain of ten.
//!
//!     cargo bench --bench hostcalls            # measure (a table)
//!     cargo bench --bench hostcalls -- --check # also enforce the budgets
//!
//! Times depend on the machine; allocations do not. `--check` (run by
//! `make test`) fails when a path allocates more than its budget: an
//! allocation creeping into a hot path is the regression this guards
//! against, and it cannot hide in timing noise.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
use common::MockHost;

use ngx_proxy_wasm::abi::pairs::Pair;
use ngx_proxy_wasm::abi::Direction;
use ngx_proxy_wasm::abi::{HostResult, LogLevel};
use ngx_proxy_wasm::chain::{Chain, ChainConfig, Spare};
use ngx_proxy_wasm::host::prelude::*;
use ngx_proxy_wasm::host::{
    Attribute, CallParams, CallRef, Fact, HeaderError, HeaderMap, HeaderOp, MetricRef, MetricType, NoRoom,
    RequestRef, StoredMetric, TimerRef, VariableError, Wake, ZoneRef,
};
use ngx_proxy_wasm::runtime::snapshot::PageMap;
use ngx_proxy_wasm::runtime::{Isolation, Runtime, RuntimeConfig, Worker};

/// Counts heap allocations, to tell how many a path makes.
struct Counting;

thread_local! {
    /// Allocations of this thread: the one that runs requests, not the
    /// epoch ticker's, whose timing depends on the machine's load.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
}

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: the caller's guarantees, passed on.
        unsafe { System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A host as cheap as the benchmark can make it: fixed request headers,
/// response header changes counted and dropped, logs below its level;
/// what the benchmark does not use is the mock host's.
struct BenchHost {
    header_changes: Cell<u64>,
    mock: &'static MockHost,
}

const REQUEST_HEADERS: &[Pair<'static>] = &[
    (b":method", b"GET"),
    (b":path", b"/bench?a=1"),
    (b":scheme", b"http"),
    (b":authority", b"localhost"),
    (b"user-agent", b"wrk"),
    (b"accept", b"*/*"),
    (b"x-request-id", b"42"),
];

const RESPONSE_HEADERS: &[Pair<'static>] = &[
    (b":status", b"200"),
    (b"content-type", b"image/gif"),
    (b"content-length", b"43"),
];

impl Logging for BenchHost {
    fn log(&self, _: Option<RequestRef>, _: LogLevel, _: &str, _: u32, _: &[u8]) {}

    fn log_level(&self, _: Option<RequestRef>) -> LogLevel {
        LogLevel::Info
    }
}

impl Headers for BenchHost {
    fn with_headers(
        &self,
        _: RequestRef,
        map: HeaderMap,
        visit: &mut dyn FnMut(&[Pair<'_>]) -> HostResult,
    ) -> HostResult {
        visit(match map {
            HeaderMap::Request => REQUEST_HEADERS,
            HeaderMap::Response => RESPONSE_HEADERS,
            HeaderMap::ResponseTrailers => &[],
        })
    }

    fn set_header(
        &self,
        _: RequestRef,
        _: HeaderMap,
        _: HeaderOp,
        _: &[u8],
        _: &[u8],
    ) -> Result<(), HeaderError> {
        self.header_changes.set(self.header_changes.get() + 1);
        Ok(())
    }
}

impl RequestFlow for BenchHost {
    fn schedule_resume(&self, _: RequestRef) {}
}

impl Timers for BenchHost {
    fn timer_add(&self, _: Duration, _: u64) -> Option<TimerRef> {
        None
    }

    fn timer_hold(&self, _: Duration, _: u64) -> Option<TimerRef> {
        None
    }

    fn timer_cancel(&self, _: TimerRef) {}
}

/// What the benchmark does not measure goes to the mock host.
macro_rules! delegate_to_mock {
    ($($trait:ident { $(fn $name:ident(&self $(, $arg:ident: $ty:ty)*) -> $ret:ty;)* })*) => {
        $(impl $trait for BenchHost {
            $(fn $name(&self $(, $arg: $ty)*) -> $ret {
                self.mock.$name($($arg),*)
            })*
        })*
    };
}

delegate_to_mock! {
    Properties {
        fn with_attribute(&self, request: RequestRef, attribute: Attribute, visit: &mut dyn FnMut(Option<Fact<'_>>) -> HostResult) -> HostResult;
        fn with_variable(&self, request: RequestRef, name: &[u8], visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult) -> Result<HostResult, VariableError>;
        fn set_variable(&self, request: RequestRef, name: &[u8], value: &[u8]) -> Result<(), VariableError>;
        fn with_static_property(&self, request: Option<RequestRef>, key: &[u8], visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult) -> HostResult;
        fn with_host_property(&self, request: Option<RequestRef>, path: &[u8], visit: &mut dyn FnMut(Option<&[u8]>) -> HostResult) -> HostResult;
        fn set_host_property(&self, request: Option<RequestRef>, path: &[u8], value: &[u8]) -> Result<(), VariableError>;
    }
    HttpCalls {
        fn call_start(&self, request: Option<RequestRef>, params: &CallParams<'_>) -> Result<CallRef, String>;
        fn call_cancel(&self, call: CallRef) -> ();
        fn call_send(&self, call: CallRef, data: &[u8]) -> bool;
    }
    SharedMemory {
        fn with_zone(&self, zone: ZoneRef, f: &mut dyn FnMut(&mut dyn LockedZone)) -> bool;
        fn worker_pid(&self) -> i64;
        fn wakeup_listen(&self) -> bool;
        fn wake(&self, pid: i64, queue: &[u8]) -> Wake;
    }
    Metrics {
        fn metric_find_or_add(&self, name: &[u8], kind: MetricType, owner: &str, slots: usize) -> Result<Option<StoredMetric>, NoRoom>;
        fn metric_add(&self, metric: MetricRef, slot: usize, delta: u64) -> ();
        fn metric_store(&self, metric: MetricRef, slot: usize, value: u64) -> ();
        fn metric_load(&self, metric: MetricRef, slot: usize) -> u64;
    }
}

/// What one measured path costs.
struct Measured {
    what: &'static str,
    nanos: f64,
    allocations: f64,
    /// The most allocations per operation `--check` accepts.
    budget: f64,
}

/// Runs `body` (which does `per_run` operations) for about `time`, after
/// a warm-up: its time and allocations per operation.
fn measure(
    what: &'static str,
    budget: f64,
    time: Duration,
    per_run: u64,
    mut body: impl FnMut(),
) -> Measured {
    for _ in 0..10 {
        body();
    }
    let mut runs = 0u64;
    let allocations = allocations();
    let started = Instant::now();
    while started.elapsed() < time || runs < 10 {
        body();
        runs += 1;
    }
    let elapsed = started.elapsed();
    let allocations = self::allocations() - allocations;
    let ops = (runs * per_run) as f64;
    Measured {
        what,
        nanos: elapsed.as_nanos() as f64 / ops,
        allocations: allocations as f64 / ops,
        budget,
    }
}

struct Setup {
    worker: Rc<Worker>,
    filters: Vec<u32>,
    isolation: Isolation,
    /// What the last chain left, as nginx's side keeps it.
    spare: Cell<Option<Spare>>,
    _runtime: Runtime,
}

impl Setup {
    fn chain(&self) -> Chain {
        Chain::reusing(
            self.spare.take().unwrap_or_default(),
            self.worker.clone(),
            RequestRef(1),
            &self.filters,
            ChainConfig {
                isolation: self.isolation,
                ..Default::default()
            },
        )
    }

    fn end(&self, mut chain: Chain) {
        self.spare.set(Some(chain.take_spare()));
    }
}

fn setup(path: &Path, config: &str, chain: usize, isolation: Isolation) -> Setup {
    let host: &'static BenchHost = Box::leak(Box::new(BenchHost {
        header_changes: Cell::new(0),
        mock: MockHost::new(),
    }));
    let mut runtime = Runtime::new(host, RuntimeConfig::default()).expect("runtime");
    runtime.load_module("m", path, b"").expect("module loads");
    let filters = (0..chain)
        .map(|_| runtime.add_filter("m", config.as_bytes()).expect("filter starts") as u32)
        .collect();
    Setup {
        worker: runtime.worker(),
        filters,
        isolation,
        spare: Cell::new(None),
        _runtime: runtime,
    }
}

/// A whole request: headers both ways, a response body, the log phase,
/// and the end of the chain.
fn request(setup: &Setup, body: &[u8]) {
    let mut chain = setup.chain();
    chain.on_headers(Direction::Request, true);
    chain.on_headers(Direction::Response, false);
    chain.on_body(Direction::Response, &[body], true);
    chain.on_log();
    setup.end(chain);
}

fn host_functions(time: Duration, results: &mut Vec<Measured>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("t/wat/hostcall_loops.wat");
    // the filter's on_request_headers makes 1000 calls of the host function
    // its configuration names; each run also creates and ends one stream,
    // a thousandth of which is counted in each call
    for (config, what, budget) in [
        ("v", "get_header_map_value", 0.01),
        ("p", "get_header_map_pairs (7 headers)", 0.01),
        ("a", "add_header_map_value", 0.01),
        ("b: 16 bytes or more", "get_buffer_bytes (16 bytes)", 0.01),
        ("l", "log, below the level", 0.01),
    ] {
        let setup = setup(&path, config, 1, Isolation::None);
        results.push(measure(what, budget, time, 1000, || {
            let mut chain = setup.chain();
            chain.on_headers(Direction::Request, true);
            setup.end(chain);
        }));
    }
}

/// False when the filter is not built (and the budgets cannot be checked).
fn requests(time: Duration, results: &mut Vec<Measured>) -> bool {
    let Some(dir) = std::env::var_os("NGX_PROXY_WASM_TEST_FILTERS") else {
        eprintln!(
            "NGX_PROXY_WASM_TEST_FILTERS is not set: the request benchmarks need bench.wasm (make filters)"
        );
        return false;
    };
    let path = PathBuf::from(dir).join("bench.wasm");
    let body = vec![b'a'; 43];
    for (chain, what, budget) in [
        // none: a chain reuses what the last one left (its filter list,
        // its state and its filters' body slots, the body's buffer)
        (1, "request through the bench filter", 0.0),
        (10, "request through a chain of 10", 0.0),
    ] {
        let setup = setup(&path, "headers", chain, Isolation::None);
        results.push(measure(what, budget, time, 1, || request(&setup, &body)));
    }
    // a per-request instance is a reset idle one: only its slot (an Rc)
    // is allocated, where the kernel says which pages were written
    if PageMap::open().is_some() {
        let setup = setup(&path, "headers", 1, Isolation::Request);
        results.push(measure(
            "request through the bench filter, isolation request",
            1.0,
            time,
            1,
            || request(&setup, &body),
        ));
    } else {
        eprintln!("no PAGEMAP_SCAN here: per-request instances are not reused, their budget is not checked");
    }
    true
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let check = args.iter().any(|a| a == "--check");
    // `cargo test --benches` runs this with no time to spare
    let quick = check || args.iter().any(|a| a == "--test");
    let time = if quick {
        Duration::from_millis(100)
    } else {
        Duration::from_secs(2)
    };
    let mut results = Vec::new();
    host_functions(time, &mut results);
    let complete = requests(time, &mut results);
    println!("| path | ns per call | heap allocations per call | budget |");
    println!("| --- | ---: | ---: | ---: |");
    let mut over = false;
    for m in &results {
        let ok = m.allocations <= m.budget;
        over |= !ok;
        println!(
            "| {} | {:.0} | {:.3} | {}{} |",
            m.what,
            m.nanos,
            m.allocations,
            m.budget,
            if ok { "" } else { " (over)" }
        );
    }
    if check && over {
        eprintln!("a hot path allocates more than its budget");
        return ExitCode::FAILURE;
    }
    if check && !complete {
        eprintln!("the request budgets were not checked");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
