//! Deploying a model like a function: a form whose fields become a change
//! to the project's document, planned and shown as a diff before anything
//! is written, then applied with exactly that plan's etag — the same
//! `plan` and `apply` the GitOps path uses. Editing and removing go the
//! same way; a removal asks for the model's name first.

pub mod document;
pub mod plan;

use std::collections::HashMap;

use leptos::prelude::*;
use leptos::task::spawn_local;
use serde_json::Value;

use self::document::{DocChange, ENGINES, Field, KINDS, ModelForm, field_of, idempotency_key};
use self::plan::PlanView;
use crate::api::admin::{self, ProjectRow};
use crate::api::deploy::{self as remote, ArtifactRow, Plan, Refusal};
use crate::format;

/// What the deploy panel is for.
#[derive(Debug, Clone, PartialEq)]
pub enum Deploying {
    New,
    Edit { model: String, project: String },
    Remove { model: String, project: String },
}

impl Deploying {
    fn model(&self) -> Option<&str> {
        match self {
            Deploying::New => None,
            Deploying::Edit { model, .. } | Deploying::Remove { model, .. } => Some(model),
        }
    }

    fn title(&self) -> String {
        match self {
            Deploying::New => "Deploy a model".into(),
            Deploying::Edit { model, .. } => format!("Edit {model}"),
            Deploying::Remove { model, .. } => format!("Remove {model}"),
        }
    }

    fn done(&self, name: &str) -> String {
        match self {
            Deploying::New => format!("{name} is deployed."),
            Deploying::Edit { .. } => format!("{name}: changes applied."),
            Deploying::Remove { .. } => format!("{name} is removed."),
        }
    }
}

/// A plan with the document it was made from and the key that applies it once.
#[derive(Debug, Clone, PartialEq)]
struct Planned {
    desired: Value,
    plan: Plan,
    idempotency_key: String,
}

type Errors = RwSignal<HashMap<Field, String>>;

fn refuse(errors: Errors, refusal: Refusal, model: &str) {
    errors.update(|map| match refusal {
        Refusal::Failed(message) => {
            map.insert(Field::Form, message);
        }
        Refusal::Fields(list) => {
            for e in list {
                map.entry(field_of(&e, model)).or_insert(e.message);
            }
        }
    });
}

/// The deploy, edit or remove panel; `deploying` is set to `None` when it closes.
#[component]
pub fn DeployPanel(
    key: String,
    mode: Deploying,
    deploying: RwSignal<Option<Deploying>>,
    on_applied: impl Fn(String) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let key = StoredValue::new(key);
    let mode = StoredValue::new(mode);
    let form = RwSignal::new(ModelForm::new_in(""));
    let existing = StoredValue::new(None::<Value>);
    let projects = RwSignal::new(Vec::<ProjectRow>::new());
    let artifacts = RwSignal::new(Vec::<ArtifactRow>::new());
    let loaded = RwSignal::new(None::<Result<(), String>>);
    let errors: Errors = RwSignal::new(HashMap::new());
    let planned = RwSignal::new(None::<Planned>);
    let busy = RwSignal::new(false);
    let confirm = RwSignal::new(String::new());

    spawn_local(async move {
        let k = key.get_value();
        let listing = admin::projects(&k).await;
        if let Ok(list) = &listing {
            projects.try_set(list.projects.clone());
        }
        // A key that may not list files still types a path or URI.
        artifacts.try_set(remote::artifacts(&k).await.unwrap_or_default());
        let result = match mode.get_value() {
            Deploying::New => listing.map(|list| {
                let first = list.projects.first().map(|p| p.name.clone()).unwrap_or_default();
                form.try_set(ModelForm::new_in(&first));
            }),
            Deploying::Edit { model, project } | Deploying::Remove { model, project } => {
                match remote::document(&k, &project).await {
                    Ok(doc) => match document::entry(&doc, &model) {
                        Some(entry) => {
                            form.try_set(ModelForm::from_entry(entry));
                            existing.set_value(Some(entry.clone()));
                            Ok(())
                        }
                        None => Err(format!("{model} is not in project {project} any more")),
                    },
                    Err(e) => Err(e),
                }
            }
        };
        loaded.try_set(Some(result));
    });

    let plan_it = move || {
        errors.set(HashMap::new());
        let f = form.get_untracked();
        let m = mode.get_value();
        let replacing = m.model().map(str::to_owned);
        let change = match &m {
            Deploying::Remove { model, .. } => Ok(DocChange::Take(model.clone())),
            _ => f.to_entry(existing.get_value().as_ref()).map(|entry| DocChange::Put { replacing, entry }),
        };
        let change = match change {
            Ok(c) => c,
            Err((field, message)) => {
                errors.update(|map| {
                    map.insert(field, message);
                });
                return;
            }
        };
        busy.set(true);
        let (k, name) = (key.get_value(), f.name.trim().to_owned());
        let opened = existing.get_value();
        spawn_local(async move {
            let result = async {
                let doc = remote::document(&k, &f.project).await?;
                // The entry as it is now, not as it was when the form opened: a field the form
                // does not show that someone changed since is kept, not reverted.
                let change = match change {
                    DocChange::Put { replacing: Some(model), .. } => {
                        let now = document::entry(&doc, &model).cloned().or(opened);
                        let entry = f.to_entry(now.as_ref()).map_err(|(_, message)| Refusal::Failed(message))?;
                        DocChange::Put { replacing: Some(model), entry }
                    }
                    other => other,
                };
                let desired = change.applied_to(doc);
                let plan = remote::plan(&k, &desired).await?;
                Ok::<_, Refusal>(Planned { idempotency_key: idempotency_key(&plan.etag), desired, plan })
            }
            .await;
            match result {
                Ok(p) if p.plan.changes.is_empty() => {
                    refuse(errors, Refusal::Failed("Nothing to change: the model is already so.".into()), &name);
                }
                Ok(p) => {
                    planned.try_set(Some(p));
                }
                Err(refusal) => refuse(errors, refusal, &name),
            }
            busy.try_set(false);
        });
    };

    let apply_it = move |_| {
        let Some(p) = planned.get_untracked() else { return };
        errors.set(HashMap::new());
        busy.set(true);
        let (k, name) = (key.get_value(), form.get_untracked().name.trim().to_owned());
        spawn_local(async move {
            match remote::apply(&k, &p.desired, &p.plan.etag, &p.idempotency_key).await {
                Ok(()) => {
                    deploying.try_set(None);
                    on_applied(mode.get_value().done(&name));
                }
                Err(refusal @ Refusal::Fields(_)) => {
                    // Back to the form with the refusal beside its field.
                    planned.try_set(None);
                    refuse(errors, refusal, &name);
                }
                // The plan stays: Apply again sends the same idempotency key, and a
                // state that moved since the plan is planned again from the form.
                Err(refusal) => refuse(errors, refusal, &name),
            }
            busy.try_set(false);
        });
    };

    let on_submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        plan_it();
    };
    let title = mode.get_value().title();
    let removing = matches!(mode.get_value(), Deploying::Remove { .. });
    view! {
        <section class="deploy" aria-label=title.clone()>
            <div class="title-row">
                <h2>{title.clone()}</h2>
                <button type="button" class="small secondary" on:click=move |_| deploying.set(None)>"Close"</button>
            </div>
            {move || match loaded.get() {
                None => view! { <p class="muted loading" aria-busy="true">"Loading…"</p> }.into_any(),
                Some(Err(e)) => view! { <p class="error" role="alert">{e}</p> }.into_any(),
                Some(Ok(())) => match planned.get() {
                    Some(p) => view! { <PlanStep p planned errors busy apply_it /> }.into_any(),
                    None if removing => view! { <RemoveStep form confirm errors busy on_submit /> }.into_any(),
                    None => view! {
                        <ModelFields mode=mode.get_value() form projects artifacts errors busy on_submit />
                    }.into_any(),
                },
            }}
        </section>
    }
}

/// The plan as a diff, and the buttons that apply it or go back to the form.
#[component]
fn PlanStep(
    p: Planned,
    planned: RwSignal<Option<Planned>>,
    errors: Errors,
    busy: RwSignal<bool>,
    apply_it: impl Fn(leptos::ev::MouseEvent) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let apply_button = NodeRef::<leptos::html::Button>::new();
    // The keyboard goes on from the plan to its Apply.
    Effect::new(move |_| {
        if let Some(button) = apply_button.get() {
            let _ = button.focus();
        }
    });
    view! {
        <PlanView plan=p.plan />
        <p class="error" role="alert">{move || errors.with(|e| e.get(&Field::Form).cloned())}</p>
        <div class="row">
            <button type="button" node_ref=apply_button disabled=move || busy.get() on:click=apply_it>
                {move || if busy.get() { "Applying…" } else { "Apply" }}
            </button>
            <button type="button" class="secondary" on:click=move |_| planned.set(None)>"Back to the form"</button>
        </div>
    }
}

/// What a removal asks: the model's name, typed.
#[component]
fn RemoveStep(
    form: RwSignal<ModelForm>,
    confirm: RwSignal<String>,
    errors: Errors,
    busy: RwSignal<bool>,
    on_submit: impl Fn(leptos::ev::SubmitEvent) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let name = move || form.with(|f| f.name.clone());
    view! {
        <form class="remove" on:submit=on_submit>
            <p>"The model's entry goes from its project; its requests are refused once it is applied."</p>
            <label for="deploy-confirm">{move || format!("Type {} to confirm", name())}</label>
            <input id="deploy-confirm" autocomplete="off" prop:value=move || confirm.get() on:input=move |ev| confirm.set(event_target_value(&ev)) />
            <p class="error" role="alert">{move || errors.with(|e| e.get(&Field::Form).cloned())}</p>
            <button type="submit" disabled=move || busy.get() || confirm.get() != name()>"Plan removal"</button>
        </form>
    }
}

/// The message beside a field, tied to it for screen readers.
fn field_error(errors: Errors, field: Field) -> impl IntoView {
    view! {
        <span class="field-error" id=format!("deploy-{}-error", field.key()) data-error-for=field.key() aria-live="polite">
            {move || errors.with(|e| e.get(&field).cloned())}
        </span>
    }
}

fn invalid(errors: Errors, field: Field) -> impl Fn() -> &'static str + Copy {
    move || if errors.with(|e| e.contains_key(&field)) { "true" } else { "false" }
}

/// The model's fields, each with a visible label and its own error.
#[component]
fn ModelFields(
    mode: Deploying,
    form: RwSignal<ModelForm>,
    projects: RwSignal<Vec<ProjectRow>>,
    artifacts: RwSignal<Vec<ArtifactRow>>,
    errors: Errors,
    busy: RwSignal<bool>,
    on_submit: impl Fn(leptos::ev::SubmitEvent) + Copy + Send + Sync + 'static,
) -> impl IntoView {
    let editing = mode != Deploying::New;
    let first = NodeRef::<leptos::html::Input>::new();
    let artifact_field = NodeRef::<leptos::html::Input>::new();
    Effect::new(move |_| {
        let target = if editing { artifact_field.get() } else { first.get() };
        if let Some(input) = target {
            let _ = input.focus();
        }
    });
    let text = move |get: fn(&ModelForm) -> &String| move || form.with(|f| get(f).clone());
    let services = move || {
        let project = form.with(|f| f.project.clone());
        projects
            .with(|ps| {
                ps.iter()
                    .find(|p| p.name == project)
                    .map(|p| p.services.iter().map(|s| s.name.clone()).collect::<Vec<_>>())
            })
            .unwrap_or_else(|| vec!["default".into()])
    };
    let described = |field: Field| format!("deploy-{}-error", field.key());
    view! {
        <form class="deploy-form" aria-label=mode.title() novalidate=true on:submit=on_submit>
            <div class="fields">
                <div class="field">
                <label for="deploy-project">"Project"</label>
                <select id="deploy-project" name="project" disabled=editing prop:value=text(|f| &f.project)
                        on:change=move |ev| form.update(|f| { f.project = event_target_value(&ev); f.service = "default".into(); })>
                        {move || projects.get().into_iter().map(|p| view! { <option value=p.name.clone()>{p.name.clone()}</option> }).collect_view()}
                    </select>
                </div>
                <div class="field">
                <label for="deploy-service">"Service"</label>
                <select id="deploy-service" name="service" prop:value=text(|f| &f.service) aria-invalid=invalid(errors, Field::Service)
                        on:change=move |ev| form.update(|f| f.service = event_target_value(&ev))>
                        {move || services().into_iter().map(|s| view! { <option value=s.clone()>{s.clone()}</option> }).collect_view()}
                    </select>
                {field_error(errors, Field::Service)}
                </div>
                <div class="field">
                <label for="deploy-name">"Name"</label>
                <input id="deploy-name" name="name" node_ref=first readonly=editing autocomplete="off" prop:value=text(|f| &f.name)
                        aria-invalid=invalid(errors, Field::Name) aria-describedby=described(Field::Name)
                        on:input=move |ev| form.update(|f| f.name = event_target_value(&ev)) />
                {field_error(errors, Field::Name)}
                </div>
            </div>
            <div class="fields">
                <div class="field">
                <label for="deploy-artifactFile">"Artifact file"</label>
                <select id="deploy-artifactFile" name="artifactFile" prop:value=text(|f| &f.artifact)
                        on:change=move |ev| form.update(|f| f.artifact = event_target_value(&ev))>
                        <option value="">"Choose a file the server offers…"</option>
                        {move || artifacts.get().into_iter().map(|a| {
                            let label = format!("{} ({}, {})", a.path, a.format, format::bytes(a.bytes));
                            view! { <option value=a.path.clone()>{label}</option> }
                        }).collect_view()}
                    </select>
                </div>
                <div class="field wide">
                <label for="deploy-artifact">"Artifact"</label>
                <input id="deploy-artifact" name="artifact" node_ref=artifact_field placeholder="/models/qwen.gguf or s3://bucket/model.gguf"
                        autocomplete="off" prop:value=text(|f| &f.artifact)
                        aria-invalid=invalid(errors, Field::Artifact) aria-describedby=described(Field::Artifact)
                        on:input=move |ev| form.update(|f| f.artifact = event_target_value(&ev)) />
                {field_error(errors, Field::Artifact)}
                </div>
            </div>
            <div class="fields">
                <div class="field">
                <label for="deploy-kind">"Kind"</label>
                <select id="deploy-kind" name="kind" prop:value=text(|f| &f.kind) on:change=move |ev| form.update(|f| f.kind = event_target_value(&ev))>
                        {KINDS.into_iter().map(|k| view! { <option value=k>{if k.is_empty() { "from the artifact" } else { k }}</option> }).collect_view()}
                    </select>
                {field_error(errors, Field::Kind)}
                </div>
                <div class="field">
                <label for="deploy-engine">"Engine"</label>
                <select id="deploy-engine" name="engine" prop:value=text(|f| &f.engine) aria-invalid=invalid(errors, Field::Engine)
                        on:change=move |ev| form.update(|f| f.engine = event_target_value(&ev))>
                        {ENGINES.into_iter().map(|e| view! { <option value=e>{e}</option> }).collect_view()}
                        {move || (form.with(|f| f.engine == "command")).then(|| view! { <option value="command">"command"</option> })}
                    </select>
                {field_error(errors, Field::Engine)}
                </div>
                <Show when=move || form.with(|f| f.engine != "builtin" && f.engine != "command")>
                    <div class="field">
                    <label for="deploy-engineBinary">"Engine binary"</label>
                    <input id="deploy-engineBinary" name="engineBinary" placeholder="/usr/local/bin/llama-server" prop:value=text(|f| &f.engine_binary)
                            on:input=move |ev| form.update(|f| f.engine_binary = event_target_value(&ev)) />
                    </div>
                </Show>
                <div class="field">
                <label for="deploy-aliases">"Aliases"</label>
                <input id="deploy-aliases" name="aliases" placeholder="comma, separated" prop:value=text(|f| &f.aliases)
                        aria-invalid=invalid(errors, Field::Aliases) aria-describedby=described(Field::Aliases)
                        on:input=move |ev| form.update(|f| f.aliases = event_target_value(&ev)) />
                {field_error(errors, Field::Aliases)}
                </div>
            </div>
            <div class="fields">
                <div class="field">
                <label for="deploy-warmTier">"Warm tier"</label>
                <select id="deploy-warmTier" name="warmTier" prop:value=text(|f| &f.warm_tier) on:change=move |ev| form.update(|f| f.warm_tier = event_target_value(&ev))>
                        <option value="ram">"ram"</option><option value="disk">"disk"</option><option value="object">"object"</option>
                    </select>
                {field_error(errors, Field::WarmTier)}
                </div>
                <div class="field">
                <label for="deploy-idleTimeout">"Idle timeout"</label>
                <input id="deploy-idleTimeout" name="idleTimeout" placeholder="5m" prop:value=text(|f| &f.idle_timeout)
                        aria-invalid=invalid(errors, Field::IdleTimeout) aria-describedby=described(Field::IdleTimeout)
                        on:input=move |ev| form.update(|f| f.idle_timeout = event_target_value(&ev)) />
                {field_error(errors, Field::IdleTimeout)}
                </div>
                <div class="field">
                <label for="deploy-minReplicas">"Min replicas"</label>
                <input id="deploy-minReplicas" name="minReplicas" type="number" min="0" max="1" prop:value=text(|f| &f.min_replicas)
                        aria-invalid=invalid(errors, Field::MinReplicas) aria-describedby=described(Field::MinReplicas)
                        on:input=move |ev| form.update(|f| f.min_replicas = event_target_value(&ev)) />
                {field_error(errors, Field::MinReplicas)}
                </div>
                <div class="field">
                <label for="deploy-maxReplicas">"Max replicas"</label>
                <input id="deploy-maxReplicas" name="maxReplicas" type="number" min="1" prop:value=text(|f| &f.max_replicas)
                        aria-invalid=invalid(errors, Field::MaxReplicas) aria-describedby=described(Field::MaxReplicas)
                        on:input=move |ev| form.update(|f| f.max_replicas = event_target_value(&ev)) />
                {field_error(errors, Field::MaxReplicas)}
                </div>
                <label class="check">
                    <input name="neverPreempt" type="checkbox" prop:checked=move || form.with(|f| f.never_preempt)
                        on:change=move |ev| form.update(|f| f.never_preempt = event_target_checked(&ev)) />
                    "Never preempt"
                </label>
            </div>
            <p class="error" role="alert">{move || errors.with(|e| e.get(&Field::Form).cloned())}</p>
            <button type="submit" disabled=move || busy.get()>{move || if busy.get() { "Planning…" } else { "Plan" }}</button>
        </form>
    }
}
