//! Which root context a queue's items are told to in this worker: the one
//! that registered it last, as in Envoy.

use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// The generation of the instance the root context lives in.
    pub instance: u64,
    pub root_id: u32,
}

/// The root context each queue this worker registered goes to, by token.
#[derive(Debug, Default)]
pub struct QueueSubscribers(HashMap<u32, Subscriber>);

impl QueueSubscribers {
    pub fn subscribe(&mut self, token: u32, subscriber: Subscriber) {
        self.0.insert(token, subscriber);
    }

    pub fn subscriber(&self, token: u32) -> Option<Subscriber> {
        self.0.get(&token).copied()
    }
}
