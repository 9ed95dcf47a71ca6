//! A node's RAM and disk tiers: which models' weights each holds, within a
//! byte budget, giving up the least recently used first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use greenthread_core::lru::{Cached, evictions};
use greenthread_core::{ModelName, Tier, TierUsage};
use tokio::time::Instant;

/// Byte budgets of the warm tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TierBudgets {
    pub ram: u64,
    pub disk: u64,
}

/// A model's artifact in host memory.
struct RamCopy {
    bytes: Arc<Vec<u8>>,
    last_used: Instant,
}

/// A model's verified artifact in the disk cache.
struct DiskCopy {
    path: PathBuf,
    bytes: u64,
    last_used: Instant,
}

/// The warm tiers of one node.
pub struct TierStore {
    budgets: TierBudgets,
    ram: HashMap<ModelName, RamCopy>,
    disk: HashMap<ModelName, DiskCopy>,
    /// Models whose copies may not be evicted right now (waking, being staged).
    pinned: HashSet<ModelName>,
}

impl TierStore {
    pub fn new(budgets: TierBudgets) -> Self {
        Self { budgets, ram: HashMap::new(), disk: HashMap::new(), pinned: HashSet::new() }
    }

    pub fn pin(&mut self, model: &ModelName) {
        self.pinned.insert(model.clone());
    }

    pub fn unpin(&mut self, model: &ModelName) {
        self.pinned.remove(model);
    }

    /// The model's bytes in RAM, marking them used.
    pub fn ram(&mut self, model: &ModelName) -> Option<Arc<Vec<u8>>> {
        let copy = self.ram.get_mut(model)?;
        copy.last_used = Instant::now();
        Some(copy.bytes.clone())
    }

    /// The model's file in the disk cache, marking it used.
    pub fn disk(&mut self, model: &ModelName) -> Option<PathBuf> {
        let copy = self.disk.get_mut(model)?;
        copy.last_used = Instant::now();
        Some(copy.path.clone())
    }

    /// The fastest warm tier holding the model.
    pub fn fastest(&self, model: &ModelName) -> Option<Tier> {
        if self.ram.contains_key(model) {
            Some(Tier::Ram)
        } else if self.disk.contains_key(model) {
            Some(Tier::Disk)
        } else {
            None
        }
    }

    fn lru_view<T>(
        &self,
        map: &HashMap<ModelName, T>,
        bytes: impl Fn(&T) -> u64,
        last: impl Fn(&T) -> Instant,
    ) -> Vec<Cached<ModelName>> {
        let now = Instant::now();
        map.iter()
            .map(|(k, v)| Cached {
                key: k.clone(),
                bytes: bytes(v),
                idle_for: now.duration_since(last(v)),
                pinned: self.pinned.contains(k),
            })
            .collect()
    }

    /// Makes room for `bytes` more in RAM. Returns the models whose RAM copy
    /// was given up, or `None` if there is no room even after evicting all
    /// unpinned copies (nothing is evicted then).
    pub fn make_ram_room(&mut self, bytes: u64) -> Option<Vec<ModelName>> {
        let view = self.lru_view(&self.ram, |c| c.bytes.len() as u64, |c| c.last_used);
        let evicted = evictions(&view, self.budgets.ram, bytes)?;
        for m in &evicted {
            self.ram.remove(m);
        }
        Some(evicted)
    }

    pub fn insert_ram(&mut self, model: &ModelName, bytes: Arc<Vec<u8>>) {
        self.ram.insert(model.clone(), RamCopy { bytes, last_used: Instant::now() });
    }

    pub fn drop_ram(&mut self, model: &ModelName) -> bool {
        self.ram.remove(model).is_some()
    }

    /// Makes room for `bytes` more on disk. Returns the files given up (the
    /// caller deletes them), or `None` if there is no room.
    pub fn make_disk_room(&mut self, bytes: u64) -> Option<Vec<PathBuf>> {
        let view = self.lru_view(&self.disk, |c| c.bytes, |c| c.last_used);
        let evicted = evictions(&view, self.budgets.disk, bytes)?;
        Some(evicted.iter().filter_map(|m| self.disk.remove(m)).map(|c| c.path).collect())
    }

    pub fn insert_disk(&mut self, model: &ModelName, path: PathBuf, bytes: u64) {
        self.disk.insert(model.clone(), DiskCopy { path, bytes, last_used: Instant::now() });
    }

    /// Forgets the disk copy; returns its path for the caller to delete.
    pub fn drop_disk(&mut self, model: &ModelName) -> Option<PathBuf> {
        self.disk.remove(model).map(|c| c.path)
    }

    pub fn usage(&self) -> Vec<TierUsage> {
        vec![
            TierUsage {
                tier: Tier::Ram,
                budget: self.budgets.ram,
                used: self.ram.values().map(|c| c.bytes.len() as u64).sum(),
            },
            TierUsage { tier: Tier::Disk, budget: self.budgets.disk, used: self.disk.values().map(|c| c.bytes).sum() },
        ]
    }
}
