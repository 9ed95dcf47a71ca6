//! Live model state: the GraphQL `modelEvents` subscription over a
//! WebSocket speaking `graphql-transport-ws`, reconnecting when it drops.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use leptos::prelude::*;
use serde_json::{Value, json};
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

use graphql_client::GraphQLQuery;

use crate::api::operations::{ModelEvents, model_events};

/// The subprotocol the server speaks.
pub const PROTOCOL: &str = "graphql-transport-ws";
/// Wait before reconnecting after the socket closed.
const RECONNECT_MS: i32 = 2_000;

/// One state change of one model, as the server publishes it.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEvent {
    pub model: String,
    pub project: String,
    pub node: String,
    pub from: String,
    pub to: String,
    pub tier: Option<String>,
    pub cause: String,
    pub after_ms: f64,
    pub at: String,
}

impl From<model_events::ModelEventsModelEvents> for ModelEvent {
    fn from(e: model_events::ModelEventsModelEvents) -> Self {
        Self {
            model: e.model,
            project: e.project,
            node: e.node,
            from: e.from,
            to: e.to,
            tier: e.tier,
            cause: e.cause,
            after_ms: e.after_ms,
            at: e.at,
        }
    }
}

/// Whether events are arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Connecting,
    Live,
    /// Dropped; trying again shortly.
    Retrying,
}

/// A message from the server, as far as this client cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Incoming {
    Ack,
    Ping,
    Event(Box<ModelEvent>),
    /// The server refused the subscription or the connection.
    Refused(String),
    Other,
}

/// The `connection_init` message: the key rides in its payload, never in the URL.
pub fn init_message(key: &str) -> String {
    json!({"type": "connection_init", "payload": {"authorization": format!("Bearer {key}")}}).to_string()
}

pub fn subscribe_message() -> String {
    // The operation's document holds every console operation; its name picks this one.
    let payload = ModelEvents::build_query(model_events::Variables);
    json!({"id": "model-events", "type": "subscribe", "payload": payload}).to_string()
}

/// Reads one server message.
pub fn parse(text: &str) -> Incoming {
    let Ok(message) = serde_json::from_str::<Value>(text) else { return Incoming::Other };
    match message["type"].as_str() {
        Some("connection_ack") => Incoming::Ack,
        Some("ping") => Incoming::Ping,
        Some("next") => {
            if let Some(e) = message["payload"]["errors"][0]["message"].as_str() {
                return Incoming::Refused(e.to_owned());
            }
            serde_json::from_value::<model_events::ResponseData>(message["payload"]["data"].clone())
                .map_or(Incoming::Other, |data| Incoming::Event(Box::new(data.model_events.into())))
        }
        Some("error") => Incoming::Refused(
            message["payload"][0]["message"].as_str().unwrap_or("the subscription was refused").to_owned(),
        ),
        _ => Incoming::Other,
    }
}

/// Subscribes to the key's model events for as long as the calling
/// component lives; `on_event` gets each one, `link` says whether they flow.
pub fn subscribe(key: String, link: RwSignal<Link>, on_event: impl Fn(ModelEvent) + 'static) {
    let state = Rc::new(Socket { key, stopped: Cell::new(false), current: RefCell::new(None) });
    let on_event: Rc<dyn Fn(ModelEvent)> = Rc::new(on_event);
    connect(state.clone(), link, on_event);
    let closing = send_wrapper::SendWrapper::new(state);
    on_cleanup(move || {
        closing.stopped.set(true);
        if let Some(ws) = closing.current.borrow_mut().take() {
            let _ = ws.close();
        }
    });
}

struct Socket {
    key: String,
    stopped: Cell<bool>,
    current: RefCell<Option<web_sys::WebSocket>>,
}

fn url() -> Option<String> {
    let location = web_sys::window()?.location();
    let scheme = if location.protocol().ok()? == "https:" { "wss" } else { "ws" };
    Some(format!("{scheme}://{}/graphql/ws", location.host().ok()?))
}

fn connect(state: Rc<Socket>, link: RwSignal<Link>, on_event: Rc<dyn Fn(ModelEvent)>) {
    if state.stopped.get() {
        return;
    }
    let Some(ws) = url().and_then(|u| web_sys::WebSocket::new_with_str(&u, PROTOCOL).ok()) else {
        link.try_set(Link::Retrying);
        return;
    };
    let opened = ws.clone();
    let key = state.key.clone();
    let on_open = Closure::<dyn FnMut()>::new(move || {
        let _ = opened.send_with_str(&init_message(&key));
    });
    let replying = ws.clone();
    let handler = on_event.clone();
    let on_message = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        let Some(text) = e.data().as_string() else { return };
        match parse(&text) {
            Incoming::Ack => {
                let _ = replying.send_with_str(&subscribe_message());
                link.try_set(Link::Live);
            }
            Incoming::Ping => {
                let _ = replying.send_with_str(r#"{"type":"pong"}"#);
            }
            Incoming::Event(event) => handler(*event),
            Incoming::Refused(why) => leptos::logging::warn!("live model state refused: {why}"),
            Incoming::Other => {}
        }
    });
    let again = state.clone();
    let on_event_again = on_event;
    let on_close = Closure::<dyn FnMut()>::new(move || {
        if again.stopped.get() {
            return;
        }
        link.try_set(Link::Retrying);
        let (state, on_event) = (again.clone(), on_event_again.clone());
        let retry = Closure::once_into_js(move || connect(state, link, on_event));
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(retry.unchecked_ref(), RECONNECT_MS);
        }
    });
    ws.set_onopen(Some(on_open.as_ref().unchecked_ref()));
    ws.set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    ws.set_onclose(Some(on_close.as_ref().unchecked_ref()));
    // The handlers live as long as the socket; a closed socket calls none of them again.
    on_open.forget();
    on_message.forget();
    on_close.forget();
    *state.current.borrow_mut() = Some(ws);
}
