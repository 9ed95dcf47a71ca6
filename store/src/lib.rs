//! The management plane's database: projects, services, models, API keys,
//! the audit log, stored responses and settings, on SQLite (the embedded default) or
//! PostgreSQL, through sea-orm.
//!
//! Every write runs in one transaction that first takes the store's write
//! lock (an update of one settings row): writers queue instead of
//! interleaving, on SQLite and PostgreSQL alike, so a check made inside the
//! transaction (an etag, a name being free) still holds at commit.

pub mod audit;
pub mod auth;
pub mod entities;
pub mod keys;
pub mod prefixes;
pub mod ratelimit;
pub mod responses;
pub mod state;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use greenthread_migrations::{Migrator, MigratorTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ConnectOptions, ConnectionTrait, Database, DatabaseConnection,
    DatabaseTransaction, DbBackend, EntityTrait, TransactionTrait,
};
use uuid::Uuid;

use self::entities::{project, service, setting};

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{message}")]
    Invalid { field: String, message: String },
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// The time, injectable so tests can move it.
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
}

/// The machine's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// Who made a change, as the audit log records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The API key that made it; `None` for the server itself (a config file).
    pub key_id: Option<Uuid>,
    /// A readable name: the key's name and hint, or `config`.
    pub name: String,
    /// How it arrived: `graphql`, `apply`, `config` or `kubernetes`.
    pub via: &'static str,
}

impl Actor {
    /// The server applying its own `--config`.
    pub fn config() -> Self {
        Self { key_id: None, name: "config".into(), via: "config" }
    }

    /// The Kubernetes operator writing a `Model` resource's spec.
    pub fn kubernetes(resource: &str) -> Self {
        Self { key_id: None, name: format!("kubernetes ({resource})"), via: "kubernetes" }
    }
}

/// The built-in project and service: plain `models:` configs land here, and
/// the bootstrap admin key belongs to the project. Neither is ever deleted.
pub const DEFAULT_PROJECT: &str = greenthread_core::model_spec::DEFAULT_PROJECT;
pub const DEFAULT_SERVICE: &str = greenthread_core::desired::DEFAULT_SERVICE;

const WRITE_LOCK: &str = "write-lock";

/// The database and the clock every record is stamped with.
#[derive(Clone)]
pub struct Store {
    db: DatabaseConnection,
    clock: Arc<dyn Clock>,
}

impl Store {
    /// Connects to `url` (`sqlite://…` or `postgres://…`), brings the schema
    /// up to date (safe to repeat) and makes sure the built-in rows exist.
    ///
    /// # Errors
    /// When the database cannot be reached or migrated.
    pub async fn open(url: &str, clock: Arc<dyn Clock>) -> StoreResult<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        options.sqlx_logging(false).connect_timeout(Duration::from_secs(10)).acquire_timeout(Duration::from_secs(30));
        if url.starts_with("sqlite:") {
            // One writer at a time anyway; a few readers alongside it under WAL.
            options.max_connections(4).min_connections(1);
        }
        let db = Database::connect(options).await?;
        if db.get_database_backend() == DbBackend::Sqlite {
            db.execute_unprepared("PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;")
                .await?;
        }
        Migrator::up(&db, None).await?;
        let store = Self { db, clock };
        store.ensure_builtins().await?;
        Ok(store)
    }

    /// The SQLite URL of the embedded database under `data_dir`.
    pub fn sqlite_url(data_dir: &std::path::Path) -> String {
        format!("sqlite://{}?mode=rwc", data_dir.join("greenthread.db").display())
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// A transaction holding the write lock: commit it to make its changes visible.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn begin_write(&self) -> StoreResult<DatabaseTransaction> {
        let tx = self.db.begin().await?;
        tx.execute_unprepared(&format!("UPDATE settings SET value = value WHERE name = '{WRITE_LOCK}'")).await?;
        Ok(tx)
    }

    async fn ensure_builtins(&self) -> StoreResult<()> {
        let tx = self.db.begin().await?;
        if setting::Entity::find_by_id(WRITE_LOCK.to_owned()).one(&tx).await?.is_none() {
            setting::ActiveModel { name: Set(WRITE_LOCK.into()), value: Set(String::new()) }.insert(&tx).await?;
        }
        tx.commit().await?;
        let tx = self.begin_write().await?;
        let now = self.now();
        let project_id = match state::project_by_name(&tx, DEFAULT_PROJECT).await? {
            Some(p) => p.id,
            None => {
                let p = project::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    name: Set(DEFAULT_PROJECT.into()),
                    description: Set(String::new()),
                    created_at: Set(now),
                    updated_at: Set(now),
                }
                .insert(&tx)
                .await?;
                p.id
            }
        };
        if state::service_by_name(&tx, project_id, DEFAULT_SERVICE).await?.is_none() {
            service::ActiveModel {
                id: Set(Uuid::now_v7()),
                project_id: Set(project_id),
                name: Set(DEFAULT_SERVICE.into()),
                description: Set(String::new()),
                created_at: Set(now),
                updated_at: Set(now),
            }
            .insert(&tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A setting's value.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn setting(&self, name: &str) -> StoreResult<Option<String>> {
        Ok(setting::Entity::find_by_id(name.to_owned()).one(&self.db).await?.map(|s| s.value))
    }

    /// The setting's value, or `make()`'s, stored if the setting was unset.
    /// Concurrent servers agree on one value.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn setting_or_insert(&self, name: &str, make: impl FnOnce() -> String) -> StoreResult<String> {
        if let Some(v) = self.setting(name).await? {
            return Ok(v);
        }
        let tx = self.begin_write().await?;
        let value = match setting::Entity::find_by_id(name.to_owned()).one(&tx).await? {
            Some(s) => s.value,
            None => {
                let value = make();
                setting::ActiveModel { name: Set(name.to_owned()), value: Set(value.clone()) }.insert(&tx).await?;
                value
            }
        };
        tx.commit().await?;
        Ok(value)
    }
}
