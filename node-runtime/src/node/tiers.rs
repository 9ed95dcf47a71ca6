//! A node's RAM and disk tiers: which models' weights each holds, within a
//! byte budget, giving up the least recently used first. Room is reserved
//! before bytes arrive (a file being fetched, a copy being read into RAM),
//! so copies made at the same time can never together pass the budget.

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

/// A model's artifact in host memory, or the room reserved for it.
struct RamCopy {
    /// `None` while it is being read.
    bytes: Option<Arc<Vec<u8>>>,
    size: u64,
    last_used: Instant,
}

/// A model's verified artifact in the disk cache, or the room reserved for it.
struct DiskCopy {
    path: PathBuf,
    bytes: u64,
    /// Whether the file is in place (else it is being fetched).
    ready: bool,
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
        copy.bytes.clone()
    }

    /// Whether the model has a RAM copy or room reserved for one.
    pub fn has_ram(&self, model: &ModelName) -> bool {
        self.ram.contains_key(model)
    }

    /// The model's file in the disk cache, marking it used.
    pub fn disk(&mut self, model: &ModelName) -> Option<PathBuf> {
        let copy = self.disk.get_mut(model).filter(|c| c.ready)?;
        copy.last_used = Instant::now();
        Some(copy.path.clone())
    }

    /// The fastest warm tier holding the model.
    pub fn fastest(&self, model: &ModelName) -> Option<Tier> {
        if self.ram.get(model).is_some_and(|c| c.bytes.is_some()) {
            Some(Tier::Ram)
        } else if self.disk.get(model).is_some_and(|c| c.ready) {
            Some(Tier::Disk)
        } else {
            None
        }
    }

    /// The cache's entries as the eviction policy sees them; copies still
    /// arriving are pinned.
    fn lru_view<T>(
        &self,
        map: &HashMap<ModelName, T>,
        bytes: impl Fn(&T) -> u64,
        last: impl Fn(&T) -> Instant,
        arriving: impl Fn(&T) -> bool,
    ) -> Vec<Cached<ModelName>> {
        let now = Instant::now();
        map.iter()
            .map(|(k, v)| Cached {
                key: k.clone(),
                bytes: bytes(v),
                idle_for: now.duration_since(last(v)),
                pinned: self.pinned.contains(k) || arriving(v),
            })
            .collect()
    }

    /// Reserves `size` bytes of RAM for `model`'s copy, giving up the least
    /// recently used copies to make room. Returns the models whose copies
    /// were given up, or `None` if there is no room even then (nothing is
    /// given up or reserved).
    pub fn reserve_ram(&mut self, model: &ModelName, size: u64) -> Option<Vec<ModelName>> {
        let view = self.lru_view(&self.ram, |c| c.size, |c| c.last_used, |c| c.bytes.is_none());
        let evicted = evictions(&view, self.budgets.ram, size)?;
        for m in &evicted {
            self.ram.remove(m);
        }
        self.ram.insert(model.clone(), RamCopy { bytes: None, size, last_used: Instant::now() });
        Some(evicted)
    }

    /// Puts the bytes read into the room reserved for them; `false` (and the
    /// reservation dropped) if they are not the size reserved.
    pub fn fill_ram(&mut self, model: &ModelName, bytes: Arc<Vec<u8>>) -> bool {
        match self.ram.get_mut(model) {
            Some(copy) if copy.size == bytes.len() as u64 => {
                copy.bytes = Some(bytes);
                copy.last_used = Instant::now();
                true
            }
            _ => {
                self.ram.remove(model);
                false
            }
        }
    }

    pub fn drop_ram(&mut self, model: &ModelName) -> bool {
        self.ram.remove(model).is_some()
    }

    /// Reserves `bytes` of disk for `model`'s file at `path`, giving up the
    /// least recently used files to make room. Returns the files given up
    /// (the caller deletes them), or `None` if there is no room.
    pub fn reserve_disk(&mut self, model: &ModelName, path: PathBuf, bytes: u64) -> Option<Vec<PathBuf>> {
        let view = self.lru_view(&self.disk, |c| c.bytes, |c| c.last_used, |c| !c.ready);
        let evicted = evictions(&view, self.budgets.disk, bytes)?;
        let paths = evicted.iter().filter_map(|m| self.disk.remove(m)).map(|c| c.path).collect();
        self.disk.insert(model.clone(), DiskCopy { path, bytes, ready: false, last_used: Instant::now() });
        Some(paths)
    }

    /// Marks `model`'s reserved file as in place, `bytes` long. A file larger
    /// than reserved takes more room, giving up other files; the files given
    /// up are returned, or `None` (and the reservation dropped) if it cannot fit.
    pub fn finish_disk(&mut self, model: &ModelName, bytes: u64) -> Option<Vec<PathBuf>> {
        let reserved = self.disk.get(model)?.bytes;
        let mut evicted = Vec::new();
        if bytes > reserved {
            let view: Vec<_> = self
                .lru_view(&self.disk, |c| c.bytes, |c| c.last_used, |c| !c.ready)
                .into_iter()
                .map(|mut c| {
                    c.pinned |= &c.key == model;
                    c
                })
                .collect();
            let Some(more) = evictions(&view, self.budgets.disk, bytes - reserved) else {
                self.disk.remove(model);
                return None;
            };
            evicted = more.iter().filter_map(|m| self.disk.remove(m)).map(|c| c.path).collect();
        }
        let copy = self.disk.get_mut(model)?;
        copy.bytes = bytes;
        copy.ready = true;
        copy.last_used = Instant::now();
        Some(evicted)
    }

    /// Forgets the disk copy (or its reservation); returns its path for the caller to delete.
    pub fn drop_disk(&mut self, model: &ModelName) -> Option<PathBuf> {
        self.disk.remove(model).map(|c| c.path)
    }

    pub fn usage(&self) -> Vec<TierUsage> {
        vec![
            TierUsage { tier: Tier::Ram, budget: self.budgets.ram, used: self.ram.values().map(|c| c.size).sum() },
            TierUsage { tier: Tier::Disk, budget: self.budgets.disk, used: self.disk.values().map(|c| c.bytes).sum() },
        ]
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn name(i: usize) -> ModelName {
        ModelName::parse(&format!("m{i}")).unwrap()
    }

    #[test]
    fn reservations_count_against_the_budget_before_the_bytes_arrive() {
        let mut t = TierStore::new(TierBudgets { ram: 100, disk: 100 });
        assert_eq!(t.reserve_ram(&name(1), 60), Some(vec![]));
        assert_eq!(t.reserve_ram(&name(2), 60), None, "the first copy is still arriving: it cannot be given up");
        assert!(t.fill_ram(&name(1), Arc::new(vec![0; 60])));
        assert_eq!(t.reserve_ram(&name(2), 60), Some(vec![name(1)]));
        assert!(!t.fill_ram(&name(2), Arc::new(vec![0; 59])), "a copy of another size is not kept");
        assert_eq!(t.usage()[0].used, 0);
    }

    #[test]
    fn a_fetched_file_larger_than_reserved_makes_more_room_or_is_refused() {
        let mut t = TierStore::new(TierBudgets { ram: 0, disk: 100 });
        t.reserve_disk(&name(1), "a".into(), 40).unwrap();
        t.finish_disk(&name(1), 40).unwrap();
        t.reserve_disk(&name(2), "b".into(), 40).unwrap();
        assert_eq!(t.finish_disk(&name(2), 70), Some(vec![PathBuf::from("a")]));
        t.reserve_disk(&name(3), "c".into(), 10).unwrap();
        t.pin(&name(2));
        assert_eq!(t.finish_disk(&name(3), 40), None, "b is pinned: no room");
        assert_eq!(t.usage()[1].used, 70);
    }

    proptest! {
        #[test]
        fn no_sequence_of_reservations_passes_the_budgets(
            steps in proptest::collection::vec((0usize..6, 1u64..60, any::<bool>(), 0u8..4), 1..60),
        ) {
            let budgets = TierBudgets { ram: 100, disk: 150 };
            let mut t = TierStore::new(budgets);
            for (model, size, fill, op) in steps {
                let m = name(model);
                match op {
                    0 => {
                        if t.reserve_ram(&m, size).is_some() && fill {
                            t.fill_ram(&m, Arc::new(vec![0; size as usize]));
                        }
                    }
                    1 => {
                        if t.reserve_disk(&m, format!("{model}").into(), size).is_some() && fill {
                            t.finish_disk(&m, size + size / 2);
                        }
                    }
                    2 => { t.drop_ram(&m); }
                    _ => { t.drop_disk(&m); }
                }
                let usage = t.usage();
                prop_assert!(usage[0].used <= budgets.ram, "RAM {} > {}", usage[0].used, budgets.ram);
                prop_assert!(usage[1].used <= budgets.disk, "disk {} > {}", usage[1].used, budgets.disk);
            }
        }
    }
}
