//! A Model resource and the database's declaration: conversion both ways,
//! and the rule for which way a change flows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use greenthread_kube::ModelResourceSpec;
use greenthread_kube::convert::{from_decl, to_decl};
use greenthread_kube::crd::{EngineResource, ModelKindName, WarmTierName};
use greenthread_kube::sync::{Flow, Seen, digest, flow};
use proptest::prelude::*;

fn spec(artifact: &str) -> ModelResourceSpec {
    ModelResourceSpec {
        project: None,
        service: None,
        artifact: artifact.into(),
        sha256: None,
        aliases: vec![],
        context_length: None,
        chat_template: None,
        kind: None,
        min_replicas: None,
        max_replicas: None,
        idle_timeout: None,
        warm_tier: None,
        never_preempt: false,
        max_concurrency: None,
        max_queue: None,
        engine: None,
    }
}

#[test]
fn a_minimal_resource_takes_its_project_from_the_namespace_and_the_defaults() {
    let decl = to_decl("qwen", "team-a", &spec("s3://models/qwen.gguf")).unwrap();
    assert_eq!(decl.spec.project.as_str(), "team-a");
    assert_eq!(decl.service.as_str(), "default");
    assert_eq!(decl.spec.artifact.to_string(), "s3://models/qwen.gguf");
    assert_eq!(decl.spec.scaling, greenthread_core::Scaling::default());
    let mut explicit = spec("/models/qwen.gguf");
    explicit.project = Some("shared".into());
    assert_eq!(to_decl("qwen", "team-a", &explicit).unwrap().spec.project.as_str(), "shared");
}

#[test]
fn every_bad_field_is_named_by_its_path() {
    let mut bad = spec("models/relative.gguf");
    bad.sha256 = Some("xyz".into());
    bad.aliases = vec!["ok".into(), "Not OK".into()];
    bad.idle_timeout = Some("soon".into());
    bad.service = Some("-".into());
    let errors = to_decl("Bad Name", "ns", &bad).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        ["metadata.name", "spec.service", "spec.artifact", "spec.sha256", "spec.aliases[1]", "spec.idleTimeout"]
    );
    let mut scaling = spec("/m.gguf");
    scaling.min_replicas = Some(1);
    scaling.max_replicas = Some(0);
    assert_eq!(to_decl("m", "ns", &scaling).unwrap_err()[0].field, "spec");
}

#[test]
fn an_engine_is_read_like_a_documents_and_its_bad_fields_named() {
    let mut r = spec("/models/qwen.gguf");
    r.engine = Some(EngineResource {
        kind: "llama-server".into(),
        binary: Some("/usr/bin/llama-server".into()),
        args: vec!["-c".into(), "4096".into()],
        ready_timeout: Some("5m".into()),
        device_memory: Some("8GiB".into()),
        ..EngineResource::default()
    });
    let decl = to_decl("qwen", "ns", &r).unwrap();
    assert_eq!(decl.spec.engine.kind(), "llama-server");
    assert_eq!(from_decl(&decl).engine, r.engine, "written back as it was read");
    r.engine = Some(EngineResource { kind: "vllm".into(), binary: Some("vllm".into()), ..EngineResource::default() });
    assert_eq!(to_decl("qwen", "ns", &r).unwrap_err()[0].field, "spec.engine.binary");
    r.engine = Some(EngineResource { kind: "command".into(), ..EngineResource::default() });
    let missing = to_decl("qwen", "ns", &r).unwrap_err();
    assert!(missing[0].field.starts_with("spec.engine"), "{missing:?}");
    r.engine = Some(EngineResource {
        kind: "command".into(),
        argv: vec!["/srv".into(), "{host}:{port}".into()],
        ready_timeout: Some("2h".into()),
        ..EngineResource::default()
    });
    assert_eq!(to_decl("qwen", "ns", &r).unwrap_err()[0].field, "spec.engine.readyTimeout");
}

/// Valid names (prefixed: a bare name may be one the server reserves, like `v1`).
fn name() -> impl Strategy<Value = String> {
    "[a-z0-9][a-z0-9-]{0,12}".prop_map(|n| format!("n{n}"))
}

prop_compose! {
    fn resource()(
        project in name(), service in name(), file in name(), aliases in proptest::collection::vec(name(), 0..3),
        sha in proptest::option::of("[0-9a-f]{64}"), context in proptest::option::of(256u32..32768),
        min in 0u32..2, extra in 0u32..3, idle in 1u64..7200,
        warm in prop_oneof![Just(WarmTierName::Ram), Just(WarmTierName::Disk), Just(WarmTierName::Object)],
        never in any::<bool>(), external in any::<bool>(),
        concurrency in proptest::option::of(1u32..64), queue in proptest::option::of(0u32..256),
        kind in proptest::option::of(prop_oneof![
            Just(ModelKindName::Chat), Just(ModelKindName::Embedding), Just(ModelKindName::Asr),
            Just(ModelKindName::Tts), Just(ModelKindName::Reranker),
        ]),
    ) -> ModelResourceSpec {
        ModelResourceSpec {
            project: Some(project), service: Some(service), artifact: format!("s3://bucket/{file}.gguf"),
            sha256: sha, aliases: aliases.into_iter().map(|a| format!("alias-{a}")).collect(), context_length: context,
            chat_template: None, kind, min_replicas: Some(min), max_replicas: Some(min.max(1) + extra),
            idle_timeout: Some(format!("{idle}s")), warm_tier: Some(warm), never_preempt: never,
            max_concurrency: concurrency, max_queue: queue,
            engine: external.then(|| EngineResource {
                kind: "llama-server".into(), binary: Some(format!("/opt/{file}/llama-server")),
                args: vec!["-c".into(), context.unwrap_or(2048).to_string()], ..EngineResource::default()
            }),
        }
    }
}

proptest! {
    #[test]
    fn a_declaration_survives_the_trip_through_a_resource(r in resource()) {
        let decl = to_decl("model-x", "ns", &r).unwrap();
        let back = to_decl("model-x", "elsewhere", &from_decl(&decl)).unwrap();
        prop_assert_eq!(&back, &decl);
        prop_assert_eq!(digest(&back), digest(&decl));
    }

    #[test]
    fn agreeing_sides_are_in_sync_and_a_model_missing_from_the_database_goes_there(
        generation in 1i64..100, observed in proptest::option::of(1i64..100), synced in proptest::option::of("[ab]"),
    ) {
        let base = Seen { generation, observed_generation: observed, database: Some("a"), synced: synced.as_deref(), resource: "a" };
        prop_assert_eq!(flow(base), Flow::InSync);
        prop_assert_eq!(flow(Seen { database: None, resource: "b", ..base }), Flow::ToDatabase);
    }
}

#[test]
fn a_change_flows_from_the_side_that_made_it_and_the_resource_wins_a_conflict() {
    let seen = |generation, database| Seen {
        generation,
        observed_generation: Some(3),
        database: Some(database),
        synced: Some("db-at-last-sync"),
        resource: "what-the-resource-says",
    };
    // kubectl apply: a new generation, the database as it was.
    assert_eq!(flow(seen(4, "db-at-last-sync")), Flow::ToDatabase);
    // GraphQL: the same generation, another database digest.
    assert_eq!(flow(seen(3, "changed-by-graphql")), Flow::ToResource);
    // Both.
    assert_eq!(flow(seen(4, "changed-by-graphql")), Flow::ConflictResourceWins);
    // An operator that lost its status (a restore) re-applies the resource.
    let lost = Seen { observed_generation: None, synced: None, ..seen(3, "db") };
    assert_eq!(flow(lost), Flow::ConflictResourceWins);
}
