//! The key-value store (`proxy_get_shared_data`, `proxy_set_shared_data`):
//! which zone and key a module's key is stored under, and CAS.

use std::borrow::Cow;

use super::zones::{Zone, Zones};
use super::SharedError;
use crate::host::{LockedZone, SharedMemory};

/// Where a module's key is stored in its zone.
struct StoredKey<'a> {
    key: Cow<'a, [u8]>,
    /// The part of `key` that names the module (0 in a shared zone): a
    /// module evicts only its own entries to make room.
    namespace: usize,
}

/// The key itself in a zone with `share=` (if it names the module), else
/// the key behind the module's name: `<module>\0<key>`.
fn stored_key<'a>(zone: &Zone, vm_id: &[u8], key: &'a [u8]) -> Result<StoredKey<'a>, SharedError> {
    if !zone.allows(vm_id) {
        return Err(SharedError::Denied);
    }
    if !zone.per_module() {
        return Ok(StoredKey {
            key: Cow::Borrowed(key),
            namespace: 0,
        });
    }
    let mut stored = Vec::with_capacity(vm_id.len() + 1 + key.len());
    stored.extend_from_slice(vm_id);
    stored.push(0);
    stored.extend_from_slice(key);
    Ok(StoredKey {
        key: Cow::Owned(stored),
        namespace: vm_id.len() + 1,
    })
}

/// The value of a module's key, into `out`, and its CAS; None when the key
/// is absent (or the zones are not mapped yet).
pub fn get(
    host: &dyn SharedMemory,
    zones: &Zones,
    vm_id: &[u8],
    key: &[u8],
    out: &mut Vec<u8>,
) -> Result<Option<u32>, SharedError> {
    let zone = zones.kv_zone(key).ok_or(SharedError::NoZone)?;
    let stored = stored_key(zone, vm_id, key)?;
    let mut found = None;
    host.with_zone(zone.zone, &mut |z| found = z.kv_read(&stored.key, out));
    Ok(found)
}

/// Stores a module's value; a `cas` other than 0 must be the stored one's
/// (a key that is absent takes any). While the configuration is checked,
/// writes are dropped.
pub fn set(
    host: &dyn SharedMemory,
    zones: &Zones,
    vm_id: &[u8],
    key: &[u8],
    value: &[u8],
    cas: u32,
) -> Result<(), SharedError> {
    let zone = zones.kv_zone(key).ok_or(SharedError::NoZone)?;
    let stored = stored_key(zone, vm_id, key)?;
    let mut outcome = Ok(());
    host.with_zone(zone.zone, &mut |z| outcome = store(z, &stored, value, cas));
    outcome
}

fn store(z: &mut dyn LockedZone, stored: &StoredKey<'_>, value: &[u8], cas: u32) -> Result<(), SharedError> {
    if cas != 0 && z.kv_cas(&stored.key).is_some_and(|current| current != cas) {
        return Err(SharedError::CasMismatch);
    }
    let next = next_cas(z.kv_state().last_cas);
    if !z.kv_write(&stored.key, stored.namespace, value, next) {
        return Err(SharedError::Full);
    }
    z.kv_state().last_cas = next;
    Ok(())
}

/// The CAS after `last`: every write gets a new one, never 0 (which asks
/// for no check).
fn next_cas(last: u32) -> u32 {
    match last.wrapping_add(1) {
        0 => 1,
        next => next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cas_is_never_zero() {
        assert_eq!(next_cas(0), 1);
        assert_eq!(next_cas(41), 42);
        assert_eq!(next_cas(u32::MAX), 1);
    }
}
