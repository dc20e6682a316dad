//! Per-request instances (`proxy_wasm_isolation request` and `filter`):
//! each request gets an instance as its start left it, a reset one when a
//! request of the same filters has ended before (see `runtime::snapshot`).

mod common;

use common::{single_filter, wat_text, MockHost};
use ngx_proxy_wasm::abi::Direction;
use ngx_proxy_wasm::chain::{Chain, ChainConfig, Next};
use ngx_proxy_wasm::runtime::{Isolation, Runtime, RuntimeConfig, Worker, IDLE_LIMIT, IDLE_TOTAL_LIMIT};
use std::rc::Rc;

const REQUEST: &[(&str, &str)] = &[(":method", "GET"), (":path", "/"), (":authority", "localhost")];

fn isolated(worker: &Rc<Worker>, host: &MockHost, filters: &[u32], isolation: Isolation) -> Chain {
    let request = host.request(REQUEST);
    let config = ChainConfig {
        isolation,
        ..Default::default()
    };
    Chain::new(worker.clone(), request, filters, config)
}

/// Runs a request's headers through a chain and ends it.
fn serve(worker: &Rc<Worker>, host: &MockHost, filters: &[u32], isolation: Isolation) -> Next {
    let mut chain = isolated(worker, host, filters, isolation);
    let next = chain.on_headers(Direction::Request, true).next;
    chain.end();
    next
}

/// A runtime with the testbed filter configured each way given, or return
/// (not built): the host, the runtime, its worker and the filters' ids.
macro_rules! testbed_runtime {
    ($config:expr $(, $more:expr)*) => {{
        let Some(path) = common::filter("testbed.wasm") else {
            return;
        };
        let host = MockHost::new();
        #[allow(unused_mut)]
        let (mut runtime, worker, id) = single_filter(host, &path, "", $config);
        let ids = [id $(, runtime.add_filter("m", $more.as_bytes()).unwrap() as u32)*];
        (host, runtime, worker, ids)
    }};
}

#[test]
fn an_ended_request_leaves_its_instance_reset_for_the_next() {
    let (host, _runtime, worker, [id]) =
        testbed_runtime!("configure count; request_headers count; root_done log info ROOT_DONE");
    // the configuration's check and the shared instance
    let started = host.count("count 1");
    for round in 1..=5 {
        assert_eq!(serve(&worker, host, &[id], Isolation::Request), Next::Continue);
        // every request sees the count its instance's start left (1)
        assert_eq!(host.count("count 2"), round, "{}", host.dump());
        assert_eq!(host.count("ROOT_DONE"), round);
        assert_eq!(worker.idle_instances(), [true]);
    }
    // on_configure ran once more, for the one instance all five requests used
    assert_eq!(host.count("count 1"), started + 1);
}

#[test]
fn requests_at_once_get_instances_of_their_own() {
    let (host, _runtime, worker, [id]) = testbed_runtime!("request_headers count");
    assert_eq!(host.count("count"), 0);
    let mut chains: Vec<Chain> = (0..3)
        .map(|_| isolated(&worker, host, &[id], Isolation::Request))
        .collect();
    for chain in &mut chains {
        assert_eq!(chain.on_headers(Direction::Request, true).next, Next::Continue);
    }
    assert_eq!(host.count("count 1"), 3);
    for chain in &mut chains {
        chain.end();
    }
    assert_eq!(worker.idle_instances(), [true, true, true]);
    // they serve the next ones, each as new
    let mut chains: Vec<Chain> = (0..4)
        .map(|_| isolated(&worker, host, &[id], Isolation::Request))
        .collect();
    for chain in &mut chains {
        chain.on_headers(Direction::Request, true);
    }
    assert_eq!(host.count("count 1"), 7);
    assert_eq!(host.count("count 2"), 0);
    assert!(worker.idle_instances().is_empty());
}

#[test]
fn filter_isolation_keeps_instances_per_filter() {
    let (host, _runtime, worker, ids) = testbed_runtime!(
        "request_headers count",
        "request_headers count; request_headers log info second"
    );
    for _ in 0..3 {
        serve(&worker, host, &ids, Isolation::Filter);
    }
    assert_eq!(host.count("count 1"), 6, "{}", host.dump());
    assert_eq!(host.count("count 2"), 0);
    assert_eq!(worker.idle_instances(), [true, true]);
}

#[test]
fn a_failed_instance_is_dropped_not_reset() {
    let (host, _runtime, worker, [counts, panics]) = testbed_runtime!(
        "request_headers count",
        "request_headers count; request_headers panic"
    );
    assert_eq!(serve(&worker, host, &[panics], Isolation::Request), Next::Fail);
    assert!(worker.idle_instances().is_empty());
    assert_eq!(serve(&worker, host, &[panics], Isolation::Request), Next::Fail);
    assert_eq!(
        serve(&worker, host, &[counts], Isolation::Request),
        Next::Continue
    );
    assert_eq!(worker.idle_instances(), [true]);
    // each panicking request had a new instance, counting from its start
    assert_eq!(host.count("count 1"), 3, "{}", host.dump());
}

#[test]
fn an_instance_whose_memory_grew_is_not_reused() {
    let (host, _runtime, worker, [id]) = testbed_runtime!("request_headers grow 2; request_headers count");
    for _ in 0..3 {
        assert_eq!(serve(&worker, host, &[id], Isolation::Request), Next::Continue);
        assert!(worker.idle_instances().is_empty());
    }
    assert_eq!(host.count("kept 2 MiB"), 3, "{}", host.dump());
    assert_eq!(host.count("count 1"), 3);
}

#[test]
fn a_root_that_finishes_later_keeps_its_instance_out_of_reuse() {
    let (host, _runtime, worker, [id]) = testbed_runtime!("root_done done_later; request_headers count");
    assert_eq!(serve(&worker, host, &[id], Isolation::Request), Next::Continue);
    assert!(worker.idle_instances().is_empty());
}

/// A minimal filter whose request callback writes a table: its instances
/// have state outside memory and globals, and are made for each request.
const TABLE_WRITER: &str = r#"(module
    (memory (export "memory") 1)
    (table 2 funcref)
    (global $requests (mut i32) (i32.const 0))
    (func (export "proxy_abi_version_0_2_1"))
    (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
    (func (export "proxy_on_context_create") (param i32 i32))
    (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
        (table.set 0 (i32.const 1) (ref.null func))
        (global.set $requests (i32.add (global.get $requests) (i32.const 1)))
        (i32.const 0)))"#;

#[test]
fn a_module_that_writes_tables_gets_a_new_instance_each_request() {
    let host = MockHost::new();
    let (_runtime, worker, id) = single_filter(host, &wat_text(TABLE_WRITER), "", "");
    for _ in 0..2 {
        assert_eq!(serve(&worker, host, &[id], Isolation::Request), Next::Continue);
        assert!(worker.idle_instances().is_empty());
    }
}

#[test]
fn a_module_from_the_code_cache_is_reused_too() {
    let Some(path) = common::filter("testbed.wasm") else {
        return;
    };
    let cache = std::env::temp_dir().join(format!("ngx_proxy_wasm_reuse_cache_{}", std::process::id()));
    for origin in ["compiled", "loaded from the cache"] {
        let host = MockHost::new();
        let config = RuntimeConfig {
            cache: Some(cache.clone()),
            ..Default::default()
        };
        let mut runtime = Runtime::new(host, config).expect("runtime");
        runtime.load_module("m", &path, b"").expect("module loads");
        assert!(host.logged(origin).is_some(), "{}", host.dump());
        let id = runtime.add_filter("m", b"request_headers count").unwrap() as u32;
        let worker = runtime.worker();
        for _ in 0..2 {
            serve(&worker, host, &[id], Isolation::Request);
        }
        assert_eq!(host.count("count 1"), 2);
        assert_eq!(worker.idle_instances(), [true]);
    }
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn export_names_of_the_host_are_refused() {
    let host = MockHost::new();
    let mut runtime = common::runtime(host);
    let module = wat_text(&TABLE_WRITER.replace(
        "(func (export \"proxy_abi_version_0_2_1\"))",
        "(func (export \"proxy_abi_version_0_2_1\")) (func (export \"ngx_proxy_wasm:reset\"))",
    ));
    let error = runtime
        .load_module("m", &module, b"")
        .expect_err("refused")
        .to_string();
    assert!(
        error.ends_with("export \"ngx_proxy_wasm:reset\" has a name reserved for the host"),
        "{error}"
    );
}

#[test]
fn a_worker_keeps_a_bounded_number_of_reset_instances() {
    let configs: Vec<String> = (0..IDLE_TOTAL_LIMIT / IDLE_LIMIT + 1)
        .map(|i| format!("request_headers count; request_headers log info set{i}"))
        .collect();
    let (host, mut runtime, worker, [first]) = testbed_runtime!(&configs[0]);
    let ids: Vec<u32> = std::iter::once(first)
        .chain(
            configs[1..]
                .iter()
                .map(|config| runtime.add_filter("m", config.as_bytes()).unwrap() as u32),
        )
        .collect();
    // more requests of each set at once than a set keeps
    for (n, &id) in ids.iter().enumerate() {
        let mut chains: Vec<Chain> = (0..IDLE_LIMIT + 2)
            .map(|_| isolated(&worker, host, &[id], Isolation::Request))
            .collect();
        for chain in &mut chains {
            chain.on_headers(Direction::Request, true);
        }
        drop(chains);
        let kept = ((n + 1) * IDLE_LIMIT).min(IDLE_TOTAL_LIMIT);
        assert_eq!(worker.idle_instances().len(), kept);
    }
    let idle = worker.idle_instances();
    assert_eq!(idle.len(), IDLE_TOTAL_LIMIT);
    assert!(idle.iter().all(|&fresh| fresh));
    // the instances kept still serve
    assert_eq!(serve(&worker, host, &[first], Isolation::Request), Next::Continue);
    assert_eq!(worker.idle_instances().len(), IDLE_TOTAL_LIMIT);
}
