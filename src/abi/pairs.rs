//! The Proxy-Wasm pairs format used by header maps and local responses:
//! `u32 count`, then `count × (u32 key_len, u32 value_len)`, then
//! `count × (key, NUL, value, NUL)`, all little-endian.

/// One header, or any key/value entry, borrowed from its owner.
pub type Pair<'a> = (&'a [u8], &'a [u8]);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairsError {
    Truncated,
    MissingNul,
    TrailingBytes,
}

/// Bytes needed to serialize `pairs`.
pub fn serialized_size(pairs: &[Pair<'_>]) -> usize {
    pairs
        .iter()
        .fold(4, |size, (key, value)| size + 8 + key.len() + value.len() + 2)
}

/// Writes `pairs` into `out`, which must be exactly `serialized_size` long.
/// With `lowercase_keys`, keys are written lower-cased, as Envoy presents
/// header names.
pub fn serialize_into(out: &mut [u8], pairs: &[Pair<'_>], lowercase_keys: bool) {
    debug_assert_eq!(out.len(), serialized_size(pairs));
    out[..4].copy_from_slice(&(pairs.len() as u32).to_le_bytes());
    let mut sizes = 4;
    let mut data = 4 + 8 * pairs.len();
    for (key, value) in pairs {
        out[sizes..sizes + 4].copy_from_slice(&(key.len() as u32).to_le_bytes());
        out[sizes + 4..sizes + 8].copy_from_slice(&(value.len() as u32).to_le_bytes());
        sizes += 8;
        for (dst, src) in out[data..data + key.len()].iter_mut().zip(key.iter()) {
            *dst = if lowercase_keys {
                src.to_ascii_lowercase()
            } else {
                *src
            };
        }
        data += key.len();
        out[data] = 0;
        data += 1;
        out[data..data + value.len()].copy_from_slice(value);
        data += value.len();
        out[data] = 0;
        data += 1;
    }
}

pub fn serialize(pairs: &[Pair<'_>]) -> Vec<u8> {
    let mut out = vec![0; serialized_size(pairs)];
    serialize_into(&mut out, pairs, false);
    out
}

/// Parses a serialized map. An empty buffer (or a zero count) is an empty
/// map; anything malformed is an error rather than a partial map.
pub fn parse(bytes: &[u8]) -> Result<Vec<Pair<'_>>, PairsError> {
    if bytes.len() < 4 {
        return if bytes.iter().all(|b| *b == 0) {
            Ok(Vec::new())
        } else {
            Err(PairsError::Truncated)
        };
    }
    let count = read_u32(bytes, 0) as usize;
    // Each pair takes at least 10 bytes, which bounds the allocation below
    // by the buffer the guest really handed over.
    if count > (bytes.len() - 4) / 10 {
        return Err(PairsError::Truncated);
    }
    let mut pairs = Vec::with_capacity(count);
    let mut data = 4 + 8 * count;
    for i in 0..count {
        let key_len = read_u32(bytes, 4 + 8 * i) as usize;
        let value_len = read_u32(bytes, 8 + 8 * i) as usize;
        let key = take(bytes, &mut data, key_len)?;
        let value = take(bytes, &mut data, value_len)?;
        pairs.push((key, value));
    }
    if data != bytes.len() {
        return Err(PairsError::TrailingBytes);
    }
    Ok(pairs)
}

fn read_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Takes `len` bytes followed by a NUL from `bytes` at `*at`.
fn take<'a>(bytes: &'a [u8], at: &mut usize, len: usize) -> Result<&'a [u8], PairsError> {
    let end = at.checked_add(len).ok_or(PairsError::Truncated)?;
    if end >= bytes.len() {
        return Err(PairsError::Truncated);
    }
    if bytes[end] != 0 {
        return Err(PairsError::MissingNul);
    }
    let slice = &bytes[*at..end];
    *at = end + 1;
    Ok(slice)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let pairs: Vec<Pair> = vec![(b":method", b"GET"), (b"x-empty", b""), (b"", b"v")];
        let bytes = serialize(&pairs);
        assert_eq!(bytes.len(), serialized_size(&pairs));
        assert_eq!(parse(&bytes).unwrap(), pairs);
    }

    #[test]
    fn layout_matches_the_spec() {
        let bytes = serialize(&[(b"1", b"22")]);
        assert_eq!(
            bytes,
            [1, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, b'1', 0, b'2', b'2', 0]
        );
    }

    #[test]
    fn lowercases_keys_on_request() {
        let pairs: Vec<Pair> = vec![(b"Content-Type", b"Text/Plain")];
        let mut out = vec![0; serialized_size(&pairs)];
        serialize_into(&mut out, &pairs, true);
        assert_eq!(
            parse(&out).unwrap(),
            vec![(&b"content-type"[..], &b"Text/Plain"[..])]
        );
    }

    #[test]
    fn empty_maps() {
        assert!(parse(&[]).unwrap().is_empty());
        assert!(parse(&[0]).unwrap().is_empty());
        assert!(parse(&[0, 0, 0, 0]).unwrap().is_empty());
        assert_eq!(serialize(&[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn rejects_malformed_input() {
        let good = serialize(&[(b"key", b"value")]);
        assert_eq!(parse(&good[..good.len() - 1]), Err(PairsError::Truncated));
        let mut no_nul = good.clone();
        no_nul[4 + 8 + 3] = b'x';
        assert_eq!(parse(&no_nul), Err(PairsError::MissingNul));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(parse(&trailing), Err(PairsError::TrailingBytes));
        // A count far beyond the buffer must not allocate or read past it.
        assert_eq!(parse(&[255, 255, 255, 255, 0, 0]), Err(PairsError::Truncated));
        let mut huge_len = good;
        huge_len[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(parse(&huge_len), Err(PairsError::Truncated));
        assert_eq!(parse(&[1, 2]), Err(PairsError::Truncated));
    }
}
