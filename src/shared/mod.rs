//! What filters share across the workers: the key-value store, queues and
//! metrics. The host keeps their bytes in shared memory (slab allocation,
//! trees and LRU lists, locks, wakeups between workers); the rules are
//! here: which zone a key goes to and whose it is, CAS, who owns a queue
//! and which worker is told of its items, metric names, types, ids and
//! histogram buckets.

pub mod kv;
pub mod metrics;
pub mod queues;
pub mod zones;

pub use zones::Zones;

/// Why an operation on memory shared by the workers failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SharedError {
    /// No zone holds the key, or no queue has the name or id.
    #[error("no zone holds it")]
    NoZone,
    #[error("the CAS is not the stored one")]
    CasMismatch,
    /// The zone has no room (and nothing it may evict).
    #[error("its zone is full")]
    Full,
    #[error("the name has another type")]
    TypeConflict,
    /// The zone or queue is not the module's: its `share=` does not name
    /// it, or another module owns the queue (or the metric).
    #[error("not given to this module")]
    Denied,
    /// The host cannot (it cannot listen for wakeups, or it sent a value
    /// this library does not know).
    #[error("the host failed")]
    Unavailable,
}
