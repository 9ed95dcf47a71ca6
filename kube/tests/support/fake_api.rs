//! A scripted Kubernetes API double for what the API server built for the
//! integration tests cannot serve (Leases, Pods, Nodes, Events): objects
//! kept in memory with `resourceVersion` checks on writes, as the real
//! server does. Each client may be cut off, to play a replica that lost
//! its connection.

// Each test binary uses the part it needs.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use kube::client::Body;
use serde_json::{Value, json};

#[derive(Default)]
pub struct FakeApi {
    /// Objects by their path (`/apis/…/namespaces/ns/leases/name`).
    objects: Mutex<BTreeMap<String, Value>>,
    version: AtomicU64,
    /// Every write, as `METHOD path`.
    pub writes: Mutex<Vec<String>>,
}

fn answer(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string().into_bytes()))
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: &str) -> Response<Body> {
    answer(
        code,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": reason, "message": message, "code": code.as_u16()}),
    )
}

impl FakeApi {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// A client of this API; `cut` set makes every request it sends fail.
    pub fn client(self: &Arc<Self>, cut: Arc<AtomicBool>) -> kube::Client {
        let api = self.clone();
        let service = tower::service_fn(move |req: Request<Body>| {
            let (api, cut) = (api.clone(), cut.clone());
            async move {
                if cut.load(Ordering::SeqCst) {
                    return Ok::<_, Infallible>(status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "ServiceUnavailable",
                        "cut off",
                    ));
                }
                Ok(api.handle(req).await)
            }
        });
        kube::Client::new(service, "default")
    }

    pub fn get(&self, path: &str) -> Option<Value> {
        self.objects.lock().unwrap().get(path).cloned()
    }

    async fn handle(&self, req: Request<Body>) -> Response<Body> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let content_type =
            req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if method != Method::GET {
            self.writes.lock().unwrap().push(format!("{method} {path}"));
        }
        let mut objects = self.objects.lock().unwrap();
        match method {
            Method::GET => match objects.get(&path) {
                Some(o) => answer(StatusCode::OK, o),
                None if Self::is_collection(&path) => {
                    let items: Vec<Value> = objects
                        .iter()
                        .filter(|(k, _)| k.strip_prefix(&format!("{path}/")).is_some_and(|rest| !rest.contains('/')))
                        .map(|(_, v)| v.clone())
                        .filter(|v| Self::matches(v, &query))
                        .collect();
                    answer(
                        StatusCode::OK,
                        &json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}),
                    )
                }
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found")),
            },
            Method::POST => {
                let mut body = body;
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let key = format!("{path}/{name}");
                if objects.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "AlreadyExists", &format!("{name} already exists"));
                }
                if body.get("spec").is_some() {
                    body["metadata"]["generation"] = json!(1);
                }
                let stored = self.stamp(body);
                objects.insert(key, stored.clone());
                answer(StatusCode::CREATED, &stored)
            }
            Method::PATCH => {
                let (key, subresource) = match path.strip_suffix("/status") {
                    Some(k) => (k.to_owned(), true),
                    None => (path.clone(), false),
                };
                let Some(current) = objects.get(&key).cloned() else {
                    return status(StatusCode::NOT_FOUND, "NotFound", &format!("{key} not found"));
                };
                let mut next = current.clone();
                if content_type.starts_with("application/json-patch+json") {
                    // As the API server does, a `test` for null passes on a missing field.
                    let ops: Vec<Value> = body
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|op| {
                            !(op["op"] == "test"
                                && op["value"].is_null()
                                && next.pointer(op["path"].as_str().unwrap_or_default()).is_none())
                        })
                        .collect();
                    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops)).unwrap();
                    if let Err(e) = json_patch::patch(&mut next, &patch) {
                        return status(StatusCode::UNPROCESSABLE_ENTITY, "Invalid", &e.to_string());
                    }
                } else {
                    // Merge patches, and server-side apply taken as a merge of the fields sent.
                    json_patch::merge(&mut next, &body);
                }
                // A subresource write changes only its part; a main write never changes status.
                if subresource {
                    let status_now = next["status"].clone();
                    next = current.clone();
                    next["status"] = status_now;
                } else {
                    next["status"] = current["status"].clone();
                    if next["spec"] != current["spec"] {
                        let generation = current["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                        next["metadata"]["generation"] = json!(generation);
                    }
                }
                let stored = self.stamp(next);
                Self::settle(&mut objects, key, stored.clone());
                answer(StatusCode::OK, &stored)
            }
            Method::DELETE => {
                let Some(mut current) = objects.get(&path).cloned() else {
                    return status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found"));
                };
                current["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                let stored = self.stamp(current);
                Self::settle(&mut objects, path, stored.clone());
                answer(StatusCode::OK, &stored)
            }
            Method::PUT => {
                let Some(current) = objects.get(&path) else {
                    return status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found"));
                };
                if body["metadata"]["resourceVersion"] != current["metadata"]["resourceVersion"] {
                    return status(StatusCode::CONFLICT, "Conflict", "the object has been modified");
                }
                let stored = self.stamp(body);
                objects.insert(path, stored.clone());
                answer(StatusCode::OK, &stored)
            }
            _ => status(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "not scripted"),
        }
    }

    /// Collections end in a plural resource name: `/api/v1/nodes`, `/api/v1/namespaces/ns/pods`.
    fn is_collection(path: &str) -> bool {
        let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
        matches!(
            parts.as_slice(),
            ["api", "v1", _]
                | ["apis", _, _, _]
                | ["api", "v1", "namespaces", _, _]
                | ["apis", _, _, "namespaces", _, _]
        )
    }

    /// Whether `object` matches the query's `labelSelector` (`k=v,k2=v2` only).
    fn matches(object: &Value, query: &str) -> bool {
        let Some(selector) = query.split('&').find_map(|p| p.strip_prefix("labelSelector=")) else { return true };
        let selector = selector.replace("%3D", "=").replace("%2C", ",").replace("%2F", "/");
        selector.split(',').filter(|s| !s.is_empty()).all(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            object["metadata"]["labels"][k] == v
        })
    }

    /// Stores `object`, or lets it go once it is deleted and no finalizer holds it.
    fn settle(objects: &mut BTreeMap<String, Value>, key: String, object: Value) {
        let deleting = !object["metadata"]["deletionTimestamp"].is_null();
        let held = object["metadata"]["finalizers"].as_array().is_some_and(|f| !f.is_empty());
        if deleting && !held {
            objects.remove(&key);
        } else {
            objects.insert(key, object);
        }
    }

    /// Puts an object in place, as `kubectl apply` would have.
    pub fn seed(&self, path: &str, object: Value) {
        let mut object = object;
        object["metadata"]["generation"] = json!(1);
        let stored = self.stamp(object);
        self.objects.lock().unwrap().insert(path.to_owned(), stored);
    }

    /// Replaces an object as a client would (its generation as given).
    pub fn seed_keeping_generation(&self, path: &str, object: Value) {
        let stored = self.stamp(object);
        Self::settle(&mut self.objects.lock().unwrap(), path.to_owned(), stored);
    }

    /// Objects under `prefix`.
    pub fn list(&self, prefix: &str) -> Vec<Value> {
        self.objects.lock().unwrap().iter().filter(|(k, _)| k.starts_with(prefix)).map(|(_, v)| v.clone()).collect()
    }

    /// `object` with a new resourceVersion.
    fn stamp(&self, mut object: Value) -> Value {
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        object["metadata"]["resourceVersion"] = json!(v.to_string());
        object
    }
}
