//! Leader election through a `coordination.k8s.io` Lease: several
//! scheduler replicas run, one leads (places models, talks to nodes), the
//! others wait to take over. The leader renews the Lease every `retry`; a
//! Lease not renewed for `lease_duration` may be taken by another replica.
//! Every write carries the Lease's `resourceVersion`, so two replicas
//! racing for it cannot both win: the API server refuses the second.
//!
//! A leader that cannot renew steps down by itself once `renew_deadline`
//! (shorter than `lease_duration`) has passed since its last renewal, so
//! it has stopped acting before anyone else may start.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::time::Instant;

/// What the Lease says now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holding {
    pub holder: Option<String>,
    pub renewed: Option<Timestamp>,
    pub duration: Duration,
}

/// What a replica does after reading the Lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nobody holds it, or its holder stopped renewing: take it.
    Acquire,
    /// It is ours: renew it.
    Renew,
    /// Someone else leads.
    Follow { leader: String },
}

/// The rule, as a pure function of the Lease (`None`: it does not exist yet).
pub fn decide(lease: Option<&Holding>, me: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else { return Decision::Acquire };
    match &lease.holder {
        Some(h) if h == me => Decision::Renew,
        Some(h) => {
            let expired = lease.renewed.is_none_or(|at| {
                SignedDuration::try_from(lease.duration).is_ok_and(|d| at.checked_add(d).is_ok_and(|end| end <= now))
            });
            if expired { Decision::Acquire } else { Decision::Follow { leader: h.clone() } }
        }
        None => Decision::Acquire,
    }
}

/// How long leadership lasts and how often it is renewed.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry: Duration,
}

impl Default for Timing {
    /// The values Kubernetes' own controllers use.
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry: Duration::from_secs(2),
        }
    }
}

/// One replica's candidacy for the Lease `name`.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    /// Wall time of `started`, so Lease times follow the runtime's clock (paused in tests).
    wall_start: Timestamp,
    started: Instant,
}

impl Elector {
    pub fn new(api: Api<Lease>, name: impl Into<String>, identity: impl Into<String>, timing: Timing) -> Self {
        Self {
            api,
            name: name.into(),
            identity: identity.into(),
            timing,
            wall_start: Timestamp::now(),
            started: Instant::now(),
        }
    }

    fn now(&self) -> Timestamp {
        let elapsed = SignedDuration::try_from(self.started.elapsed()).unwrap_or(SignedDuration::MAX);
        self.wall_start.checked_add(elapsed).unwrap_or(self.wall_start)
    }

    fn holding(lease: &Lease) -> Holding {
        let spec = lease.spec.clone().unwrap_or_default();
        Holding {
            holder: spec.holder_identity,
            renewed: spec.renew_time.map(|t| t.0),
            duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0).unsigned_abs().into()),
        }
    }

    fn spec(&self, transitions: i32, acquired: Option<MicroTime>) -> LeaseSpec {
        let now = MicroTime(self.now());
        LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(i32::try_from(self.timing.lease_duration.as_secs()).unwrap_or(i32::MAX)),
            acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
            renew_time: Some(now),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// One round: takes or renews the Lease if the rule allows. Whether
    /// this replica holds it afterwards.
    ///
    /// # Errors
    /// When the API server cannot be asked (a refused write is `Ok(false)`).
    pub async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let current = self.api.get_opt(&self.name).await?;
        let decision = decide(current.as_ref().map(Self::holding).as_ref(), &self.identity, self.now());
        let written = match (decision, current) {
            (Decision::Follow { .. }, _) => return Ok(false),
            (_, None) => {
                let lease = Lease {
                    metadata: ObjectMeta { name: Some(self.name.clone()), ..ObjectMeta::default() },
                    spec: Some(self.spec(0, None)),
                };
                self.api.create(&PostParams::default(), &lease).await
            }
            (decision, Some(mut lease)) => {
                let old = lease.spec.clone().unwrap_or_default();
                let transitions = old.lease_transitions.unwrap_or(0);
                lease.spec = Some(match decision {
                    Decision::Renew => self.spec(transitions, old.acquire_time),
                    _ => self.spec(transitions + 1, None),
                });
                // `lease` still carries the resourceVersion read above: a write in between makes this a 409.
                self.api.replace(&self.name, &PostParams::default(), &lease).await
            }
        };
        match written {
            Ok(lease) => Ok(lease.spec.and_then(|s| s.holder_identity).as_deref() == Some(self.identity.as_str())),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Runs for ever: `leading` says at every moment whether this replica
    /// leads. Leadership is given up when renewing fails past the renew
    /// deadline.
    pub async fn run(self, leading: watch::Sender<bool>) {
        let mut last_renewed: Option<Instant> = None;
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renewed = Some(Instant::now());
                    leading.send_if_modified(|l| !std::mem::replace(l, true));
                }
                Ok(false) => {
                    last_renewed = None;
                    leading.send_if_modified(|l| std::mem::replace(l, false));
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "Cannot reach the Lease");
                    if last_renewed.is_some_and(|t| t.elapsed() >= self.timing.renew_deadline) {
                        tracing::warn!(lease = %self.name, "Renew deadline passed; stepping down");
                        last_renewed = None;
                        leading.send_if_modified(|l| std::mem::replace(l, false));
                    }
                }
            }
            tokio::time::sleep(self.timing.retry).await;
        }
    }

    /// The identity this replica stands as.
    pub fn identity(&self) -> &str {
        &self.identity
    }
}

/// The label that tells the leader's pod from the others: the Service
/// selects `greenthread.ai/role=leader`, so requests and joining nodes reach
/// the leader alone while standby replicas stay Ready (a Deployment whose
/// pods never become Ready could not roll out).
pub const ROLE_LABEL: &str = "greenthread.ai/role";

/// Labels this replica's own pod `leader` or `standby`.
///
/// # Errors
/// When the API server refuses the patch.
pub async fn mark_role(client: &kube::Client, namespace: &str, pod: &str, leader: bool) -> Result<(), kube::Error> {
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Patch, PatchParams};
    let role = if leader { "leader" } else { "standby" };
    let patch = serde_json::json!({"metadata": {"labels": {ROLE_LABEL: role}}});
    Api::<Pod>::namespaced(client.clone(), namespace).patch(pod, &PatchParams::default(), &Patch::Merge(patch)).await?;
    Ok(())
}
