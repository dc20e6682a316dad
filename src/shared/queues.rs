//! Which root context a queue's items are told to in this worker: the one
//! that registered it last, as in Envoy.

use std::cell::RefCell;
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    /// The generation of the instance the root context lives in.
    pub instance: u64,
    pub root_id: u32,
}

thread_local! {
    static SUBSCRIBERS: RefCell<HashMap<u32, Subscriber>> = RefCell::new(HashMap::new());
}

pub fn subscribe(token: u32, subscriber: Subscriber) {
    SUBSCRIBERS.with(|subscribers| subscribers.borrow_mut().insert(token, subscriber));
}

pub fn subscriber(token: u32) -> Option<Subscriber> {
    SUBSCRIBERS.with(|subscribers| subscribers.borrow().get(&token).copied())
}

pub(super) fn reset() {
    SUBSCRIBERS.with(|subscribers| subscribers.borrow_mut().clear());
}
