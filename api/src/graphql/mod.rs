//! The management API: GraphQL at `/graphql` (GraphiQL in a browser at the
//! same path), subscriptions over `graphql-transport-ws` at `/graphql/ws`.
//! Requests authenticate with an API key (`Authorization: Bearer <key>`; on
//! a websocket, the `authorization` field of `connection_init`'s payload),
//! and are rate limited per key.

mod domains;
pub mod errors;
mod gitops_mutations;
mod key_mutations;
mod model_actions;
mod mutation;
pub mod pagination;
mod query;
mod rate_limit;
mod subscription;
pub mod types;
pub mod usage;

use std::sync::Arc;

use async_graphql::http::{ALL_WEBSOCKET_PROTOCOLS, GraphiQLSource};
use async_graphql::{Data, Schema};
use async_graphql_axum::{GraphQLProtocol, GraphQLRequest, GraphQLResponse, GraphQLWebSocket};
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

use self::domains::{DomainMutation, DomainQuery};
use self::errors::{Auth, RATE_LIMITED, coded};
use self::gitops_mutations::GitopsMutation;
use self::key_mutations::KeyMutation;
use self::model_actions::ModelActionMutation;
use self::mutation::CoreMutation;
use self::query::CoreQuery;
pub use self::rate_limit::RateLimiter;
pub use self::subscription::SubscriptionRoot;
use self::types::Scheduler;
pub use self::types::tier_of;
use crate::auth::AuthError;
use crate::catalog::ModelCatalog;
use crate::manage::Management;

/// Every query.
#[derive(async_graphql::MergedObject, Default)]
pub struct QueryRoot(CoreQuery, DomainQuery);

/// Every mutation.
#[derive(async_graphql::MergedObject, Default)]
pub struct MutationRoot(CoreMutation, KeyMutation, ModelActionMutation, GitopsMutation, DomainMutation);

pub type ManagementSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Deepest query accepted: the schema's deepest useful path (a project's
/// models' service's project …) is well inside it.
pub const MAX_DEPTH: usize = 12;
/// Most fields one query may ask for, a connection's fields counted once
/// per node of its page: a page of 100 projects with all their services fits.
pub const MAX_COMPLEXITY: usize = 20_000;

/// The schema, without data: enough to print the SDL.
pub fn schema_builder() -> async_graphql::SchemaBuilder<QueryRoot, MutationRoot, SubscriptionRoot> {
    Schema::build(QueryRoot::default(), MutationRoot::default(), SubscriptionRoot)
        .limit_depth(MAX_DEPTH)
        .limit_complexity(MAX_COMPLEXITY)
}

/// The SDL that `api/schema.graphql` holds.
pub fn sdl() -> String {
    schema_builder().finish().sdl()
}

/// The state the GraphQL routes share.
#[derive(Clone)]
pub struct GraphqlState {
    pub schema: ManagementSchema,
    pub management: Arc<Management>,
    pub limiter: Arc<RateLimiter>,
}

impl GraphqlState {
    pub fn new(
        management: Arc<Management>,
        scheduler: Option<crate::scheduler_link::SchedulerLink>,
        catalog: Arc<ModelCatalog>,
        limiter: RateLimiter,
    ) -> Self {
        let schema = schema_builder().data(management.clone()).data(Scheduler(scheduler)).data(catalog).finish();
        Self { schema, management, limiter: Arc::new(limiter) }
    }
}

/// The bearer token of `Authorization`, or `x-api-key`'s value.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
        .map(str::trim)
}

async fn authenticate(state: &GraphqlState, token: Option<&str>) -> Auth {
    let Some(token) = token else { return Auth(Err(AuthError::Missing.to_string())) };
    match state.management.keys.authenticate(token).await {
        Ok(p) => Auth(Ok(p)),
        Err(AuthError::Store(e)) => {
            tracing::error!(error = %e, "Cannot check an API key");
            Auth(Err("the API key could not be checked; try again".into()))
        }
        Err(e) => Auth(Err(e.to_string())),
    }
}

/// `POST /graphql`.
pub async fn execute(State(state): State<GraphqlState>, headers: HeaderMap, request: GraphQLRequest) -> Response {
    let auth = authenticate(&state, bearer(&headers)).await;
    if let Auth(Ok(p)) = &auth
        && let Err(retry_after) = state.limiter.check(p.key_id)
    {
        let error =
            coded(RATE_LIMITED, format!("too many requests for this key; retry in {} s", retry_after.as_secs().max(1)));
        let response = async_graphql::Response::from_errors(vec![error.into_server_error(Default::default())]);
        let mut http = GraphQLResponse::from(response).into_response();
        *http.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        if let Ok(v) = retry_after.as_secs().max(1).to_string().parse() {
            http.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return http;
    }
    let request = request.into_inner().data(auth).data(types::StatusOnce::default());
    GraphQLResponse::from(state.schema.execute(request).await).into_response()
}

/// `GET /graphql`: GraphiQL.
pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql/ws").finish())
}

/// `GET /graphql/ws`: subscriptions over `graphql-transport-ws` (or the older `graphql-ws`).
pub async fn websocket(
    State(state): State<GraphqlState>,
    headers: HeaderMap,
    protocol: GraphQLProtocol,
    upgrade: WebSocketUpgrade,
) -> Response {
    let from_header = bearer(&headers).map(str::to_owned);
    upgrade
        .protocols(ALL_WEBSOCKET_PROTOCOLS)
        .on_upgrade(move |socket| async move {
            let schema = state.schema.clone();
            GraphQLWebSocket::new(socket, schema, protocol)
                .on_connection_init(move |payload| async move {
                    let from_payload = payload
                        .get("authorization")
                        .or_else(|| payload.get("Authorization"))
                        .and_then(|v| v.as_str())
                        .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).trim().to_owned());
                    let token = from_payload.or(from_header);
                    let auth = authenticate(&state, token.as_deref()).await;
                    if let Auth(Err(why)) = &auth {
                        return Err(coded(errors::UNAUTHENTICATED, why.clone()));
                    }
                    let mut data = Data::default();
                    data.insert(auth);
                    Ok(data)
                })
                .serve()
                .await;
        })
        .into_response()
}

/// The GraphQL routes.
pub fn router(state: GraphqlState) -> axum::Router {
    axum::Router::new()
        .route("/graphql", axum::routing::post(execute).get(graphiql))
        .route("/graphql/ws", axum::routing::get(websocket))
        .with_state(state)
}
