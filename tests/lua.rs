//! What the proxy's own code (the Lua API) reaches, against the mock host:
//! filters added while a worker runs, properties read for a request, and
//! the namespace of properties the host serves.

mod common;

use common::{chain, filter, runtime, MockHost};
use ngx_proxy_wasm::abi::Direction;
use ngx_proxy_wasm::chain::Next;
use ngx_proxy_wasm::runtime::hostcalls::properties::{self, ProxyScope, SetError};

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/t?a=1"),
    (":scheme", "http"),
    (":authority", "localhost"),
];

/// A runtime with the testbed module ("m") whose worker runs.
macro_rules! running {
    ($host:expr) => {{
        let Some(path) = filter("testbed.wasm") else {
            return;
        };
        let mut runtime = runtime($host);
        runtime.load_module("m", &path, b"").expect("module loads");
        let worker = runtime.worker();
        (runtime, worker)
    }};
}

#[test]
fn a_filter_added_in_a_running_worker_starts_there_once() {
    let host = MockHost::new();
    let (mut runtime, worker) = running!(host);
    let config = b"configure log info started; response_headers add_header response x-late yes";
    let id = runtime.add_filter("m", config).expect("the filter starts") as u32;
    // once to check it (as at configuration time), once in the worker
    assert_eq!(host.count("started"), 2, "{}", host.dump());
    assert_eq!(runtime.add_filter("m", config).unwrap() as u32, id);
    assert_eq!(host.count("started"), 2, "the same filter starts once");
    let request = host.request(REQUEST);
    let mut s = chain(&worker, request, &[id]);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    assert_eq!(s.on_headers(Direction::Response, true).next, Next::Continue);
    assert_eq!(
        host.header(request, ngx_proxy_wasm::host::HeaderMap::Response, "x-late")
            .as_deref(),
        Some("yes")
    );
}

#[test]
fn a_filter_that_fails_to_start_in_a_running_worker_is_an_error_and_harms_no_other() {
    let host = MockHost::new();
    let (mut runtime, worker) = running!(host);
    let healthy = runtime.add_filter("m", b"").unwrap() as u32;
    let refused = runtime.add_filter("m", b"configure fail");
    assert!(refused
        .unwrap_err()
        .to_string()
        .contains("on_configure returned false"));
    let trapped = runtime.add_filter("m", b"configure unreachable");
    assert!(trapped.unwrap_err().to_string().contains("on_configure failed"));
    // the shared instance serves on: the failures were in the throwaway one
    let request = host.request(REQUEST);
    let mut s = chain(&worker, request, &[healthy]);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
}

#[test]
fn properties_for_the_proxys_own_code_come_from_the_requests_chain() {
    let host = MockHost::new();
    let (mut runtime, worker) = running!(host);
    let id = runtime
        .add_filter("m", b"request_headers set_prop filter%00note hello")
        .unwrap() as u32;
    let request = host.request(REQUEST);
    let mut s = chain(&worker, request, &[id]);
    let mut scope = ProxyScope {
        host,
        request: Some(request),
        state: None,
    };
    // no chain: stored values cannot be set, attributes can be read
    assert_eq!(
        properties::set(&mut scope, b"gateway.route", b"r1"),
        Err(SetError::NoRequest)
    );
    let mut out = Vec::new();
    properties::get(&scope, b"request.url_path", &mut out).unwrap();
    assert_eq!(out, b"/t");
    scope.state = Some(s.state().clone());
    properties::set(&mut scope, b"gateway.route", b"r1").unwrap();
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    out.clear();
    properties::get(&scope, b"filter.note", &mut out).unwrap();
    assert_eq!(out, b"hello");
    s.with_property(b"gateway.route", |value| assert_eq!(value, Some(&b"r1"[..])));
    assert_eq!(
        properties::set(&mut scope, b"request.path", b"/x")
            .unwrap_err()
            .to_string(),
        "cannot set request.path: the property is read-only"
    );
}

#[test]
fn the_host_namespace_is_served_by_the_host_for_filters() {
    let host = MockHost::new();
    let (mut runtime, worker) = running!(host);
    host.host_properties
        .borrow_mut()
        .insert(b"gw.route.name".to_vec(), b"r1".to_vec());
    let id = runtime
        .add_filter(
            "m",
            b"request_headers prop gw%00route%00name; request_headers set_prop gw%00consumer alice; \
              request_headers prop other%00route",
        )
        .unwrap() as u32;
    let run = |namespace: &[u8]| {
        *worker.services().host_namespace.borrow_mut() = namespace.to_vec();
        let request = host.request(REQUEST);
        let mut s = chain(&worker, request, &[id]);
        assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    };
    run(b"");
    assert!(
        host.logged("property gw.route.name: missing").is_some(),
        "{}",
        host.dump()
    );
    assert!(host.host_properties.borrow().get(&b"gw.consumer"[..]).is_none());
    run(b"gw");
    assert!(
        host.logged("property gw.route.name: len=2 hex=7231 text=\"r1\"")
            .is_some(),
        "{}",
        host.dump()
    );
    assert_eq!(
        host.host_properties
            .borrow()
            .get(&b"gw.consumer"[..])
            .map(Vec::as_slice),
        Some(&b"alice"[..])
    );
    // the proxy's own code is not served by the host through the tree
    let mut out = Vec::new();
    let scope = ProxyScope {
        host,
        request: None,
        state: None,
    };
    assert!(properties::get(&scope, b"gw.route.name", &mut out).is_err());
}

#[test]
fn a_tick_period_set_by_a_filter_added_in_a_running_worker_starts() {
    let host = MockHost::new();
    let (mut runtime, worker) = running!(host);
    runtime
        .add_filter("m", b"configure tick_period 100; tick log info ticked")
        .expect("the filter starts");
    // the throwaway check arms nothing: one timer, the worker's
    let timers = host.take_timers();
    assert_eq!(timers.len(), 1, "{}", host.dump());
    worker.on_timer(timers[0]);
    assert_eq!(host.count("ticked"), 1, "{}", host.dump());
}
