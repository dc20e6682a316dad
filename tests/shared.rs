//! The rules of what filters share across workers (the key-value store,
//! queues, metrics), run against the mock host's shared memory: several
//! workers are the mock host standing for one pid, then another.

mod common;

use std::sync::Arc;

use common::MockHost;
use ngx_proxy_wasm::host::{MetricType, ZoneKind, ZoneRef};
use ngx_proxy_wasm::shared::metrics::{DefineError, MetricNaming, MetricRegistry};
use ngx_proxy_wasm::shared::{kv, queues, SharedError, Zones};

const MODULES: &[&str] = &["a", "b"];

fn zone(kind: ZoneKind, index: u32) -> ZoneRef {
    ZoneRef { kind, index }
}

/// `shm_kv * ...`, `shm_kv shared ... share=a`, `shm_queue q ...`,
/// `shm_queue common ... share=*`.
fn zones() -> Zones {
    let mut zones = Zones::default();
    zones.add(zone(ZoneKind::Kv, 0), b"*", None, MODULES).unwrap();
    zones
        .add(
            zone(ZoneKind::Kv, 1),
            b"shared",
            Some(vec![b"a".to_vec()]),
            MODULES,
        )
        .unwrap();
    zones.add(zone(ZoneKind::Queue, 0), b"q", None, MODULES).unwrap();
    zones
        .add(
            zone(ZoneKind::Queue, 1),
            b"common",
            Some(vec![b"*".to_vec()]),
            MODULES,
        )
        .unwrap();
    zones
}

fn get(host: &MockHost, zones: &Zones, vm_id: &str, key: &str) -> Result<Option<(String, u32)>, SharedError> {
    let mut out = Vec::new();
    let cas = kv::get(host, zones, vm_id.as_bytes(), key.as_bytes(), &mut out)?;
    Ok(cas.map(|cas| (String::from_utf8(out).unwrap(), cas)))
}

fn set(
    host: &MockHost,
    zones: &Zones,
    vm_id: &str,
    key: &str,
    value: &str,
    cas: u32,
) -> Result<(), SharedError> {
    kv::set(
        host,
        zones,
        vm_id.as_bytes(),
        key.as_bytes(),
        value.as_bytes(),
        cas,
    )
}

#[test]
fn each_module_has_its_own_keys_unless_the_zone_is_shared() {
    let host = MockHost::new();
    let zones = zones();
    set(host, &zones, "a", "k", "1", 0).unwrap();
    assert_eq!(get(host, &zones, "a", "k").unwrap().unwrap().0, "1");
    assert_eq!(get(host, &zones, "b", "k"), Ok(None));
    set(host, &zones, "b", "k", "2", 0).unwrap();
    assert_eq!(get(host, &zones, "a", "k").unwrap().unwrap().0, "1");
    // "shared/" keys go to the zone "shared", which serves "a" only
    set(host, &zones, "a", "shared/k", "3", 0).unwrap();
    assert_eq!(get(host, &zones, "a", "shared/k").unwrap().unwrap().0, "3");
    assert_eq!(get(host, &zones, "b", "shared/k"), Err(SharedError::Denied));
    assert_eq!(
        set(host, &zones, "b", "shared/k", "4", 0),
        Err(SharedError::Denied)
    );
    // without a "*" zone, only prefixed keys have a zone
    let mut only_shared = Zones::default();
    only_shared
        .add(
            zone(ZoneKind::Kv, 1),
            b"shared",
            Some(vec![b"*".to_vec()]),
            MODULES,
        )
        .unwrap();
    assert_eq!(get(host, &only_shared, "b", "k"), Err(SharedError::NoZone));
    assert_eq!(get(host, &only_shared, "b", "shared/k").unwrap().unwrap().0, "3");
}

#[test]
fn cas_guards_writes_and_changes_with_each() {
    let host = MockHost::new();
    let zones = zones();
    // an absent key takes any CAS
    set(host, &zones, "a", "k", "1", 77).unwrap();
    let (_, first) = get(host, &zones, "a", "k").unwrap().unwrap();
    assert_ne!(first, 0);
    set(host, &zones, "a", "k", "2", first).unwrap();
    let (value, second) = get(host, &zones, "a", "k").unwrap().unwrap();
    assert_eq!(value, "2");
    assert_ne!(second, first);
    assert_eq!(
        set(host, &zones, "a", "k", "3", first),
        Err(SharedError::CasMismatch)
    );
    assert_eq!(get(host, &zones, "a", "k").unwrap().unwrap().0, "2");
    // 0 asks for no check
    set(host, &zones, "a", "k", "4", 0).unwrap();
    assert_eq!(get(host, &zones, "a", "k").unwrap().unwrap().0, "4");
    // CAS numbers are the zone's: another module's write moves them on
    set(host, &zones, "b", "other", "x", 0).unwrap();
    let (_, b_cas) = get(host, &zones, "b", "other").unwrap().unwrap();
    let (_, a_cas) = get(host, &zones, "a", "k").unwrap().unwrap();
    assert_eq!(b_cas, a_cas + 1);
}

#[test]
fn while_the_configuration_is_checked_reads_find_nothing_and_writes_are_dropped() {
    let host = MockHost::new();
    let zones = zones();
    host.set_unmapped(true);
    assert_eq!(set(host, &zones, "a", "k", "1", 0), Ok(()));
    assert_eq!(get(host, &zones, "a", "k"), Ok(None));
    // names are still checked against the configuration
    assert_eq!(get(host, &zones, "b", "shared/k"), Err(SharedError::Denied));
    host.set_unmapped(false);
    assert_eq!(get(host, &zones, "a", "k"), Ok(None));
}

#[test]
fn a_full_zone_evicts_only_the_writers_entries() {
    let host = MockHost::new();
    let zones = zones();
    // room for about three entries ("a\0k1" + 10 bytes)
    host.set_capacity(zone(ZoneKind::Kv, 0), 45);
    set(host, &zones, "b", "k1", "bbbbbbbbbb", 0).unwrap();
    set(host, &zones, "a", "k1", "aaaaaaaaaa", 0).unwrap();
    set(host, &zones, "a", "k2", "aaaaaaaaaa", 0).unwrap();
    set(host, &zones, "a", "k3", "aaaaaaaaaa", 0).unwrap();
    assert_eq!(get(host, &zones, "a", "k1"), Ok(None));
    assert!(get(host, &zones, "b", "k1").unwrap().is_some());
    // "b" has not enough of its own to evict for a value this big
    assert_eq!(
        set(
            host,
            &zones,
            "b",
            "k2",
            "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
            0
        ),
        Err(SharedError::Full)
    );
    assert!(get(host, &zones, "a", "k3").unwrap().is_some());
}

#[test]
fn a_queue_is_its_first_registrants_and_others_enqueue_to_it() {
    let host = MockHost::new();
    let zones = zones();
    let token = queues::register(host, &zones, b"a", b"q").unwrap();
    assert_eq!(
        queues::register(host, &zones, b"b", b"q"),
        Err(SharedError::Denied)
    );
    assert_eq!(
        queues::register(host, &zones, b"a", b"nope"),
        Err(SharedError::NoZone)
    );
    // resolved by the owner's vm id only
    assert_eq!(queues::resolve(host, &zones, b"b", b"a", b"q"), Ok(Some(token)));
    assert_eq!(queues::resolve(host, &zones, b"b", b"b", b"q"), Ok(None));
    queues::enqueue(host, &zones, b"b", token, b"hello").unwrap();
    let mut item = Vec::new();
    assert_eq!(
        queues::dequeue(host, &zones, b"b", token, &mut item),
        Err(SharedError::Denied)
    );
    assert_eq!(queues::dequeue(host, &zones, b"a", token, &mut item), Ok(true));
    assert_eq!(item, b"hello");
    assert_eq!(queues::dequeue(host, &zones, b"a", token, &mut item), Ok(false));
    assert_eq!(
        queues::enqueue(host, &zones, b"a", 9, b"x"),
        Err(SharedError::NoZone)
    );
}

#[test]
fn an_owner_no_longer_configured_gives_its_queue_up() {
    let host = MockHost::new();
    let old = zones();
    queues::register(host, &old, b"gone", b"q").unwrap();
    // "gone" is not a module of the configuration: "b" takes the queue
    let token = queues::register(host, &old, b"b", b"q").unwrap();
    assert_eq!(queues::resolve(host, &old, b"a", b"b", b"q"), Ok(Some(token)));
}

#[test]
fn a_shared_queue_serves_every_module_it_names() {
    let host = MockHost::new();
    let zones = zones();
    let token = queues::register(host, &zones, b"a", b"common").unwrap();
    assert_eq!(queues::register(host, &zones, b"b", b"common"), Ok(token));
    queues::enqueue(host, &zones, b"a", token, b"1").unwrap();
    let mut item = Vec::new();
    assert_eq!(queues::dequeue(host, &zones, b"b", token, &mut item), Ok(true));
}

#[test]
fn items_are_credited_to_the_registered_workers_in_turn() {
    let host = MockHost::new();
    let zones = zones();
    host.as_worker(10);
    let token = queues::register(host, &zones, b"a", b"q").unwrap();
    host.as_worker(20);
    queues::register(host, &zones, b"a", b"q").unwrap();
    host.take_wakes();
    for _ in 0..4 {
        queues::enqueue(host, &zones, b"b", token, b"x").unwrap();
    }
    let woken: Vec<i64> = host.take_wakes().into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(woken, [10, 20, 10, 20]);
    // each worker runs on_queue_ready for its own credits
    let mut ready = Vec::new();
    host.as_worker(10);
    assert!(!queues::wakeup(host, &zones, &mut |t| ready.push(t)));
    assert_eq!(ready, [token, token]);
}

#[test]
fn a_gone_workers_items_go_to_another() {
    let host = MockHost::new();
    let zones = zones();
    for pid in [10, 20] {
        host.as_worker(pid);
        queues::register(host, &zones, b"a", b"q").unwrap();
    }
    host.take_wakes();
    host.worker_gone(10);
    let token = zones.queue_by_name(b"q").unwrap().0;
    queues::enqueue(host, &zones, b"b", token, b"x").unwrap();
    let woken: Vec<i64> = host.take_wakes().into_iter().map(|(pid, _)| pid).collect();
    assert_eq!(woken, [10, 20]);
    let mut ready = 0;
    host.as_worker(20);
    queues::wakeup(host, &zones, &mut |_| ready += 1);
    assert_eq!(ready, 1);
}

#[test]
fn a_leaving_worker_passes_its_items_on_and_a_newcomer_gets_the_untold() {
    let host = MockHost::new();
    let zones = zones();
    host.as_worker(10);
    let token = queues::register(host, &zones, b"a", b"q").unwrap();
    for _ in 0..3 {
        queues::enqueue(host, &zones, b"a", token, b"x").unwrap();
    }
    host.as_worker(20);
    queues::register(host, &zones, b"a", b"q").unwrap();
    host.take_wakes();
    host.as_worker(10);
    queues::leave_all(host, &zones);
    assert_eq!(host.take_wakes(), [(20, b"q".to_vec())]);
    host.as_worker(20);
    queues::leave_all(host, &zones);
    // nobody is left: a newcomer is told of all three
    host.as_worker(30);
    queues::register(host, &zones, b"a", b"q").unwrap();
    let mut ready = 0;
    queues::wakeup(host, &zones, &mut |_| ready += 1);
    assert_eq!(ready, 3);
}

#[test]
fn a_wakeup_runs_a_batch_per_queue_and_asks_for_more() {
    let host = MockHost::new();
    let zones = zones();
    let token = queues::register(host, &zones, b"a", b"q").unwrap();
    let batch = queues::WAKEUP_BATCH as usize;
    for _ in 0..batch + 6 {
        queues::enqueue(host, &zones, b"a", token, b"x").unwrap();
    }
    let mut item = Vec::new();
    let mut ready = 0;
    assert!(queues::wakeup(host, &zones, &mut |_| {
        ready += 1;
        queues::dequeue(host, &zones, b"a", token, &mut item).unwrap();
    }));
    assert_eq!(ready, batch);
    // items others took are not announced
    for _ in 0..3 {
        queues::dequeue(host, &zones, b"a", token, &mut item).unwrap();
    }
    ready = 0;
    assert!(!queues::wakeup(host, &zones, &mut |_| {
        ready += 1;
        queues::dequeue(host, &zones, b"a", token, &mut item).unwrap();
    }));
    assert_eq!(ready, 3);
}

#[test]
fn metrics_are_their_filters_and_count_by_type() {
    let host = MockHost::new();
    let mut registry = MetricRegistry::new(MetricNaming::new(256));
    let (f, g, g_x): (Arc<str>, Arc<str>, Arc<str>) = ("f".into(), "g".into(), "g_x".into());
    let counter = registry.define(host, MetricType::Counter, &f, b"hits").unwrap();
    let histogram = registry
        .define(host, MetricType::Histogram, &f, b"latency")
        .unwrap();
    assert_eq!((counter & 3, histogram & 3), (0, 2));
    assert_eq!(
        registry.define(host, MetricType::Counter, &f, b"hits"),
        Ok(counter)
    );
    // "a.b" and "a_b" are one Prometheus name
    let dotted = registry.define(host, MetricType::Counter, &f, b"a.b").unwrap();
    assert_eq!(registry.define(host, MetricType::Counter, &f, b"a_b"), Ok(dotted));
    assert_eq!(
        registry.define(host, MetricType::Gauge, &f, b"hits"),
        Err(DefineError::Host(SharedError::TypeConflict))
    );
    // a forged id: wrong type bits, unknown index, 0; another filter's
    assert!(registry.lookup(&f, counter | 1).is_none());
    assert!(registry.lookup(&f, 400).is_none());
    assert!(registry.lookup(&f, 0).is_none());
    assert!(registry.lookup(&g, counter).is_none());
    registry.define(host, MetricType::Counter, &g_x, b"y").unwrap();
    assert_eq!(
        registry.define(host, MetricType::Counter, &g, b"x_y"),
        Err(DefineError::Host(SharedError::Denied))
    );
    // a name another worker's filter of another module made first
    let mut other_worker = MetricRegistry::new(MetricNaming::new(256));
    assert_eq!(
        other_worker.define(host, MetricType::Counter, &g, b"x_y"),
        Err(DefineError::Host(SharedError::Denied))
    );
    assert_eq!(
        MetricRegistry::new(MetricNaming::new(8)).define(host, MetricType::Counter, &f, b"much_too_long"),
        Err(DefineError::TooLong(8))
    );

    let hits = registry.lookup(&f, counter).unwrap();
    assert_eq!(hits.increment(host, 0), Err(SharedError::TypeConflict));
    hits.increment(host, 2).unwrap();
    hits.record(host, 3);
    assert_eq!(hits.get(host), Ok(5));
    let latency = registry.lookup(&f, histogram).unwrap();
    assert_eq!(latency.increment(host, 1), Err(SharedError::TypeConflict));
    assert_eq!(latency.get(host), Err(SharedError::TypeConflict));
    for value in [0, 7, 7, 5_000_000] {
        latency.record(host, value);
    }
    let slots = host.metric("f_latency").unwrap();
    assert_eq!((slots[0], slots[3], slots[19]), (1, 2, 1));
    assert_eq!((slots[20], slots[21]), (5_000_014, 4));
    let gauge = registry.define(host, MetricType::Gauge, &f, b"level").unwrap();
    let level = registry.lookup(&f, gauge).unwrap();
    level.record(host, 10);
    level.increment(host, -3).unwrap();
    assert_eq!(level.get(host), Ok(7));
}

#[test]
fn metrics_are_not_counted_while_the_configuration_is_checked() {
    let host = MockHost::new();
    host.set_unmapped(true);
    let mut registry = MetricRegistry::new(MetricNaming::new(256));
    let f: Arc<str> = "f".into();
    let id = registry.define(host, MetricType::Counter, &f, b"hits").unwrap();
    let hits = registry.lookup(&f, id).unwrap();
    hits.increment(host, 1).unwrap();
    assert_eq!(hits.get(host), Ok(0));
    assert!(host.metric("f_hits").is_none());
}
