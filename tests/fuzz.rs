//! Fuzz targets, on stable Rust with a seeded generator: the decoders of
//! untrusted bytes (the pairs format, property paths, HTTP/1 responses of
//! calls), module loading (mutated and hostile modules), and every host
//! function called by a hostile guest (`t/filters/hostile_calls`) against
//! the mock host.
//!
//! Each target runs at least a few hundred cases, and for
//! `NGX_PROXY_WASM_FUZZ_SECONDS` if set (`make fuzz`). Cases are drawn
//! from `NGX_PROXY_WASM_FUZZ_SEED` (a fixed seed by default, so `make
//! test` is repeatable); a failing case names the seed and case number
//! that replay it (`NGX_PROXY_WASM_FUZZ_CASE`).

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, Instant};

use common::{runtime, MockHost};
use ngx_proxy_wasm::abi::pairs;
use ngx_proxy_wasm::abi::properties::PropertyPath;
use ngx_proxy_wasm::abi::Direction;
use ngx_proxy_wasm::callout::http1::{Response, ResponseError, ResponseParser};
use ngx_proxy_wasm::chain::Chain;

/// SplitMix64: small, fast, and the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }

    fn bytes(&mut self, max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| self.next() as u8).collect()
    }

    /// Bytes from an alphabet, so that the structure's separators occur.
    fn text(&mut self, alphabet: &[u8], max: usize) -> Vec<u8> {
        let len = self.below(max + 1);
        (0..len).map(|_| alphabet[self.below(alphabet.len())]).collect()
    }
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok()?.parse().ok()
}

/// Runs `case` on generated inputs: at least `min_cases`, and for the time
/// `make fuzz` gives. A panic names the case that replays it.
fn fuzz(target: &str, min_cases: u64, mut case: impl FnMut(&mut Rng)) {
    let seed = env_number("NGX_PROXY_WASM_FUZZ_SEED").unwrap_or(0x6e67_785f_7761_736d);
    let budget = Duration::from_secs(env_number("NGX_PROXY_WASM_FUZZ_SECONDS").unwrap_or(0));
    let only = env_number("NGX_PROXY_WASM_FUZZ_CASE");
    let started = Instant::now();
    let mut n = only.unwrap_or(0);
    loop {
        let mut rng = Rng(seed ^ n.wrapping_mul(0xd134_2543_de82_ef95));
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| case(&mut rng))) {
            eprintln!(
                "fuzz target {target} failed on case {n}: replay with \
                 NGX_PROXY_WASM_FUZZ_SEED={seed} NGX_PROXY_WASM_FUZZ_CASE={n}"
            );
            std::panic::resume_unwind(panic);
        }
        n += 1;
        if only.is_some() || (n >= min_cases && started.elapsed() >= budget) {
            break;
        }
    }
    eprintln!(
        "fuzz target {target}: {n} cases in {:.1?} (seed {seed})",
        started.elapsed()
    );
}

// -- the pairs format -------------------------------------------------------

fn random_pairs(rng: &mut Rng) -> Vec<(Vec<u8>, Vec<u8>)> {
    (0..rng.below(6))
        .map(|_| (rng.text(b"ab:-\0x", 12), rng.bytes(20)))
        .collect()
}

#[test]
fn pairs_decoder() {
    fuzz("pairs_decoder", 20_000, |rng| {
        let owned = random_pairs(rng);
        let pairs: Vec<pairs::Pair> = owned.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        let bytes = pairs::serialize(&pairs);
        assert_eq!(bytes.len(), pairs::serialized_size(&pairs));
        // what the host writes, it reads back (NULs inside keys aside:
        // the format cannot carry them)
        if !owned.is_empty() && owned.iter().all(|(k, v)| !k.contains(&0) && !v.contains(&0)) {
            assert_eq!(pairs::parse(&bytes).expect("round trip"), pairs);
            // a proper prefix is never a whole map
            // (no bytes at all are the empty map)
            let cut = 1 + rng.below(bytes.len() - 1);
            assert!(pairs::parse(&bytes[..cut]).is_err(), "prefix of {cut} bytes");
        }
        // mutated and random input: an error or pairs inside the input
        let mut mutated = bytes.clone();
        mutate(rng, &mut mutated);
        for input in [mutated, rng.bytes(64)] {
            // (fewer than 4 zero bytes are read as the empty map)
            if let (Ok(parsed), true) = (pairs::parse(&input), input.len() >= 4) {
                let reserialized = pairs::serialize(&parsed);
                assert_eq!(reserialized.len(), input.len(), "no byte ignored");
            }
        }
    });
}

/// Flips, inserts, deletes or overwrites a few bytes; sometimes lies in a
/// 32-bit field.
fn mutate(rng: &mut Rng, bytes: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(5) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.insert(at, rng.next() as u8),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 if at + 4 <= bytes.len() => {
                let lie = [0u32, 1, 0xffff_ffff, 0x7fff_ffff, 0x8000_0000][rng.below(5)];
                bytes[at..at + 4].copy_from_slice(&lie.to_le_bytes());
            }
            _ => bytes.truncate(at),
        }
    }
}

// -- property paths ----------------------------------------------------------

#[test]
fn property_paths() {
    fuzz("property_paths", 20_000, |rng| {
        let raw = rng.text(b"ab.\0-_xr", 24);
        if let Some(path) = PropertyPath::parse(&raw) {
            let key = path.key();
            assert!(!key.is_empty());
            let _ = path.display();
            assert!(!raw.is_empty());
        }
    });
}

// -- HTTP/1 responses of calls ---------------------------------------------

/// A response an upstream could send, and what the parser must make of it.
struct Generated {
    wire: Vec<u8>,
    expected: Response,
    /// Body framed by the connection's end.
    close_delimited: bool,
}

fn generate_response(rng: &mut Rng, head_request: bool) -> Generated {
    let status = [200u16, 204, 301, 404, 500, 503, 299][rng.below(7)];
    let mut wire = format!("HTTP/1.{} {status} Reason\r\n", rng.below(2)).into_bytes();
    let mut expected = Response {
        headers: vec![(b":status".to_vec(), status.to_string().into_bytes())],
        keep_alive: true,
        ..Default::default()
    };
    if wire.starts_with(b"HTTP/1.0") {
        expected.keep_alive = false;
    }
    for i in 0..rng.below(5) {
        let name = format!("x-h{i}-{}", rng.below(100));
        let value = String::from_utf8(rng.text(b"abc xyz-/=", 30)).unwrap();
        let value = value.trim().to_string();
        wire.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        expected.headers.push((name.into_bytes(), value.into_bytes()));
    }
    let body = rng.bytes(300);
    let framing = rng.below(3);
    let no_body = head_request || status == 204;
    let mut close_delimited = false;
    match framing {
        0 => {
            let header = format!("content-length: {}", body.len());
            wire.extend_from_slice(format!("{header}\r\n\r\n").as_bytes());
            expected
                .headers
                .push((b"content-length".to_vec(), body.len().to_string().into_bytes()));
            if !no_body {
                wire.extend_from_slice(&body);
                expected.body = body;
            }
        }
        1 => {
            wire.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            expected
                .headers
                .push((b"transfer-encoding".to_vec(), b"chunked".to_vec()));
            if !no_body {
                let mut rest = &body[..];
                while !rest.is_empty() {
                    let take = 1 + rng.below(rest.len());
                    let extension = if rng.chance(4) { ";ext=1" } else { "" };
                    wire.extend_from_slice(format!("{take:x}{extension}\r\n").as_bytes());
                    wire.extend_from_slice(&rest[..take]);
                    wire.extend_from_slice(b"\r\n");
                    rest = &rest[take..];
                }
                wire.extend_from_slice(b"0\r\n");
                if rng.chance(2) {
                    wire.extend_from_slice(b"x-trailer: t\r\n");
                    expected.trailers.push((b"x-trailer".to_vec(), b"t".to_vec()));
                }
                wire.extend_from_slice(b"\r\n");
                expected.body = body;
            }
        }
        _ => {
            wire.extend_from_slice(b"\r\n");
            if !no_body {
                wire.extend_from_slice(&body);
                expected.body = body;
                expected.keep_alive = false;
                close_delimited = true;
            }
        }
    }
    Generated {
        wire,
        expected,
        close_delimited,
    }
}

/// Feeds bytes in random pieces (a slow drip sometimes: one byte at a
/// time); the connection may end after them. What the parser made of it.
fn parse_in_pieces(
    rng: &mut Rng,
    wire: &[u8],
    head_request: bool,
    limit: usize,
    closes: bool,
) -> Result<Option<Response>, ResponseError> {
    let mut parser = ResponseParser::new(head_request, limit);
    let drip = rng.chance(5);
    let mut rest = wire;
    while !rest.is_empty() {
        let take = if drip { 1 } else { 1 + rng.below(rest.len()) };
        if let Some(response) = parser.feed(&rest[..take])? {
            return Ok(Some(response));
        }
        rest = &rest[take..];
    }
    if closes {
        return parser.finish().map(Some);
    }
    Ok(None)
}

#[test]
fn http1_responses() {
    fuzz("http1_responses", 5_000, |rng| {
        let head_request = rng.chance(8);
        let generated = generate_response(rng, head_request);
        // as sent: exactly what was generated
        let limit = 1024;
        let got = parse_in_pieces(
            rng,
            &generated.wire,
            head_request,
            limit,
            generated.close_delimited,
        )
        .unwrap_or_else(|_| panic!("a valid response: {:?}", String::from_utf8_lossy(&generated.wire)));
        let got = got.expect("the response is whole");
        assert_eq!(got.headers, generated.expected.headers);
        assert_eq!(got.body, generated.expected.body);
        assert_eq!(got.trailers, generated.expected.trailers);
        if !generated.close_delimited {
            assert_eq!(got.keep_alive, generated.expected.keep_alive);
        }
        // a smaller limit than the body: TooLarge, never a cut body
        if generated.expected.body.len() > 1 {
            let small = generated.expected.body.len() - 1;
            match parse_in_pieces(
                rng,
                &generated.wire,
                head_request,
                small,
                generated.close_delimited,
            ) {
                Err(ResponseError::TooLarge) => {}
                other => panic!("over the limit: {:?}", other.map(|r| r.map(|r| r.body.len()))),
            }
        }
        // truncated by a reset: never a whole response unless the cut
        // falls after its end
        let cut = rng.below(generated.wire.len());
        if let Ok(Some(response)) = parse_in_pieces(rng, &generated.wire[..cut], head_request, limit, true) {
            assert!(
                generated.close_delimited,
                "a framed response cut at {cut} taken as whole"
            );
            assert!(response.body.len() <= generated.expected.body.len());
        }
        // hostile bytes: garbage, mutations, oversized heads, bad chunks
        let mut hostile = generated.wire.clone();
        match rng.below(4) {
            0 => mutate(rng, &mut hostile),
            1 => hostile = rng.bytes(200),
            2 => {
                let at = hostile.iter().position(|&b| b == b'\n').map_or(0, |p| p + 1);
                let line = format!("x-big: {}\r\n", "v".repeat(70_000));
                hostile.splice(at..at, line.into_bytes());
            }
            _ => {
                let lie = ["zz", "-1", "ffffffffffffffffff", "1;", " ", "8000000000000000"][rng.below(6)];
                hostile = format!("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n{lie}\r\nabc\r\n")
                    .into_bytes();
            }
        }
        let closes = rng.chance(2);
        if let Ok(Some(response)) = parse_in_pieces(rng, &hostile, head_request, limit, closes) {
            assert!(response.body.len() <= limit);
            let head: usize = response.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
            assert!(head <= 64 * 1024, "a head of {head} bytes");
            assert!(response
                .headers
                .first()
                .is_some_and(|(name, _)| name == b":status"));
        }
    });
}

// -- modules -----------------------------------------------------------------

/// A small valid filter, as bytes, to mutate.
fn seed_module() -> Vec<u8> {
    let text = std::fs::read_to_string(common::wat("abi_0_2_0.wat")).unwrap();
    wat::parse_str(text).expect("valid text")
}

#[test]
fn mutated_modules() {
    let seed = seed_module();
    let host = MockHost::new();
    let mut rt = runtime(host);
    let mut loaded = 0;
    fuzz("mutated_modules", 300, |rng| {
        let mut bytes = seed.clone();
        mutate(rng, &mut bytes);
        let path = common::temp_file("wasm", &bytes);
        let name = format!("m{}", rng.next());
        // an error or a module: never a crash, never a hang
        if rt.load_module(&name, &path, b"").is_ok() {
            loaded += 1;
            let _ = rt.add_filter(&name, b"");
        }
        std::fs::remove_file(&path).ok();
    });
    eprintln!("mutated_modules: {loaded} of the mutants loaded");
}

#[test]
fn hostile_modules() {
    let abi = r#"(func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0) (func (export "proxy_on_context_create") (param i32 i32))"#;
    let many_functions: String = (0..100_000).map(|i| format!("(func $f{i})")).collect();
    // what the error must say; None: the module must load
    let cases: Vec<(&str, String, Option<&str>)> = vec![
        (
            "a huge table",
            format!("(module (memory (export \"memory\") 1) (table 100000000 funcref) {abi})"),
            Some("table"),
        ),
        (
            "a memory over memory_limit",
            format!("(module (memory (export \"memory\") 65536) {abi})"),
            Some("memory"),
        ),
        (
            "100k functions",
            format!("(module (memory (export \"memory\") 1) {many_functions} {abi})"),
            None,
        ),
        (
            "a start function that loops",
            format!("(module (memory (export \"memory\") 1) (func $spin (loop br 0)) (start $spin) {abi})"),
            Some("callback_timeout"),
        ),
        (
            "a data segment out of bounds",
            format!("(module (memory (export \"memory\") 1) (data (i32.const 65530) \"0123456789\") {abi})"),
            Some("out of bounds"),
        ),
        (
            "an _initialize that traps",
            format!(
                "(module (memory (export \"memory\") 1) (func (export \"_initialize\") unreachable) {abi})"
            ),
            Some("unreachable"),
        ),
    ];
    for (what, text, cause) in cases {
        let host = MockHost::new();
        let mut rt = ngx_proxy_wasm::runtime::Runtime::new(
            host,
            ngx_proxy_wasm::runtime::RuntimeConfig {
                limits: ngx_proxy_wasm::runtime::limits::InstanceLimits {
                    callback_timeout: Duration::from_millis(200),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .unwrap();
        let started = Instant::now();
        let path = common::wat_text(&text);
        let outcome = rt
            .load_module("hostile", &path, b"")
            .and_then(|()| rt.add_filter("hostile", b"").map(|_| ()));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{what}: took {:?}",
            started.elapsed()
        );
        match (outcome, cause) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => panic!("{what} was accepted"),
            (Err(e), None) => panic!("{what} was refused: {e}"),
            (Err(e), Some(cause)) => {
                let message = e.to_string();
                eprintln!("hostile module, {what}: {message}");
                assert!(
                    !message.contains('\n') || message.contains("backtrace"),
                    "{what}: {message}"
                );
                assert!(message.contains(cause), "{what}: {message}");
            }
        }
        eprintln!(
            "hostile module, {what}: {:?} in {:.1?}",
            rt.filters(),
            started.elapsed()
        );
    }
}

// -- host functions from a hostile guest ---------------------------------------

#[test]
fn host_functions_from_a_hostile_guest() {
    let Some(path) = common::filter("hostile_calls.wasm") else {
        return;
    };
    let mut rounds = 0;
    fuzz("host_functions_from_a_hostile_guest", 20, |rng| {
        let host = MockHost::new();
        let mut rt = runtime(host);
        let seed = rng.next().to_string();
        rt.load_module("hostile", &path, seed.as_bytes()).unwrap();
        let Ok(filter) = rt.add_filter("hostile", b"200") else {
            panic!("the hostile filter starts: {}", host.dump());
        };
        let worker = rt.worker();
        for _ in 0..4 {
            let request = host.request(&[(":method", "GET"), (":path", "/"), (":authority", "x")]);
            let mut stream = Chain::new(worker.clone(), request, &[filter as u32], Default::default());
            let _ = stream.on_headers(Direction::Request, false);
            let _ = stream.on_body(Direction::Request, &[b"body"], true);
            let _ = stream.resume(Direction::Request);
            let _ = stream.on_headers(Direction::Response, false);
            let _ = stream.on_body(Direction::Response, &[b"response"], true);
            let _ = stream.take_local_response();
            stream.on_log();
            drop(stream);
            for token in host.take_timers() {
                worker.on_timer(token);
            }
            host.take_resumes();
        }
        let logs = host.dump();
        for bad in ["unexpected status", "panicked", "internal error"] {
            assert!(!logs.contains(bad), "{bad}:\n{logs}");
        }
        // host functions log why they refuse; no callback may fail
        let failed = logs
            .lines()
            .find(|line| line.contains("proxy_on_") && line.contains(" failed: "));
        assert!(failed.is_none(), "{failed:?}");
        assert!(
            logs.contains("hostile calls in on_request_headers: 200 calls"),
            "{logs}"
        );
        rounds += 1;
    });
    eprintln!("host_functions_from_a_hostile_guest: {rounds} instances");
}
