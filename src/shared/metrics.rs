//! Metrics: the names they get (the filter's name, then the filter's
//! own, in Prometheus's alphabet), the ids a worker gives out, what each
//! operation does to each type (Envoy's rules), the slots a metric has in
//! the host's store (a histogram's buckets are Envoy's default bounds),
//! and their Prometheus text.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;

use super::SharedError;
use crate::host::{MetricRef, MetricType, Metrics};

/// Histogram buckets: Envoy's default bounds, as in its Prometheus output.
/// Values are integers, so "le 0.5" counts zeros: bounds are kept doubled.
const BUCKETS: [(u64, &str); 19] = [
    (1, "0.5"),
    (2, "1"),
    (10, "5"),
    (20, "10"),
    (50, "25"),
    (100, "50"),
    (200, "100"),
    (500, "250"),
    (1000, "500"),
    (2000, "1000"),
    (5000, "2500"),
    (10000, "5000"),
    (20000, "10000"),
    (60000, "30000"),
    (120000, "60000"),
    (600000, "300000"),
    (1200000, "600000"),
    (3600000, "1800000"),
    (7200000, "3600000"),
];

/// A histogram's slots: each bucket's count, then +Inf's, the sum and the
/// count.
const SUM: usize = BUCKETS.len() + 1;
const COUNT: usize = BUCKETS.len() + 2;

// the host reads at most that many slots of a metric
const _: () = assert!(BUCKETS.len() + 3 <= crate::sys::NGX_PROXY_WASM_METRIC_SLOTS_MAX as usize);

/// The slots a metric of a type has in the host's store.
pub fn slots(kind: MetricType) -> usize {
    match kind {
        MetricType::Counter | MetricType::Gauge => 1,
        MetricType::Histogram => BUCKETS.len() + 3,
    }
}

/// A metric a filter defined (`MetricRef` None: the store is not mapped,
/// while the configuration is checked; nothing is counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    pub kind: MetricType,
    stored: Option<MetricRef>,
}

impl Metric {
    /// `proxy_increment_metric`: counters go up (by a positive offset);
    /// gauges go up or down; histograms are recorded, not incremented.
    pub fn increment(&self, host: &dyn Metrics, offset: i64) -> Result<(), SharedError> {
        match self.kind {
            MetricType::Counter if offset <= 0 => Err(SharedError::TypeConflict),
            MetricType::Histogram => Err(SharedError::TypeConflict),
            _ => {
                if let Some(metric) = self.stored {
                    // two's complement: a negative offset takes a gauge down
                    host.metric_add(metric, 0, offset as u64);
                }
                Ok(())
            }
        }
    }

    /// `proxy_record_metric`: a counter adds, a gauge takes the value, a
    /// histogram counts it in its bucket.
    pub fn record(&self, host: &dyn Metrics, value: i64) {
        let Some(metric) = self.stored else {
            return;
        };
        match self.kind {
            MetricType::Counter => host.metric_add(metric, 0, value as u64),
            MetricType::Gauge => host.metric_store(metric, 0, value as u64),
            MetricType::Histogram => {
                let value = value as u64;
                host.metric_add(metric, bucket(value), 1);
                host.metric_add(metric, SUM, value);
                host.metric_add(metric, COUNT, 1);
            }
        }
    }

    /// `proxy_get_metric`: a counter's or gauge's value.
    pub fn get(&self, host: &dyn Metrics) -> Result<u64, SharedError> {
        if self.kind == MetricType::Histogram {
            return Err(SharedError::TypeConflict);
        }
        Ok(self.stored.map_or(0, |metric| host.metric_load(metric, 0)))
    }
}

/// The slot of a histogram's value: its bucket (the one odd bound is 1,
/// for 0.5: zeros), or +Inf's.
fn bucket(value: u64) -> usize {
    BUCKETS
        .iter()
        .position(|(twice, _)| value <= twice / 2)
        .unwrap_or(BUCKETS.len())
}

/// A metric's lines in the Prometheus text format, from its slots.
pub fn text(kind: MetricType, name: &[u8], slots: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let name = String::from_utf8_lossy(name);
    let type_name = match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
    };
    let _ = writeln!(out, "# TYPE {name} {type_name}");
    let slot = |i: usize| slots.get(i).copied().unwrap_or(0);
    match kind {
        MetricType::Counter => {
            let _ = writeln!(out, "{name} {}", slot(0));
        }
        MetricType::Gauge => {
            let _ = writeln!(out, "{name} {}", slot(0) as i64);
        }
        MetricType::Histogram => {
            let mut cumulative = 0u64;
            for i in 0..=BUCKETS.len() {
                cumulative = cumulative.wrapping_add(slot(i));
                let le = BUCKETS.get(i).map_or("+Inf", |(_, le)| le);
                let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {cumulative}");
            }
            let _ = writeln!(out, "{name}_sum {}", slot(SUM));
            // _count matches the +Inf bucket, read once above
            let _ = writeln!(out, "{name}_count {cumulative}");
        }
    }
    out
}

/// The metrics a worker's filters defined: the ids it gave out.
pub struct MetricRegistry {
    /// `max_metric_name_length` of the configuration.
    max_name_length: usize,
    ids: HashMap<Vec<u8>, u32>,
    /// By index: the metric, and the filter that defined it (ids are
    /// small numbers a filter could guess another's by).
    metrics: Vec<(Metric, Arc<str>)>,
}

/// Why a metric cannot be defined, for the filter's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefineError {
    TooLong(usize),
    Host(SharedError),
}

/// `<filter>_<name>`, with every byte Prometheus does not allow in a
/// metric name turned into `_`.
pub fn full_name(filter: &str, name: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(filter.len() + 1 + name.len() + 1);
    if filter.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        full.push(b'_');
    }
    full.extend(
        filter
            .bytes()
            .chain(std::iter::once(b'_'))
            .chain(name.iter().copied())
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b':' {
                    b
                } else {
                    b'_'
                }
            }),
    );
    full
}

impl MetricRegistry {
    pub fn new(max_name_length: usize) -> MetricRegistry {
        MetricRegistry {
            max_name_length,
            ids: HashMap::new(),
            metrics: Vec::new(),
        }
    }

    /// The id of a metric (the same for the same name and type): its index
    /// and, in the low 2 bits, its type, as Envoy's ids.
    pub fn define(
        &mut self,
        host: &dyn Metrics,
        kind: MetricType,
        filter: &Arc<str>,
        name: &[u8],
    ) -> Result<u32, DefineError> {
        let full = full_name(filter, name);
        if full.len() > self.max_name_length {
            return Err(DefineError::TooLong(self.max_name_length));
        }
        if let Some(&id) = self.ids.get(&full) {
            let owner = &self.metrics[(id >> 2) as usize - 1].1;
            if !same_filter(owner, filter) {
                // "a" + "b_c" and "a_b" + "c": one name, two filters
                return Err(DefineError::Host(SharedError::Denied));
            }
            if id & 3 == kind as u32 {
                return Ok(id);
            }
            return Err(DefineError::Host(SharedError::TypeConflict));
        }
        let stored = match host.metric_find_or_add(&full, kind, filter, slots(kind)) {
            Ok(Some(found)) if found.owner != filter.as_bytes() => {
                // made by another module (of this configuration or before)
                return Err(DefineError::Host(SharedError::Denied));
            }
            Ok(Some(found)) if found.kind != kind => {
                return Err(DefineError::Host(SharedError::TypeConflict))
            }
            Ok(Some(found)) => Some(found.metric),
            Ok(None) => None,
            Err(_) => return Err(DefineError::Host(SharedError::Full)),
        };
        let id = ((self.metrics.len() as u32 + 1) << 2) | kind as u32;
        self.metrics.push((Metric { kind, stored }, filter.clone()));
        self.ids.insert(full, id);
        Ok(id)
    }

    /// The metric an id stands for, if the filter defined it: a filter
    /// cannot reach another's metrics.
    pub fn lookup(&self, filter: &Arc<str>, id: u32) -> Option<Metric> {
        let index = (id >> 2).checked_sub(1)? as usize;
        let (metric, owner) = self.metrics.get(index)?;
        (metric.kind as u32 == id & 3 && same_filter(owner, filter)).then_some(*metric)
    }
}

/// Filters are named by their module's name, one `Arc` per module: the
/// pointers match but for a name built elsewhere.
fn same_filter(a: &Arc<str>, b: &Arc<str>) -> bool {
    Arc::ptr_eq(a, b) || a == b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed_and_made_valid_for_prometheus() {
        assert_eq!(full_name("auth", b"requests_total"), b"auth_requests_total");
        assert_eq!(full_name("my-filter.v2", b"a.b c=d"), b"my_filter_v2_a_b_c_d");
        assert_eq!(full_name("9lives", b"x:y"), b"_9lives_x:y");
    }

    #[test]
    fn histogram_values_go_to_envoys_buckets() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 1);
        assert_eq!(bucket(2), 2);
        assert_eq!(bucket(5), 2);
        assert_eq!(bucket(6), 3);
        assert_eq!(bucket(3_600_000), 18);
        assert_eq!(bucket(3_600_001), 19);
        assert_eq!(slots(MetricType::Histogram), 22);
        assert_eq!(slots(MetricType::Gauge), 1);
    }

    #[test]
    fn text_is_prometheus_with_cumulative_buckets() {
        assert_eq!(text(MetricType::Counter, b"c", &[3]), b"# TYPE c counter\nc 3\n");
        assert_eq!(
            text(MetricType::Gauge, b"g", &[(-2i64) as u64]),
            b"# TYPE g gauge\ng -2\n"
        );
        let mut slots = vec![0; 22];
        slots[0] = 1;
        slots[3] = 2;
        slots[19] = 1;
        slots[SUM] = 4_000_020;
        slots[COUNT] = 4;
        let text = String::from_utf8(text(MetricType::Histogram, b"h", &slots)).unwrap();
        assert!(text.starts_with("# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("h_bucket{le=\"10\"} 3\n"));
        assert!(
            text.ends_with("h_bucket{le=\"3600000\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 4000020\nh_count 4\n")
        );
    }
}
