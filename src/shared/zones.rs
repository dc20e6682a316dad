//! The zones of wasm{} (`shm_kv`, `shm_queue`), which key goes to which,
//! and which module may use them.

use thiserror::Error;

use crate::host::{ZoneKind, ZoneRef};

/// Who may use a zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Each module has its own part (its keys; a queue is its first
    /// registrant's).
    PerModule,
    /// `share=`: the modules named (`*`: every one), with one key space
    /// and one queue for them all.
    Shared(Vec<Vec<u8>>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    pub name: Vec<u8>,
    pub zone: ZoneRef,
    pub access: Access,
}

impl Zone {
    /// Whether the module `vm_id` may use the zone. The proxy's own code
    /// (an empty `vm_id`: the Lua API) may use every zone; in per-module
    /// zones it has its own part, as a module has.
    pub fn allows(&self, vm_id: &[u8]) -> bool {
        match &self.access {
            Access::PerModule => true,
            Access::Shared(names) => {
                vm_id.is_empty() || names.iter().any(|name| name == b"*" || name == vm_id)
            }
        }
    }

    pub fn per_module(&self) -> bool {
        self.access == Access::PerModule
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ZoneError {
    #[error("share= names no module of wasm{{}}: \"{0}\"")]
    UnknownModule(String),
    #[error("zones are declared before filters run")]
    TooLate,
}

/// The zones of a configuration, and its modules (who may own a queue).
#[derive(Debug, Default)]
pub struct Zones {
    kv: Vec<Zone>,
    queues: Vec<Zone>,
    modules: Vec<String>,
}

impl Zones {
    /// A zone of wasm{}, after its modules are loaded (`modules`).
    pub fn add(
        &mut self,
        zone: ZoneRef,
        name: &[u8],
        share: Option<Vec<Vec<u8>>>,
        modules: &[&str],
    ) -> Result<(), ZoneError> {
        self.modules = modules.iter().map(|m| m.to_string()).collect();
        let access = match share {
            None => Access::PerModule,
            Some(names) => {
                // "*" stands alone
                let star = names.len() == 1;
                if let Some(unknown) = names.iter().find(|n| !(star && *n == b"*") && !self.is_module(n)) {
                    return Err(ZoneError::UnknownModule(
                        String::from_utf8_lossy(unknown).into_owned(),
                    ));
                }
                Access::Shared(names)
            }
        };
        let zone = Zone {
            name: name.to_vec(),
            zone,
            access,
        };
        match zone.zone.kind {
            ZoneKind::Kv => self.kv.push(zone),
            ZoneKind::Queue => self.queues.push(zone),
        }
        Ok(())
    }

    /// Whether `name` is one of the configuration's modules.
    pub fn is_module(&self, name: &[u8]) -> bool {
        self.modules.iter().any(|m| m.as_bytes() == name)
    }

    /// The zone of a key: `name/rest` is the zone `name`'s if there is
    /// one, every other key the zone `*`'s.
    pub fn kv_zone(&self, key: &[u8]) -> Option<&Zone> {
        let prefix = key.iter().position(|&b| b == b'/').map(|slash| &key[..slash]);
        prefix
            .and_then(|prefix| self.kv.iter().find(|zone| zone.name == prefix))
            .or_else(|| self.kv.iter().find(|zone| zone.name == b"*"))
    }

    /// A queue by name, with its token (its place + 1: never 0).
    pub fn queue_by_name(&self, name: &[u8]) -> Option<(u32, &Zone)> {
        let index = self.queues.iter().position(|zone| zone.name == name)?;
        Some((index as u32 + 1, &self.queues[index]))
    }

    pub fn queue_by_token(&self, token: u32) -> Option<&Zone> {
        self.queues.get((token as usize).checked_sub(1)?)
    }

    /// Every queue, with its token.
    pub fn queues(&self) -> impl Iterator<Item = (u32, &Zone)> {
        self.queues
            .iter()
            .enumerate()
            .map(|(i, zone)| (i as u32 + 1, zone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones() -> Zones {
        let mut zones = Zones::default();
        let kv = |index| ZoneRef {
            kind: ZoneKind::Kv,
            index,
        };
        zones.add(kv(0), b"*", None, &["a", "b"]).unwrap();
        zones
            .add(kv(1), b"cache", Some(vec![b"a".to_vec()]), &["a", "b"])
            .unwrap();
        zones
    }

    #[test]
    fn keys_go_to_the_zone_of_their_prefix_else_to_star() {
        let zones = zones();
        assert_eq!(zones.kv_zone(b"cache/x").unwrap().name, b"cache");
        assert_eq!(zones.kv_zone(b"other/x").unwrap().name, b"*");
        assert_eq!(zones.kv_zone(b"plain").unwrap().name, b"*");
        assert_eq!(zones.kv_zone(b"cache").unwrap().name, b"*");
        assert!(Zones::default().kv_zone(b"x").is_none());
    }

    #[test]
    fn share_names_modules_of_the_configuration() {
        let zones = zones();
        let cache = zones.kv_zone(b"cache/x").unwrap();
        assert!(cache.allows(b"a"));
        assert!(!cache.allows(b"b"));
        assert!(zones.kv_zone(b"x").unwrap().allows(b"b"));
        let mut zones = Zones::default();
        let queue = ZoneRef {
            kind: ZoneKind::Queue,
            index: 0,
        };
        assert_eq!(
            zones.add(queue, b"q", Some(vec![b"c".to_vec()]), &["a"]),
            Err(ZoneError::UnknownModule("c".into()))
        );
        assert_eq!(
            zones.add(queue, b"q", Some(vec![b"*".to_vec(), b"a".to_vec()]), &["a"]),
            Err(ZoneError::UnknownModule("*".into()))
        );
        zones.add(queue, b"q", Some(vec![b"*".to_vec()]), &["a"]).unwrap();
        assert!(zones.queue_by_name(b"q").unwrap().1.allows(b"anyone"));
        assert_eq!(zones.queue_by_name(b"q").unwrap().0, 1);
        assert!(zones.queue_by_token(0).is_none());
        assert!(zones.queue_by_token(2).is_none());
    }
}
