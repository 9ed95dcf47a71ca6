//! Which node a model wakes on: a pure function of the cluster's state.
//!
//! Among the nodes that are alive and do not already hold the model on
//! their device, each is asked the preemption policy's question (can it
//! make room, and at whose expense). Of those that can:
//! 1. locality first — a node holding the model's weights in RAM, then on
//!    disk, then one that must fetch them (a wake from RAM takes
//!    milliseconds, a fetch seconds);
//! 2. then a node that needs no preemption;
//! 3. then the least loaded (fewest device bytes in use).

use greenthread_core::{ModelName, NodeId, Tier};

use crate::preemption::{Decision, DeviceView, PreemptionRules, WakeRequest, decide};

/// One node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeView {
    pub node: NodeId,
    pub alive: bool,
    pub device: DeviceView,
    /// Where this node holds the model's weights (RAM or disk), if at all.
    pub weights: Option<Tier>,
    /// The node already holds (or is waking) a replica of the model.
    pub has_replica: bool,
}

/// Where to wake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Wake on `node` after `victims` there have slept.
    On { node: NodeId, victims: Vec<ModelName> },
    /// No node can take it now.
    Wait,
    /// Larger than every live node's device.
    TooLarge { needed: u64 },
}

fn locality(weights: Option<Tier>) -> u8 {
    match weights {
        Some(Tier::Device) => 0,
        Some(Tier::Ram) => 1,
        Some(Tier::Disk) => 2,
        Some(Tier::Object) | None => 3,
    }
}

/// A node that can take the model: its preference key, the node, the victims there.
type Candidate<'a> = ((u8, bool, u64), &'a NodeView, Vec<ModelName>);

/// Chooses a node for `request`.
pub fn place(nodes: &[NodeView], request: &WakeRequest, rules: &PreemptionRules) -> Placement {
    let candidates: Vec<&NodeView> = nodes.iter().filter(|n| n.alive && !n.has_replica).collect();
    let mut best: Option<Candidate<'_>> = None;
    let mut all_too_large = !candidates.is_empty();
    for node in candidates {
        match decide(&node.device, request, rules) {
            Decision::Admit { victims } => {
                all_too_large = false;
                let key = (locality(node.weights), !victims.is_empty(), node.device.used());
                if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                    best = Some((key, node, victims));
                }
            }
            Decision::Wait => all_too_large = false,
            Decision::TooLarge { .. } => {}
        }
    }
    match best {
        Some((_, node, victims)) => Placement::On { node: node.node.clone(), victims },
        None if all_too_large => Placement::TooLarge { needed: request.bytes },
        None => Placement::Wait,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::preemption::Resident;

    const RULES: PreemptionRules = PreemptionRules { min_residency: Duration::ZERO, force_after: Duration::ZERO };

    fn resident(model: &str, bytes: u64, idle_s: u64) -> Resident {
        Resident {
            model: ModelName::parse(model).unwrap(),
            project: greenthread_core::ProjectName::parse("p").unwrap(),
            bytes,
            in_flight: 0,
            idle_for: Duration::from_secs(idle_s),
            resident_for: Duration::from_secs(60),
            uses: 1,
            never_preempt: false,
            settled: true,
        }
    }

    fn id(name: &str) -> NodeId {
        NodeId::parse(name).unwrap()
    }

    fn node(name: &str, budget: u64, residents: Vec<Resident>, weights: Option<Tier>) -> NodeView {
        NodeView {
            node: id(name),
            alive: true,
            device: DeviceView { budget, resident: residents },
            weights,
            has_replica: false,
        }
    }

    fn request(bytes: u64) -> WakeRequest {
        WakeRequest {
            model: ModelName::parse("m").unwrap(),
            project: greenthread_core::ProjectName::parse("p").unwrap(),
            bytes,
            waited: Duration::ZERO,
        }
    }

    #[test]
    fn weights_in_ram_beat_weights_on_disk_beat_none() {
        let nodes = [
            node("none", 100, vec![], None),
            node("disk", 100, vec![], Some(Tier::Disk)),
            node("ram", 100, vec![], Some(Tier::Ram)),
        ];
        assert_eq!(place(&nodes, &request(50), &RULES), Placement::On { node: id("ram"), victims: vec![] });
    }

    #[test]
    fn with_equal_locality_a_node_with_room_beats_one_that_must_preempt_then_the_least_loaded_wins() {
        let nodes = [
            node("full", 100, vec![resident("x", 100, 9)], Some(Tier::Disk)),
            node("busy", 100, vec![resident("y", 40, 9)], Some(Tier::Disk)),
            node("idle", 100, vec![resident("z", 10, 9)], Some(Tier::Disk)),
        ];
        assert_eq!(place(&nodes, &request(50), &RULES), Placement::On { node: id("idle"), victims: vec![] });
        let only_full = [nodes[0].clone()];
        assert_eq!(
            place(&only_full, &request(50), &RULES),
            Placement::On { node: id("full"), victims: vec![ModelName::parse("x").unwrap()] }
        );
    }

    #[test]
    fn dead_nodes_and_nodes_with_a_replica_are_skipped() {
        let mut dead = node("dead", 100, vec![], Some(Tier::Ram));
        dead.alive = false;
        let mut has = node("has", 100, vec![], Some(Tier::Ram));
        has.has_replica = true;
        assert_eq!(place(&[dead.clone(), has.clone()], &request(10), &RULES), Placement::Wait);
        let fresh = node("fresh", 100, vec![], None);
        assert_eq!(
            place(&[dead, has, fresh], &request(10), &RULES),
            Placement::On { node: id("fresh"), victims: vec![] }
        );
    }

    #[test]
    fn a_model_larger_than_every_device_is_too_large() {
        let nodes = [node("a", 10, vec![], None), node("b", 20, vec![], None)];
        assert_eq!(place(&nodes, &request(50), &RULES), Placement::TooLarge { needed: 50 });
        assert_eq!(place(&[], &request(50), &RULES), Placement::Wait, "no nodes yet: wait for one to join");
    }

    fn arb_node(i: usize) -> impl Strategy<Value = NodeView> {
        (
            any::<bool>(),
            prop::bool::weighted(0.2),
            50u64..200,
            proptest::collection::vec((1u64..80, 0u64..100, prop::bool::weighted(0.2)), 0..4),
            prop_oneof![Just(None), Just(Some(Tier::Ram)), Just(Some(Tier::Disk))],
        )
            .prop_map(move |(alive, has_replica, budget, rs, weights)| NodeView {
                node: id(&format!("n{i}")),
                alive,
                device: DeviceView {
                    budget,
                    resident: rs
                        .into_iter()
                        .enumerate()
                        .map(|(j, (b, idle, busy))| {
                            let mut r = resident(&format!("n{i}m{j}"), b, idle);
                            r.in_flight = u32::from(busy);
                            r
                        })
                        .collect(),
                },
                weights,
                has_replica,
            })
    }

    proptest! {
        #[test]
        fn a_placement_is_on_a_live_node_without_a_replica_that_can_make_room_and_none_is_closer(
            nodes in (1usize..5).prop_flat_map(|n| (0..n).map(arb_node).collect::<Vec<_>>()),
            bytes in 1u64..150,
        ) {
            let req = request(bytes);
            match place(&nodes, &req, &RULES) {
                Placement::On { node, victims } => {
                    let chosen = nodes.iter().find(|n| n.node == node).unwrap();
                    prop_assert!(chosen.alive && !chosen.has_replica);
                    let freed: u64 = victims.iter().map(|v| chosen.device.resident.iter().find(|r| &r.model == v).unwrap().bytes).sum();
                    prop_assert!(chosen.device.budget.saturating_sub(chosen.device.used()) + freed >= bytes);
                    for v in &victims {
                        prop_assert_eq!(chosen.device.resident.iter().find(|r| &r.model == v).unwrap().in_flight, 0);
                    }
                    // No other eligible node that could take it holds the weights closer.
                    for other in nodes.iter().filter(|n| n.alive && !n.has_replica) {
                        if matches!(decide(&other.device, &req, &RULES), Decision::Admit { .. }) {
                            prop_assert!(locality(other.weights) >= locality(chosen.weights));
                        }
                    }
                }
                Placement::TooLarge { .. } => {
                    prop_assert!(nodes.iter().filter(|n| n.alive && !n.has_replica).all(|n| n.device.budget < bytes));
                }
                Placement::Wait => {
                    for n in nodes.iter().filter(|n| n.alive && !n.has_replica) {
                        let admits = matches!(decide(&n.device, &req, &RULES), Decision::Admit { .. });
                        prop_assert!(!admits, "node {} could have taken it", n.node);
                    }
                }
            }
        }
    }
}
