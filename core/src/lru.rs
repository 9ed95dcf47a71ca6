//! Which entries a byte-budgeted cache gives up to make room: least recently
//! used first, never a pinned one.

use std::time::Duration;

/// One cached item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached<K> {
    pub key: K,
    pub bytes: u64,
    /// Time since last use; larger is staler.
    pub idle_for: Duration,
    /// In use right now: may not be evicted.
    pub pinned: bool,
}

/// The entries to evict so that `incoming` more bytes fit in `budget`, or
/// `None` if even evicting every unpinned entry would not make room.
pub fn evictions<K: Clone>(entries: &[Cached<K>], budget: u64, incoming: u64) -> Option<Vec<K>> {
    let used: u64 = entries.iter().map(|e| e.bytes).sum();
    if used.saturating_add(incoming) <= budget {
        return Some(Vec::new());
    }
    let mut candidates: Vec<&Cached<K>> = entries.iter().filter(|e| !e.pinned).collect();
    candidates.sort_by_key(|c| std::cmp::Reverse(c.idle_for));
    let mut remaining = used;
    let mut out = Vec::new();
    for c in candidates {
        if remaining.saturating_add(incoming) <= budget {
            break;
        }
        remaining -= c.bytes;
        out.push(c.key.clone());
    }
    (remaining.saturating_add(incoming) <= budget).then_some(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(key: u32, bytes: u64, idle_s: u64, pinned: bool) -> Cached<u32> {
        Cached { key, bytes, idle_for: Duration::from_secs(idle_s), pinned }
    }

    #[test]
    fn evicts_the_stalest_first_and_only_as_much_as_needed() {
        let e = [entry(1, 10, 5, false), entry(2, 10, 50, false), entry(3, 10, 20, false)];
        assert_eq!(evictions(&e, 30, 10), Some(vec![2]));
        assert_eq!(evictions(&e, 30, 20), Some(vec![2, 3]));
        assert_eq!(evictions(&e, 40, 10), Some(vec![]));
    }

    #[test]
    fn pinned_entries_stay_even_if_that_makes_room_impossible() {
        let e = [entry(1, 10, 99, true), entry(2, 10, 1, false)];
        assert_eq!(evictions(&e, 15, 5), Some(vec![2]));
        assert_eq!(evictions(&e, 15, 10), None);
    }

    proptest! {
        #[test]
        fn evictions_make_room_without_touching_pinned_entries_and_lru_first(
            raw in proptest::collection::vec((1u64..100, 0u64..1000, any::<bool>()), 0..20),
            budget in 0u64..1500,
            incoming in 0u64..200,
        ) {
            let entries: Vec<_> = raw.iter().enumerate().map(|(i, &(b, idle, p))| entry(i as u32, b, idle, p)).collect();
            if let Some(out) = evictions(&entries, budget, incoming) {
                let kept: u64 = entries.iter().filter(|e| !out.contains(&e.key)).map(|e| e.bytes).sum();
                prop_assert!(kept + incoming <= budget);
                for k in &out {
                    let e = &entries[*k as usize];
                    prop_assert!(!e.pinned);
                    // Nothing staler than an evicted entry was kept (unpinned).
                    for other in entries.iter().filter(|o| !o.pinned && !out.contains(&o.key)) {
                        prop_assert!(other.idle_for <= e.idle_for);
                    }
                }
            } else {
                let pinned: u64 = entries.iter().filter(|e| e.pinned).map(|e| e.bytes).sum();
                prop_assert!(pinned + incoming > budget);
            }
        }
    }
}
