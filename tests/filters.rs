//! Real Rust-SDK filters and `.wat` filters run through the chain against
//! the mock host.

mod common;

use common::MockFact;
use common::{chain, filter, wat, Loaded};
use ngx_proxy_wasm::abi::Direction;
use ngx_proxy_wasm::abi::LogLevel;
use ngx_proxy_wasm::chain::{Chain, Next, Output};
use ngx_proxy_wasm::host::{Attribute, HeaderMap};

const REQUEST: &[(&str, &str)] = &[
    (":method", "GET"),
    (":path", "/t?a=1"),
    (":scheme", "http"),
    (":authority", "localhost"),
    ("user-agent", "test"),
    ("X-Mixed-Case", "v"),
];

/// The testbed filter with a plugin configuration, or return (not built).
macro_rules! testbed {
    ($config:expr) => {
        testbed!("", $config)
    };
    ($vm_config:expr, $config:expr) => {
        match Loaded::testbed($vm_config, $config) {
            Some(loaded) => loaded,
            None => return,
        }
    };
}

#[test]
fn request_and_response_headers() {
    let t = testbed!(
        "request_headers add_header request x-added yes; \
         request_headers replace_header request user-agent replaced; \
         request_headers remove_header request x-mixed-case; \
         request_headers get_header request :path; \
         request_headers get_header request Host; \
         request_headers get_header request x-nope; \
         response_headers add_header response x-served-by wasm; \
         response_headers dump_headers response"
    );
    let (request, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    let header = |map, name| t.host.header(request, map, name);
    assert_eq!(header(HeaderMap::Request, "x-added").as_deref(), Some("yes"));
    assert_eq!(
        header(HeaderMap::Request, "user-agent").as_deref(),
        Some("replaced")
    );
    assert_eq!(header(HeaderMap::Request, "x-mixed-case"), None);
    assert!(
        t.host.logged("request header :path: \"/t?a=1\"").is_some(),
        "{}",
        t.host.dump()
    );
    // Envoy's name for Host in requests is :authority.
    assert!(t.host.logged("request header Host: \"localhost\"").is_some());
    assert!(t.host.logged("request header x-nope: missing").is_some());
    assert_eq!(s.on_headers(Direction::Response, false).next, Next::Continue);
    assert_eq!(
        header(HeaderMap::Response, "x-served-by").as_deref(),
        Some("wasm")
    );
    assert!(
        t.host.logged("response header \":status: 200\"").is_some(),
        "{}",
        t.host.dump()
    );
}

#[test]
fn header_names_reach_filters_lower_cased() {
    let t = testbed!("request_headers dump_headers request");
    let (_, mut s) = t.request(REQUEST);
    s.on_headers(Direction::Request, true);
    assert!(
        t.host.logged("request header \"x-mixed-case: v\"").is_some(),
        "{}",
        t.host.dump()
    );
}

#[test]
fn lifecycle_of_contexts() {
    let t = testbed!("trace", "trace");
    {
        let (_, mut s) = t.request(REQUEST);
        assert_eq!(s.on_headers(Direction::Request, false).next, Next::Continue);
        assert_eq!(s.on_headers(Direction::Response, true).next, Next::Continue);
        s.on_log();
    }
    let lines: Vec<String> = t
        .host
        .logs()
        .into_iter()
        .map(|(_, line)| line)
        .filter(|line| line.contains(" on_") || line.contains("create http"))
        .collect();
    // Root context: at configuration time in the runtime, then in the worker.
    let expected = [
        "on_vm_start",
        "on_configure",
        "on_vm_start",
        "on_configure",
        "create http context",
        "on_request_headers 6 headers, end_of_stream false",
        "on_response_headers 1 headers, end_of_stream true",
        "on_log",
        "on_done",
        "on_delete",
    ];
    assert_eq!(lines.len(), expected.len(), "{}", t.host.dump());
    for (line, expected) in lines.iter().zip(expected) {
        assert!(line.contains(expected), "{line} does not contain {expected}");
    }
}

#[test]
fn local_response_stops_the_chain() {
    let Some(testbed) = filter("testbed.wasm") else {
        return;
    };
    let host = common::MockHost::new();
    let mut rt = common::runtime(host);
    rt.load_module("m", &testbed, b"").unwrap();
    let first = rt
        .add_filter(
            "m",
            b"request_headers respond 403 denied%0A x-reason:policy content-type:text/x-test",
        )
        .unwrap() as u32;
    let second = rt.add_filter("m", b"trace").unwrap() as u32;
    let worker = rt.worker();
    let mut s = chain(&worker, host.request(REQUEST), &[first, second]);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::LocalResponse);
    {
        let response = s.take_local_response().expect("a local response");
        assert_eq!(response.status, 403);
        assert_eq!(response.body, b"denied\n");
        assert_eq!(
            response.headers,
            vec![
                (b"x-reason".to_vec(), b"policy".to_vec()),
                (b"content-type".to_vec(), b"text/x-test".to_vec())
            ]
        );
    }
    assert_eq!(host.count("on_request_headers"), 0, "the second filter never ran");
    // Response callbacks still run, for every filter.
    assert_eq!(s.on_headers(Direction::Response, false).next, Next::Continue);
    assert_eq!(host.count("on_response_headers"), 1, "{}", host.dump());
}

#[test]
fn local_response_status_is_checked() {
    let t = testbed!(
        "request_headers respond_status 99; request_headers respond_status 1000; \
         request_headers respond_status 204; request_headers respond_status 200"
    );
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::LocalResponse);
    let statuses: Vec<String> = t
        .host
        .logs()
        .into_iter()
        .filter(|(_, l)| l.contains("proxy_send_local_response returned"))
        .map(|(_, l)| l.rsplit(' ').next().unwrap().to_string())
        .collect();
    // Out of range, out of range, accepted, and a second response refused.
    assert_eq!(statuses, ["2", "2", "0", "2"]);
    assert_eq!(s.take_local_response().unwrap().status, 204);
    assert!(s.take_local_response().is_none(), "taken once");
}

#[test]
fn host_functions_answer_bad_input_with_a_status() {
    let t = testbed!("request_headers bad_pointers; request_headers response_map");
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(
        s.on_headers(Direction::Request, true).next,
        Next::Continue,
        "{}",
        t.host.dump()
    );
    for (call, status) in [
        ("proxy_log with a bad message", 6),
        ("proxy_log with a bad level", 2),
        ("get_buffer_bytes with a bad type", 2),
        ("get_buffer_bytes with a bad out-pointer", 6),
        ("get_header_map_pairs with a bad map", 2),
        ("get_header_map_pairs with a bad out-pointer", 6),
        ("get_header_map_value with a bad key", 6),
        ("add_header_map_value with a bad value", 6),
        ("add_header_map_value with an invalid name", 2),
        ("add_header_map_value with an invalid value", 2),
        ("send_local_response with bad headers", 2),
        // Response headers do not exist before on_response_headers.
        ("response headers map", 2),
    ] {
        assert!(
            t.host.logged(&format!("{call}: {status}")).is_some(),
            "{call}: {}",
            t.host.dump()
        );
    }
}

#[test]
fn unimplemented_functions_warn_once() {
    let t = testbed!("request_headers unimplemented");
    for _ in 0..2 {
        let (_, mut s) = t.request(REQUEST);
        s.on_headers(Direction::Request, true);
    }
    assert_eq!(t.host.count("proxy_clear_route_cache returned 12"), 2);
    assert_eq!(t.host.count("proxy_clear_route_cache again returned 12"), 2);
    let warning = "host function proxy_clear_route_cache is not supported";
    assert_eq!(t.host.count(warning), 1, "{}", t.host.dump());
    assert_eq!(t.host.logged(warning), Some(LogLevel::Warn));
}

#[test]
fn effective_context() {
    let t = testbed!("request_headers effective_context 4242; request_headers effective_context self");
    let (_, mut s) = t.request(REQUEST);
    s.on_headers(Direction::Request, true);
    assert!(
        t.host.logged("set_effective_context(4242) returned 2").is_some(),
        "{}",
        t.host.dump()
    );
    assert!(t.host.logged("set_effective_context(self) returned 0").is_some());
}

#[test]
fn logs_and_wasi() {
    let t = testbed!(
        "request_headers log warn careful; request_headers log crit broken; \
         request_headers stdout to%20stdout; request_headers stderr to%20stderr; \
         request_headers wasi; request_headers time; request_headers log_level"
    );
    let (_, mut s) = t.request(REQUEST);
    s.on_headers(Direction::Request, true);
    let host = t.host;
    assert_eq!(host.logged("careful"), Some(LogLevel::Warn));
    assert_eq!(host.logged("broken"), Some(LogLevel::Critical));
    assert_eq!(
        host.logged(": to stdout"),
        Some(LogLevel::Info),
        "{}",
        host.dump()
    );
    assert_eq!(host.logged(": to stderr"), Some(LogLevel::Error));
    assert!(host
        .logged("wasi: random true, wall clock plausible true, monotonic true, args 0, env 0")
        .is_some());
    assert!(host.logged("host time plausible: true").is_some());
    assert!(host.logged("host log level: Info").is_some());
}

#[test]
fn configuration_buffers() {
    let t = testbed!(
        "vm_start config; vm_start buffer_slice 3 4; vm_start buffer_slice 100 4",
        "configure config; request_headers config"
    );
    let (_, mut s) = t.request(REQUEST);
    s.on_headers(Direction::Request, true);
    let host = t.host;
    // The VM configuration always; the plugin's in on_configure only.
    assert!(
        host.logged(
            "vm configuration: vm_start config; vm_start buffer_slice 3 4; vm_start buffer_slice 100 4, \
             plugin configuration: (none)"
        )
        .is_some(),
        "{}",
        host.dump()
    );
    assert!(host
        .logged("plugin configuration: configure config; request_headers config")
        .is_some());
    assert!(
        host.logged("vm configuration [3, +4]: Some(\"star\")").is_some(),
        "{}",
        host.dump()
    );
    assert!(host.logged("vm configuration [100, +4]: None").is_some());
}

#[test]
fn trap_fails_the_request_and_replaces_the_instance() {
    let t = Loaded::new(&wat("hostile.wat"), "", "u");
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    let (level, line) = t
        .host
        .logs()
        .into_iter()
        .find(|(_, l)| l.contains("failed"))
        .expect("the trap is logged");
    assert_eq!(level, LogLevel::Error);
    assert!(
        line.contains("proxy_on_request_headers failed: wasm trap: wasm `unreachable` instruction executed"),
        "{line}"
    );
    assert!(line.contains("wasm backtrace:\n  #0 m!"), "{line}");
    // Later callbacks of that request are skipped, not run on a broken
    // instance; the next request gets a fresh one.
    assert_eq!(s.on_headers(Direction::Response, false).next, Next::Fail);
    drop(s);
    let (_, mut next) = t.request(REQUEST);
    assert_eq!(
        next.on_headers(Direction::Request, true).next,
        Next::Fail,
        "the new instance fails the same way"
    );
    assert_eq!(t.host.count("proxy_on_request_headers failed"), 2);
}

#[test]
fn every_trap_kind_is_contained() {
    for (mode, cause) in [
        ("u", "wasm `unreachable` instruction executed"),
        ("d", "integer divide by zero"),
        ("r", "call stack exhausted"),
        ("m", "out of bounds memory access"),
        ("e", "proc_exit(1) called"),
    ] {
        let t = Loaded::new(&wat("hostile.wat"), "", mode);
        let (_, mut s) = t.request(REQUEST);
        assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail, "{mode}");
        assert!(t.host.logged(cause).is_some(), "{mode}: {}", t.host.dump());
    }
}

#[test]
fn guest_allocator_may_not_change_headers() {
    let t = Loaded::new(&wat("allocator_calls_host.wat"), "", "");
    let (request, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    assert!(
        t.host
            .logged("host function proxy_add_header_map_value called from the guest allocator")
            .is_some(),
        "{}",
        t.host.dump()
    );
    assert_eq!(t.host.header(request, HeaderMap::Request, "x-evil"), None);
}

#[test]
fn abi_0_1_0_filter() {
    let Some(abi_v1) = filter("abi_v1.wasm") else {
        return;
    };
    let t = Loaded::new(&abi_v1, "vm config", "plugin config");
    let (request, mut s) = t.request(REQUEST);
    let host = t.host;
    assert_eq!(
        s.on_headers(Direction::Request, true).next,
        Next::Continue,
        "{}",
        host.dump()
    );
    assert!(host.logged("abi_v1 vm configuration: \"vm config\"").is_some());
    assert!(host
        .logged("abi_v1 plugin configuration: \"plugin config\"")
        .is_some());
    assert!(host.logged("abi_v1 on_request_headers: 6 headers").is_some());
    // 0.1.0 answers a missing header with an empty value, which its SDK
    // needs (it panics on NOT_FOUND).
    assert!(
        host.logged("abi_v1 missing header: None").is_some(),
        "{}",
        host.dump()
    );
    assert_eq!(s.on_headers(Direction::Response, false).next, Next::Continue);
    assert_eq!(
        host.header(request, HeaderMap::Response, "x-abi-v1").as_deref(),
        Some("plugin config")
    );
}

#[test]
fn abi_0_2_0_filter() {
    let t = Loaded::new(&wat("abi_0_2_0.wat"), "", "");
    let (request, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    assert_eq!(
        t.host.logged("abi 0.2.0 on_request_headers"),
        Some(LogLevel::Info)
    );
    assert_eq!(s.on_headers(Direction::Response, false).next, Next::Continue);
    assert_eq!(
        t.host.header(request, HeaderMap::Response, "x-abi").as_deref(),
        Some("0.2.0")
    );
}

#[test]
fn response_body_held_over_the_limit() {
    let Some(path) = filter("testbed.wasm") else {
        return;
    };
    for (pass, next) in [(false, Next::Fail), (true, Next::Continue)] {
        let host = common::MockHost::new();
        let (_rt, worker, id) = common::single_filter(host, &path, "", "response_body pause_until_end");
        let config = ngx_proxy_wasm::chain::ChainConfig {
            limits: ngx_proxy_wasm::chain::Limits {
                response_body: 10,
                pass_on_overflow: pass,
            },
            ..Default::default()
        };
        let mut s = ngx_proxy_wasm::chain::Chain::new(worker, host.request(REQUEST), &[id], config);
        s.on_headers(Direction::Request, true);
        s.on_headers(Direction::Response, false);
        assert_eq!(
            s.on_body(Direction::Response, &[b"12345"], false).next,
            Next::Pause
        );
        assert_eq!(
            s.on_body(Direction::Response, &[b"67890abc"], false).next,
            next,
            "{}",
            host.dump()
        );
    }
}

#[test]
fn ticks_are_armed_fired_changed_and_stopped() {
    use std::time::Duration;
    let fire = |t: &Loaded| {
        for token in t.host.take_timers() {
            t.worker.on_timer(token);
        }
    };
    // the first tick sets a new period, the second stops the ticks
    let t = testbed!("configure tick_period 100; tick tick_count 1 250; tick log info ticked");
    assert_eq!(t.host.timer_delays(), [Duration::from_millis(100)]);
    fire(&t);
    assert_eq!(t.host.timer_delays(), [Duration::from_millis(250)]);
    fire(&t);
    assert_eq!(t.host.timer_delays(), [Duration::from_millis(250)]);
    assert_eq!(t.host.count("ticked"), 2);

    let t = testbed!("configure tick_period 100; tick tick_count 2 0");
    fire(&t);
    fire(&t);
    assert_eq!(t.host.timer_delays(), []);
    assert!(t.host.logged("tick 2").is_some(), "{}", t.host.dump());
}

#[test]
fn a_failed_instance_is_replaced_from_the_event_loop_and_ticks_again() {
    use std::time::Duration;
    let t = testbed!("configure tick_period 50; request_headers unreachable");
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    drop(s);
    assert_eq!(
        t.host.timer_delays(),
        [Duration::ZERO],
        "its ticks stop; its replacement is due at once"
    );
    for token in t.host.take_timers() {
        t.worker.on_timer(token);
    }
    assert!(
        t.host.logged("starting a new instance").is_some(),
        "{}",
        t.host.dump()
    );
    assert_eq!(
        t.host.timer_delays(),
        [Duration::from_millis(50)],
        "the replacement ticks without waiting for a request"
    );
}

/// Fires the timers due, as nginx's event loop would.
fn fire_timers(t: &Loaded) {
    for token in t.host.take_timers() {
        t.worker.on_timer(token);
    }
}

#[test]
fn bad_requests_never_back_a_module_off() {
    let t = testbed!("request_headers unreachable");
    for _ in 0..20 {
        let (_, mut s) = t.request(REQUEST);
        assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    }
    assert_eq!(
        t.host.count("proxy_on_request_headers failed"),
        20,
        "{}",
        t.host.dump()
    );
    assert_eq!(t.host.count("starting a new instance"), 19);
    assert_eq!(t.host.count("the next one starts in"), 0);
}

#[test]
fn a_crash_loop_is_backed_off() {
    let t = testbed!("create unreachable");
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    drop(s);
    // the first replacement is immediate
    assert_eq!(t.host.timer_delays(), [std::time::Duration::ZERO]);
    fire_timers(&t);
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    drop(s);
    let delays = t.host.timer_delays();
    assert!(
        delays.len() == 1 && delays[0] > std::time::Duration::from_millis(900),
        "the second waits about a second: {delays:?}"
    );
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Fail);
    assert!(
        t.host.logged("the next one starts in").is_some(),
        "{}",
        t.host.dump()
    );
    assert_eq!(t.host.count("starting a new instance"), 1);
}

#[test]
fn a_trap_takes_down_the_requests_with_contexts_in_the_instance() {
    use ngx_proxy_wasm::chain::{Chain, ChainConfig};
    use ngx_proxy_wasm::runtime::FailurePolicy;
    for policy in [FailurePolicy::Reload, FailurePolicy::FailOpen] {
        // the first two requests are held; the third fails the instance
        let t = testbed!(
            "request_headers count; request_headers when_count 3 unreachable; request_headers pause"
        );
        let config = ChainConfig {
            failure: policy,
            ..Default::default()
        };
        let held: Vec<_> = (0..2)
            .map(|_| {
                let request = t.host.request(REQUEST);
                let mut s = Chain::new(t.worker.clone(), request, &[t.filter], config);
                assert_eq!(s.on_headers(Direction::Request, true).next, Next::Pause);
                (request, s)
            })
            .collect();
        let (_, mut failing) = t.request(REQUEST);
        assert_eq!(failing.on_headers(Direction::Request, true).next, Next::Fail);
        assert!(
            t.host
                .logged("; 2 other requests with contexts in this instance end with it")
                .is_some(),
            "{}",
            t.host.dump()
        );
        let mut resumed = t.host.take_resumes();
        resumed.sort_by_key(|r| r.0);
        assert_eq!(resumed, held.iter().map(|(r, _)| *r).collect::<Vec<_>>());
        for (_, mut s) in held {
            let expected = match policy {
                FailurePolicy::FailOpen => Next::Continue,
                _ => Next::Fail,
            };
            let step = s.resume(Direction::Request);
            assert_eq!(step.next, expected, "{policy:?}");
            if policy == FailurePolicy::FailOpen {
                assert!(step.headers_done, "the headers go on without the filter");
            }
        }
        assert_eq!(
            t.host
                .count("its instance failed while the request had a context in it"),
            2
        );
        // later requests run in the replacement
        fire_timers(&t);
        let (_, mut next) = t.request(REQUEST);
        assert_eq!(next.on_headers(Direction::Request, true).next, Next::Pause);
    }
}

#[test]
fn fail_open_skips_the_failed_filter() {
    let t = testbed!("request_headers unreachable");
    let config = ngx_proxy_wasm::chain::ChainConfig {
        failure: ngx_proxy_wasm::runtime::FailurePolicy::FailOpen,
        ..Default::default()
    };
    let mut s =
        ngx_proxy_wasm::chain::Chain::new(t.worker.clone(), t.host.request(REQUEST), &[t.filter], config);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    assert_eq!(s.on_headers(Direction::Response, false).next, Next::Continue);
    assert_eq!(t.host.logged("filter failed: skipped"), Some(LogLevel::Warn));
}

#[test]
fn properties_from_header_maps_and_stores() {
    let t = testbed!(
        "request_headers prop request%00path; \
         request_headers prop request.url_path; \
         request_headers prop request%00query; \
         request_headers prop request%00headers%00X-MIXED-case; \
         request_headers prop plugin_name; \
         request_headers set_prop tenant%00name acme; \
         request_headers prop tenant.name; \
         request_headers set_prop request%00path /x; \
         request_headers prop source%00address; \
         request_headers prop ngx%00remote_addr; \
         request_headers prop_map request%00headers"
    );
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    for line in [
        "property request.path: len=6 hex=2f743f613d31 text=\"/t?a=1\"",
        "property request.url_path: len=2 hex=2f74 text=\"/t\"",
        "property request.query: len=3 hex=613d31 text=\"a=1\"",
        "property request.headers.X-MIXED-case: len=1 hex=76 text=\"v\"",
        "property plugin_name: len=1 hex=6d text=\"m\"",
        "set_property tenant.name returned 0",
        "property tenant.name: len=4 hex=61636d65 text=\"acme\"",
        "set_property request.path returned 2",
        "cannot set request.path: the property is read-only",
        // the mock host knows no connection and no variables
        "property source.address: missing",
        "property ngx.remote_addr: missing",
        "property request.headers: 6 entries",
        "property request.headers entry \"x-mixed-case: v\"",
    ] {
        assert!(t.host.logged(line).is_some(), "{line}\n{}", t.host.dump());
    }
    assert_eq!(
        s.with_property(b"tenant.name", |v| v.map(<[u8]>::to_vec)),
        Some(b"acme".to_vec())
    );
}

#[test]
fn attributes_variables_and_static_properties_in_envoys_encodings() {
    let t = testbed!(
        "request_headers prop source%00address; \
         request_headers prop source%00port; \
         request_headers prop connection%00mtls; \
         request_headers prop connection%00tls_version; \
         request_headers prop ngx%00remote_addr; \
         request_headers prop ngx%00unset; \
         request_headers set_prop ngx%00limit 5; \
         request_headers prop ngx.limit; \
         request_headers set_prop ngx%00remote_addr x; \
         request_headers set_prop ngx%00nope x; \
         request_headers prop node%00id; \
         request_headers prop xds%00node; \
         request_headers prop team.owner"
    );
    t.host.fact(
        Attribute::SourceAddress,
        MockFact::String(b"10.0.0.1:5000".to_vec()),
    );
    t.host.fact(Attribute::SourcePort, MockFact::Int(5000));
    t.host.fact(Attribute::ConnectionMtls, MockFact::Bool(true));
    t.host.variable("remote_addr", Some("10.0.0.1"), false);
    t.host.variable("unset", None, false);
    t.host.variable("limit", Some("1"), true);
    t.host.static_property("xds.node.id", "n1");
    t.host.static_property("xds.node.cluster", "c");
    t.host.static_property("team.owner", "ops");
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    for line in [
        "property source.address: len=13 hex=31302e302e302e313a35303030",
        // integers as 8 bytes, little-endian; booleans as one byte
        "property source.port: len=8 hex=8813000000000000",
        "property connection.mtls: len=1 hex=01",
        // no TLS: no value
        "property connection.tls_version: missing",
        "property ngx.remote_addr: len=8 hex=31302e302e302e31",
        "property ngx.unset: missing",
        "set_property ngx.limit returned 0",
        "property ngx.limit: len=1 hex=35",
        "set_property ngx.remote_addr returned 2",
        "set_property ngx.nope returned 1",
        // Envoy's former top-level names are xds.*'s
        "property node.id: len=2 hex=6e31",
        // xds.node whole: its fields as protobuf (id = 1, cluster = 2)
        "property xds.node: len=7 hex=0a026e31120163",
        "property team.owner: len=3 hex=6f7073",
    ] {
        assert!(t.host.logged(line).is_some(), "{line}\n{}", t.host.dump());
    }
}

#[test]
fn a_chain_in_a_finished_ones_memory_starts_clean() {
    let t = testbed!(
        "request_headers prop tenant.name; \
         request_headers set_prop tenant%00name acme; \
         response_body log_body; \
         response_body pause_until_end"
    );
    // the first request ends while its filter holds body data
    let (_, mut s) = t.request(REQUEST);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    s.on_headers(Direction::Response, false);
    assert_eq!(
        s.on_body(Direction::Response, &[&b"held"[..]], false).next,
        Next::Pause
    );
    let spare = s.take_spare();
    drop(s);
    let request = t.host.request(REQUEST);
    let mut s = Chain::reusing(spare, t.worker.clone(), request, &[t.filter], Default::default());
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    assert_eq!(
        t.host.count("property tenant.name: missing"),
        2,
        "{}",
        t.host.dump()
    );
    s.on_headers(Direction::Response, false);
    let step = s.on_body(Direction::Response, &[&b"new"[..]], true);
    assert_eq!(step.next, Next::Continue);
    assert_eq!(step.output, Output::Unchanged);
    assert!(
        t.host
            .logged("response_body (3 bytes, end_of_stream true): \"new\"")
            .is_some(),
        "{}",
        t.host.dump()
    );
}

/// Logs `create <id>` when an HTTP context is created; no response
/// header callback.
const CREATE_LOGGER: &str = r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "create ")
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "malloc") (param $size i32) (result i32)
    (local $ptr i32)
    (local.set $ptr (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $ptr))
  (func (export "proxy_on_context_create") (param $context i32) (param $root i32)
    (if (local.get $root)
      (then
        (i32.store8 (i32.const 23) (i32.add (i32.const 48) (local.get $context)))
        (drop (call $log (i32.const 2) (i32.const 16) (i32.const 8))))))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))"#;

#[test]
fn contexts_whose_first_callback_is_not_exported_are_created_in_order() {
    // on_context_create waits to run with on_request_headers in one guest
    // call; here the response goes through the chain first (the request
    // ended before its headers reached the filters), and the module has no
    // response header callback: each context is created all the same, at
    // its first callback, in the order the host made them (the
    // response's: b, then a)
    let host = common::MockHost::new();
    let mut runtime = common::runtime(host);
    runtime
        .load_module("m", &common::wat_text(CREATE_LOGGER), b"")
        .expect("module loads");
    let a = runtime.add_filter("m", b"").expect("filter starts") as u32;
    let b = runtime.add_filter("m", b"").expect("filter starts") as u32;
    let worker = runtime.worker();
    let mut s = chain(&worker, host.request(REQUEST), &[a, b]);
    assert_eq!(s.on_headers(Direction::Response, true).next, Next::Continue);
    drop(s);
    let created: Vec<String> = host
        .logs()
        .into_iter()
        .filter(|(_, line)| line.contains("create "))
        .map(|(_, line)| line)
        .collect();
    assert_eq!(created.len(), 2, "{}", host.dump());
    // ids are given as the host makes the contexts: b's is 2, a's 3
    assert_eq!(created, ["m #2: create 2", "m #3: create 3"]);
    // alone: created with its first callback all the same, not later
    let mut s = chain(&worker, host.request(REQUEST), &[a]);
    assert_eq!(s.on_headers(Direction::Response, true).next, Next::Continue);
    assert_eq!(host.count("create 4"), 1, "{}", host.dump());
    drop(s);
    assert_eq!(host.count("create 4"), 1, "{}", host.dump());
}

#[test]
fn a_request_runs_each_merged_pair_of_callbacks_in_one_guest_call() {
    // CREATE_LOGGER's callbacks for a request: on_context_create with
    // on_request_headers, and on_done with on_delete (it has no others)
    let host = common::MockHost::new();
    let (_runtime, worker, id) = common::single_filter(host, &common::wat_text(CREATE_LOGGER), "", "");
    let before = worker.returned_calls(0);
    let mut s = chain(&worker, host.request(REQUEST), &[id]);
    assert_eq!(s.on_headers(Direction::Request, true).next, Next::Continue);
    assert_eq!(worker.returned_calls(0) - before, 1, "{}", host.dump());
    drop(s);
    assert_eq!(worker.returned_calls(0) - before, 2, "{}", host.dump());
    assert_eq!(host.count("create "), 1, "{}", host.dump());
}

/// Logs each end callback of an HTTP context with the context's id:
/// "log N", "done N", "delete N"; `trap` names the one that traps.
fn end_logger(trap: &str) -> String {
    let callback = |name: &str, at: u32| {
        let body = format!(
            "(i32.store8 (i32.const {}) (i32.add (i32.const 48) (local.get 0))) \
             (drop (call $log (i32.const 2) (i32.const {at}) (i32.const {})))",
            at + name.len() as u32 + 1,
            name.len() + 2
        );
        let trap = if name == trap { "(unreachable)" } else { "" };
        let result = if name == "done" { "(result i32)" } else { "" };
        let value = if name == "done" { "(i32.const 1)" } else { "" };
        format!("(func (export \"proxy_on_{name}\") (param i32) {result} {body} {trap} {value})")
    };
    format!(
        r#"(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "log  ")
  (data (i32.const 32) "done  ")
  (data (i32.const 48) "delete  ")
  (func (export "proxy_abi_version_0_2_0"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  {} {} {})"#,
        callback("log", 16),
        callback("done", 32),
        callback("delete", 48)
    )
}

fn end_log(host: &common::MockHost) -> Vec<String> {
    host.logs()
        .into_iter()
        .filter(|(level, _)| *level == LogLevel::Info)
        .map(|(_, line)| line)
        .filter(|line| ["log ", "done ", "delete "].iter().any(|c| line.contains(c)))
        .map(|line| line.rsplit(": ").next().unwrap_or(&line).to_string())
        .collect()
}

#[test]
fn a_chain_of_one_filter_logs_and_ends_its_context_in_one_guest_call() {
    let host = common::MockHost::new();
    let (_runtime, worker, id) = common::single_filter(host, &common::wat_text(&end_logger("")), "", "");
    let mut s = chain(&worker, host.request(REQUEST), &[id]);
    s.on_headers(Direction::Request, true);
    let before = worker.returned_calls(0);
    s.on_log();
    assert_eq!(worker.returned_calls(0) - before, 1, "{}", host.dump());
    assert_eq!(end_log(host), ["log 2", "done 2", "delete 2"], "{}", host.dump());
    drop(s);
    assert_eq!(
        worker.returned_calls(0) - before,
        1,
        "ended once: {}",
        host.dump()
    );
    assert_eq!(end_log(host).len(), 3, "{}", host.dump());
}

#[test]
fn a_longer_chain_logs_every_context_before_ending_them() {
    let host = common::MockHost::new();
    let mut runtime = common::runtime(host);
    runtime
        .load_module("m", &common::wat_text(&end_logger("")), b"")
        .expect("module loads");
    let a = runtime.add_filter("m", b"a").expect("filter starts") as u32;
    let b = runtime.add_filter("m", b"b").expect("filter starts") as u32;
    let worker = runtime.worker();
    let mut s = chain(&worker, host.request(REQUEST), &[a, b]);
    s.on_headers(Direction::Request, true);
    s.on_log();
    drop(s);
    let ids: Vec<String> = end_log(host);
    let first = ids[0].rsplit(' ').next().unwrap().to_string();
    let second = ids[1].rsplit(' ').next().unwrap().to_string();
    assert_eq!(
        ids,
        [
            format!("log {first}"),
            format!("log {second}"),
            format!("done {first}"),
            format!("delete {first}"),
            format!("done {second}"),
            format!("delete {second}")
        ],
        "{}",
        host.dump()
    );
}

#[test]
fn a_failure_in_a_merged_log_and_end_names_its_callback() {
    for (trap, seen) in [("log", 0), ("done", 1), ("delete", 2)] {
        let host = common::MockHost::new();
        let (_runtime, worker, id) =
            common::single_filter(host, &common::wat_text(&end_logger(trap)), "", "");
        let mut s = chain(&worker, host.request(REQUEST), &[id]);
        s.on_headers(Direction::Request, true);
        s.on_log();
        assert!(
            host.logged(&format!("proxy_on_{trap} failed")).is_some(),
            "{trap}: {}",
            host.dump()
        );
        // the callbacks before it ran (the failed one logged first)
        assert_eq!(end_log(host).len(), seen + 1, "{trap}: {}", host.dump());
        drop(s);
        assert_eq!(
            end_log(host).len(),
            seen + 1,
            "{trap}: nothing more: {}",
            host.dump()
        );
    }
}

#[test]
fn a_failed_on_context_create_fails_the_request_when_the_first_callback_is_not_exported() {
    // the response first, and no response header callback: the
    // on_context_create that failed after it still fails the request
    let trapping = CREATE_LOGGER.replace(
        "(drop (call $log (i32.const 2) (i32.const 16) (i32.const 8)))",
        "(unreachable)",
    );
    assert_ne!(trapping, CREATE_LOGGER);
    let host = common::MockHost::new();
    let (_runtime, worker, id) = common::single_filter(host, &common::wat_text(&trapping), "", "");
    let mut s = chain(&worker, host.request(REQUEST), &[id]);
    assert_eq!(s.on_headers(Direction::Response, true).next, Next::Fail);
    assert!(
        host.logged("proxy_on_context_create failed").is_some(),
        "{}",
        host.dump()
    );
}
