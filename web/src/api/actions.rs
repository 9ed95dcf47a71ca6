//! What the models page does to a model: wake it, put it to sleep, change its scaling.

use super::operations as op;
use super::{Scaling, call, count, refused};

/// Wakes `model`; answers once it serves.
pub async fn wake(key: &str, model: &str) -> Result<(), String> {
    let i = op::wake_model::ModelActionInput { name: model.to_owned() };
    refused!(call::<op::WakeModel>(key, op::wake_model::Variables { i }).await?.wake_model.user_errors)
}

/// Puts `model` to sleep; how many replicas were busy and stay awake for now.
pub async fn sleep(key: &str, model: &str) -> Result<u64, String> {
    let i = op::sleep_model::ModelActionInput { name: model.to_owned() };
    let payload = call::<op::SleepModel>(key, op::sleep_model::Variables { i }).await?.sleep_model;
    refused!(payload.user_errors)?;
    Ok(count(payload.busy_replicas))
}

/// Sets `model`'s scaling.
pub async fn set_scaling(key: &str, model: &str, scaling: &Scaling) -> Result<(), String> {
    let scaling = op::update_model::ScalingInput {
        min_replicas: Some(i64::from(scaling.min_replicas)),
        max_replicas: Some(i64::from(scaling.max_replicas)),
        idle_timeout: Some(scaling.idle_timeout.clone()),
        warm_tier: Some(scaling.warm_tier.clone()),
        never_preempt: Some(scaling.never_preempt),
        // Left as they are: the console's scaling form does not edit them.
        max_concurrency: None,
        max_queue: None,
    };
    let i = op::update_model::UpdateModelInput { name: model.to_owned(), scaling: Some(scaling), ..Default::default() };
    refused!(call::<op::UpdateModel>(key, op::update_model::Variables { i }).await?.update_model.user_errors)
}
