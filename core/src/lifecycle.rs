//! Where a model's weights are, and the states a model moves through on a node.
//!
//! ```text
//! absent → fetching → staged(disk|ram) → waking → serving → draining → sleeping(ram|disk|object)
//!                                           ↑                              │
//!                                           └──────────────────────────────┘
//! any state → failed(reason) → fetching (retry)
//! ```
//! Every move between states goes through [`ModelState::to`], which refuses
//! the ones this diagram does not have.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Storage tiers, fastest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// GPU memory; on a CPU node, the engine's materialized tensors.
    Device,
    /// Host memory (pinned on GPU nodes).
    Ram,
    /// The node-local disk cache.
    Disk,
    /// Object storage: where artifacts come from.
    Object,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Device => "device",
            Self::Ram => "ram",
            Self::Disk => "disk",
            Self::Object => "object",
        }
    }

    /// The next slower tier, where an evicted model goes.
    pub fn below(self) -> Option<Self> {
        match self {
            Self::Device => Some(Self::Ram),
            Self::Ram => Some(Self::Disk),
            Self::Disk => Some(Self::Object),
            Self::Object => None,
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a sleeping model's weights wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WarmTier {
    #[default]
    Ram,
    Disk,
    Object,
}

impl From<WarmTier> for Tier {
    fn from(w: WarmTier) -> Self {
        match w {
            WarmTier::Ram => Tier::Ram,
            WarmTier::Disk => Tier::Disk,
            WarmTier::Object => Tier::Object,
        }
    }
}

/// A model's state on a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum ModelState {
    /// Nothing of it is on the node.
    Absent,
    /// Its artifact is being copied from object storage and verified.
    Fetching,
    /// Verified and ready to wake, never yet served.
    Staged {
        tier: Tier,
    },
    /// Weights are moving onto the device.
    Waking {
        from: Tier,
    },
    /// On the device, taking requests.
    Serving,
    /// Taking no new requests; finishing those in flight before it sleeps.
    Draining,
    /// Off the device (zero device bytes); weights wait in `tier`.
    Sleeping {
        tier: Tier,
    },
    Failed {
        reason: String,
    },
}

/// A move the lifecycle does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a model cannot go from {from} to {to}")]
pub struct IllegalTransition {
    pub from: String,
    pub to: String,
}

impl ModelState {
    /// The fastest tier its weights are in, as far as its state says: the
    /// device while it wakes, serves or drains; the tier it was staged or
    /// put to sleep in; none while absent, fetching or failed.
    pub fn weights_tier(&self) -> Option<Tier> {
        match self {
            Self::Staged { tier } | Self::Sleeping { tier } => Some(*tier),
            Self::Serving | Self::Draining | Self::Waking { .. } => Some(Tier::Device),
            Self::Absent | Self::Fetching | Self::Failed { .. } => None,
        }
    }

    /// The state's name as metrics and `/status` report it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Absent => "absent",
            Self::Fetching => "fetching",
            Self::Staged { .. } => "staged",
            Self::Waking { .. } => "waking",
            Self::Serving => "serving",
            Self::Draining => "draining",
            Self::Sleeping { .. } => "sleeping",
            Self::Failed { .. } => "failed",
        }
    }

    /// The fastest tier holding the weights, if any.
    pub fn tier(&self) -> Option<Tier> {
        match self {
            Self::Serving | Self::Draining => Some(Tier::Device),
            Self::Staged { tier } | Self::Sleeping { tier } => Some(*tier),
            Self::Waking { from } => Some(*from),
            Self::Absent | Self::Fetching | Self::Failed { .. } => None,
        }
    }

    /// Whether the model holds device memory in this state.
    pub fn on_device(&self) -> bool {
        matches!(self, Self::Waking { .. } | Self::Serving | Self::Draining)
    }

    /// Whether the model can start waking from here.
    pub fn can_wake(&self) -> bool {
        matches!(self, Self::Staged { .. } | Self::Sleeping { tier: Tier::Ram | Tier::Disk })
    }

    /// Moves to `next`.
    ///
    /// # Errors
    /// [`IllegalTransition`] when the lifecycle has no such move.
    pub fn to(&self, next: Self) -> Result<Self, IllegalTransition> {
        use ModelState as S;
        let ok = match (self, &next) {
            (_, S::Failed { .. }) => !matches!(self, S::Failed { .. }),
            (S::Absent | S::Failed { .. } | S::Sleeping { tier: Tier::Object }, S::Fetching) => true,
            (S::Fetching, S::Staged { tier: Tier::Disk | Tier::Ram }) => true,
            // Moving between warm tiers while not on the device.
            (S::Staged { tier: a }, S::Staged { tier: b }) => a != b && is_warm(*b),
            (S::Sleeping { tier: a }, S::Sleeping { tier: b }) => a != b && *b != Tier::Device,
            (S::Staged { tier }, S::Waking { from }) | (S::Sleeping { tier }, S::Waking { from }) => {
                tier == from && matches!(tier, Tier::Ram | Tier::Disk)
            }
            (S::Waking { .. }, S::Serving) => true,
            (S::Serving, S::Draining) => true,
            (S::Draining, S::Sleeping { tier }) => *tier != Tier::Device,
            // A drain can be called off when requests for the model arrive.
            (S::Draining, S::Serving) => true,
            (_, S::Absent) => !self.on_device(),
            _ => false,
        };
        if ok { Ok(next) } else { Err(IllegalTransition { from: self.to_string(), to: next.to_string() }) }
    }
}

fn is_warm(t: Tier) -> bool {
    matches!(t, Tier::Ram | Tier::Disk)
}

impl fmt::Display for ModelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Staged { tier } => write!(f, "staged({tier})"),
            Self::Waking { from } => write!(f, "waking(from {from})"),
            Self::Sleeping { tier } => write!(f, "sleeping({tier})"),
            Self::Failed { reason } => write!(f, "failed({reason})"),
            other => f.write_str(other.name()),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use ModelState as S;

    #[test]
    fn the_happy_path_from_absent_to_serving_and_back_to_sleep() {
        let mut s = S::Absent;
        for next in [
            S::Fetching,
            S::Staged { tier: Tier::Disk },
            S::Staged { tier: Tier::Ram },
            S::Waking { from: Tier::Ram },
            S::Serving,
            S::Draining,
            S::Sleeping { tier: Tier::Ram },
            S::Sleeping { tier: Tier::Disk },
            S::Waking { from: Tier::Disk },
            S::Serving,
        ] {
            s = s.to(next).unwrap();
        }
        assert_eq!(s, S::Serving);
    }

    #[test]
    fn shortcuts_are_refused() {
        assert!(S::Absent.to(S::Serving).is_err());
        assert!(S::Serving.to(S::Sleeping { tier: Tier::Ram }).is_err(), "must drain first");
        assert!(S::Sleeping { tier: Tier::Object }.to(S::Waking { from: Tier::Object }).is_err(), "must fetch first");
        assert!(S::Staged { tier: Tier::Disk }.to(S::Waking { from: Tier::Ram }).is_err(), "wakes from where it is");
        assert!(S::Serving.to(S::Absent).is_err(), "device memory must be released first");
    }

    fn any_state() -> impl Strategy<Value = ModelState> {
        let tier = prop_oneof![Just(Tier::Device), Just(Tier::Ram), Just(Tier::Disk), Just(Tier::Object)];
        prop_oneof![
            Just(S::Absent),
            Just(S::Fetching),
            tier.clone().prop_map(|tier| S::Staged { tier }),
            tier.clone().prop_map(|from| S::Waking { from }),
            Just(S::Serving),
            Just(S::Draining),
            tier.prop_map(|tier| S::Sleeping { tier }),
            Just(S::Failed { reason: "x".into() }),
        ]
    }

    proptest! {
        #[test]
        fn random_walks_never_put_a_sleeping_model_on_the_device(steps in proptest::collection::vec(any_state(), 0..60)) {
            let mut s = S::Absent;
            for next in steps {
                if let Ok(n) = s.to(next) {
                    // Serving is only ever reached from Waking or a called-off drain.
                    if n == S::Serving {
                        let from_waking_or_draining = matches!(s, S::Waking { .. } | S::Draining);
                        prop_assert!(from_waking_or_draining, "serving reached from {}", s);
                    }
                    if let S::Sleeping { tier } = n {
                        prop_assert!(tier != Tier::Device);
                    }
                    s = n;
                }
            }
        }
    }
}
