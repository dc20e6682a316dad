//! Metrics: the names they get (the filter's name, then the filter's
//! own, in Prometheus's alphabet, with the tags found in it as labels),
//! the ids a worker gives out, what each operation does to each type
//! (Envoy's rules), the slots a metric has in the host's store (a
//! histogram's buckets are Envoy's default bounds), and their Prometheus
//! text.
//!
//! Tags, as Envoy's `stats_tags`: a rule's regular expression is matched
//! against the name a filter defines; its first capture group is taken
//! out of the name and its second (else the first) is the tag's value.
//! Tags written in the name as `.<tag>=.=<value>;.;` (the format of
//! Envoy's and Istio's default tag rules) are taken out first, without a
//! rule. A metric is stored under `<name>{<tag>="<value>",...}`: metrics
//! whose names differ only by their tags' values are one Prometheus
//! family.

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, OnceLock};

use regex::bytes::Regex;

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

/// A metric as the host's store has it: its stored name and its slots.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub kind: MetricType,
    pub name: &'a [u8],
    pub slots: &'a [u64],
}

/// The Prometheus text of metrics (in the store's order, by name): one
/// `# TYPE` line per family, its series together.
pub fn exposition<'a>(metrics: &[Stored<'a>]) -> Vec<u8> {
    // `<family>{<labels>}`, or a family alone
    let split = |name: &'a [u8]| -> (&'a [u8], &'a [u8]) {
        match name.iter().position(|&b| b == b'{') {
            Some(brace) => {
                let labels = &name[brace + 1..];
                (&name[..brace], labels.strip_suffix(b"}").unwrap_or(labels))
            }
            None => (name, &[]),
        }
    };
    let mut series: Vec<(&[u8], &[u8], &Stored<'_>)> = metrics
        .iter()
        .map(|metric| {
            let (family, labels) = split(metric.name);
            (family, labels, metric)
        })
        .collect();
    // "a", "a_b" and "a{x=...}" sort apart by their stored names
    series.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut family_of_last: Option<(&[u8], MetricType)> = None;
    for (family, labels, metric) in &series {
        if family_of_last != Some((*family, metric.kind)) {
            type_line(&mut out, family, metric.kind);
            family_of_last = Some((*family, metric.kind));
        }
        sample_lines(&mut out, family, labels, metric.kind, metric.slots);
    }
    out
}

fn type_line(out: &mut Vec<u8>, family: &[u8], kind: MetricType) {
    let type_name = match kind {
        MetricType::Counter => "counter",
        MetricType::Gauge => "gauge",
        MetricType::Histogram => "histogram",
    };
    let _ = writeln!(out, "# TYPE {} {type_name}", String::from_utf8_lossy(family));
}

fn sample_lines(out: &mut Vec<u8>, family: &[u8], labels: &[u8], kind: MetricType, slots: &[u64]) {
    let name = String::from_utf8_lossy(family);
    let labels = String::from_utf8_lossy(labels);
    let braced = |extra: &str| match (labels.is_empty(), extra.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!("{{{extra}}}"),
        (false, true) => format!("{{{labels}}}"),
        (false, false) => format!("{{{labels},{extra}}}"),
    };
    let slot = |i: usize| slots.get(i).copied().unwrap_or(0);
    match kind {
        MetricType::Counter => {
            let _ = writeln!(out, "{name}{} {}", braced(""), slot(0));
        }
        MetricType::Gauge => {
            let _ = writeln!(out, "{name}{} {}", braced(""), slot(0) as i64);
        }
        MetricType::Histogram => {
            let mut cumulative = 0u64;
            for i in 0..=BUCKETS.len() {
                cumulative = cumulative.wrapping_add(slot(i));
                let le = BUCKETS.get(i).map_or("+Inf", |(_, le)| le);
                let _ = writeln!(
                    out,
                    "{name}_bucket{} {cumulative}",
                    braced(&format!("le=\"{le}\""))
                );
            }
            let _ = writeln!(out, "{name}_sum{} {}", braced(""), slot(SUM));
            // _count matches the +Inf bucket, read once above
            let _ = writeln!(out, "{name}_count{} {cumulative}", braced(""));
        }
    }
}

/// A tag rule (`metrics { tag <name> <regex>; }`).
#[derive(Debug, Clone)]
pub struct TagRule {
    name: String,
    pattern: Regex,
}

impl TagRule {
    pub fn new(name: &str, pattern: &str) -> Result<TagRule, String> {
        if !valid_label_name(name.as_bytes()) {
            return Err(format!(
                "metrics tag \"{name}\": not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        let pattern = Regex::new(pattern).map_err(|e| {
            let why = e.to_string().lines().last().unwrap_or("").trim().to_string();
            format!("metrics tag \"{name}\": invalid regular expression: {why}")
        })?;
        if pattern.captures_len() < 2 {
            return Err(format!(
                "metrics tag \"{name}\": the regular expression needs a capture group (what is taken \
                 out of the name)"
            ));
        }
        Ok(TagRule {
            name: name.to_string(),
            pattern,
        })
    }
}

fn valid_label_name(name: &[u8]) -> bool {
    name.first()
        .is_some_and(|b| b.is_ascii_alphabetic() || *b == b'_')
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
        && !name.starts_with(b"__")
}

/// `<tag>=.=<value>;.;`, with the dot before it: the name is what follows
/// the name's last dot (tags follow one another directly).
fn embedded_tag() -> &'static Regex {
    static EMBEDDED: OnceLock<Regex> = OnceLock::new();
    EMBEDDED
        .get_or_init(|| Regex::new(r"\.?([a-zA-Z_][a-zA-Z0-9_]*)=\.=(.*?);\.;").expect("a valid expression"))
}

/// The name a metric is stored under: the tags taken out of the filter's
/// name (the embedded ones, then each rule's first match, in order), what
/// is left prefixed and made valid by `full_name`, and the tags as labels.
pub fn stored_name(filter: &str, name: &[u8], rules: &[TagRule]) -> Vec<u8> {
    let mut labels: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    // all of them in the name as given: one may follow another
    let mut rest = Vec::with_capacity(name.len());
    let mut kept_from = 0;
    for found in embedded_tag().captures_iter(name) {
        let (Some(whole), Some(tag), Some(value)) = (found.get(0), found.get(1), found.get(2)) else {
            continue;
        };
        labels.push((tag.as_bytes().to_vec(), value.as_bytes().to_vec()));
        rest.extend_from_slice(&name[kept_from..whole.start()]);
        kept_from = whole.end();
    }
    rest.extend_from_slice(&name[kept_from..]);
    for rule in rules {
        let Some(found) = rule.pattern.captures(&rest) else {
            continue;
        };
        let Some(taken) = found.get(1) else {
            continue;
        };
        let value = found.get(2).unwrap_or(taken).as_bytes().to_vec();
        labels.push((rule.name.as_bytes().to_vec(), value));
        let range = taken.range();
        rest.drain(range);
    }
    if labels.is_empty() {
        return full_name(filter, name);
    }
    while rest.last().is_some_and(|b| matches!(b, b'.' | b'_')) {
        rest.pop();
    }
    let mut stored = full_name(filter, &rest);
    stored.push(b'{');
    for (i, (tag, value)) in labels.iter().enumerate() {
        if i > 0 {
            stored.push(b',');
        }
        // label names: the rules' checked, the embedded ones by their pattern
        stored.extend_from_slice(tag);
        stored.extend_from_slice(b"=\"");
        for &b in value {
            match b {
                b'\\' => stored.extend_from_slice(b"\\\\"),
                b'"' => stored.extend_from_slice(b"\\\""),
                b'\n' => stored.extend_from_slice(b"\\n"),
                _ => stored.push(b),
            }
        }
        stored.push(b'"');
    }
    stored.push(b'}');
    stored
}

/// How metric names are made (`metrics{}`): the longest, and the tag rules.
#[derive(Debug, Clone)]
pub struct MetricNaming {
    pub max_length: usize,
    pub tags: Arc<[TagRule]>,
}

impl MetricNaming {
    pub fn new(max_length: usize) -> MetricNaming {
        MetricNaming {
            max_length,
            tags: Arc::new([]),
        }
    }
}

impl Default for MetricNaming {
    fn default() -> MetricNaming {
        MetricNaming::new(256)
    }
}

/// The metrics a worker's filters defined: the ids it gave out.
pub struct MetricRegistry {
    naming: MetricNaming,
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
    pub fn new(naming: MetricNaming) -> MetricRegistry {
        MetricRegistry {
            naming,
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
        let full = stored_name(filter, name, &self.naming.tags);
        if full.len() > self.naming.max_length {
            return Err(DefineError::TooLong(self.naming.max_length));
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
    pub fn lookup(&self, filter: &str, id: u32) -> Option<Metric> {
        let index = (id >> 2).checked_sub(1)? as usize;
        let (metric, owner) = self.metrics.get(index)?;
        (metric.kind as u32 == id & 3 && same_filter(owner, filter)).then_some(*metric)
    }
}

/// Filters are named by their module's name, one `Arc` per module: the
/// pointers match but for a name built elsewhere (the Lua API's).
fn same_filter(a: &Arc<str>, b: &str) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len() || &**a == b
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

    fn one(kind: MetricType, name: &[u8], slots: &[u64]) -> String {
        String::from_utf8(exposition(&[Stored { kind, name, slots }])).unwrap()
    }

    #[test]
    fn text_is_prometheus_with_cumulative_buckets() {
        assert_eq!(one(MetricType::Counter, b"c", &[3]), "# TYPE c counter\nc 3\n");
        assert_eq!(
            one(MetricType::Gauge, b"g", &[(-2i64) as u64]),
            "# TYPE g gauge\ng -2\n"
        );
        let mut slots = vec![0; 22];
        slots[0] = 1;
        slots[3] = 2;
        slots[19] = 1;
        slots[SUM] = 4_000_020;
        slots[COUNT] = 4;
        let text = one(MetricType::Histogram, b"h", &slots);
        assert!(text.starts_with("# TYPE h histogram\nh_bucket{le=\"0.5\"} 1\nh_bucket{le=\"1\"} 1\n"));
        assert!(text.contains("h_bucket{le=\"10\"} 3\n"));
        assert!(
            text.ends_with("h_bucket{le=\"3600000\"} 3\nh_bucket{le=\"+Inf\"} 4\nh_sum 4000020\nh_count 4\n")
        );
        let text = one(MetricType::Histogram, b"h{a=\"1\"}", &slots);
        assert!(
            text.starts_with("# TYPE h histogram\nh_bucket{a=\"1\",le=\"0.5\"} 1\n"),
            "{text}"
        );
        assert!(
            text.ends_with("h_sum{a=\"1\"} 4000020\nh_count{a=\"1\"} 4\n"),
            "{text}"
        );
    }

    /// The Go SDK's example and the stats_tags of its Envoy configuration.
    #[test]
    fn tags_come_out_of_names_as_envoys_stats_tags() {
        let rules = [
            TagRule::new("value", "(_value=([a-zA-Z]+))").unwrap(),
            TagRule::new("reporter", "(_reporter=([a-zA-Z]+))").unwrap(),
        ];
        assert_eq!(
            String::from_utf8(stored_name(
                "go",
                b"custom_header_value_counts_value=foo_reporter=wasmgosdk",
                &rules
            ))
            .unwrap(),
            "go_custom_header_value_counts{value=\"foo\",reporter=\"wasmgosdk\"}"
        );
        // no match: the name as before
        assert_eq!(stored_name("go", b"plain.name", &rules), b"go_plain_name");
        // one capture group: it is both what goes and the value
        let whole = [TagRule::new("env", "(prod|staging)").unwrap()];
        assert_eq!(stored_name("f", b"hits_prod", &whole), b"f_hits{env=\"prod\"}");
        // Envoy's and Istio's format needs no rule; values are escaped
        assert_eq!(
            String::from_utf8(stored_name(
                "istio",
                b"requests_total.reporter=.=destination;.;code=.=a\"b;.;",
                &[]
            ))
            .unwrap(),
            "istio_requests_total{reporter=\"destination\",code=\"a\\\"b\"}"
        );
    }

    #[test]
    fn bad_tag_rules_say_why() {
        assert!(TagRule::new("1x", "(a)")
            .unwrap_err()
            .contains("not a Prometheus label name"));
        assert!(TagRule::new("x", "(a")
            .unwrap_err()
            .contains("invalid regular expression"));
        assert!(TagRule::new("x", "a")
            .unwrap_err()
            .contains("needs a capture group"));
    }

    #[test]
    fn a_family_has_one_type_line_and_its_series_together() {
        let one_slot = [1u64];
        let metrics = [
            Stored {
                kind: MetricType::Counter,
                name: b"a",
                slots: &one_slot,
            },
            Stored {
                kind: MetricType::Counter,
                name: b"a_b",
                slots: &one_slot,
            },
            Stored {
                kind: MetricType::Counter,
                name: b"a{x=\"1\"}",
                slots: &one_slot,
            },
            Stored {
                kind: MetricType::Counter,
                name: b"a{x=\"2\"}",
                slots: &one_slot,
            },
        ];
        assert_eq!(
            String::from_utf8(exposition(&metrics)).unwrap(),
            "# TYPE a counter\na 1\na{x=\"1\"} 1\na{x=\"2\"} 1\n# TYPE a_b counter\na_b 1\n"
        );
    }
}
