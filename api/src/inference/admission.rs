//! Overload control: how many requests each model and each key may have
//! in hand at once. A model takes as many as its replicas run plus its
//! queue (`max_concurrency` × replicas + `max_queue`, counting those that
//! wait for a wake); past that a request is refused at once as overloaded
//! (503, Anthropic's 529) rather than left to wait without end. A key with
//! `max_concurrent_requests` is refused past it with a 429, so one key's
//! flood leaves room for the others. Both are counted in this process: a
//! deployment with several gateways divides its bounds between them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use greenthread_core::{ModelName, ModelSpec};
use greenthread_protocol::error::{ApiError, ApiResult};
use greenthread_store::auth::Principal;
use uuid::Uuid;

/// How long an overloaded client is asked to wait before retrying: a
/// generation slot frees up within a second or so of tokens.
const OVERLOADED_RETRY_AFTER_S: u64 = 1;

/// Requests in hand, per model and per key.
#[derive(Debug, Default)]
pub struct Admissions {
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    models: HashMap<ModelName, u64>,
    keys: HashMap<Uuid, u32>,
}

/// One admitted request's place; given back when dropped.
#[derive(Debug)]
pub struct Ticket {
    admissions: Arc<Admissions>,
    model: ModelName,
    key: Option<Uuid>,
}

impl Admissions {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        // Counts are whole numbers changed in one statement each: a panic cannot leave one half-written.
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a place for a request to `spec`'s model by `key`.
    ///
    /// # Errors
    /// [`ApiError::TooManyInFlight`] past the key's bound (checked first:
    /// a key at its own limit is told so, not that the model is busy),
    /// [`ApiError::Overloaded`] past the model's.
    pub fn admit(self: &Arc<Self>, spec: &ModelSpec, key: Option<&Principal>) -> ApiResult<Ticket> {
        let admission = spec.scaling.admission(&spec.engine);
        let limited_key = key.and_then(|p| p.limits.max_concurrent_requests.map(|limit| (p.key_id, limit)));
        let mut counts = self.counts();
        if let Some((id, limit)) = limited_key
            && counts.keys.get(&id).copied().unwrap_or(0) >= limit
        {
            return Err(ApiError::TooManyInFlight { limit });
        }
        let in_flight = counts.models.get(&spec.name).copied().unwrap_or(0);
        if !admission.admits(in_flight) {
            return Err(ApiError::Overloaded {
                model: Some(spec.name.to_string()),
                in_flight,
                retry_after_s: OVERLOADED_RETRY_AFTER_S,
            });
        }
        *counts.models.entry(spec.name.clone()).or_default() += 1;
        if let Some((id, _)) = limited_key {
            *counts.keys.entry(id).or_default() += 1;
        }
        Ok(Ticket { admissions: self.clone(), model: spec.name.clone(), key: limited_key.map(|(id, _)| id) })
    }

    /// Requests in hand for `model` now: running and waiting.
    pub fn in_flight(&self, model: &ModelName) -> u64 {
        self.counts().models.get(model).copied().unwrap_or(0)
    }
}

impl crate::http::held::Rider for Ticket {}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.admissions.counts();
        if let Some(n) = counts.models.get_mut(&self.model) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.models.remove(&self.model);
            }
        }
        if let Some(key) = self.key
            && let Some(n) = counts.keys.get_mut(&key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.keys.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use greenthread_core::ArtifactUri;
    use proptest::prelude::*;

    use super::*;

    fn spec(concurrency: u32, queue: u32) -> ModelSpec {
        let mut s =
            ModelSpec::new(ModelName::parse("m").unwrap_or_else(|e| panic!("{e}")), ArtifactUri::File("/m".into()));
        s.scaling.max_concurrency = Some(concurrency);
        s.scaling.max_queue = Some(queue);
        s
    }

    fn key(limit: u32) -> Principal {
        Principal {
            key_id: Uuid::now_v7(),
            key_name: "k".into(),
            key_hint: "gt_…k".into(),
            project_id: Uuid::now_v7(),
            project: greenthread_core::default_project(),
            scopes: vec![greenthread_store::auth::Scope::Inference],
            limits: greenthread_store::ratelimit::KeyLimits {
                max_concurrent_requests: Some(limit),
                ..Default::default()
            },
        }
    }

    #[test]
    fn a_key_at_its_bound_is_refused_while_another_key_is_served() {
        let admissions = Arc::new(Admissions::default());
        let s = spec(8, 0);
        let (flooder, other) = (key(2), key(2));
        let held: Vec<Ticket> = (0..2).filter_map(|_| admissions.admit(&s, Some(&flooder)).ok()).collect();
        assert_eq!(held.len(), 2);
        assert!(matches!(admissions.admit(&s, Some(&flooder)), Err(ApiError::TooManyInFlight { limit: 2 })));
        assert!(admissions.admit(&s, Some(&other)).is_ok(), "another key still has room");
        drop(held);
        assert!(admissions.admit(&s, Some(&flooder)).is_ok(), "places come back");
    }

    proptest! {
        /// However requests come and go, a model never holds more than its
        /// capacity, every refusal happens only when it is full, and every
        /// place is given back.
        #[test]
        fn a_model_never_holds_more_than_its_capacity(
            concurrency in 1u32..4, queue in 0u32..4, steps in proptest::collection::vec(any::<bool>(), 1..64),
        ) {
            let admissions = Arc::new(Admissions::default());
            let s = spec(concurrency, queue);
            let capacity = u64::from(concurrency + queue);
            let mut held = Vec::new();
            for arrive in steps {
                if arrive {
                    match admissions.admit(&s, None) {
                        Ok(ticket) => held.push(ticket),
                        Err(e) => {
                            prop_assert!(matches!(e, ApiError::Overloaded { .. }), "refused as overloaded");
                            prop_assert_eq!(held.len() as u64, capacity);
                        }
                    }
                } else {
                    held.pop();
                }
                prop_assert!(held.len() as u64 <= capacity);
                prop_assert_eq!(admissions.in_flight(&s.name), held.len() as u64);
            }
            held.clear();
            prop_assert_eq!(admissions.in_flight(&s.name), 0);
        }
    }
}
