//! What an instance may use: a memory cap (a store limiter) and a CPU-time
//! deadline per guest call (epoch interruption, with a ticker thread per
//! process that runs guest code).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter};

/// How often the epoch advances: the resolution of `callback_timeout`.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Table elements an instance may have (Envoy's cap).
const MAX_TABLE_ELEMENTS: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstanceLimits {
    /// Bytes of linear memory.
    pub memory: usize,
    /// Wall-clock time a guest call may run.
    pub callback_timeout: Duration,
}

impl Default for InstanceLimits {
    fn default() -> Self {
        InstanceLimits {
            memory: 128 * 1024 * 1024,
            callback_timeout: Duration::from_millis(500),
        }
    }
}

impl InstanceLimits {
    /// The epoch deadline of a guest call: it traps between
    /// `callback_timeout` and one tick later.
    pub fn deadline_ticks(&self) -> u64 {
        let tick = EPOCH_TICK.as_nanos();
        (self.callback_timeout.as_nanos().div_ceil(tick) as u64).max(1) + 1
    }
}

/// The store's limiter: refuses memory growth over the cap, and remembers
/// the refusal so that a trap that follows can be explained.
#[derive(Debug)]
pub struct MemoryLimiter {
    pub limit: usize,
    /// The size a refused growth asked for, since the last `take_refusal`.
    refused: Option<usize>,
}

impl MemoryLimiter {
    pub fn new(limit: usize) -> MemoryLimiter {
        MemoryLimiter { limit, refused: None }
    }

    pub fn take_refusal(&mut self) -> Option<usize> {
        self.refused.take()
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.refused = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// A thread that advances the engine's epoch every `EPOCH_TICK`, so that
/// guest calls past their deadline trap. It runs while guest code may run:
/// in each worker, and around the checks at configuration time (never
/// across a fork). Dropping it stops and joins the thread.
pub struct EpochTicker {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EpochTicker {
    pub fn start(engine: &Engine) -> std::io::Result<EpochTicker> {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let engine = engine.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("proxy-wasm-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Acquire) {
                        std::thread::park_timeout(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(EpochTicker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_round_up_to_ticks() {
        let limits = |ms| InstanceLimits {
            memory: 0,
            callback_timeout: Duration::from_millis(ms),
        };
        assert_eq!(limits(500).deadline_ticks(), 51);
        assert_eq!(limits(505).deadline_ticks(), 52);
        assert_eq!(limits(0).deadline_ticks(), 2);
    }
}
