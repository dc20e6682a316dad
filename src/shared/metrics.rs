//! The metric ids a worker gives out, and the names metrics get: the
//! filter's name, then the filter's own, in Prometheus's alphabet.

use std::collections::HashMap;
use std::sync::Arc;

#[cfg(test)]
use crate::host::MetricOp;
use crate::host::{MetricRef, MetricType, Metrics, SharedError};

/// The metrics a worker's filters defined: the ids it gave out.
pub struct MetricRegistry {
    /// `max_metric_name_length` of the configuration.
    max_name_length: usize,
    ids: HashMap<Vec<u8>, u32>,
    /// By index: the type, the metric, and the filter that defined it
    /// (ids are small numbers a filter could guess another's by).
    metrics: Vec<(MetricType, MetricRef, Arc<str>)>,
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
            let owner = &self.metrics[(id >> 2) as usize - 1].2;
            if !same_filter(owner, filter) {
                // "a" + "b_c" and "a_b" + "c": one name, two filters
                return Err(DefineError::Host(SharedError::Denied));
            }
            if id & 3 == kind as u32 {
                return Ok(id);
            }
            return Err(DefineError::Host(SharedError::TypeConflict));
        }
        let metric = host
            .metric_define(kind, filter, &full)
            .map_err(DefineError::Host)?;
        let id = ((self.metrics.len() as u32 + 1) << 2) | kind as u32;
        self.metrics.push((kind, metric, filter.clone()));
        self.ids.insert(full, id);
        Ok(id)
    }

    /// The metric an id stands for, if the filter defined it: a filter
    /// cannot reach another's metrics.
    pub fn lookup(&self, filter: &Arc<str>, id: u32) -> Option<(MetricType, MetricRef)> {
        let index = (id >> 2).checked_sub(1)? as usize;
        let (kind, metric, owner) = self.metrics.get(index)?;
        (*kind as u32 == id & 3 && same_filter(owner, filter)).then_some((*kind, *metric))
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
    use std::cell::Cell;

    /// A metric store that hands out increasing handles.
    #[derive(Default)]
    struct Store {
        defined: Cell<usize>,
    }

    impl Metrics for Store {
        fn metric_define(&self, _: MetricType, _: &str, _: &[u8]) -> Result<MetricRef, SharedError> {
            self.defined.set(self.defined.get() + 1);
            Ok(MetricRef(self.defined.get()))
        }
        fn metric_update(&self, _: MetricRef, _: MetricOp, _: i64) {}
        fn metric_get(&self, _: MetricRef) -> u64 {
            0
        }
    }

    #[test]
    fn ids_carry_the_type_and_name_one_metric() {
        let mut registry = MetricRegistry::new(256);
        let host = Store::default();
        let (f_, g_, g_x_): (Arc<str>, Arc<str>, Arc<str>) = ("f".into(), "g".into(), "g_x".into());
        let counter = registry.define(&host, MetricType::Counter, &f_, b"hits").unwrap();
        let histogram = registry
            .define(&host, MetricType::Histogram, &f_, b"latency")
            .unwrap();
        assert_eq!(counter & 3, 0);
        assert_eq!(histogram & 3, 2);
        assert_eq!(
            registry.define(&host, MetricType::Counter, &f_, b"hits"),
            Ok(counter)
        );
        // "a.b" and "a_b" are one Prometheus name
        let dotted = registry.define(&host, MetricType::Counter, &f_, b"a.b").unwrap();
        assert_eq!(
            registry.define(&host, MetricType::Counter, &f_, b"a_b"),
            Ok(dotted)
        );
        assert_eq!(
            registry.define(&host, MetricType::Gauge, &f_, b"hits"),
            Err(DefineError::Host(SharedError::TypeConflict))
        );
        assert_eq!(host.defined.get(), 3);
        assert_eq!(
            registry.lookup(&f_, counter),
            Some((MetricType::Counter, MetricRef(1)))
        );
        assert_eq!(
            registry.lookup(&f_, histogram),
            Some((MetricType::Histogram, MetricRef(2)))
        );
        // a forged id: wrong type bits, unknown index, 0
        assert_eq!(registry.lookup(&f_, counter | 1), None);
        assert_eq!(registry.lookup(&f_, 400), None);
        assert_eq!(registry.lookup(&f_, 0), None);
        // another filter's id, and another filter's name
        assert_eq!(registry.lookup(&g_, counter), None);
        let other = registry.define(&host, MetricType::Counter, &g_x_, b"y").unwrap();
        assert_eq!(
            registry.lookup(&g_x_, other).map(|(kind, _)| kind),
            Some(MetricType::Counter)
        );
        assert_eq!(
            registry.define(&host, MetricType::Counter, &g_, b"x_y"),
            Err(DefineError::Host(SharedError::Denied))
        );
        let mut short = MetricRegistry::new(8);
        assert_eq!(
            short.define(&host, MetricType::Counter, &f_, b"much_too_long"),
            Err(DefineError::TooLong(8))
        );
    }

    #[test]
    fn names_are_prefixed_and_made_valid_for_prometheus() {
        assert_eq!(full_name("auth", b"requests_total"), b"auth_requests_total");
        assert_eq!(full_name("my-filter.v2", b"a.b c=d"), b"my_filter_v2_a_b_c_d");
        assert_eq!(full_name("9lives", b"x:y"), b"_9lives_x:y");
    }
}
