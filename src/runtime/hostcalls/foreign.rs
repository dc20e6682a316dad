//! Foreign functions (`proxy_call_foreign_function`): the functions Envoy
//! registers that mean something in nginx, called by name with bytes and
//! answering with bytes, synchronously as in Envoy.
//!
//! - `compress`: the arguments, zlib-compressed (zlib's format and default
//!   level, as Envoy's `compress2`);
//! - `uncompress`: the reverse; data that is not zlib's is
//!   `SERIALIZATION_FAILURE`, as in Envoy, and so is a result larger than
//!   the instance's `memory_limit` (it could not be handed over);
//! - `declare_property`: a property's type, read-only flag and life span
//!   (Envoy's `DeclarePropertyArguments`), honoured by `proxy_set_property`
//!   in the declaring instance: a read-only property is set once; declaring
//!   a name twice is `BAD_ARGUMENT`, as in Envoy.
//!
//! Any other name is `NOT_FOUND`, logged once per module and name.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use wasmtime::{Caller, Linker};

use super::{copy_out, host_fn, read_bytes, Outcome};
use crate::abi::properties::PropertyPath;
use crate::abi::proto::{self, Value};
use crate::abi::{LogLevel, Status};
use crate::runtime::state::{Declaration, HostState, PropertyType};

type Result = Outcome<Status>;
type Call<'a, 'b> = &'a mut Caller<'b, HostState>;

pub fn define(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    host_fn!(linker, "env", "proxy_call_foreign_function", call_foreign_function,
        (name_ptr: i32, name_len: i32, args_ptr: i32, args_len: i32, ret_ptr: i32, ret_size: i32));
    Ok(())
}

/// Why a foreign function failed: the status, and why (logged).
type Failure = (Status, String);

/// A foreign function: the caller's instance state and the arguments to
/// the result, or why there is none.
type Function = fn(&mut HostState, &[u8]) -> std::result::Result<Vec<u8>, Failure>;

/// The functions this host has, by the name filters call them by.
pub const FUNCTIONS: &[(&str, Function)] = &[
    ("compress", |_, data| compress(data).map_err(serialization)),
    ("uncompress", |state, data| {
        uncompress(data, state.module.limits.memory).map_err(serialization)
    }),
    ("declare_property", declare_property),
];

fn serialization(why: String) -> Failure {
    (Status::SerializationFailure, why)
}

fn call_foreign_function(
    caller: Call,
    name_ptr: i32,
    name_len: i32,
    args_ptr: i32,
    args_len: i32,
    ret_ptr: i32,
    ret_size: i32,
) -> Result {
    let name = read_bytes(caller, name_ptr, name_len)?;
    let name = String::from_utf8_lossy(&name).into_owned();
    let Some(&(_, function)) = FUNCTIONS.iter().find(|(known, _)| *known == name) else {
        let state = caller.data();
        if state.module.warn_once(&name) {
            let known: Vec<&str> = FUNCTIONS.iter().map(|(known, _)| *known).collect();
            state.log(
                LogLevel::Warn,
                format!(
                    "foreign function {name:?} is not provided by this host (it has: {}): \
                     returning NOT_FOUND",
                    known.join(", ")
                )
                .as_bytes(),
            );
        }
        return Err(Status::NotFound.into());
    };
    let args = read_bytes(caller, args_ptr, args_len)?;
    let result = function(caller.data_mut(), &args).map_err(|(status, why)| {
        caller.data().log(
            LogLevel::Warn,
            format!("foreign function {name}: {why}").as_bytes(),
        );
        status
    })?;
    copy_out(caller, ret_ptr, ret_size, result.len(), |out| {
        out.copy_from_slice(&result)
    })
}

/// `declare_property`'s arguments (Envoy's `DeclarePropertyArguments`):
/// name = 1, readonly = 2, type = 3 (bytes, string, flatbuffers,
/// protobuf), schema = 4, span = 5 (filter state, downstream connection,
/// downstream request, upstream request).
fn declare_property(state: &mut HostState, args: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
    let bad = |why: &str| (Status::BadArgument, why.to_string());
    let fields =
        proto::fields(args).ok_or_else(|| bad("the arguments are not a DeclarePropertyArguments"))?;
    let mut declaration = Declaration::default();
    let mut name = None;
    for (field, value) in fields {
        match (field, value) {
            (1, Value::Bytes(bytes)) => name = Some(bytes),
            (2, Value::Varint(readonly)) => declaration.readonly = readonly != 0,
            (3, Value::Varint(kind)) => {
                declaration.kind =
                    PropertyType::from_raw(kind).ok_or_else(|| bad("an unknown property type"))?
            }
            (5, Value::Varint(span)) if span > 3 => return Err(bad("an unknown life span")),
            _ => {}
        }
    }
    let name = name
        .filter(|name| !name.is_empty())
        .ok_or_else(|| bad("no property name"))?;
    let key = PropertyPath::parse(name)
        .ok_or_else(|| bad("not a property path"))?
        .key();
    if state.declared.contains_key(&key) {
        let shown = String::from_utf8_lossy(&key);
        return Err((
            Status::BadArgument,
            format!("property {shown:?} is declared already"),
        ));
    }
    state.declared.insert(key, declaration);
    Ok(Vec::new())
}

/// zlib's format at its default level, as Envoy's `compress`.
pub fn compress(data: &[u8]) -> std::result::Result<Vec<u8>, String> {
    let mut encoder = ZlibEncoder::new(Vec::with_capacity(data.len() / 2 + 64), Compression::default());
    encoder.write_all(data).map_err(|e| e.to_string())?;
    encoder.finish().map_err(|e| e.to_string())
}

/// zlib data back to bytes, up to `limit` of them.
pub fn uncompress(data: &[u8], limit: usize) -> std::result::Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut decoder = ZlibDecoder::new(data).take(limit as u64 + 1);
    decoder
        .read_to_end(&mut out)
        .map_err(|e| format!("not zlib data ({e})"))?;
    if out.len() > limit {
        return Err(format!("the result is larger than memory_limit ({limit} bytes)"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compress_and_uncompress_are_zlibs() {
        let data = b"hello hello hello hello hello".repeat(10);
        let compressed = compress(&data).unwrap();
        // zlib's header (deflate, 32 KiB window) and the default level
        assert_eq!(&compressed[..2], &[0x78, 0x9c]);
        assert!(compressed.len() < data.len());
        assert_eq!(uncompress(&compressed, 1 << 20).unwrap(), data);
        assert_eq!(uncompress(&compress(b"").unwrap(), 0).unwrap(), b"");
    }

    #[test]
    fn uncompress_refuses_what_is_not_zlib_and_what_is_too_large() {
        assert!(uncompress(b"not zlib", 1 << 20)
            .unwrap_err()
            .starts_with("not zlib data"));
        let mut cut = compress(b"some data to cut short").unwrap();
        cut.truncate(cut.len() - 3);
        assert!(uncompress(&cut, 1 << 20).is_err());
        let bomb = compress(&vec![0u8; 1 << 20]).unwrap();
        assert_eq!(
            uncompress(&bomb, 4096).unwrap_err(),
            "the result is larger than memory_limit (4096 bytes)"
        );
    }
}
