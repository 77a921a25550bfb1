//! The containers kept warm: one per image, workspace, network policy and agent, shared by
//! that agent's runs at once (runs of two agents never share one), removed after its TTL idle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::attach::HelperConn;
use crate::execute::held::Identity;
use stigmer_protocol::network::NetworkPolicy;

/// Runs of one key share a container; anything else gets its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) struct ContainerKey {
    pub image: String,
    pub workspace: PathBuf,
    pub network: NetworkPolicy,
    pub client: String,
}

/// A started container and the stream to its helper.
#[derive(Clone)]
pub(super) struct Warm {
    pub id: String,
    pub conn: Arc<HelperConn>,
    /// Its door to the allowlist's proxy (closed when the last clone goes), which tells
    /// whose a refused connection was.
    pub door: Option<Arc<crate::network::supervisor::Door>>,
    /// The folder mounted, as proved when it started (None where it cannot be proved).
    pub mounted: Option<Identity>,
    /// The host-run files it guards, and where it looked for them.
    pub guards: Arc<super::hostrun::Guards>,
    /// A run created a host-run file it does not guard: the next run gets a new container.
    pub stale: Arc<AtomicBool>,
    /// Runs in it now, and whether it was replaced: the last of its runs removes it.
    pub runs: Arc<AtomicUsize>,
    pub retired: Arc<AtomicBool>,
}

impl Warm {
    pub fn new(
        id: String,
        conn: Arc<HelperConn>,
        door: Option<Arc<crate::network::supervisor::Door>>,
        mounted: Option<Identity>,
        guards: super::hostrun::Guards,
    ) -> Warm {
        Warm {
            id,
            conn,
            door,
            mounted,
            guards: Arc::new(guards),
            stale: Arc::default(),
            runs: Arc::default(),
            retired: Arc::default(),
        }
    }

    pub fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Replaced by a new container: whether it is free to go now (else its last run
    /// removes it, see [`Warm::leave`]), so a run still going in it is never cut short.
    pub fn retire(&self) -> bool {
        self.retired.store(true, Ordering::SeqCst);
        self.runs.load(Ordering::SeqCst) == 0
    }

    /// A run is over in it: whether it was retired and that was its last run.
    pub fn leave(&self) -> bool {
        self.runs.fetch_sub(1, Ordering::SeqCst) == 1 && self.retired.load(Ordering::SeqCst)
    }
}

struct Slot {
    warm: Option<Warm>,
    active: usize,
    last_used: Instant,
    ttl: Duration,
    cleanup: bool,
    /// Held while the container is being made, so concurrent runs make one.
    creating: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
pub(super) struct Pool {
    slots: HashMap<ContainerKey, Slot>,
}

impl Pool {
    /// Count a run in; the lock to hold while looking at or making the key's container.
    pub fn enter(
        &mut self,
        key: &ContainerKey,
        ttl: Duration,
        cleanup: bool,
    ) -> Arc<tokio::sync::Mutex<()>> {
        let slot = self.slots.entry(key.clone()).or_insert_with(|| Slot {
            warm: None,
            active: 0,
            last_used: Instant::now(),
            ttl,
            cleanup,
            creating: Arc::default(),
        });
        slot.active += 1;
        slot.ttl = ttl;
        slot.cleanup = cleanup;
        slot.creating.clone()
    }

    /// The key's container, if it has one.
    pub fn warm(&self, key: &ContainerKey) -> Option<Warm> {
        self.slots.get(key).and_then(|s| s.warm.clone())
    }

    /// The key's container is now `warm` (or none).
    pub fn set(&mut self, key: &ContainerKey, warm: Option<Warm>) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.warm = warm;
        }
    }

    /// A run is over.
    pub fn leave(&mut self, key: &ContainerKey) {
        if let Some(slot) = self.slots.get_mut(key) {
            slot.active = slot.active.saturating_sub(1);
            slot.last_used = Instant::now();
        }
    }

    /// Forget container `id` of `key` (gone, or being removed).
    pub fn forget(&mut self, key: &ContainerKey, id: &str) {
        if let Some(slot) = self.slots.get_mut(key) {
            if slot.warm.as_ref().is_some_and(|w| w.id == id) {
                slot.warm = None;
            }
        }
    }

    /// Idle containers past their TTL (every idle one whose cleanup is on, with `all`),
    /// taken out of the pool.
    pub fn expired(&mut self, all: bool) -> Vec<String> {
        let now = Instant::now();
        let keys: Vec<ContainerKey> = self
            .slots
            .iter()
            .filter(|(_, s)| s.warm.is_some() && s.active == 0)
            .filter(|(_, s)| {
                if all {
                    s.cleanup
                } else {
                    now.duration_since(s.last_used) >= s.ttl
                }
            })
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.slots.remove(&k).and_then(|s| s.warm).map(|w| w.id))
            .collect()
    }

    /// Containers of another network policy go as soon as they are idle.
    pub fn retire_other_networks(&mut self, policy: NetworkPolicy) {
        for (key, slot) in self.slots.iter_mut() {
            if key.network != policy {
                slot.ttl = Duration::ZERO;
                slot.cleanup = true;
            }
        }
    }

    /// Whether a run is going in a container of `image`.
    pub fn busy_with(&self, image: &str) -> bool {
        self.slots
            .iter()
            .any(|(k, s)| k.image == image && s.active > 0)
    }

    /// Take out every (idle) container of `image`.
    pub fn drain_image(&mut self, image: &str) -> Vec<String> {
        let keys: Vec<ContainerKey> = self
            .slots
            .keys()
            .filter(|k| k.image == image)
            .cloned()
            .collect();
        keys.into_iter()
            .filter_map(|k| self.slots.remove(&k).and_then(|s| s.warm).map(|w| w.id))
            .collect()
    }

    pub fn clear(&mut self) {
        self.slots.clear();
    }
}
