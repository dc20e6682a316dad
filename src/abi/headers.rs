//! Header names and values as filters may set them, and how Envoy's names
//! map onto nginx's maps.

use crate::sys::HeaderMap;

/// A header name as the host knows it. In request maps Envoy calls the
/// `Host` header `:authority`; both names reach the same header.
#[derive(Debug, Clone, Copy)]
pub struct HeaderName<'a>(&'a [u8]);

impl<'a> HeaderName<'a> {
    pub fn lookup(map: HeaderMap, name: &'a [u8]) -> HeaderName<'a> {
        if map == HeaderMap::Request && name.eq_ignore_ascii_case(b"host") {
            return HeaderName(b":authority");
        }
        HeaderName(name)
    }

    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }

    pub fn matches(&self, other: &[u8]) -> bool {
        self.0.eq_ignore_ascii_case(other)
    }
}

/// An RFC 9110 token, optionally prefixed by `:` for a pseudo-header.
pub fn valid_name(name: &[u8]) -> bool {
    let token = name.strip_prefix(b":").unwrap_or(name);
    !token.is_empty() && token.iter().all(|&c| is_tchar(c))
}

fn is_tchar(c: u8) -> bool {
    TCHAR[c as usize]
}

/// RFC 9110's token characters, by byte: one lookup per byte of every
/// header name a filter sets.
const TCHAR: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric();
        c += 1;
    }
    let symbols = b"!#$%&'*+-.^_`|~";
    let mut i = 0;
    while i < symbols.len() {
        table[symbols[i] as usize] = true;
        i += 1;
    }
    table
};

/// No byte that could end the header line or the header block.
pub fn valid_value(value: &[u8]) -> bool {
    !value.iter().any(|&c| c == b'\r' || c == b'\n' || c == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_name(b"x-foo"));
        assert!(valid_name(b":path"));
        assert!(!valid_name(b""));
        assert!(!valid_name(b":"));
        assert!(!valid_name(b"x foo"));
        assert!(!valid_name(b"x:foo"));
        assert!(!valid_name(b"x-foo\r\nevil"));
    }

    #[test]
    fn token_characters_are_rfc_9110s() {
        let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        for c in 0..=255u8 {
            assert_eq!(is_tchar(c), tchar(c), "byte {c}");
        }
    }

    #[test]
    fn values() {
        assert!(valid_value(b"text/plain; charset=utf-8\t"));
        assert!(valid_value(b""));
        assert!(!valid_value(b"a\r\nSet-Cookie: x"));
        assert!(!valid_value(b"a\0"));
    }

    #[test]
    fn host_is_authority_in_requests_only() {
        assert_eq!(
            HeaderName::lookup(HeaderMap::Request, b"Host").as_bytes(),
            b":authority"
        );
        assert_eq!(
            HeaderName::lookup(HeaderMap::Response, b"host").as_bytes(),
            b"host"
        );
        assert!(HeaderName::lookup(HeaderMap::Request, b"X-A").matches(b"x-a"));
    }
}
