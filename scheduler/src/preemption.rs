//! Which models give up the device so another can wake: a pure function of
//! the device's state, tested over random states.
//!
//! Rules, in order:
//! 1. Never a model with requests in flight, one marked never-preempt, or one
//!    already on its way in or out.
//! 2. A model in use — more than one request since it woke — and resident
//!    for less than the minimum residency is kept, so two hot models do not
//!    thrash, unless the waking request has waited past the forcing
//!    deadline. A model woken for one request and idle since protects
//!    nothing by staying: it goes like any other.
//! 3. Fairness: each project active on the device is entitled to an equal
//!    share. A project that would be over its share after the wake may only
//!    take room from its own models or from projects over their share.
//! 4. Among the allowed, models of over-share projects go first, then least
//!    recently used first.

use std::collections::HashMap;
use std::time::Duration;

use greenthread_core::{ModelName, ProjectName};

/// A model holding device memory, as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resident {
    pub model: ModelName,
    pub project: ProjectName,
    pub bytes: u64,
    pub in_flight: u32,
    /// Since its last request ended (or began).
    pub idle_for: Duration,
    /// Since it finished waking.
    pub resident_for: Duration,
    /// Requests it has served since it woke.
    pub uses: u32,
    pub never_preempt: bool,
    /// Serving and settled: not waking, not already draining.
    pub settled: bool,
}

/// A model asking to wake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WakeRequest {
    pub model: ModelName,
    pub project: ProjectName,
    pub bytes: u64,
    /// How long its oldest request has waited.
    pub waited: Duration,
}

/// The device as the policy sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceView {
    pub budget: u64,
    /// Every model holding device bytes, including ones waking or draining.
    pub resident: Vec<Resident>,
}

impl DeviceView {
    pub fn used(&self) -> u64 {
        self.resident.iter().map(|r| r.bytes).sum()
    }
}

/// Tuning of the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreemptionRules {
    /// A model keeps the device at least this long after waking.
    pub min_residency: Duration,
    /// A request that has waited this long may preempt models inside their minimum residency.
    pub force_after: Duration,
}

impl Default for PreemptionRules {
    /// Ten seconds of residency and five of waiting, as llama-swap-style
    /// schedulers default to: long enough to stop thrashing, short enough
    /// that no request waits on it for long.
    fn default() -> Self {
        Self { min_residency: Duration::from_secs(10), force_after: Duration::from_secs(5) }
    }
}

/// What to do about a wake request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Wake now, after these models sleep (none: it fits already).
    Admit { victims: Vec<ModelName> },
    /// Not now: retry when a request ends, a model sleeps, or time passes.
    Wait,
    /// It can never fit: the model alone is larger than the device budget.
    TooLarge { needed: u64, budget: u64 },
}

/// Whether `r` is inside its minimum residency and in use.
pub fn protected_by_residency(r: &Resident, rules: &PreemptionRules) -> bool {
    r.resident_for < rules.min_residency && r.uses > 1
}

/// Decides how `request` gets device room.
pub fn decide(view: &DeviceView, request: &WakeRequest, rules: &PreemptionRules) -> Decision {
    if request.bytes > view.budget {
        return Decision::TooLarge { needed: request.bytes, budget: view.budget };
    }
    let used = view.used();
    let free = view.budget.saturating_sub(used);
    if free >= request.bytes {
        return Decision::Admit { victims: Vec::new() };
    }
    let need = request.bytes - free;

    let mut usage: HashMap<&ProjectName, u64> = HashMap::new();
    for r in &view.resident {
        *usage.entry(&r.project).or_default() += r.bytes;
    }
    usage.entry(&request.project).or_default();
    let share = view.budget / usage.len() as u64;
    let over_share = |project: &ProjectName| usage.get(project).copied().unwrap_or(0) > share;
    let requester_would_exceed = usage[&request.project] + request.bytes > share;
    let forced = request.waited >= rules.force_after;

    let mut candidates: Vec<&Resident> = view
        .resident
        .iter()
        .filter(|r| r.settled && r.in_flight == 0 && !r.never_preempt)
        .filter(|r| forced || !protected_by_residency(r, rules))
        .filter(|r| !requester_would_exceed || r.project == request.project || over_share(&r.project))
        .collect();
    // Over-share projects first, then least recently used first.
    candidates.sort_by(|a, b| over_share(&b.project).cmp(&over_share(&a.project)).then(b.idle_for.cmp(&a.idle_for)));
    let mut freed = 0;
    let mut victims = Vec::new();
    for c in candidates {
        if freed >= need {
            break;
        }
        freed += c.bytes;
        victims.push(c.model.clone());
    }
    if freed >= need { Decision::Admit { victims } } else { Decision::Wait }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A model or project name for a test.
    fn name<N: std::str::FromStr<Err = greenthread_core::NameError>>(raw: &str) -> N {
        raw.parse().unwrap_or_else(|e| panic!("{e}"))
    }

    fn resident(model: &str, project: &str, bytes: u64, idle_s: u64) -> Resident {
        Resident {
            model: name(model),
            project: name(project),
            bytes,
            in_flight: 0,
            idle_for: Duration::from_secs(idle_s),
            resident_for: Duration::from_secs(60),
            uses: 5,
            never_preempt: false,
            settled: true,
        }
    }

    fn request(bytes: u64, project: &str, waited_s: u64) -> WakeRequest {
        WakeRequest { model: name("new"), project: name(project), bytes, waited: Duration::from_secs(waited_s) }
    }

    const RULES: PreemptionRules =
        PreemptionRules { min_residency: Duration::from_secs(10), force_after: Duration::from_secs(5) };

    #[test]
    fn a_model_that_fits_wakes_without_victims() {
        let view = DeviceView { budget: 100, resident: vec![resident("a", "p", 40, 1)] };
        assert_eq!(decide(&view, &request(60, "p", 0), &RULES), Decision::Admit { victims: vec![] });
    }

    #[test]
    fn the_least_recently_used_model_goes_first() {
        let view =
            DeviceView { budget: 100, resident: vec![resident("fresh", "p", 50, 1), resident("stale", "p", 50, 100)] };
        assert_eq!(decide(&view, &request(50, "p", 0), &RULES), Decision::Admit { victims: vec![name("stale")] });
    }

    #[test]
    fn busy_and_protected_models_are_never_victims() {
        let mut busy = resident("busy", "p", 50, 100);
        busy.in_flight = 1;
        let mut pinned = resident("pinned", "p", 50, 100);
        pinned.never_preempt = true;
        let view = DeviceView { budget: 100, resident: vec![busy, pinned] };
        assert_eq!(decide(&view, &request(50, "p", 60), &RULES), Decision::Wait);
    }

    #[test]
    fn a_young_model_used_once_is_not_protected_by_minimum_residency() {
        let mut young = resident("young", "p", 100, 0);
        young.resident_for = Duration::from_secs(2);
        young.uses = 1;
        let view = DeviceView { budget: 100, resident: vec![young] };
        assert_eq!(decide(&view, &request(100, "p", 0), &RULES), Decision::Admit { victims: vec![name("young")] });
    }

    #[test]
    fn minimum_residency_holds_until_the_request_has_waited_long_enough() {
        let mut young = resident("young", "p", 100, 0);
        young.resident_for = Duration::from_secs(2);
        let view = DeviceView { budget: 100, resident: vec![young] };
        assert_eq!(decide(&view, &request(100, "p", 1), &RULES), Decision::Wait);
        assert_eq!(decide(&view, &request(100, "p", 5), &RULES), Decision::Admit { victims: vec![name("young")] });
    }

    #[test]
    fn a_project_over_its_share_cannot_take_room_from_one_under_it() {
        // Two projects: share 50 each. "big" already holds 60; "small" 40.
        let view =
            DeviceView { budget: 100, resident: vec![resident("b1", "big", 60, 1), resident("s1", "small", 40, 1000)] };
        // big asks for 40 more: it would exceed its share, so small's stale model is off limits.
        assert_eq!(decide(&view, &request(40, "big", 0), &RULES), Decision::Admit { victims: vec![name("b1")] });
        // small asks: small is under its share, and big's model goes first (over share).
        assert_eq!(decide(&view, &request(50, "small", 0), &RULES), Decision::Admit { victims: vec![name("b1")] });
    }

    #[test]
    fn a_model_larger_than_the_device_is_refused_outright() {
        let view = DeviceView { budget: 100, resident: vec![] };
        assert_eq!(decide(&view, &request(101, "p", 0), &RULES), Decision::TooLarge { needed: 101, budget: 100 });
    }

    fn arb_resident() -> impl Strategy<Value = Resident> {
        (0u32..6, 0u32..3, 1u64..60, 0u32..3, 0u64..100, 0u64..30, any::<bool>(), prop::bool::weighted(0.85)).prop_map(
            |(m, p, bytes, in_flight, idle, res, never, settled)| Resident {
                model: name(&format!("m{m}")),
                project: name(&format!("p{p}")),
                bytes,
                in_flight: if in_flight == 2 { 1 } else { 0 },
                idle_for: Duration::from_secs(idle),
                resident_for: Duration::from_secs(res),
                uses: res as u32 % 3,
                never_preempt: never && m % 3 == 0,
                settled,
            },
        )
    }

    proptest! {
        #[test]
        fn decisions_keep_every_rule(
            resident in proptest::collection::vec(arb_resident(), 0..8),
            budget in 50u64..300,
            bytes in 1u64..120,
            project in 0u32..3,
            waited in 0u64..10,
        ) {
            let mut resident = resident;
            for (i, r) in resident.iter_mut().enumerate() {
                r.model = name(&format!("m{i}"));
            }
            let view = DeviceView { budget, resident };
            let req = WakeRequest { model: name("new"), project: name(&format!("p{project}")), bytes, waited: Duration::from_secs(waited) };
            let decision = decide(&view, &req, &RULES);
            match decision {
                Decision::TooLarge { .. } => prop_assert!(bytes > budget),
                Decision::Admit { victims } => {
                    let victims: Vec<&Resident> =
                        victims.iter().map(|v| view.resident.iter().find(|r| &r.model == v).unwrap()).collect();
                    let freed: u64 = victims.iter().map(|v| v.bytes).sum();
                    prop_assert!(budget.saturating_sub(view.used()) + freed >= bytes, "freed too little");
                    let mut usage: HashMap<&ProjectName, u64> = HashMap::new();
                    for r in &view.resident { *usage.entry(&r.project).or_default() += r.bytes; }
                    usage.entry(&req.project).or_default();
                    let share = budget / usage.len() as u64;
                    let requester_over = usage[&req.project] + bytes > share;
                    for v in victims {
                        prop_assert_eq!(v.in_flight, 0);
                        prop_assert!(!v.never_preempt && v.settled);
                        if req.waited < RULES.force_after {
                            prop_assert!(!protected_by_residency(v, &RULES));
                        }
                        if requester_over && v.project != req.project {
                            prop_assert!(usage[&v.project] > share, "took from an under-share project");
                        }
                    }
                }
                Decision::Wait => {
                    // Waiting is right only if everything the rules allow could not make room.
                    prop_assert!(bytes <= budget);
                    let mut usage: HashMap<&ProjectName, u64> = HashMap::new();
                    for r in &view.resident { *usage.entry(&r.project).or_default() += r.bytes; }
                    usage.entry(&req.project).or_default();
                    let share = budget / usage.len() as u64;
                    let requester_over = usage[&req.project] + bytes > share;
                    let allowed: u64 = view
                        .resident
                        .iter()
                        .filter(|r| r.settled && r.in_flight == 0 && !r.never_preempt)
                        .filter(|r| req.waited >= RULES.force_after || !protected_by_residency(r, &RULES))
                        .filter(|r| !requester_over || r.project == req.project || usage[&r.project] > share)
                        .map(|r| r.bytes)
                        .sum();
                    prop_assert!(budget.saturating_sub(view.used()) + allowed < bytes);
                }
            }
        }
    }
}
