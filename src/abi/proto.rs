//! The protobuf wire format, as far as Envoy's foreign functions and
//! `GrpcService` targets need it: a message's fields, in order, without a
//! schema, and fields written.

/// A field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Integers, booleans and enums.
    Varint(u64),
    /// Strings, bytes and nested messages.
    Bytes(&'a [u8]),
}

impl<'a> Value<'a> {
    pub fn bytes(self) -> Option<&'a [u8]> {
        match self {
            Value::Bytes(bytes) => Some(bytes),
            Value::Varint(_) => None,
        }
    }

    pub fn varint(self) -> Option<u64> {
        match self {
            Value::Varint(value) => Some(value),
            Value::Bytes(_) => None,
        }
    }
}

/// The fields of a message, by number (fixed-size ones skipped); None if
/// the bytes are not a message.
pub fn fields(mut bytes: &[u8]) -> Option<Vec<(u64, Value<'_>)>> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let key = varint(&mut bytes)?;
        let value = match key & 7 {
            0 => Value::Varint(varint(&mut bytes)?),
            1 => {
                bytes = bytes.get(8..)?;
                continue;
            }
            5 => {
                bytes = bytes.get(4..)?;
                continue;
            }
            2 => {
                let len = usize::try_from(varint(&mut bytes)?).ok()?;
                let value = bytes.get(..len)?;
                bytes = &bytes[len..];
                Value::Bytes(value)
            }
            _ => return None,
        };
        fields.push((key >> 3, value));
    }
    Some(fields)
}

/// Appends a varint field.
pub fn put_varint(out: &mut Vec<u8>, field: u64, value: u64) {
    write_varint(out, field << 3);
    write_varint(out, value);
}

/// Appends a length-delimited field.
pub fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    write_varint(out, field << 3 | 2);
    write_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn write_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

fn varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_each_wire_type() {
        // 1: "ab", 2: 300 (varint), 3: fixed64, 4: fixed32, 5: ""
        let mut message = vec![0x0a, 2, b'a', b'b', 0x10, 0xac, 0x02, 0x19];
        message.extend([0; 8]);
        message.extend([0x25, 0, 0, 0, 0, 0x2a, 0]);
        assert_eq!(
            fields(&message).unwrap(),
            vec![
                (1, Value::Bytes(b"ab")),
                (2, Value::Varint(300)),
                (5, Value::Bytes(b""))
            ]
        );
        assert_eq!(fields(&[0x0a, 5, b'a']), None);
        assert_eq!(fields(&[0x0b]), None);
        assert_eq!(fields(&[0x10, 0x80]), None);
        assert_eq!(fields(b"").unwrap(), vec![]);
    }

    #[test]
    fn written_fields_read_back() {
        let mut out = Vec::new();
        put_varint(&mut out, 1, 1);
        put_bytes(&mut out, 2, &[7u8; 200]);
        let read = fields(&out).unwrap();
        assert_eq!(read[0], (1, Value::Varint(1)));
        assert_eq!(read[1], (2, Value::Bytes(&[7u8; 200])));
    }
}
