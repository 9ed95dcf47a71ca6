//! GreenThread's scheduler: which models hold device memory and when.
//! The policies are pure functions ([`preemption`]); the [`manager`] applies
//! them to a node, one model lifecycle at a time.

pub mod manager;
pub mod placement;
pub mod preemption;

pub use manager::{
    AcquireError, Cause, Lease, ManagedModel, ManagerConfig, ManagerStatus, ModelManager, ModelStatus, NoObserver,
    NodeHandle, NodeStatus, Observer, ReplicaStatus, SCALE_UP_IN_FLIGHT, SleepOutcome, TransitionEvent,
};
pub use placement::{NodeView, Placement, place};
pub use preemption::{Decision, DeviceView, PreemptionRules, Resident, WakeRequest, decide};
