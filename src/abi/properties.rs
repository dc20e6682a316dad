//! Property paths (`proxy_get_property`, `proxy_set_property`) and the
//! store of values filters set.
//!
//! A path is segments joined by NUL (Rust and Go SDKs) or one dotted name
//! (`request.path`, as AssemblyScript filters write them). Both designate
//! the same property; stored and configured properties are keyed by the
//! dotted form.

use crate::sys::PropertyKey;

/// Envoy's former top-level names of `xds.*` attributes: `node.id` is
/// `xds.node.id`.
const LEGACY_XDS: &[&[u8]] = &[
    b"node",
    b"cluster_name",
    b"cluster_metadata",
    b"listener_direction",
    b"listener_metadata",
    b"route_name",
    b"route_metadata",
    b"upstream_host_metadata",
];

/// Bytes a store may hold (keys and values): a filter cannot make the
/// host's memory grow without bound.
pub const STORE_LIMIT: usize = 1024 * 1024;

/// A parsed property path.
#[derive(Debug, PartialEq, Eq)]
pub struct PropertyPath<'a> {
    segments: Vec<&'a [u8]>,
}

impl<'a> PropertyPath<'a> {
    /// None for an empty path or one with an empty segment.
    pub fn parse(raw: &'a [u8]) -> Option<PropertyPath<'a>> {
        let mut segments: Vec<&[u8]> = raw.split(|&b| b == 0).collect();
        if segments.len() == 1 && raw.contains(&b'.') {
            segments = split_dotted(raw);
        }
        if segments.iter().any(|s| s.is_empty()) {
            return None;
        }
        Some(PropertyPath { segments })
    }

    pub fn first(&self) -> &'a [u8] {
        self.segments[0]
    }

    /// The path without its first segment, or a single segment.
    pub fn rest(&self) -> &[&'a [u8]] {
        &self.segments[1..]
    }

    /// The dotted name stored and configured properties are keyed by
    /// (`xds.` added to Envoy's former top-level names).
    pub fn key(&self) -> Vec<u8> {
        let mut key = Vec::new();
        if LEGACY_XDS.contains(&self.first()) {
            key.extend_from_slice(b"xds.");
        }
        for (i, segment) in self.segments.iter().enumerate() {
            if i > 0 {
                key.push(b'.');
            }
            key.extend_from_slice(segment);
        }
        key
    }

    /// A path that designates an attribute of nginx's (or a variable):
    /// filters cannot store a value there.
    pub fn is_reserved(&self) -> bool {
        matches!(
            self.first(),
            b"request"
                | b"response"
                | b"source"
                | b"destination"
                | b"connection"
                | b"upstream"
                | b"ngx"
                | b"plugin_name"
                | b"plugin_root_id"
                | b"plugin_vm_id"
        )
    }

    pub fn display(&self) -> String {
        String::from_utf8_lossy(&self.key()).into_owned()
    }
}

/// Checks a namespace the proxy's own code (Lua) serves properties under:
/// one path segment that is neither one of nginx's attributes nor one of
/// Envoy's former top-level names (its paths would not reach it).
pub fn check_host_namespace(raw: &[u8]) -> Result<(), &'static str> {
    let path = PropertyPath::parse(raw)
        .filter(|path| path.rest().is_empty() && path.first() == raw)
        .ok_or("namespace must be one non-empty path segment")?;
    if path.is_reserved() || path.key() != raw {
        return Err("namespace names one of nginx's attributes (or Envoy's former ones)");
    }
    Ok(())
}

/// The key a configured (static) property is stored under: its dotted
/// path, checked; `PropertyKey::Invalid` for an empty path or segment,
/// `PropertyKey::Reserved` for a path of nginx's attributes.
pub fn configured_key(raw: &[u8]) -> Result<Vec<u8>, PropertyKey> {
    let path = PropertyPath::parse(raw).ok_or(PropertyKey::Invalid)?;
    if path.is_reserved() {
        return Err(PropertyKey::Reserved);
    }
    Ok(path.key())
}

/// Splits a dotted name. A header name may hold dots, so what follows
/// `request.headers.` (and the like) is one segment, and so is a variable's
/// name after `ngx.`.
fn split_dotted(raw: &[u8]) -> Vec<&[u8]> {
    let mut parts = raw.splitn(2, |&b| b == b'.');
    let first = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    match first {
        b"ngx" => vec![first, rest],
        b"request" | b"response" => {
            let mut inner = rest.splitn(2, |&b| b == b'.');
            let second = inner.next().unwrap_or_default();
            match inner.next() {
                Some(name) if matches!(second, b"headers" | b"trailers") => vec![first, second, name],
                _ => raw.split(|&b| b == b'.').collect(),
            }
        }
        _ => raw.split(|&b| b == b'.').collect(),
    }
}

/// Values filters stored with `proxy_set_property`, by dotted key.
#[derive(Debug, Default, Clone)]
pub struct PropertyStore {
    entries: Vec<(Vec<u8>, Vec<u8>)>,
    bytes: usize,
}

impl PropertyStore {
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_slice())
    }

    /// Stores a value (an empty one removes the key); false if the store
    /// would grow past `STORE_LIMIT`.
    pub fn set(&mut self, key: Vec<u8>, value: &[u8]) -> bool {
        let old = self.entries.iter().position(|(k, _)| *k == key);
        let freed = old.map_or(0, |i| self.entries[i].0.len() + self.entries[i].1.len());
        let needed = if value.is_empty() {
            0
        } else {
            key.len() + value.len()
        };
        if self.bytes - freed + needed > STORE_LIMIT {
            return false;
        }
        self.bytes = self.bytes - freed + needed;
        match (old, value.is_empty()) {
            (Some(i), true) => {
                self.entries.swap_remove(i);
            }
            (Some(i), false) => self.entries[i].1 = value.to_vec(),
            (None, true) => {}
            (None, false) => self.entries.push((key, value.to_vec())),
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_namespaces_are_one_segment_of_no_attribute() {
        assert_eq!(check_host_namespace(b"gateway"), Ok(()));
        for bad in [&b""[..], b"a.b", b"a\0b", b"."] {
            assert!(
                check_host_namespace(bad).unwrap_err().contains("one non-empty"),
                "{bad:?}"
            );
        }
        // nginx's attributes, and Envoy's former names (stored under xds.)
        for reserved in [&b"request"[..], b"ngx", b"plugin_name", b"node"] {
            assert!(
                check_host_namespace(reserved).unwrap_err().contains("attributes"),
                "{reserved:?}"
            );
        }
    }

    fn segments(raw: &[u8]) -> Vec<&[u8]> {
        PropertyPath::parse(raw).unwrap().segments
    }

    #[test]
    fn paths() {
        assert_eq!(segments(b"request\0path"), [&b"request"[..], b"path"]);
        assert_eq!(segments(b"request.path"), [&b"request"[..], b"path"]);
        assert_eq!(segments(b"plugin_root_id"), [&b"plugin_root_id"[..]]);
        assert_eq!(
            segments(b"request.headers.x.y"),
            [&b"request"[..], b"headers", b"x.y"]
        );
        assert_eq!(
            segments(b"request\0headers\0x.y"),
            [&b"request"[..], b"headers", b"x.y"]
        );
        assert_eq!(segments(b"ngx.arg_a"), [&b"ngx"[..], b"arg_a"]);
        assert_eq!(segments(b"a.b.c"), [&b"a"[..], b"b", b"c"]);
        assert!(PropertyPath::parse(b"").is_none());
        assert!(PropertyPath::parse(b"a\0\0b").is_none());
        assert!(PropertyPath::parse(b"a..b").is_none());
    }

    #[test]
    fn keys() {
        let key = |raw: &[u8]| PropertyPath::parse(raw).unwrap().key();
        assert_eq!(key(b"a\0b"), b"a.b");
        assert_eq!(key(b"a.b"), b"a.b");
        assert_eq!(key(b"node\0id"), b"xds.node.id");
        assert_eq!(key(b"xds.node.id"), b"xds.node.id");
        assert_eq!(key(b"cluster_name"), b"xds.cluster_name");
    }

    #[test]
    fn store() {
        let mut store = PropertyStore::default();
        assert!(store.set(b"a".to_vec(), b"1"));
        assert!(store.set(b"a".to_vec(), b"22"));
        assert_eq!(store.get(b"a"), Some(&b"22"[..]));
        assert!(store.set(b"a".to_vec(), b""));
        assert_eq!(store.get(b"a"), None);
        assert_eq!(store.bytes, 0);
        assert!(!store.set(b"big".to_vec(), &vec![0; STORE_LIMIT]));
        assert!(store.set(b"big".to_vec(), &vec![0; STORE_LIMIT - 3]));
        assert!(!store.set(b"x".to_vec(), b"1"));
    }
}
