//! Crash consistency of the store: `apply` stopped at each point where it
//! waits, in turn (on PostgreSQL every statement is at least one, a round
//! trip to the server; SQLite's thread answers some statements before apply
//! waits on them, so there the points are fewer than the statements), as if
//! the process froze there and died, leaves the database as it was before the apply or as the
//! whole apply leaves it — never part of it. Checked twice at each point:
//! as a restart finds it after the process is killed (SQLite: the files as
//! they are on disk at that moment, opened afresh; PostgreSQL: the server
//! loses the connection), and in the live server after the request is dropped
//! (a client that hung up).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use greenthread_api::config::Config;
use greenthread_api::manage::{Author, Management};
use greenthread_core::desired::StateDoc;
use greenthread_store::{Actor, Store, SystemClock};
use sea_orm::{ConnectionTrait, DatabaseConnection, FromQueryResult, JsonValue, Statement};
use serde_json::json;

use crate::harness::{Db, Server};
use crate::on_both_databases;

/// Every table, in full: what "the database as it was" means.
const TABLES: &[&str] = &[
    "projects",
    "services",
    "models",
    "api_keys",
    "audit_events",
    "idempotency_keys",
    "domains",
    "rate_windows",
    "responses",
    "usage_records",
    "settings",
];

/// The database's content, in a fixed order.
#[derive(Debug, Clone, PartialEq)]
struct Content {
    rows: Vec<(String, Vec<JsonValue>)>,
    doc: StateDoc,
    audit_events: usize,
}

async fn content(db: &DatabaseConnection) -> Content {
    let backend = db.get_database_backend();
    let mut rows = Vec::new();
    for table in TABLES {
        let sql = format!("SELECT * FROM {table} ORDER BY 1");
        let found = JsonValue::find_by_statement(Statement::from_string(backend, sql)).all(db).await.unwrap();
        rows.push(((*table).to_owned(), found));
    }
    let doc = greenthread_store::state::load(db).await.unwrap().doc.sorted();
    let audit_events = rows.iter().find(|(t, _)| t == "audit_events").map_or(0, |(_, r)| r.len());
    Content { rows, doc, audit_events }
}

fn state(s: &Server, models: &[(&str, &str)], services: &[&str]) -> StateDoc {
    let tiny = s.artifacts.join("tiny.gguf");
    let models: Vec<_> = models
        .iter()
        .map(|(name, service)| {
            json!({"name": name, "project": "shop", "service": service, "artifact": tiny.to_str().unwrap(),
                   "aliases": [format!("Shop/{name}")], "idle_timeout": "2m"})
        })
        .collect();
    let services: Vec<_> = services.iter().map(|name| json!({"project": "shop", "name": name})).collect();
    let doc =
        json!({"projects": [{"name": "shop", "description": "The shop"}], "services": services, "models": models});
    Config::from_json(&doc).unwrap().state
}

/// What driving a future until its `points`-th wait gave.
enum Stop<F: Future> {
    Finished(F::Output),
    /// Frozen at that wait, not yet dropped: whatever it had sent is in flight.
    Frozen(Pin<Box<F>>),
}

async fn stop_at<F: Future>(points: usize, future: F) -> Stop<F> {
    let mut future = Box::pin(future);
    let mut waits = 0;
    let finished = std::future::poll_fn(|cx| match future.as_mut().poll(cx) {
        Poll::Ready(out) => Poll::Ready(Some(out)),
        Poll::Pending => {
            waits += 1;
            if waits == points { Poll::Ready(None) } else { Poll::Pending }
        }
    })
    .await;
    match finished {
        Some(out) => Stop::Finished(out),
        None => Stop::Frozen(future),
    }
}

/// The database as a restart finds it if the process died now.
async fn after_a_crash(db: &Db, admin: &DatabaseConnection) -> Content {
    match db {
        Db::Sqlite(dir) => {
            // What the frozen apply sent may still be running on SQLite's thread:
            // a crash happens after it, so wait until the files stop changing.
            let files = ["greenthread.db", "greenthread.db-wal"];
            let stamp =
                || files.map(|f| std::fs::metadata(dir.path().join(f)).map(|m| (m.len(), m.modified().ok())).ok());
            let mut last = stamp();
            loop {
                tokio::time::sleep(Duration::from_millis(15)).await;
                let now = stamp();
                if now == last {
                    break;
                }
                last = now;
            }
            // The files as they are on disk (the shared-memory index is rebuilt on open).
            let restarted = tempfile::tempdir().unwrap();
            for f in files {
                copy_if_present(&dir.path().join(f), &restarted.path().join(f));
            }
            let store = Store::open(&Store::sqlite_url(restarted.path()), Arc::new(SystemClock)).await.unwrap();
            content(store.db()).await
        }
        Db::Postgres { name, .. } => {
            // The server loses every connection the process had.
            let kill = format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            );
            admin.execute_unprepared(&kill).await.unwrap();
            let store = Store::open(&db.url(), Arc::new(SystemClock)).await.unwrap();
            content(store.db()).await
        }
    }
}

fn copy_if_present(from: &Path, to: &Path) {
    if from.exists() {
        std::fs::copy(from, to).unwrap();
    }
}

/// Whether `found` is all of the apply or none of it.
fn all_or_nothing(found: &Content, before: &Content, after_doc: &StateDoc, changes: usize, at: usize, how: &str) {
    let nothing = found.rows == before.rows;
    let all = found.doc == *after_doc && found.audit_events == before.audit_events + changes;
    assert!(
        nothing || all,
        "stopped at wait {at}, {how}: neither the state before nor the one after the apply \
         (state {:?}, {} audit events; before {}, after {changes} more)",
        found.doc,
        found.audit_events,
        before.audit_events
    );
}

async fn apply_is_all_or_nothing_wherever_it_stops(db: &Db) {
    let s = Server::start(db).await;
    let manage: Arc<Management> = s.state.management.clone().unwrap();
    let actor = Actor::config();
    let base = state(&s, &[("chat", "chat"), ("small", "chat"), ("old", "legacy")], &["chat", "legacy"]);
    let desired = state(&s, &[("chat", "support"), ("fresh", "support")], &["chat", "support"]);
    // A second connection that outlives the ones a crash takes.
    let admin = sea_orm::Database::connect(db.url()).await.unwrap();

    manage.apply(Author::Operator, &actor, &base, None, None).await.unwrap();
    let reference = manage.apply(Author::Operator, &actor, &desired, None, None).await.unwrap();
    let changes = reference.changes.len();
    let after_doc = content(&admin).await.doc;
    assert!(changes >= 5, "the apply under test changes little: {:?}", reference.changes);

    let mut points = 1;
    loop {
        manage.apply(Author::Operator, &actor, &base, None, None).await.unwrap();
        let before = content(&admin).await;
        match stop_at(points, manage.apply(Author::Operator, &actor, &desired, None, None)).await {
            Stop::Finished(outcome) => {
                assert_eq!(outcome.unwrap().changes.len(), changes);
                break;
            }
            Stop::Frozen(apply) => {
                let crashed = after_a_crash(db, &admin).await;
                all_or_nothing(&crashed, &before, &after_doc, changes, points, "after a crash");
                drop(apply);
                // A dropped transaction rolls back when its connection is next used.
                let live = content(s.state.management.as_ref().unwrap().store.db()).await;
                all_or_nothing(&live, &before, &after_doc, changes, points, "in the live server");
            }
        }
        points += 1;
    }
    // At least a wait per change: fewer would mean the stops never landed inside the writes.
    assert!(points > changes, "apply finished after only {points} waits");
    println!("apply ({changes} changes) stopped at each of its {} waits", points - 1);
}
on_both_databases!(apply_is_all_or_nothing_wherever_it_stops);
