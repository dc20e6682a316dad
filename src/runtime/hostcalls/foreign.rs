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
//!   a name twice is `BAD_ARGUMENT`, as in Envoy;
//! - `verify_signature`: whether `signature` signs `text` with the RSA
//!   public key given in DER or PEM (PKCS#1 v1.5 padding, the hash
//!   function named: sha1, sha224, sha256, sha384, sha512), answered as
//!   Envoy's `VerifySignatureResult`; arguments that are not a
//!   `VerifySignatureArguments`, or no usable key, are `BAD_ARGUMENT`.
//!
//! Any other name is `NOT_FOUND`, logged once per module and name.

use std::io::{Read, Write};

use flate2::read::ZlibDecoder;
use flate2::write::ZlibEncoder;
use flate2::Compression;
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha224, Sha256, Sha384, Sha512};
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
    ("verify_signature", |_, args| verify_signature(args)),
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
/// protobuf), schema = 4, span = 5 (filter chain, downstream request,
/// downstream connection).
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
            (5, Value::Varint(span)) if span > 2 => return Err(bad("an unknown life span")),
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

/// `verify_signature`'s arguments (Envoy's `VerifySignatureArguments`):
/// hash_function = 1, public_key = 2 (DER), signature = 3, text = 4,
/// public_key_pem = 5. The answer is a `VerifySignatureResult`: result = 1,
/// error = 2.
fn verify_signature(args: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
    let bad = |why: &str| (Status::BadArgument, why.to_string());
    let fields =
        proto::fields(args).ok_or_else(|| bad("the arguments are not a VerifySignatureArguments"))?;
    let field = |number: u64| {
        fields
            .iter()
            .rev()
            .find(|(n, _)| *n == number)
            .and_then(|(_, value)| value.bytes())
            .unwrap_or_default()
    };
    let (hash, der, signature, text, pem) = (field(1), field(2), field(3), field(4), field(5));
    let key = match (der.is_empty(), pem.is_empty()) {
        (false, true) => RsaPublicKey::from_public_key_der(der).ok(),
        (true, false) => std::str::from_utf8(pem)
            .ok()
            .and_then(|pem| RsaPublicKey::from_public_key_pem(pem).ok()),
        _ => return Err(bad("one public key is needed, in DER or in PEM")),
    };
    let key = key.ok_or_else(|| bad("the public key is not an RSA public key (SubjectPublicKeyInfo)"))?;
    let verified = match hash {
        b"sha1" => key.verify(Pkcs1v15Sign::new::<Sha1>(), &Sha1::digest(text), signature),
        b"sha224" => key.verify(Pkcs1v15Sign::new::<Sha224>(), &Sha224::digest(text), signature),
        b"sha256" => key.verify(Pkcs1v15Sign::new::<Sha256>(), &Sha256::digest(text), signature),
        b"sha384" => key.verify(Pkcs1v15Sign::new::<Sha384>(), &Sha384::digest(text), signature),
        b"sha512" => key.verify(Pkcs1v15Sign::new::<Sha512>(), &Sha512::digest(text), signature),
        other => {
            let shown = String::from_utf8_lossy(other);
            return Ok(verify_result(false, &format!("unknown hash function {shown:?}")));
        }
    };
    Ok(match verified {
        Ok(()) => verify_result(true, ""),
        Err(error) => verify_result(false, &format!("signature verification failed: {error}")),
    })
}

/// A `VerifySignatureResult` message.
fn verify_result(result: bool, error: &str) -> Vec<u8> {
    let mut out = Vec::new();
    if result {
        proto::put_varint(&mut out, 1, 1);
    }
    if !error.is_empty() {
        proto::put_bytes(&mut out, 2, error.as_bytes());
    }
    out
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

    /// A 1024-bit RSA key's SubjectPublicKeyInfo and its PKCS#1 v1.5
    /// SHA-256 signature of "hello" (made with openssl).
    const KEY_DER: &str = "30819f300d06092a864886f70d010101050003818d0030818902818100c16ae6784e9c0c6322e1544b5942fcc111e44a55a488410b6f5b4947dcd759819d0a15263ee64586cb28017c28f35443ac1d95cdc258afd430c18a071155c036dedd44391194ce36041254cde1f748663265bfc37752a4f553eb315c96bc366ab57f6822b8661da265991356a7e16ce0ccb5ada01a5a338b24f8c7c32497cbbd0203010001";
    const SIGNATURE: &str = "72d78b1b04f9f8f4e9c1768b4b3d754f2a24dbad1bc1c751e1232141994eb3a41ad95cea0c69a86f20aabcc12a7f9e978a878f3988c39c09d9a56dc18ffb8550995330755a3c6d07d02e602e952677dbc94a413c9ac2a95361aad79922b4ca2d59915dd0bae11eeada27483022f251dff9c77cfe6b0ed41580e87767f4495c1b";

    fn unhex(hex: &str) -> Vec<u8> {
        (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect()
    }

    fn arguments(hash: &str, der: &[u8], signature: &[u8], text: &[u8]) -> Vec<u8> {
        let mut args = Vec::new();
        proto::put_bytes(&mut args, 1, hash.as_bytes());
        proto::put_bytes(&mut args, 2, der);
        proto::put_bytes(&mut args, 3, signature);
        proto::put_bytes(&mut args, 4, text);
        args
    }

    #[test]
    fn verify_signature_answers_as_envoy() {
        let (der, signature) = (unhex(KEY_DER), unhex(SIGNATURE));
        let ok = verify_signature(&arguments("sha256", &der, &signature, b"hello")).unwrap();
        assert_eq!(ok, vec![0x08, 1]);
        let wrong = verify_signature(&arguments("sha256", &der, &signature, b"hellO")).unwrap();
        let fields = proto::fields(&wrong).unwrap();
        assert_eq!(fields.len(), 1, "result false is not written, an error is");
        assert!(String::from_utf8_lossy(fields[0].1.bytes().unwrap())
            .starts_with("signature verification failed"));
        let md5 = verify_signature(&arguments("md5", &der, &signature, b"hello")).unwrap();
        assert!(String::from_utf8_lossy(&md5).contains("unknown hash function \"md5\""));
        // no key, two keys, a key that is not one, not the arguments
        assert_eq!(
            verify_signature(&arguments("sha256", b"", &signature, b"hello"))
                .unwrap_err()
                .0,
            Status::BadArgument
        );
        let mut both = arguments("sha256", &der, &signature, b"hello");
        proto::put_bytes(&mut both, 5, b"-----BEGIN PUBLIC KEY-----");
        assert_eq!(verify_signature(&both).unwrap_err().0, Status::BadArgument);
        assert_eq!(
            verify_signature(&arguments("sha256", b"junk", &signature, b"hello"))
                .unwrap_err()
                .0,
            Status::BadArgument
        );
        assert_eq!(verify_signature(b"\xff").unwrap_err().0, Status::BadArgument);
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
