//! Network filters (t/filters/network, Rust SDK) through a connection's
//! chain against the mock host: on_new_connection as the downstream's
//! "headers", data both ways, pause and the held size, rewriting, closing,
//! the close callbacks.

mod common;

use ngx_proxy_wasm::abi::{Direction, PeerType};
use ngx_proxy_wasm::chain::{Chain, ChainConfig, Next, Output};

/// A connection through the network filter with this configuration, or
/// return (not built).
macro_rules! connection {
    ($config:expr) => {{
        let Some(path) = common::filter("network.wasm") else {
            return;
        };
        let host = common::MockHost::new();
        let (runtime, worker, id) = common::single_filter(host, &path, "", $config);
        let config = ChainConfig {
            connection: true,
            ..Default::default()
        };
        let chain = Chain::new(worker, host.request(&[]), &[id], config);
        (host, runtime, chain)
    }};
}

#[test]
fn a_new_connection_then_data_both_ways_unchanged() {
    let (host, _rt, mut c) = connection!("count");
    let step = c.on_headers(Direction::Request, false);
    assert_eq!(
        (step.next, step.headers_done),
        (Next::Continue, true),
        "{}",
        host.dump()
    );
    // the upstream's data needs no on_new_connection
    let step = c.on_body(Direction::Response, &[b"hello ", b"world"], false);
    assert_eq!(
        (step.next, step.output, step.held),
        (Next::Continue, Output::Unchanged, 0)
    );
    let step = c.on_body(Direction::Request, &[b"ping"], false);
    assert_eq!((step.next, step.output), (Next::Continue, Output::Unchanged));
    assert_eq!(host.metric("m_tcp_bytes_downstream"), Some(vec![4]));
    assert_eq!(host.metric("m_tcp_bytes_upstream"), Some(vec![11]));
    assert_eq!(host.metric("m_tcp_connections"), Some(vec![1]));
}

#[test]
fn close_callbacks_say_who_closed_once() {
    let (host, _rt, mut c) = connection!("count");
    c.on_headers(Direction::Request, false);
    c.on_close(Direction::Response, PeerType::Remote);
    c.on_close(Direction::Response, PeerType::Local);
    c.on_close(Direction::Request, PeerType::Local);
    c.on_log();
    assert_eq!(host.count("upstream closed: Remote"), 1, "{}", host.dump());
    assert_eq!(host.count("upstream closed"), 1);
    assert_eq!(host.count("downstream closed: Local"), 1);
    assert_eq!(host.count("on_log"), 1);
}

#[test]
fn a_paused_filter_gets_the_data_again_with_what_follows() {
    let (host, _rt, mut c) = connection!("rewrite /old /new");
    c.on_headers(Direction::Request, false);
    let step = c.on_body(Direction::Request, &[b"GET /o"], false);
    assert_eq!((step.next, step.held), (Next::Pause, 6), "{}", host.dump());
    let step = c.on_body(Direction::Request, &[b"ld x"], false);
    assert_eq!(
        (step.next, step.output, step.held),
        (Next::Continue, Output::Data, 0)
    );
    assert_eq!(c.output(Direction::Request), b"GET /new x");
}

#[test]
fn a_filter_closes_the_connection() {
    let (host, _rt, mut c) = connection!("close_on EVIL");
    c.on_headers(Direction::Request, false);
    let step = c.on_body(Direction::Request, &[b"an ", b"EVIL", b" thing"], false);
    assert_eq!(step.next, Next::Close, "{}", host.dump());
}

#[test]
fn a_redis_filter_counts_whole_commands_once_and_refuses_flushall() {
    let (host, _rt, mut c) = connection!("redis");
    c.on_headers(Direction::Request, false);
    let step = c.on_body(
        Direction::Request,
        &[b"*1\r\n$4\r\nPING\r\n*1\r\n$8\r\nFLU"],
        false,
    );
    assert_eq!(step.next, Next::Pause, "{}", host.dump());
    let step = c.on_body(Direction::Request, &[b"SHALL\r\n"], false);
    assert_eq!((step.next, step.output), (Next::Continue, Output::Data));
    assert_eq!(
        c.output(Direction::Request),
        b"*1\r\n$4\r\nPING\r\n*1\r\n$8\r\nDENY_ALL\r\n"
    );
    assert_eq!(host.metric("m_redis_commands"), Some(vec![2]));
    assert_eq!(host.metric("m_redis_command_ping"), Some(vec![1]));
}

#[test]
fn a_held_new_connection_goes_on_when_continued() {
    let (host, _rt, mut c) = connection!("hold_new 60000");
    let step = c.on_headers(Direction::Request, false);
    assert_eq!(
        (step.next, step.headers_done),
        (Next::Pause, false),
        "{}",
        host.dump()
    );
    // nothing asked to continue yet
    assert_eq!(c.resume(Direction::Request).next, Next::Pause);
}

#[test]
fn a_panicking_filter_fails_the_connection() {
    let (host, _rt, mut c) = connection!("panic_on BOOM");
    c.on_headers(Direction::Request, false);
    let step = c.on_body(Direction::Request, &[b"BOOM"], false);
    assert_eq!(step.next, Next::Fail, "{}", host.dump());
}
