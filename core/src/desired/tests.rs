use std::path::PathBuf;

use proptest::prelude::*;

use super::*;
use crate::{ArtifactUri, default_project};

/// Any of the slug names (model, project, service), as the call site needs.
fn name<N: std::str::FromStr<Err = crate::NameError>>(s: &str) -> N {
    s.parse().unwrap_or_else(|e| panic!("{e}"))
}

fn model(project: &str, service: &str, n: &str) -> ModelDecl {
    let mut spec = ModelSpec::new(name(n), ArtifactUri::File(PathBuf::from(format!("/m/{n}.gguf"))));
    spec.project = name(project);
    ModelDecl { service: name(service), spec }
}

fn doc(projects: &[&str], services: &[(&str, &str)], models: Vec<ModelDecl>) -> StateDoc {
    StateDoc {
        projects: projects.iter().map(|p| ProjectDecl { name: name(p), description: String::new() }).collect(),
        services: services
            .iter()
            .map(|(p, s)| ServiceDecl { project: name(p), name: name(s), description: String::new() })
            .collect(),
        models,
    }
}

#[test]
fn creating_from_nothing_orders_parents_before_children() {
    let desired = doc(&["acme"], &[("acme", "web")], vec![model("acme", "web", "llama")]);
    let changes = plan(&StateDoc::default(), &desired);
    let order: Vec<String> = changes.iter().map(Change::address).collect();
    assert_eq!(order, ["project/acme", "service/acme/web", "model/llama"]);
    assert!(changes.iter().all(|c| c.action == ChangeAction::Create && !c.destructive));
}

#[test]
fn an_unchanged_state_plans_nothing() {
    let state = doc(&["acme"], &[("acme", "web")], vec![model("acme", "web", "llama")]);
    assert!(plan(&state, &state.clone().sorted()).is_empty());
}

#[test]
fn deleting_removes_models_before_their_service_and_is_destructive() {
    let current = doc(&["acme"], &[("acme", "web"), ("acme", "old")], vec![model("acme", "old", "gone")]);
    let desired = doc(&["acme"], &[("acme", "web")], vec![]);
    let changes = plan(&current, &desired);
    let order: Vec<String> = changes.iter().map(Change::address).collect();
    assert_eq!(order, ["model/gone", "service/acme/old"]);
    assert!(changes.iter().all(|c| c.action == ChangeAction::Delete && c.destructive));
}

#[test]
fn scaling_changes_are_safe_and_artifact_changes_restart() {
    let current = doc(&["acme"], &[("acme", "web")], vec![model("acme", "web", "llama")]);
    let mut desired = current.clone();
    desired.models[0].spec.scaling.min_replicas = 1;
    let changes = plan(&current, &desired);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].fields[0].field, "min_replicas");
    assert_eq!(changes[0].fields[0].before, Some(Value::from(0)));
    assert_eq!(changes[0].fields[0].after, Some(Value::from(1)));
    assert!(!changes[0].destructive);
    desired.models[0].spec.artifact = ArtifactUri::File("/m/other.gguf".into());
    let changes = plan(&current, &desired);
    assert_eq!(changes[0].fields.len(), 2);
    assert!(changes[0].destructive);
}

#[test]
fn projects_the_document_does_not_list_are_left_alone() {
    let current = doc(
        &["acme", "other"],
        &[("acme", "web"), ("other", "web")],
        vec![model("acme", "web", "a"), model("other", "web", "b")],
    );
    let desired = doc(&["acme"], &[("acme", "web")], vec![model("acme", "web", "a")]);
    assert!(plan(&current, &desired).is_empty());
}

#[test]
fn validation_names_what_is_wrong() {
    let missing_service = doc(&["acme"], &[], vec![model("acme", "web", "a")]);
    assert!(matches!(validate(&missing_service, &[]), Err(DesiredError::UnknownService { .. })));
    let missing_project = doc(&[], &[("acme", "web")], vec![]);
    assert!(matches!(validate(&missing_project, &[]), Err(DesiredError::UnknownProject { .. })));
    let twice = doc(&["acme"], &[("acme", "web")], vec![model("acme", "web", "a"), model("acme", "web", "a")]);
    assert_eq!(validate(&twice, &[]), Err(DesiredError::Duplicate { what: "model", name: "a".into() }));
}

#[test]
fn another_projects_model_name_is_taken_without_saying_whose() {
    let desired = doc(&["acme"], &[("acme", "web")], vec![model("acme", "web", "llama")]);
    let mut theirs = model("secret-corp", "web", "llama").spec;
    theirs.project = name("secret-corp");
    let err = validate(&desired, &[theirs]).unwrap_err();
    assert_eq!(err, DesiredError::Taken("llama".into()));
    assert!(!err.to_string().contains("secret-corp"));
}

#[test]
fn the_default_names_are_valid() {
    assert_eq!(default_service().as_str(), DEFAULT_SERVICE);
    assert_eq!(default_project().as_str(), "default");
}

fn arb_doc() -> impl Strategy<Value = StateDoc> {
    let services = proptest::collection::btree_set(0..4usize, 0..4);
    let models = proptest::collection::btree_map(0..6usize, (0..4usize, 0..2u32, any::<bool>()), 0..6);
    (services, models).prop_map(|(services, models)| {
        let services: Vec<String> = services.into_iter().map(|i| format!("s{i}")).collect();
        let mut d = doc(&["p"], &services.iter().map(|s| ("p", s.as_str())).collect::<Vec<_>>(), vec![]);
        if services.is_empty() {
            return d;
        }
        for (m, (s, min, preempt)) in models {
            let mut decl = model("p", &services[s % services.len()], &format!("m{m}"));
            decl.spec.scaling.min_replicas = min;
            decl.spec.scaling.never_preempt = preempt;
            d.models.push(decl);
        }
        d
    })
}

/// Carries out `changes` on `state` the way the store does, by object.
fn apply(state: &StateDoc, desired: &StateDoc, changes: &[Change]) -> StateDoc {
    let mut out = state.clone();
    for c in changes {
        match (c.kind, c.action) {
            (ObjectKind::Project, _) => {
                out.projects.retain(|p| p.name.as_str() != c.name);
                out.projects.extend(desired.projects.iter().filter(|p| p.name.as_str() == c.name).cloned());
            }
            (ObjectKind::Service, action) => {
                out.services.retain(|s| !(s.project == c.project && s.name.as_str() == c.name));
                if action != ChangeAction::Delete {
                    out.services.extend(
                        desired
                            .services
                            .iter()
                            .filter(|s| s.project == c.project && s.name.as_str() == c.name)
                            .cloned(),
                    );
                }
            }
            (ObjectKind::Model, action) => {
                out.models.retain(|m| m.spec.name.as_str() != c.name);
                if action != ChangeAction::Delete {
                    out.models.extend(desired.models.iter().filter(|m| m.spec.name.as_str() == c.name).cloned());
                }
            }
        }
    }
    out
}

proptest! {
    #[test]
    fn applying_a_plan_reaches_the_desired_state_and_then_plans_nothing(current in arb_doc(), desired in arb_doc()) {
        let changes = plan(&current, &desired);
        let reached = apply(&current, &desired, &changes);
        prop_assert_eq!(reached.clone().sorted(), desired.clone().sorted());
        prop_assert!(plan(&reached, &desired).is_empty());
        // A service is never deleted before the models it held.
        let deleted_service = changes.iter().position(|c| c.kind == ObjectKind::Service && c.action == ChangeAction::Delete);
        let last_model_delete = changes.iter().rposition(|c| c.kind == ObjectKind::Model && c.action == ChangeAction::Delete);
        if let (Some(s), Some(m)) = (deleted_service, last_model_delete) {
            prop_assert!(m < s);
        }
    }
}
