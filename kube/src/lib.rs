//! Kubernetes as GreenThread's distributed engine: the `Model` custom
//! resource, its two-way sync with the database, and leader election
//! between scheduler replicas.

pub mod convert;
pub mod crd;
pub mod discovery;
pub mod leader;
pub mod reconcile;
pub mod sync;

pub use crd::{FINALIZER, GROUP, MANAGER, ModelResource, ModelResourceSpec, ModelResourceStatus, crds_yaml};
