//! The compiled-code cache (`wasm { cache <dir>; }`): modules compiled
//! once are kept as wasmtime's serialized code, named by a SHA-256 of the
//! engine's settings and the module's bytes, so that a restart or reload
//! with unchanged modules skips compilation.

use std::hash::{Hash, Hasher};
use std::path::Path;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// Where a compiled module came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Compiled,
    Cache,
}

/// Compiles a module (binary or text), or loads its code from the cache.
/// The cache is best effort: a file that cannot be used or written is
/// reported in `warning` and the module compiled.
pub fn compile(
    engine: &Engine,
    bytes: &[u8],
    cache: Option<&Path>,
    warning: &mut Option<String>,
) -> wasmtime::Result<(Module, Origin)> {
    let Some(dir) = cache else {
        return Ok((Module::new(engine, bytes)?, Origin::Compiled));
    };
    let path = dir.join(format!("{}.cwasm", key(engine, bytes)));
    if path.exists() {
        // SAFETY: deserializing runs the file's machine code later. Files
        // in the cache directory are written by `store` below from code
        // wasmtime compiled, and the directory must be writable only by
        // the user nginx's master runs as (see the README); wasmtime
        // checks the format and that the engine settings match.
        match unsafe { Module::deserialize_file(engine, &path) } {
            Ok(module) => return Ok((module, Origin::Cache)),
            Err(e) => {
                *warning = Some(format!(
                    "cannot use the cached code \"{}\" ({}): compiling",
                    path.display(),
                    e.root_cause()
                ))
            }
        }
    }
    let module = Module::new(engine, bytes)?;
    if let Err(e) = store(&module, dir, &path) {
        *warning = Some(format!("cannot write to the cache \"{}\": {e}", dir.display()));
    }
    Ok((module, Origin::Compiled))
}

/// Writes the compiled code under a temporary name, then renames it, so
/// that a reader never sees half a file.
fn store(module: &Module, dir: &Path, path: &Path) -> std::io::Result<()> {
    let code = module.serialize().map_err(std::io::Error::other)?;
    std::fs::create_dir_all(dir)?;
    let temporary = path.with_extension(format!("tmp.{}", std::process::id()));
    std::fs::write(&temporary, code)?;
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
        let (_, first) = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        let (_, second) = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        assert_eq!((first, second), (Origin::Compiled, Origin::Cache));
        assert_eq!(warning, None);

        // a damaged file is compiled again, and replaced
        for entry in std::fs::read_dir(&dir).unwrap() {
            std::fs::write(entry.unwrap().path(), b"damaged").unwrap();
        }
        let (_, third) = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        assert_eq!(third, Origin::Compiled);
        assert!(warning.take().unwrap().contains("cannot use the cached code"));
        let (_, fourth) = compile(&engine, MODULE, Some(&dir), &mut warning).unwrap();
        assert_eq!(fourth, Origin::Cache);
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
