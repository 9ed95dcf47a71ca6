//! The schema's migrations: safe to run twice, reversible.

use std::sync::Arc;

use greenthread_migrations::{Migrator, MigratorTrait};
use greenthread_store::{Store, SystemClock};
use sea_orm::{ConnectionTrait, Statement};

use crate::harness::Db;
use crate::on_both_databases;

async fn count(store: &Store, table: &str) -> i64 {
    let db = store.db();
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), format!("SELECT COUNT(*) AS n FROM {table}")))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "n").unwrap()
}

async fn migrations_run_twice_and_roll_back(db: &Db) {
    let store = Store::open(&db.url(), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(count(&store, "projects").await, 1, "the built-in project");
    assert_eq!(count(&store, "services").await, 1, "its default service");
    // A second start migrates nothing and duplicates nothing.
    let again = Store::open(&db.url(), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(count(&again, "projects").await, 1);
    assert_eq!(Migrator::get_pending_migrations(again.db()).await.unwrap().len(), 0);
    // Down removes every table; up restores them.
    Migrator::down(again.db(), None).await.unwrap();
    let gone = again
        .db()
        .query_one_raw(Statement::from_string(
            again.db().get_database_backend(),
            "SELECT COUNT(*) AS n FROM projects".to_owned(),
        ))
        .await;
    assert!(gone.is_err(), "projects survived the down migration");
    let restored = Store::open(&db.url(), Arc::new(SystemClock)).await.unwrap();
    assert_eq!(count(&restored, "projects").await, 1);
}
on_both_databases!(migrations_run_twice_and_roll_back);

async fn the_bootstrap_admin_key_is_made_once(db: &Db) {
    use greenthread_store::auth::{KeyService, Scope};
    let store = Store::open(&db.url(), Arc::new(SystemClock)).await.unwrap();
    let keys = KeyService::new(store.clone()).await.unwrap();
    let secret = keys.bootstrap_admin(None).await.unwrap().expect("a fresh database gets an admin key");
    let admin = keys.authenticate(&secret).await.unwrap();
    assert!(admin.is_admin() && admin.has(Scope::Manage));
    assert_eq!(admin.project.as_str(), "default");
    // Another start, or another server of the same database, makes no second one.
    let again = KeyService::new(store).await.unwrap();
    assert!(again.bootstrap_admin(None).await.unwrap().is_none());
    assert!(again.authenticate(&secret).await.is_ok(), "the signing key is shared through the database");
}
on_both_databases!(the_bootstrap_admin_key_is_made_once);
