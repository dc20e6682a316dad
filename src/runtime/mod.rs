//! The wasmtime side: one `Runtime` per nginx configuration (engine,
//! compiled modules, filters), and one `Worker` per worker process holding
//! the live instances.

pub mod module;
pub mod vm;

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use wasmtime::{Config, Engine, Linker, Strategy, WasmBacktraceDetails};

use crate::abi::hostcalls;
use crate::abi::state::{FilterInfo, HostState};
use crate::abi::LogLevel;
use crate::error::{one_line, Error};
use crate::host::Host;
use module::WasmModule;
use vm::Vm;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compiler {
    #[default]
    Auto,
    Cranelift,
    Winch,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct RuntimeConfig {
    pub compiler: Compiler,
    pub backtraces: bool,
}

/// A filter: a module, and the plugin configuration of its root context.
#[derive(Clone)]
pub struct Filter {
    pub module: usize,
    pub info: Arc<FilterInfo>,
}

pub struct Runtime {
    host: &'static dyn Host,
    linker: Linker<HostState>,
    modules: Vec<Arc<WasmModule>>,
    filters: Vec<Filter>,
    worker: Option<Rc<Worker>>,
}

impl Runtime {
    pub fn new(host: &'static dyn Host, config: RuntimeConfig) -> Result<Runtime, Error> {
        let mut engine_config = Config::new();
        // Callbacks get a CPU deadline through epochs.
        engine_config.epoch_interruption(true);
        engine_config.wasm_backtrace_details(if config.backtraces {
            WasmBacktraceDetails::Enable
        } else {
            WasmBacktraceDetails::Disable
        });
        engine_config.strategy(match config.compiler {
            Compiler::Auto | Compiler::Cranelift => Strategy::Cranelift,
            Compiler::Winch => Strategy::Winch,
        });
        let engine = Engine::new(&engine_config)
            .map_err(|e| Error::new(format!("cannot create the wasm engine: {}", one_line(&e))))?;
        let mut linker = Linker::new(&engine);
        hostcalls::define(&mut linker)
            .map_err(|e| Error::new(format!("cannot define host functions: {}", one_line(&e))))?;
        Ok(Runtime {
            host,
            linker,
            modules: Vec::new(),
            filters: Vec::new(),
            worker: None,
        })
    }

    pub fn load_module(&mut self, name: &str, path: &Path, vm_config: &[u8]) -> Result<(), Error> {
        if self.modules.iter().any(|module| &*module.name == name) {
            return Err(Error::new(format!("module \"{name}\" is already defined")));
        }
        let engine = self.linker.engine().clone();
        let module = WasmModule::load(&engine, &self.linker, name, path, vm_config)?;
        self.modules.push(Arc::new(module));
        Ok(())
    }

    /// Adds a filter, or finds the identical one. A new filter is started
    /// once in a throwaway instance, so that a module that fails to start
    /// or rejects its configuration is an error of the configuration.
    pub fn add_filter(&mut self, module_name: &str, config: &[u8]) -> Result<usize, Error> {
        let module = self
            .modules
            .iter()
            .position(|module| &*module.name == module_name)
            .ok_or_else(|| Error::new(format!("unknown module \"{module_name}\"")))?;
        if let Some(id) = self
            .filters
            .iter()
            .position(|filter| filter.module == module && *filter.info.config == *config)
        {
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
        let mut vm = Vm::new(&self.modules[module], self.host)
            .map_err(|e| Error::new(format!("module \"{module_name}\" failed to start: {e}")))?;
        vm.start_filter(id, &filter.info)
            .map_err(|e| Error::new(format!("filter \"{module_name}\" failed to start: {e}")))?;
        self.filters.push(filter);
        Ok(id)
    }

    pub fn filters(&self) -> usize {
        self.filters.len()
    }

    /// The worker state, started on first use (at worker start, or on the
    /// first request after a reconfiguration of a single-process nginx).
    pub fn worker(&mut self) -> Rc<Worker> {
        self.worker
            .get_or_insert_with(|| Rc::new(Worker::start(self.host, &self.modules, &self.filters)))
            .clone()
    }

    pub fn exit_worker(&mut self) {
        self.worker = None;
    }
}

/// The instance slot of a module in a worker. A failed instance is
/// replaced in place; requests still holding the old one notice by its
/// generation.
pub type VmSlot = Rc<RefCell<Option<Vm>>>;

pub struct Worker {
    pub host: &'static dyn Host,
    modules: Vec<Arc<WasmModule>>,
    filters: Vec<Filter>,
    vms: Vec<VmSlot>,
}

/// Where a filter runs in this worker.
pub struct FilterHandle {
    pub slot: VmSlot,
    pub generation: u64,
    pub root_id: u32,
}

impl Worker {
    fn start(host: &'static dyn Host, modules: &[Arc<WasmModule>], filters: &[Filter]) -> Worker {
        let worker = Worker {
            host,
            modules: modules.to_vec(),
            filters: filters.to_vec(),
            vms: modules.iter().map(|_| Rc::new(RefCell::new(None))).collect(),
        };
        for module in 0..modules.len() {
            if filters.iter().any(|filter| filter.module == module) {
                *worker.vms[module].borrow_mut() = worker.instantiate(module);
            }
        }
        worker
    }

    /// A new instance of a module with the root contexts of its filters.
    /// A filter that fails to start is logged and left out.
    fn instantiate(&self, module: usize) -> Option<Vm> {
        let wasm = &self.modules[module];
        let mut vm = match Vm::new(wasm, self.host) {
            Ok(vm) => vm,
            Err(e) => {
                self.log_error(wasm, &format!("cannot start an instance: {e}"));
                return None;
            }
        };
        for (id, filter) in self.filters.iter().enumerate() {
            if filter.module == module {
                if let Err(e) = vm.start_filter(id, &filter.info) {
                    self.log_error(wasm, &format!("filter failed to start: {e}"));
                }
            }
        }
        Some(vm)
    }

    fn log_error(&self, module: &WasmModule, message: &str) {
        self.host
            .log(None, LogLevel::Error, &module.name, 0, message.as_bytes());
    }

    pub fn filter_info(&self, filter_id: usize) -> Option<&Arc<FilterInfo>> {
        self.filters.get(filter_id).map(|filter| &filter.info)
    }

    /// The instance and root context a filter runs in, replacing a failed
    /// instance first. None when the filter cannot run in this worker.
    pub fn filter(&self, filter_id: usize) -> Option<FilterHandle> {
        let module = self.filters.get(filter_id)?.module;
        let slot = &self.vms[module];
        let failed = slot.borrow().as_ref().is_none_or(|vm| vm.failed);
        if failed {
            let replacement = self.instantiate(module);
            *slot.borrow_mut() = replacement;
        }
        let vm = slot.borrow();
        let vm = vm.as_ref().filter(|vm| !vm.failed)?;
        Some(FilterHandle {
            slot: slot.clone(),
            generation: vm.generation,
            root_id: vm.root_context(filter_id)?,
        })
    }
}
