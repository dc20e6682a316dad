//! A compiled Proxy-Wasm module: loaded once (in the nginx master, before
//! workers fork, so they all share its code), checked for a Proxy-Wasm ABI
//! and for exports of the right types, and pre-linked for fast
//! instantiation.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use wasmtime::{Engine, ExternType, FuncType, InstancePre, Linker, Module, ModuleExport, ValType};

use super::cache::{self, Origin};
use super::limits::InstanceLimits;
use super::prepare;
use crate::abi::AbiVersion;
use crate::error::one_line;
use crate::runtime::state::HostState;

/// A module compiled, not linked yet.
pub struct Compiled {
    code: cache::Code,
    cache_warning: Option<String>,
}

/// What `module` says, and the runtime settings a module is loaded with.
pub struct ModuleSource<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub vm_config: &'a [u8],
    pub limits: InstanceLimits,
    pub cache: Option<&'a Path>,
}

pub struct WasmModule {
    pub name: Arc<str>,
    pub abi: AbiVersion,
    pub vm_config: Arc<[u8]>,
    pub limits: InstanceLimits,
    pub pre: InstancePre<HostState>,
    /// Compiled now, or loaded from the cache.
    pub origin: Origin,
    /// Why the cache could not be used, if it could not.
    pub cache_warning: Option<String>,
    /// Host functions already reported as unimplemented, to warn once.
    warned: Mutex<HashSet<String>>,
    /// The callbacks the module exports (of the checked types), resolved
    /// once: looking up a missing export by name builds an error each time.
    exports: Vec<(&'static str, ModuleExport)>,
    /// Its mutable globals, exported for the host: None if its instances
    /// cannot be reset (see `snapshot`).
    pub reset_globals: Option<Vec<ModuleExport>>,
}

/// The exports the host may call, with the type each must have. The
/// `(i32, i32)` header callbacks of ABI 0.1.0 are listed separately.
const CALLBACKS: &[(&str, &[ValType], &[ValType])] = {
    use ValType::I32;
    &[
        ("_initialize", &[], &[]),
        ("_start", &[], &[]),
        ("main", &[I32, I32], &[I32]),
        ("proxy_on_memory_allocate", &[I32], &[I32]),
        ("malloc", &[I32], &[I32]),
        ("proxy_on_context_create", &[I32, I32], &[]),
        ("proxy_on_vm_start", &[I32, I32], &[I32]),
        ("proxy_on_configure", &[I32, I32], &[I32]),
        ("proxy_on_request_body", &[I32, I32, I32], &[I32]),
        ("proxy_on_request_trailers", &[I32, I32], &[I32]),
        ("proxy_on_response_body", &[I32, I32, I32], &[I32]),
        ("proxy_on_response_trailers", &[I32, I32], &[I32]),
        ("proxy_on_new_connection", &[I32], &[I32]),
        ("proxy_on_downstream_data", &[I32, I32, I32], &[I32]),
        ("proxy_on_upstream_data", &[I32, I32, I32], &[I32]),
        ("proxy_on_downstream_connection_close", &[I32, I32], &[]),
        ("proxy_on_upstream_connection_close", &[I32, I32], &[]),
        ("proxy_on_log", &[I32], &[]),
        ("proxy_on_done", &[I32], &[I32]),
        ("proxy_on_delete", &[I32], &[]),
        ("proxy_on_tick", &[I32], &[]),
        ("proxy_on_queue_ready", &[I32, I32], &[]),
        ("proxy_on_http_call_response", &[I32, I32, I32, I32, I32], &[]),
        ("proxy_on_foreign_function", &[I32, I32, I32], &[]),
        ("proxy_on_grpc_receive_initial_metadata", &[I32, I32, I32], &[]),
        ("proxy_on_grpc_receive", &[I32, I32, I32], &[]),
        ("proxy_on_grpc_receive_trailing_metadata", &[I32, I32, I32], &[]),
        // the AssemblyScript and C++ SDKs' name of the one above
        ("proxy_on_grpc_trailing_metadata", &[I32, I32, I32], &[]),
        ("proxy_on_grpc_close", &[I32, I32, I32], &[]),
    ]
};

/// Why a module cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModuleError {
    #[error("cannot read \"{path}\": {why}")]
    Read { path: String, why: String },
    #[error("invalid module \"{path}\": {why}")]
    Invalid { path: String, why: String },
    #[error("cannot link module \"{path}\": {why}")]
    Link { path: String, why: String },
    #[error(
        "not a Proxy-Wasm module: no proxy_abi_version_0_2_1, proxy_abi_version_0_2_0 \
         or proxy_abi_version_0_1_0 export"
    )]
    NotProxyWasm,
    #[error("export \"{name}\" is {found}, expected {expected} for Proxy-Wasm ABI {abi}")]
    ExportType {
        name: &'static str,
        found: String,
        expected: String,
        abi: &'static str,
    },
    #[error("no \"{name}\" export: {why}")]
    MissingExport { name: &'static str, why: &'static str },
    #[error("no \"proxy_on_memory_allocate\" or \"malloc\" export: the host cannot pass data to it")]
    NoAllocator,
}

const HEADER_CALLBACKS: [&str; 2] = ["proxy_on_request_headers", "proxy_on_response_headers"];

impl WasmModule {
    /// The part of loading that can run on any thread: reading the file
    /// and compiling it (or reading its code from the cache).
    pub fn compile(engine: &Engine, source: &ModuleSource) -> Result<Compiled, ModuleError> {
        let path = source.path.display().to_string();
        let bytes = std::fs::read(source.path).map_err(|e| ModuleError::Read {
            path: path.clone(),
            why: e.to_string(),
        })?;
        let mut cache_warning = None;
        let code = cache::compile(engine, &bytes, source.cache, &mut cache_warning).map_err(|e| {
            ModuleError::Invalid {
                path,
                why: one_line(&e),
            }
        })?;
        Ok(Compiled { code, cache_warning })
    }

    /// The rest, on the thread that keeps the module: what it allocates
    /// lives as long as the configuration.
    pub fn link(
        linker: &Linker<HostState>,
        source: &ModuleSource,
        compiled: Compiled,
    ) -> Result<WasmModule, ModuleError> {
        let path = source.path.display().to_string();
        let module = compiled
            .code
            .load(linker.engine())
            .map_err(|e| ModuleError::Invalid {
                path: path.clone(),
                why: one_line(&e),
            })?;
        let abi = abi_version(&module)?;
        check_exports(&module, abi)?;
        let exports = CALLBACKS
            .iter()
            .map(|(name, ..)| *name)
            .chain(HEADER_CALLBACKS)
            // added when compiled (see prepare)
            .chain([
                prepare::START_REQUEST,
                prepare::END_CONTEXT,
                prepare::LOG_END,
                prepare::STAGE,
            ])
            .filter_map(|name| Some((name, module.get_export_index(name)?)))
            .collect();
        // prepared when compiled (see prepare::prepare)
        let reset_globals = module.get_export(prepare::RESET_MARKER).map(|_| {
            module
                .exports()
                .filter(|export| export.name().starts_with(prepare::GLOBAL_EXPORT_PREFIX))
                .filter_map(|export| module.get_export_index(export.name()))
                .collect()
        });
        let pre = linker.instantiate_pre(&module).map_err(|e| ModuleError::Link {
            path,
            why: one_line(&e),
        })?;
        Ok(WasmModule {
            name: source.name.into(),
            abi,
            vm_config: source.vm_config.into(),
            limits: source.limits,
            pre,
            origin: compiled.code.origin,
            cache_warning: compiled.cache_warning,
            warned: Mutex::new(HashSet::new()),
            exports,
            reset_globals,
        })
    }

    /// A callback export, if the module has it (`name` from `CALLBACKS`
    /// or `HEADER_CALLBACKS`).
    pub fn export(&self, name: &str) -> Option<&ModuleExport> {
        self.exports
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, export)| export)
    }

    /// True the first time it is called with `what`.
    pub fn warn_once(&self, what: &str) -> bool {
        self.warned
            .lock()
            .map(|mut warned| !warned.contains(what) && warned.insert(what.to_string()))
            .unwrap_or(false)
    }
}

/// The newest ABI version the module declares.
fn abi_version(module: &Module) -> Result<AbiVersion, ModuleError> {
    AbiVersion::ALL
        .into_iter()
        .find(|abi| matches!(module.get_export(abi.marker_export()), Some(ExternType::Func(_))))
        .ok_or(ModuleError::NotProxyWasm)
}

fn check_exports(module: &Module, abi: AbiVersion) -> Result<(), ModuleError> {
    let header_params: &[ValType] = if abi.headers_callbacks_have_eos() {
        &[ValType::I32, ValType::I32, ValType::I32]
    } else {
        &[ValType::I32, ValType::I32]
    };
    let expected = CALLBACKS.iter().copied().chain(
        HEADER_CALLBACKS
            .iter()
            .map(|name| (*name, header_params, &[ValType::I32][..])),
    );
    for (name, params, results) in expected {
        let Some(export) = module.get_export(name) else {
            continue;
        };
        let ok = match &export {
            ExternType::Func(ty) => same_type(ty, params, results),
            _ => false,
        };
        if !ok {
            return Err(ModuleError::ExportType {
                name,
                found: describe(&export),
                expected: describe_func(params, results),
                abi: abi.as_str(),
            });
        }
    }
    for (required, why) in [
        ("proxy_on_context_create", "contexts cannot be created"),
        ("memory", "the host cannot exchange data with it"),
    ] {
        if module.get_export(required).is_none() {
            return Err(ModuleError::MissingExport { name: required, why });
        }
    }
    if module.get_export("proxy_on_memory_allocate").is_none() && module.get_export("malloc").is_none() {
        return Err(ModuleError::NoAllocator);
    }
    Ok(())
}

fn same_type(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let same = |a: &mut dyn ExactSizeIterator<Item = ValType>, b: &[ValType]| {
        a.len() == b.len() && a.zip(b).all(|(x, y)| ValType::eq(&x, y))
    };
    same(&mut ty.params(), params) && same(&mut ty.results(), results)
}

fn describe(export: &ExternType) -> String {
    match export {
        ExternType::Func(ty) => describe_func(
            &ty.params().collect::<Vec<_>>(),
            &ty.results().collect::<Vec<_>>(),
        ),
        ExternType::Global(_) => "a global".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Tag(_) => "a tag".into(),
    }
}

fn describe_func(params: &[ValType], results: &[ValType]) -> String {
    let list = |types: &[ValType]| types.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
    format!("a function ({}) -> ({})", list(params), list(results))
}
