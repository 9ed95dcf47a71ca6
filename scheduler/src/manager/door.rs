//! Leases on serving replicas without a trip through the manager task.
//!
//! Each replica has a [`Door`]: one atomic word holding whether the replica
//! takes leases directly (open) and how many leases it has out, whoever
//! granted them. A request for a model with an open door takes its lease
//! there, in the caller's own task; only a model with no open door (asleep,
//! waking, draining, changing) is asked of the manager task, which wakes it.
//!
//! The manager opens a door when its replica serves and closes it when that
//! changes. Putting a replica to sleep needs it idle, and "idle" and
//! "closed" are decided in one atomic step ([`Door::close_if_idle`]), so no
//! lease can slip in between the check and the sleep.
//!
//! A change the manager task has yet to make (a node lost, a model removed
//! or changed, an engine failed) seals the doors it concerns at once, in
//! the caller's task: a sealed door stays closed until the task has made
//! the change, so no lease is taken on the old state in between.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use greenthread_core::{ModelName, NodeId};
use tokio::time::Instant;

const OPEN: u64 = 1 << 63;
const SEALED: u64 = 1 << 62;
const COUNT: u64 = !(OPEN | SEALED);
const NEVER: u64 = 0;

/// One replica's lease count, and whether leases may be taken without the manager.
#[derive(Debug)]
pub(crate) struct Door {
    /// [`OPEN`] | [`SEALED`] | leases out.
    word: AtomicU64,
    /// Leases granted since the replica last woke.
    uses: AtomicU32,
    /// When a lease was last taken or given back: nanoseconds after
    /// `epoch`, plus one ([`NEVER`] is never).
    last_used: AtomicU64,
    /// The manager wants to hear when the replica falls idle (a model waits
    /// for device room that this replica's sleep could make).
    watched: AtomicBool,
    epoch: Instant,
}

/// What giving a lease back means to the manager.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Left {
    /// Nothing it is waiting for.
    Quietly,
    /// The replica is closed or watched and may now be idle: the manager
    /// looks again.
    Tell,
}

impl Door {
    pub(crate) fn new() -> Self {
        Self {
            word: AtomicU64::new(0),
            uses: AtomicU32::new(0),
            last_used: AtomicU64::new(NEVER),
            watched: AtomicBool::new(false),
            epoch: Instant::now(),
        }
    }

    /// Leases out now.
    pub(crate) fn leases(&self) -> u32 {
        u32::try_from(self.word.load(Ordering::Acquire) & COUNT).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_open(&self) -> bool {
        self.word.load(Ordering::Acquire) & OPEN != 0
    }

    pub(crate) fn uses(&self) -> u32 {
        self.uses.load(Ordering::Relaxed)
    }

    pub(crate) fn forget_uses(&self) {
        self.uses.store(0, Ordering::Relaxed);
    }

    pub(crate) fn last_used(&self) -> Option<Instant> {
        match self.last_used.load(Ordering::Relaxed) {
            NEVER => None,
            n => Some(self.epoch + std::time::Duration::from_nanos(n - 1)),
        }
    }

    fn touch(&self) {
        let nanos = u64::try_from(Instant::now().duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX - 1);
        self.last_used.store(nanos + 1, Ordering::Relaxed);
    }

    /// A lease, if the door is open; returns the leases out with it.
    pub(crate) fn try_enter(&self) -> Option<u32> {
        let before =
            self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w & OPEN != 0).then_some(w + 1)).ok()?;
        self.entered();
        Some(u32::try_from((before & COUNT) + 1).unwrap_or(u32::MAX))
    }

    /// A lease the manager grants, open or not (the replica serves).
    pub(crate) fn enter(&self) {
        self.word.fetch_add(1, Ordering::AcqRel);
        self.entered();
    }

    fn entered(&self) {
        self.uses.fetch_add(1, Ordering::Relaxed);
        self.touch();
    }

    /// Gives a lease back.
    pub(crate) fn leave(&self) -> Left {
        self.touch();
        let before = self.word.fetch_sub(1, Ordering::AcqRel);
        let closed = before & OPEN == 0;
        let idle = before & COUNT == 1;
        if closed || (idle && self.watched.load(Ordering::Acquire)) { Left::Tell } else { Left::Quietly }
    }

    /// Opens (unless sealed) or closes the door; leases already out stay out.
    pub(crate) fn set_open(&self, open: bool) {
        if open {
            let _ =
                self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w & SEALED == 0).then_some(w | OPEN));
        } else {
            self.word.fetch_and(!OPEN, Ordering::AcqRel);
        }
    }

    /// Closes the door until [`Self::unseal`], whoever tries to open it.
    pub(crate) fn seal(&self) {
        let _ = self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some((w | SEALED) & !OPEN));
    }

    pub(crate) fn unseal(&self) {
        self.word.fetch_and(!SEALED, Ordering::AcqRel);
    }

    /// Closes the door if no lease is out, in one step; `false` (and the
    /// door as it was) if one is.
    pub(crate) fn close_if_idle(&self) -> bool {
        self.word.fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| (w & COUNT == 0).then_some(w & SEALED)).is_ok()
    }

    pub(crate) fn watch(&self, watched: bool) {
        self.watched.store(watched, Ordering::Release);
    }
}

/// One model's replicas, each with its door.
type ModelDoors = Arc<[(NodeId, Arc<Door>)]>;

/// Every replica's door by model, as the manager last published them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Doors(Arc<RwLock<HashMap<ModelName, ModelDoors>>>);

impl Doors {
    /// A lease on the open replica of `model` with the fewest leases out,
    /// not on `avoid`: the replica's node, its door, and the leases out with it.
    pub(crate) fn enter(&self, model: &ModelName, avoid: &[NodeId]) -> Option<(NodeId, Arc<Door>, u32)> {
        let doors = self.0.read().unwrap_or_else(PoisonError::into_inner).get(model).cloned()?;
        let mut open: Vec<&(NodeId, Arc<Door>)> =
            doors.iter().filter(|(node, door)| door.is_open() && !avoid.contains(node)).collect();
        open.sort_by_key(|(_, door)| door.leases());
        // Another caller may close or fill the door between the look and the step in.
        open.into_iter().find_map(|(node, door)| door.try_enter().map(|out| (node.clone(), door.clone(), out)))
    }

    /// `model`'s doors, if they are not what was published.
    pub(crate) fn publish(&self, model: &ModelName, doors: impl Iterator<Item = (NodeId, Arc<Door>)> + Clone) {
        let same = self.0.read().unwrap_or_else(PoisonError::into_inner).get(model).is_some_and(|published| {
            published.len() == doors.clone().count()
                && published.iter().zip(doors.clone()).all(|((n, d), (node, door))| *n == node && Arc::ptr_eq(d, &door))
        });
        if !same {
            self.0.write().unwrap_or_else(PoisonError::into_inner).insert(model.clone(), doors.collect());
        }
    }

    /// Seals the published doors of the replicas `which` names (model, node).
    pub(crate) fn seal(&self, which: impl Fn(&ModelName, &NodeId) -> bool) {
        for (model, doors) in self.0.read().unwrap_or_else(PoisonError::into_inner).iter() {
            doors.iter().filter(|(node, _)| which(model, node)).for_each(|(_, door)| door.seal());
        }
    }

    /// Forgets the doors of models no longer managed.
    pub(crate) fn retain(&self, keep: impl Fn(&ModelName) -> bool) {
        let stale = self.0.read().unwrap_or_else(PoisonError::into_inner).keys().any(|model| !keep(model));
        if stale {
            self.0.write().unwrap_or_else(PoisonError::into_inner).retain(|model, _| keep(model));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_closed_door_takes_no_lease_but_the_manager_may_still_grant_one() {
        let door = Door::new();
        assert_eq!(door.try_enter(), None);
        door.enter();
        assert_eq!(door.leases(), 1);
        door.set_open(true);
        assert_eq!(door.try_enter(), Some(2));
        assert_eq!((door.leases(), door.uses()), (2, 2));
    }

    #[test]
    fn a_sealed_door_stays_closed_until_unsealed() {
        let door = Door::new();
        door.set_open(true);
        door.seal();
        assert_eq!(door.try_enter(), None);
        door.set_open(true);
        assert!(!door.is_open(), "opening does not undo a seal");
        door.enter();
        assert_eq!(door.leases(), 1);
        door.unseal();
        door.set_open(true);
        assert_eq!(door.try_enter(), Some(2));
    }

    #[test]
    fn a_door_closes_for_sleep_only_when_no_lease_is_out() {
        let door = Door::new();
        door.set_open(true);
        door.try_enter();
        assert!(!door.close_if_idle());
        assert!(door.is_open(), "a refused close leaves the door open");
        assert_eq!(door.leave(), Left::Quietly);
        assert!(door.close_if_idle());
        assert!(!door.is_open());
        assert_eq!(door.try_enter(), None);
    }

    #[test]
    fn the_manager_hears_of_a_lease_given_back_to_a_closed_or_watched_door() {
        let door = Door::new();
        door.set_open(true);
        door.try_enter();
        door.try_enter();
        door.watch(true);
        assert_eq!(door.leave(), Left::Quietly, "still busy");
        assert_eq!(door.leave(), Left::Tell, "idle, and the manager watches");
        door.watch(false);
        door.try_enter();
        door.set_open(false);
        assert_eq!(door.leave(), Left::Tell, "closed");
    }

    #[tokio::test(start_paused = true)]
    async fn a_door_remembers_when_it_was_last_used() {
        let door = Door::new();
        assert_eq!(door.last_used(), None);
        tokio::time::advance(std::time::Duration::from_secs(3)).await;
        door.enter();
        assert_eq!(door.last_used(), Some(Instant::now()));
        tokio::time::advance(std::time::Duration::from_secs(2)).await;
        door.leave();
        assert_eq!(door.last_used(), Some(Instant::now()));
    }

    #[test]
    fn a_lease_goes_to_the_open_replica_with_the_fewest_leases_out_and_never_to_an_avoided_one() {
        let doors = Doors::default();
        let model = ModelName::parse("m").unwrap();
        let node = |n: &str| NodeId::parse(n).unwrap();
        let (a, b, c) = (Arc::new(Door::new()), Arc::new(Door::new()), Arc::new(Door::new()));
        for d in [&a, &b] {
            d.set_open(true);
        }
        a.try_enter();
        let all = [(node("a"), a.clone()), (node("b"), b.clone()), (node("c"), c.clone())];
        doors.publish(&model, all.iter().cloned());
        let (chosen, _, out) = doors.enter(&model, &[]).unwrap();
        assert_eq!((chosen.as_str(), out), ("b", 1));
        let (chosen, ..) = doors.enter(&model, &[node("b")]).unwrap();
        assert_eq!(chosen.as_str(), "a");
        assert!(doors.enter(&model, &[node("a"), node("b")]).is_none(), "c is closed");
        assert!(doors.enter(&ModelName::parse("other").unwrap(), &[]).is_none());
    }

    proptest! {
        /// Whatever order leases are taken and given back in, racing a
        /// close: a door that closed for sleep had no lease out, takes none
        /// after, and its count is what was taken minus what was given back.
        #[test]
        fn a_door_closed_for_sleep_never_has_a_lease_out(steps in proptest::collection::vec(0u8..4, 0..64)) {
            let door = Door::new();
            door.set_open(true);
            let mut out = 0u32;
            let mut slept = false;
            for step in steps {
                match step {
                    0 => if door.try_enter().is_some() { out += 1 },
                    1 => if out > 0 { door.leave(); out -= 1 },
                    2 => {
                        let closed = door.close_if_idle();
                        prop_assert_eq!(closed, out == 0);
                        slept |= closed;
                    }
                    _ => if !slept { door.set_open(true) },
                }
                prop_assert_eq!(door.leases(), out);
                let taken_after_sleep = slept && door.try_enter().is_some();
                prop_assert!(!taken_after_sleep);
            }
        }
    }
}
