//! The management plane's schema, as sea-orm migrations that run forwards
//! (`up`) and backwards (`down`) on SQLite and PostgreSQL.

mod m20261127_000001_management;
mod m20261127_000002_rate_limits;
mod m20261127_000003_domains;
mod m20261206_000004_responses;
mod m20261206_000005_serving;
mod m20261206_000006_usage_units;

pub use sea_orm_migration::MigratorTrait;
use sea_orm_migration::prelude::*;

/// Every migration, oldest first.
#[derive(Debug)]
pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261127_000001_management::Migration),
            Box::new(m20261127_000002_rate_limits::Migration),
            Box::new(m20261127_000003_domains::Migration),
            Box::new(m20261206_000004_responses::Migration),
            Box::new(m20261206_000005_serving::Migration),
            Box::new(m20261206_000006_usage_units::Migration),
        ]
    }
}
