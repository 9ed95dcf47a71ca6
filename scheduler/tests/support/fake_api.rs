//! A scripted Kubernetes API double for what the API server built for the
//! integration tests cannot serve (Leases, Pods, Nodes, Events): objects
//! kept in memory with `resourceVersion` checks on writes, as the real
//! server does. Each client may be cut off, to play a replica that lost
//! its connection.

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
        let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        if method != Method::GET {
            self.writes.lock().unwrap().push(format!("{method} {path}"));
        }
        let mut objects = self.objects.lock().unwrap();
        match method {
            Method::GET => match objects.get(&path) {
                Some(o) => answer(StatusCode::OK, o),
                None => status(StatusCode::NOT_FOUND, "NotFound", &format!("{path} not found")),
            },
            Method::POST => {
                let name = body["metadata"]["name"].as_str().unwrap_or_default().to_owned();
                let key = format!("{path}/{name}");
                if objects.contains_key(&key) {
                    return status(StatusCode::CONFLICT, "AlreadyExists", &format!("{name} already exists"));
                }
                let stored = self.stamp(body);
                objects.insert(key, stored.clone());
                answer(StatusCode::CREATED, &stored)
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

    /// `object` with a new resourceVersion.
    fn stamp(&self, mut object: Value) -> Value {
        let v = self.version.fetch_add(1, Ordering::SeqCst) + 1;
        object["metadata"]["resourceVersion"] = json!(v.to_string());
        object
    }
}
