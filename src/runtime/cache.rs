//! The compiled-code cache (`wasm { cache <dir>; }`, on by default):
//! modules compiled once are kept as wasmtime's serialized code, named by
//! a SHA-256 of the engine's settings and the module's bytes, so that a
//! restart or reload with unchanged modules skips compilation.
//!
//! A file is the code behind a header (a magic and the SHA-256 of the
//! code): wasmtime checks the format and the engine settings of what it
//! deserializes, not the machine code itself, so a file damaged on disk
//! is found by its checksum and compiled again rather than run.

use std::hash::{Hash, Hasher};
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

use super::prepare;

/// Where a compiled module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cache,
}

/// A module's compiled code, serialized: what a compiling thread hands to
/// the thread that loads it (`Code::load`).
pub struct Code {
    bytes: Vec<u8>,
    pub origin: Origin,
}

impl Code {
    /// The module, from code this process compiled or checked.
    pub fn load(&self, engine: &Engine) -> wasmtime::Result<Module> {
        // SAFETY: deserializing runs the code later. `bytes` is code that
        // wasmtime compiled in this process, or read from the cache and
        // checked by `read` (see there); wasmtime checks the format and
        // that the engine settings match.
        unsafe { Module::deserialize(engine, &self.bytes) }
    }
}

/// Compiles a module (binary or text) to its code, with what the host adds
/// (`prepare::prepare`), or reads the code from the cache. The cache is
/// best effort: a file that cannot be used or written is reported in
/// `warning` and the module compiled.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    cache: Option<&Path>,
    warning: &mut Option<String>,
) -> wasmtime::Result<Code> {
    let cached = cache.map(|dir| (dir, dir.join(format!("{}.cwasm", key(engine, bytes)))));
    if let Some((_, path)) = &cached {
        match read(path) {
            Ok(Some(bytes)) => {
                return Ok(Code {
                    bytes,
                    origin: Origin::Cache,
                })
            }
            Ok(None) => {}
            Err(why) => {
                *warning = Some(format!(
                    "cannot use the cached code \"{}\" ({why}): compiling",
                    path.display(),
                ))
            }
        }
    }
    let prepared = prepare::prepare(bytes).map_err(wasmtime::Error::msg)?;
    let code = engine.precompile_module(prepared.as_deref().unwrap_or(bytes))?;
    if let Some((dir, path)) = cached {
        if let Err(e) = store(&code, dir, &path) {
            *warning = Some(format!("cannot write to the cache \"{}\": {e}", dir.display()));
        }
    }
    Ok(Code {
        bytes: code,
        origin: Origin::Compiled,
    })
}

/// Cranelift's output for each function, kept while a configuration's
/// modules compile (`Config::enable_incremental_compilation`): a function
/// that several modules have, byte for byte (the standard library's and an
/// SDK's code are much of every module built with them), is compiled once.
/// Cranelift keys an entry by the function's code and the compiler's
/// settings; the functions a function calls are named apart from the key,
/// so the same code calling other indices is found too. In memory only,
/// and emptied when the modules are loaded.
#[cfg(feature = "cranelift")]
#[derive(Debug, Default)]
pub struct FunctionCache {
    entries: std::sync::Mutex<std::collections::HashMap<Vec<u8>, Vec<u8>>>,
    #[cfg(test)]
    hits: std::sync::atomic::AtomicUsize,
}

#[cfg(feature = "cranelift")]
impl FunctionCache {
    pub fn clear(&self) {
        // a compiling thread that panicked cannot have left a bad entry:
        // entries are inserted whole
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *entries = Default::default();
    }
}

#[cfg(feature = "cranelift")]
impl wasmtime::CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<std::borrow::Cow<'_, [u8]>> {
        let entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let value = entries.get(key)?;
        #[cfg(test)]
        self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(value.clone().into())
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let mut entries = self
            .entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        entries.insert(key.to_vec(), value);
        true
    }
}

/// What a cache file starts with, then the SHA-256 of the code after it.
const MAGIC: &[u8; 8] = b"NGXPWC\x00\x01";
const HEADER: usize = MAGIC.len() + 32;

/// The cached code at `path`: None if there is none, why if it cannot be
/// used.
fn read(path: &Path) -> Result<Option<Vec<u8>>, String> {
    let mut file = match std::fs::read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if file.len() < HEADER || &file[..MAGIC.len()] != MAGIC {
        return Err("not a file of this cache".into());
    }
    let (checksum, code) = file[MAGIC.len()..].split_at(32);
    if Sha256::digest(code).as_slice() != checksum {
        return Err("damaged: its checksum does not match".into());
    }
    // wasmtime's own checks of the format and the engine's settings
    if Engine::detect_precompiled(code) != Some(wasmtime::Precompiled::Module) {
        return Err("not wasmtime's code".into());
    }
    file.drain(..HEADER);
    Ok(Some(file))
}

/// Writes the compiled code under a temporary name, then renames it, so
/// that a reader never sees half a file. The directory is made readable
/// and writable by its owner only.
fn store(code: &[u8], dir: &Path, path: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mut file = Vec::with_capacity(HEADER + code.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&Sha256::digest(code));
    file.extend_from_slice(code);
    let temporary = path.with_extension(format!(
        "tmp.{}.{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&temporary, file)?;
    std::fs::rename(&temporary, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&temporary);
    })
}

/// The cache key: what the compiled code depends on. wasmtime's hash
/// covers the engine's settings; the versions are added so that an upgraded
/// module names new files rather than finding stale ones it must reject.
fn key(engine: &Engine, bytes: &[u8]) -> String {
    let mut digest = Sha256::new();
    digest.update(crate::VERSION);
    digest.update(prepare::PREPARATION);
    engine
        .precompile_compatibility_hash()
        .hash(&mut DigestHasher(&mut digest));
    digest.update(bytes);
    digest
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Feeds a `Hash` value into a digest.
struct DigestHasher<'a>(&'a mut Sha256);

impl Hasher for DigestHasher<'_> {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODULE: &[u8] = b"(module (func (export \"f\")))";

    #[test]
    fn the_second_load_comes_from_the_cache() {
        let dir = std::env::temp_dir().join(format!("ngx_proxy_wasm_cache_{}", std::process::id()));
        let engine = Engine::default();
        let mut warning = None;
        let first = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        let second = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        assert_eq!((first.origin, second.origin), (Origin::Compiled, Origin::Cache));
        assert!(second.load(&engine).unwrap().get_export("f").is_some());
        assert_eq!(warning, None);

        // a damaged file is compiled again, and replaced
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::write(entry.unwrap().path(), b"damaged").unwrap();
        }
        let third = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        assert_eq!(third.origin, Origin::Compiled);
        assert!(warning.take().unwrap().contains("cannot use the cached code"));
        let fourth = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        assert_eq!(fourth.origin, Origin::Cache);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file whose code changed on disk (one bit, or cut short) is
    /// recompiled, never deserialized.
    #[test]
    fn damaged_code_is_never_trusted() {
        let dir = std::env::temp_dir().join(format!("ngx_proxy_wasm_cache_damaged_{}", std::process::id()));
        let engine = Engine::default();
        let mut warning = None;
        compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        let file = std::fs::read_dir(&dir).unwrap().next().unwrap().unwrap().path();
        let good = std::fs::read(&file).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[HEADER + (last - HEADER) / 2] ^= 0x10;
        for (damaged, why) in [
            (flipped, "checksum does not match"),
            (good[..good.len() - 1].to_vec(), "checksum does not match"),
            (good[HEADER..].to_vec(), "not a file of this cache"),
            (
                [&MAGIC[..], &Sha256::digest(b"not code"), b"not code"].concat(),
                "not wasmtime's code",
            ),
        ] {
            std::fs::write(&file, damaged).unwrap();
            let code = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
            assert_eq!(code.origin, Origin::Compiled);
            assert!(warning.take().unwrap().contains(why));
            assert_eq!(std::fs::read(&file).unwrap(), good, "the file is written anew");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_depend_on_the_engine_and_the_bytes() {
        let engine = Engine::default();
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let other = Engine::new(&config).unwrap();
        assert_ne!(key(&engine, MODULE), key(&other, MODULE));
        assert_ne!(key(&engine, MODULE), key(&engine, b"(module)"));
        assert_eq!(key(&engine, MODULE), key(&engine, MODULE));
    }

    /// A function found in the cache calls the functions of its own
    /// module: the same code calling another index, another function.
    #[cfg(feature = "cranelift")]
    #[test]
    fn a_function_from_the_function_cache_calls_its_own_modules_functions() {
        use std::sync::atomic::Ordering;
        use std::sync::Arc;

        let functions = Arc::new(FunctionCache::default());
        let mut config = wasmtime::Config::new();
        config.enable_incremental_compilation(functions.clone()).unwrap();
        let engine = Engine::new(&config).unwrap();
        let run = |wat: &str| {
            let module = Module::new(&engine, wat).unwrap();
            let mut store = wasmtime::Store::new(&engine, ());
            let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
            let g = instance.get_typed_func::<i32, i32>(&mut store, "g").unwrap();
            g.call(&mut store, 5).unwrap()
        };
        let hits = || functions.hits.load(Ordering::Relaxed);
        let g = |op: &str| {
            format!(
                "(func (export \"g\") (param i32) (result i32) local.get 0 call $f i32.const 100 i32.{op})"
            )
        };
        let first = format!(
            "(module (func $f (param i32) (result i32) local.get 0 i32.const 1 i32.add) {})",
            g("mul")
        );
        let second = |g: String| {
            format!(
                "(module (func $other (param i32) (result i32) i32.const 7) \
                 (func $f (param i32) (result i32) local.get 0 i32.const 2 i32.add) {g})"
            )
        };
        assert_eq!(run(&first), 600);
        assert_eq!(hits(), 0);
        // g differs: what else the two share (trampolines) is found
        assert_eq!(run(&second(g("add"))), 107);
        let shared = hits();
        functions.clear();
        assert_eq!(run(&first), 600);
        let before = hits();
        // g is the same code, calling $f at another index
        assert_eq!(run(&second(g("mul"))), 700);
        assert_eq!(hits() - before, shared + 1, "g came from the cache");
        functions.clear();
        assert_eq!(run(&first), 600);
    }

    #[cfg(all(feature = "cranelift", feature = "winch"))]
    #[test]
    fn keys_depend_on_the_compiler() {
        let cranelift = Engine::default();
        let mut config = wasmtime::Config::new();
        config.strategy(wasmtime::Strategy::Winch);
        let winch = Engine::new(&config).unwrap();
        assert_ne!(key(&cranelift, MODULE), key(&winch, MODULE));
    }
}
