//! The wasmtime side: one `Runtime` per nginx configuration (engine,
//! compiled modules, filters), and one `Worker` per worker process holding
//! the live instances.

pub mod cache;
mod callbacks;
pub mod hostcalls;
pub mod limits;
pub mod module;
pub mod prepare;
pub mod services;
pub mod snapshot;
pub mod state;
pub mod vm;
mod worker;

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, Linker, PoolingAllocationConfig, Strategy,
    WasmBacktraceDetails,
};

use crate::abi::LogLevel;
use crate::callout::{CallSettings, Calls};
use crate::error::one_line;
use crate::host::prelude::*;
use crate::host::ZoneRef;
use crate::runtime::state::{FilterInfo, HostState};
use crate::shared::metrics::MetricNaming;
use crate::shared::zones::{ZoneError, Zones};
use cache::Origin;
use limits::{EpochTicker, InstanceLimits};
use module::{Compiled, ModuleError, ModuleSource, WasmModule};
use services::Services;
use vm::Vm;
pub use worker::{CallProgress, FilterHandle, VmSlot, Worker, IDLE_LIMIT, IDLE_TOTAL_LIMIT};

/// Bytes of a pooled memory or table slot reset by copying rather than
/// unmapped (see `Runtime::new`): more than a typical filter's working set.
const KEEP_RESIDENT: usize = 2 << 20;

#[cfg(not(any(feature = "cranelift", feature = "winch")))]
compile_error!("ngx_proxy_wasm needs a compiler: build it with the feature \"cranelift\", \"winch\" or both");

/// The Wasm compiler (`compiler` of wasm{}); `Auto` is Cranelift where
/// the build has it, else Winch.
pub use crate::sys::Compiler;

/// Why the runtime cannot be made, a module loaded or a filter added: one
/// line for `nginx -t`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "the compiler \"{name}\" is not in this build of the module (it has: {built}); \
         rebuild the module with NGX_PROXY_WASM_COMPILERS=\"{name}\""
    )]
    CompilerNotBuilt { name: &'static str, built: String },
    #[error("cannot create the wasm engine: {0}")]
    Engine(String),
    #[error("cannot define host functions: {0}")]
    HostFunctions(String),
    #[error("module \"{0}\" is already defined")]
    DuplicateModule(String),
    #[error(transparent)]
    Module(#[from] ModuleError),
    #[error("unknown module \"{0}\"")]
    UnknownModule(String),
    #[error("cannot start the epoch thread: {0}")]
    EpochThread(String),
    #[error("module \"{module}\" failed to start: {why}")]
    ModuleStart { module: String, why: String },
    #[error("filter \"{module}\" failed to start: {why}")]
    FilterStart { module: String, why: String },
}

/// The compilers this build has (the crate's features).
pub const COMPILERS: &[&str] = &[
    #[cfg(feature = "cranelift")]
    "cranelift",
    #[cfg(feature = "winch")]
    "winch",
];

impl Compiler {
    /// wasmtime's strategy for this compiler, if the build has it.
    fn strategy(self) -> Result<Strategy, RuntimeError> {
        let (strategy, name) = match self {
            Compiler::Auto if cfg!(feature = "cranelift") => return Ok(Strategy::Cranelift),
            Compiler::Auto => return Ok(Strategy::Winch),
            Compiler::Cranelift => (Strategy::Cranelift, "cranelift"),
            Compiler::Winch => (Strategy::Winch, "winch"),
        };
        if COMPILERS.contains(&name) {
            return Ok(strategy);
        }
        Err(RuntimeError::CompilerNotBuilt {
            name,
            built: COMPILERS.join(", "),
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct RuntimeConfig {
    pub compiler: Compiler,
    pub backtraces: bool,
    pub limits: InstanceLimits,
    /// Where compiled modules are kept between (re)starts.
    pub cache: Option<PathBuf>,
    /// Instances a worker may have at once from a pool of preallocated
    /// memories and tables; none: allocated on demand.
    pub instance_pool: Option<u32>,
    pub calls: CallSettings,
    /// The longest metric name (with its filter's prefix), the tag rules.
    pub metric_naming: MetricNaming,
}

/// What a request does when one of its filters fails
/// (`proxy_wasm_failure`): `Reload` fails the request and replaces a
/// failed instance for later requests (paced by a backoff), `FailClosed`
/// fails it and leaves the instance failed, `FailOpen` skips the filter.
pub use crate::sys::FailurePolicy;

/// Which instance a request's filters run in (`proxy_wasm_isolation`):
/// the worker's instance of each module (`None`), a fresh instance of
/// each module per request (`Request`), or per filter per request
/// (`Filter`).
pub use crate::sys::Isolation;

/// A `module` line of wasm{}.
#[derive(Debug, Clone, Copy)]
pub struct ModuleSpec<'a> {
    pub name: &'a str,
    pub path: &'a Path,
    pub vm_config: &'a [u8],
}

/// Compiles each module on a pool of threads (at most one per core), in
/// the order of `sources`. The threads block every signal: nginx's master
/// expects them in its own thread, and they are joined before this
/// returns.
fn compile_in_parallel(engine: &Engine, sources: &[ModuleSource]) -> Vec<Result<Compiled, ModuleError>> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<Option<Result<Compiled, ModuleError>>> = sources.iter().map(|_| None).collect();
    std::thread::scope(|scope| {
        let compilers: Vec<_> = (0..threads.min(sources.len()))
            .map(|_| {
                scope.spawn(|| {
                    block_signals();
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(source) = sources.get(i) else { break done };
                        done.push((i, WasmModule::compile(engine, source)));
                    }
                })
            })
            .collect();
        for compiler in compilers {
            // a panic goes on to the caller, as on one thread
            let done = compiler
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (i, result) in done {
                results[i] = Some(result);
            }
        }
    });
    results
        .into_iter()
        .map(|result| result.expect("each module is taken by one thread"))
        .collect()
}

/// Gives the memory compilers freed back to the system: what the
/// compiling threads' malloc arenas keep would otherwise stay resident in
/// the master, and in every worker it forks.
fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory of the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Blocks every signal in the calling thread.
fn block_signals() {
    // SAFETY: sigfillset fills the set it is given; pthread_sigmask only
    // changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut set);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// A filter: a module, and the plugin configuration of its root context.
#[derive(Clone)]
pub struct Filter {
    pub module: usize,
    pub info: Arc<FilterInfo>,
}

pub struct Runtime {
    host: &'static dyn Host,
    /// The zones of wasm{}, complete before the first filter starts.
    zones: Rc<Zones>,
    /// What instances reach while the configuration is checked (made with
    /// the first filter): no calls.
    services: Option<Rc<Services>>,
    linker: Linker<HostState>,
    config: RuntimeConfig,
    modules: Vec<Arc<WasmModule>>,
    filters: Vec<Filter>,
    worker: Option<Rc<Worker>>,
    /// Cranelift's output per function while modules compile.
    #[cfg(feature = "cranelift")]
    functions: Option<Arc<cache::FunctionCache>>,
}

impl Runtime {
    pub fn new(host: &'static dyn Host, config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let mut engine_config = Config::new();
        // Guest calls get a CPU deadline through epochs.
        engine_config.epoch_interruption(true);
        if let Some(instances) = config.instance_pool {
            // Slots are reserved once and reused: instantiation, the cost
            // of per-request isolation, gets much cheaper.
            let mut pool = PoolingAllocationConfig::default();
            pool.total_core_instances(instances)
                .total_memories(instances)
                .total_tables(instances)
                .max_memory_size(config.limits.memory)
                // A freed slot's dirty pages (found with PAGEMAP_SCAN where
                // the kernel has it, Linux 6.7+) are copied back from the
                // module's image instead of being unmapped: the next
                // instance takes no page faults and no madvise.
                .pagemap_scan(Enabled::Auto)
                .linear_memory_keep_resident(KEEP_RESIDENT)
                .table_keep_resident(KEEP_RESIDENT);
            engine_config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        engine_config.wasm_backtrace_details(if config.backtraces {
            WasmBacktraceDetails::Enable
        } else {
            WasmBacktraceDetails::Disable
        });
        let strategy = config.compiler.strategy()?;
        engine_config.strategy(strategy);
        #[cfg(feature = "cranelift")]
        let functions = match strategy {
            Strategy::Cranelift => {
                let functions = Arc::new(cache::FunctionCache::default());
                engine_config
                    .enable_incremental_compilation(functions.clone())
                    .map_err(|e| RuntimeError::Engine(one_line(&e)))?;
                Some(functions)
            }
            _ => None,
        };
        let engine = Engine::new(&engine_config).map_err(|e| RuntimeError::Engine(one_line(&e)))?;
        let mut linker = Linker::new(&engine);
        hostcalls::define(&mut linker).map_err(|e| RuntimeError::HostFunctions(one_line(&e)))?;
        Ok(Runtime {
            host,
            zones: Rc::new(Zones::default()),
            services: None,
            linker,
            config,
            modules: Vec::new(),
            filters: Vec::new(),
            worker: None,
            #[cfg(feature = "cranelift")]
            functions,
        })
    }

    pub fn load_module(&mut self, name: &str, path: &Path, vm_config: &[u8]) -> Result<(), RuntimeError> {
        self.load_modules(&[ModuleSpec {
            name,
            path,
            vm_config,
        }])
        .map_err(|(_, e)| e)
    }

    /// Loads the modules of wasm{}, compiling them in parallel (one thread
    /// per core, joined before returning, so before nginx forks). On
    /// failure, the position of the first module in `specs` that failed
    /// and why; none of them is kept then.
    pub fn load_modules(&mut self, specs: &[ModuleSpec]) -> Result<(), (usize, RuntimeError)> {
        for (i, spec) in specs.iter().enumerate() {
            let earlier = self
                .modules
                .iter()
                .map(|m| &*m.name)
                .chain(specs[..i].iter().map(|s| s.name));
            if earlier.into_iter().any(|name| name == spec.name) {
                return Err((i, RuntimeError::DuplicateModule(spec.name.to_string())));
            }
        }
        let sources: Vec<ModuleSource> = specs
            .iter()
            .map(|spec| ModuleSource {
                name: spec.name,
                path: spec.path,
                vm_config: spec.vm_config,
                limits: self.config.limits,
                cache: self.config.cache.as_deref(),
            })
            .collect();
        // compiled on threads, then made into modules here: what lives as
        // long as the configuration is allocated by this thread, and what
        // the threads allocated is freed and given back
        let compiled = compile_in_parallel(self.linker.engine(), &sources);
        // what the modules shared is compiled; more modules come rarely
        // (a reload makes a new runtime)
        #[cfg(feature = "cranelift")]
        if let Some(functions) = &self.functions {
            functions.clear();
        }
        let mut loaded = Vec::with_capacity(specs.len());
        let mut failure = None;
        for (i, (result, source)) in compiled.into_iter().zip(&sources).enumerate() {
            let linked = result.and_then(|compiled| WasmModule::link(&self.linker, source, compiled));
            match linked {
                Ok(module) => loaded.push(module),
                Err(e) => {
                    failure = Some((i, e.into()));
                    break;
                }
            }
        }
        release_free_memory();
        if let Some(failure) = failure {
            return Err(failure);
        }
        for module in loaded {
            let name = &module.name;
            if let Some(warning) = &module.cache_warning {
                self.host.log(None, LogLevel::Warn, name, 0, warning.as_bytes());
            }
            let origin = match module.origin {
                Origin::Compiled => "compiled",
                Origin::Cache => "loaded from the cache",
            };
            self.host.log(None, LogLevel::Debug, name, 0, origin.as_bytes());
            self.modules.push(Arc::new(module));
        }
        Ok(())
    }

    /// Adds a filter, or finds the identical one. A new filter is started
    /// once in a throwaway instance, so that a module that fails to start
    /// or rejects its configuration is an error of the configuration (or,
    /// in a running worker, of the proxy's own code adding it; there it
    /// also starts in the worker's shared instance).
    pub fn add_filter(&mut self, module_name: &str, config: &[u8]) -> Result<usize, RuntimeError> {
        let module = self
            .modules
            .iter()
            .position(|module| &*module.name == module_name)
            .ok_or_else(|| RuntimeError::UnknownModule(module_name.to_string()))?;
        let start_error = |why| RuntimeError::FilterStart {
            module: module_name.to_string(),
            why,
        };
        if let Some(id) = self
            .filters
            .iter()
            .position(|filter| filter.module == module && *filter.info.config == *config)
        {
            if let Some(worker) = &self.worker {
                worker
                    .add_filter(id, self.filters[id].clone())
                    .map_err(start_error)?;
            }
            return Ok(id);
        }
        let filter = Filter {
            module,
            info: Arc::new(FilterInfo {
                name: self.modules[module].name.clone(),
                config: config.into(),
            }),
        };
        let id = self.filters.len();
        // Guest code runs here too: give it its deadline (a worker has its
        // own), without leaving a thread behind when nginx forks its
        // workers.
        let _ticker = match self.worker {
            Some(_) => None,
            None => Some(
                EpochTicker::start(self.linker.engine())
                    .map_err(|e| RuntimeError::EpochThread(e.to_string()))?,
            ),
        };
        let services = self.services.get_or_insert_with(|| {
            Services::new(
                self.host,
                self.zones.clone(),
                Calls::default(),
                self.config.metric_naming.clone(),
            )
        });
        let mut vm = Vm::new(&self.modules[module], services).map_err(|why| RuntimeError::ModuleStart {
            module: module_name.to_string(),
            why,
        })?;
        vm.start_filter(id, &filter.info).map_err(start_error)?;
        self.filters.push(filter.clone());
        if let Some(worker) = &self.worker {
            worker.add_filter(id, filter).map_err(start_error)?;
        }
        Ok(id)
    }

    /// A zone of wasm{}, once the modules are loaded (its `share=` names
    /// them), before any filter starts.
    pub fn add_zone(
        &mut self,
        zone: ZoneRef,
        name: &[u8],
        share: Option<Vec<Vec<u8>>>,
    ) -> Result<(), ZoneError> {
        let modules: Vec<&str> = self.modules.iter().map(|module| &*module.name).collect();
        Rc::get_mut(&mut self.zones)
            .ok_or(ZoneError::TooLate)?
            .add(zone, name, share, &modules)
    }

    pub fn filters(&self) -> usize {
        self.filters.len()
    }

    /// The worker state, started on first use (at worker start, or on the
    /// first request after a reconfiguration of a single-process nginx).
    pub fn worker(&mut self) -> Rc<Worker> {
        self.worker
            .get_or_insert_with(|| {
                Worker::start(
                    self.host,
                    self.zones.clone(),
                    self.linker.engine(),
                    &self.modules,
                    &self.filters,
                    &self.config,
                )
            })
            .clone()
    }

    /// The worker state if it is running.
    pub fn running_worker(&self) -> Option<&Rc<Worker>> {
        self.worker.as_ref()
    }

    pub fn exit_worker(&mut self) {
        if let Some(worker) = self.worker.take() {
            worker.leave_queues();
            worker.shutdown();
        }
    }
}
