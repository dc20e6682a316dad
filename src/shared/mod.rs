//! What filters share across the workers, kept by the host in shared
//! memory: the key-value store, queues and metrics. This layer holds what
//! a worker must remember of them: which root context a queue's items go
//! to, and the metric ids it gave out.

pub mod metrics;
pub mod queues;
