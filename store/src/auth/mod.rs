//! API keys: JWTs signed by the server, stored only as a hash, checked
//! against their database row on every request so that a revocation takes
//! effect at once.
//!
//! A key belongs to one project and carries scopes: `inference` (call the
//! project's models), `read` (GraphQL reads), `manage` (GraphQL writes; reads
//! too) and `admin` (read and manage every project, see nodes).

mod principal;
mod scope;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use base64::Engine;
use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

pub use self::principal::Principal;
pub use self::scope::{Scope, ScopeError, parse_scopes};

use crate::entities::api_key;
use crate::{Actor, DEFAULT_PROJECT, Store, StoreError, keys, state};

/// Every key's secret starts with this, so scanners and people recognise it.
pub const KEY_PREFIX: &str = "gt_";

/// Environment variable that supplies the bootstrap admin credential instead
/// of a generated one.
pub const ADMIN_TOKEN_ENV: &str = "GREENTHREAD_ADMIN_TOKEN";

/// A key's `last_used_at` is written at most this often.
const TOUCH_EVERY: Duration = Duration::from_secs(60);

/// Why a request's credential was refused. The message is safe to show.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no API key given: send `Authorization: Bearer <key>`")]
    Missing,
    #[error("the API key is not valid")]
    Invalid,
    #[error("the API key has been revoked")]
    Revoked,
    #[error("the API key has expired")]
    Expired,
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    /// The key's id: the row that must still be live.
    jti: String,
    /// The project it belongs to.
    prj: String,
    /// Space-separated scopes.
    scp: String,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
}

/// What a new key is.
pub struct KeyRequest {
    pub project_id: Uuid,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub expires_at: Option<DateTime<Utc>>,
    pub limits: crate::ratelimit::KeyLimits,
}

/// A newly created key: the secret is shown once, here.
pub struct CreatedKey {
    pub row: api_key::Model,
    pub secret: String,
}

/// How long a verified key is trusted without reading its row again, so the
/// gateway's hot path does not touch the database on every request. A key
/// revoked or deleted through this server is forgotten at once; servers
/// sharing the database notice within this bound.
pub const VERIFIED_FOR: Duration = Duration::from_secs(1);
/// Verified keys remembered at most; past it the memory starts over.
const MAX_VERIFIED: usize = 10_000;

/// A key whose signature and row were checked at `checked_at`.
#[derive(Debug, Clone)]
struct Verified {
    principal: Principal,
    expires_at: Option<DateTime<Utc>>,
    checked_at: DateTime<Utc>,
}

/// Issues and checks keys.
pub struct KeyService {
    store: Store,
    encoding: EncodingKey,
    decoding: DecodingKey,
    touched: Mutex<HashMap<Uuid, Instant>>,
    /// Recently verified keys, by secret hash.
    verified: Mutex<HashMap<String, Verified>>,
}

/// The hex SHA-256 under which a secret is stored.
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn hint(secret: &str) -> String {
    let tail: String = secret.chars().rev().take(6).collect::<Vec<_>>().into_iter().rev().collect();
    format!("{}…{tail}", &secret[..secret.len().min(3)])
}

impl KeyService {
    /// Uses the signing key in the database, creating it on first start
    /// (every server of one database signs with the same key).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn new(store: Store) -> Result<Self, StoreError> {
        let secret = store
            .setting_or_insert("jwt-signing-key", || {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                base64::engine::general_purpose::STANDARD.encode(bytes)
            })
            .await?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret)
            .map_err(|e| StoreError::Corrupt(format!("jwt-signing-key: {e}")))?;
        Ok(Self {
            store,
            encoding: EncodingKey::from_secret(&secret),
            decoding: DecodingKey::from_secret(&secret),
            touched: Mutex::new(HashMap::new()),
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// Stops trusting every remembered verification of `key` (revoked or deleted here).
    pub fn forget(&self, key: Uuid) {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, v| v.principal.key_id != key);
    }

    /// Stops trusting every remembered verification of keys of `project`.
    pub fn forget_project(&self, project: Uuid) {
        self.verified.lock().unwrap_or_else(PoisonError::into_inner).retain(|_, v| v.principal.project_id != project);
    }

    /// A verification of `hash` recent enough to trust, if any.
    fn recently_verified(&self, hash: &str, now: DateTime<Utc>) -> Option<Verified> {
        let verified = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        let v = verified.get(hash)?;
        let age = now.signed_duration_since(v.checked_at);
        (age >= chrono::Duration::zero() && age < chrono::Duration::from_std(VERIFIED_FOR).ok()?).then(|| v.clone())
    }

    fn remember(&self, hash: String, verified: Verified) {
        let mut all = self.verified.lock().unwrap_or_else(PoisonError::into_inner);
        if all.len() >= MAX_VERIFIED {
            all.clear();
        }
        all.insert(hash, verified);
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn mint(&self, id: Uuid, project_id: Uuid, scopes: &[Scope], expires_at: Option<DateTime<Utc>>) -> String {
        let claims = Claims {
            jti: id.to_string(),
            prj: project_id.to_string(),
            scp: scope::join(scopes),
            iat: self.store.now().timestamp(),
            exp: expires_at.map(|t| t.timestamp()),
        };
        let jwt = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_else(|e| unreachable!("HS256 signing of plain claims cannot fail: {e}"));
        format!("{KEY_PREFIX}{jwt}")
    }

    /// Creates a key in `tx` (the caller commits), with its audit event.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn create(
        &self,
        tx: &impl sea_orm::ConnectionTrait,
        key: KeyRequest,
        actor: &Actor,
    ) -> Result<CreatedKey, StoreError> {
        let KeyRequest { project_id, name, scopes, expires_at, limits } = key;
        let scopes = scopes.as_slice();
        let id = Uuid::now_v7();
        let secret = self.mint(id, project_id, scopes, expires_at);
        let new = keys::NewKey {
            id,
            project_id,
            name,
            scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
            secret_hash: secret_hash(&secret),
            secret_hint: hint(&secret),
            expires_at,
            limits,
        };
        let row = keys::insert(tx, new, actor, self.store.now()).await?;
        Ok(CreatedKey { row, secret })
    }

    /// The principal behind `secret`: its signature (for issued keys) and its
    /// row are checked — known, not revoked, not expired — and its use recorded.
    ///
    /// # Errors
    /// [`AuthError`] saying why the secret is refused.
    pub async fn authenticate(&self, secret: &str) -> Result<Principal, AuthError> {
        let principal = self.verify(secret).await?;
        self.touch(principal.key_id, self.store.now()).await;
        Ok(principal)
    }

    /// Whether `secret` still holds, as [`Self::authenticate`] checks it,
    /// without counting a use: how an open connection re-checks its key.
    ///
    /// # Errors
    /// [`AuthError`] saying why the secret is refused now.
    pub async fn still_valid(&self, secret: &str) -> Result<(), AuthError> {
        self.verify(secret).await.map(|_| ())
    }

    async fn verify(&self, secret: &str) -> Result<Principal, AuthError> {
        let hash = secret_hash(secret);
        let now = self.store.now();
        if let Some(v) = self.recently_verified(&hash, now) {
            if v.expires_at.is_some_and(|t| t <= now) {
                return Err(AuthError::Expired);
            }
            return Ok(v.principal);
        }
        let (row, project) = keys::with_project_by_hash(self.store.db(), &hash).await?.ok_or(AuthError::Invalid)?;
        if let Some(jwt) = secret.strip_prefix(KEY_PREFIX) {
            let mut validation = Validation::new(Algorithm::HS256);
            // Expiry is checked below against the row and the store's clock.
            validation.validate_exp = false;
            validation.required_spec_claims.clear();
            let claims = jsonwebtoken::decode::<Claims>(jwt, &self.decoding, &validation)
                .map_err(|_| AuthError::Invalid)?
                .claims;
            if claims.jti != row.id.to_string() || claims.prj != row.project_id.to_string() {
                return Err(AuthError::Invalid);
            }
        }
        let now = self.store.now();
        if row.revoked_at.is_some() {
            return Err(AuthError::Revoked);
        }
        if row.expires_at.is_some_and(|t| t <= now) {
            return Err(AuthError::Expired);
        }
        let principal = Principal::from_row(&row, project)?;
        self.remember(hash, Verified { principal: principal.clone(), expires_at: row.expires_at, checked_at: now });
        Ok(principal)
    }

    async fn touch(&self, id: Uuid, now: DateTime<Utc>) {
        {
            let mut touched = self.touched.lock().unwrap_or_else(PoisonError::into_inner);
            let due = touched.get(&id).is_none_or(|t| t.elapsed() >= TOUCH_EVERY);
            if !due {
                return;
            }
            touched.insert(id, Instant::now());
        }
        if let Err(e) = keys::touch(self.store.db(), id, now).await {
            tracing::warn!(error = %e, "Cannot record a key's last use");
        }
    }

    /// Makes sure an admin credential exists: the one in
    /// [`ADMIN_TOKEN_ENV`] if set (stored hashed), else a generated key on
    /// the first start. Returns a generated secret, to be shown once.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn bootstrap_admin(&self, from_env: Option<&str>) -> Result<Option<String>, StoreError> {
        let tx = self.store.begin_write().await?;
        let project = state::project_by_name(&tx, DEFAULT_PROJECT)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {DEFAULT_PROJECT}")))?;
        let actor = Actor { key_id: None, name: "bootstrap".into(), via: "config" };
        let now = self.store.now();
        let scopes = [Scope::Admin, Scope::Manage, Scope::Read];
        let generated = match from_env {
            Some(secret) => {
                if keys::by_hash(&tx, &secret_hash(secret)).await?.is_none() {
                    let new = keys::NewKey {
                        id: Uuid::now_v7(),
                        project_id: project.id,
                        name: format!("admin from {ADMIN_TOKEN_ENV}"),
                        scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                        secret_hash: secret_hash(secret),
                        secret_hint: hint(secret),
                        expires_at: None,
                        limits: Default::default(),
                    };
                    keys::insert(&tx, new, &actor, now).await?;
                }
                None
            }
            None => {
                let any_admin = keys::list(&tx, None)
                    .await?
                    .iter()
                    .any(|k| k.revoked_at.is_none() && k.scopes.split(' ').any(|s| s == Scope::Admin.as_str()));
                if any_admin {
                    None
                } else {
                    Some(
                        self.create(
                            &tx,
                            KeyRequest {
                                project_id: project.id,
                                name: "bootstrap admin".into(),
                                scopes: scopes.to_vec(),
                                expires_at: None,
                                limits: Default::default(),
                            },
                            &actor,
                        )
                        .await?
                        .secret,
                    )
                }
            }
        };
        tx.commit().await?;
        Ok(generated)
    }
}

/// Shared handle.
pub type Keys = Arc<KeyService>;
