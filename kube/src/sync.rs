//! Which way a Model flows between Kubernetes and the database. Both may
//! change it: `kubectl apply` (or Argo CD, Flux) edits the resource,
//! GraphQL and `greenthread apply` edit the database. The operator tells
//! them apart by what it recorded at the last sync: the resource's
//! `metadata.generation` (`status.observedGeneration`) and a digest of the
//! database's declaration (`status.syncedDigest`).

/// What the operator does with one Model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Both sides agree.
    InSync,
    /// The resource changed (or is new to the database): write it there.
    ToDatabase,
    /// The database changed (through GraphQL): write it into the resource.
    ToResource,
    /// Both changed since the last sync. The resource wins — it is the
    /// declarative source a GitOps tool would restore anyway — and the
    /// operator says so in an event and the `Synced` condition.
    ConflictResourceWins,
}

/// What the operator knows when it reconciles one Model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen<'a> {
    /// The resource's `metadata.generation` now.
    pub generation: i64,
    /// `status.observedGeneration`: the generation last written to the database.
    pub observed_generation: Option<i64>,
    /// The digest of the database's declaration now; `None`: not in the database.
    pub database: Option<&'a str>,
    /// `status.syncedDigest`: the database's digest at the last sync.
    pub synced: Option<&'a str>,
    /// The digest of the declaration the resource makes.
    pub resource: &'a str,
}

/// The rule, as a pure function.
pub fn flow(seen: Seen<'_>) -> Flow {
    let Some(database) = seen.database else { return Flow::ToDatabase };
    if database == seen.resource {
        return Flow::InSync;
    }
    let resource_changed = seen.observed_generation != Some(seen.generation);
    let database_changed = seen.synced != Some(database);
    match (resource_changed, database_changed) {
        (_, false) => Flow::ToDatabase,
        (false, true) => Flow::ToResource,
        (true, true) => Flow::ConflictResourceWins,
    }
}

/// A stable digest of a declaration (SHA-256 of its JSON form, which is
/// canonical: fields in declaration order): equal declarations, equal
/// digests, on any machine and any toolchain.
pub fn digest(decl: &greenthread_core::desired::ModelDecl) -> String {
    use sha2::{Digest, Sha256};
    let json = serde_json::to_vec(decl).unwrap_or_default();
    hex::encode(&Sha256::digest(&json)[..16])
}
