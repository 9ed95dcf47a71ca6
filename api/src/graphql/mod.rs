//! The management API: GraphQL at `/graphql` (GraphiQL in a browser at the
//! same path), subscriptions over `graphql-transport-ws` at `/graphql/ws`.
//! Requests authenticate with an API key (`Authorization: Bearer <key>`; on
//! a websocket, the `authorization` field of `connection_init`'s payload),
//! and are rate limited per key.

mod artifacts;
mod domains;
pub mod errors;
mod gitops_mutations;
pub mod guard;
mod key_mutations;
pub mod kind;
mod model_actions;
mod mutation;
pub mod pagination;
mod project_policy;
mod query;
mod rate_limit;
mod recent;
mod runtime;
mod socket;
mod subscription;
mod transport;
pub mod types;
pub mod usage;

use std::sync::Arc;

use async_graphql::Schema;
use async_graphql::http::GraphiQLSource;
use axum::http::StatusCode;
use axum::response::Html;

use self::artifacts::ArtifactQuery;
use self::domains::{DomainMutation, DomainQuery};
use self::errors::{Auth, BAD_REQUEST, BAD_USER_INPUT, RATE_LIMITED, coded};
use self::gitops_mutations::GitopsMutation;
pub use self::guard::Refusal;
use self::key_mutations::KeyMutation;
use self::model_actions::ModelActionMutation;
use self::mutation::CoreMutation;
use self::project_policy::ProjectPolicyMutation;
use self::query::CoreQuery;
pub use self::rate_limit::RateLimiter;
pub use self::subscription::SubscriptionRoot;
use self::types::Scheduler;
use crate::catalog::ModelCatalog;
use crate::manage::Management;
use greenthread_store::auth::AuthError;

/// Every query.
#[derive(async_graphql::MergedObject, Default)]
pub struct QueryRoot(CoreQuery, DomainQuery, ArtifactQuery);

/// Every mutation.
#[derive(async_graphql::MergedObject, Default)]
pub struct MutationRoot(
    CoreMutation,
    KeyMutation,
    ModelActionMutation,
    GitopsMutation,
    DomainMutation,
    ProjectPolicyMutation,
);

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
    /// One permit per open websocket (see [`socket::MAX_SOCKETS`]).
    pub sockets: Arc<tokio::sync::Semaphore>,
    /// Largest websocket message, in bytes: the request body limit.
    pub max_message_bytes: usize,
}

impl GraphqlState {
    pub fn new(
        management: Arc<Management>,
        scheduler: Option<crate::scheduler_link::SchedulerLink>,
        catalog: Arc<ModelCatalog>,
        engine_logs: types::EngineLogs,
        recent: Arc<crate::metrics::recent::Recent>,
        limiter: RateLimiter,
        max_message_bytes: usize,
    ) -> Self {
        let schema = schema_builder()
            .data(management.clone())
            .data(Scheduler(scheduler))
            .data(engine_logs)
            .data(catalog)
            .data(recent)
            .finish();
        Self {
            schema,
            management,
            limiter: Arc::new(limiter),
            sockets: Arc::new(tokio::sync::Semaphore::new(socket::MAX_SOCKETS)),
            max_message_bytes,
        }
    }
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

impl GraphqlState {
    /// Checks `request` before it runs (see [`guard`]): its nesting, then,
    /// once parsed, its mutation fields, each taking one of the key's
    /// rate-limit tokens (a query takes one).
    ///
    /// # Errors
    /// The [`Refusal`] to answer instead of running it.
    fn admit(&self, auth: &Auth, request: &mut async_graphql::Request) -> Result<(), Refusal> {
        if !guard::nesting_within_limit(&request.query) {
            return Err(Refusal::TooDeep);
        }
        let operation = request.operation_name.clone();
        // A document that does not parse is answered by the schema, with the parser's message.
        let variables = std::mem::take(&mut request.variables);
        let (fields, nul) = request.parsed_query().map_or((Ok(0), false), |doc| {
            (guard::mutation_fields(doc, operation.as_deref()), guard::holds_nul(doc, &variables))
        });
        request.variables = variables;
        if nul {
            return Err(Refusal::Nul);
        }
        let fields = fields?;
        if fields > guard::MAX_MUTATION_FIELDS as u64 {
            return Err(Refusal::TooManyMutations(fields));
        }
        if let Auth(Ok(p)) = auth {
            self.limiter.check_n(p.key_id, fields.max(1) as usize).map_err(Refusal::RateLimited)?;
        }
        Ok(())
    }

    /// Runs `request` for `auth`, if admitted.
    async fn run(&self, auth: Auth, mut request: async_graphql::Request) -> Result<async_graphql::Response, Refusal> {
        self.admit(&auth, &mut request)?;
        let request = request.data(auth).data(types::StatusOnce::default());
        Ok(self.schema.execute(request).await)
    }
}

impl Refusal {
    /// The GraphQL error it is answered with.
    fn error(&self) -> async_graphql::ServerError {
        let code = match self {
            Self::TooDeep | Self::TooManyMutations(_) | Self::TooLarge => BAD_REQUEST,
            Self::Nul => BAD_USER_INPUT,
            Self::RateLimited(_) => RATE_LIMITED,
        };
        coded(code, self.to_string()).into_server_error(Default::default())
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::TooDeep | Self::TooManyMutations(_) | Self::TooLarge | Self::Nul => StatusCode::BAD_REQUEST,
            Self::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }
}

/// `GET /graphql`: GraphiQL.
pub async fn graphiql() -> Html<String> {
    Html(GraphiQLSource::build().endpoint("/graphql").subscription_endpoint("/graphql/ws").finish())
}

/// The GraphQL routes.
pub fn router(state: GraphqlState) -> axum::Router {
    axum::Router::new()
        .route("/graphql", axum::routing::post(transport::execute).get(graphiql))
        .route("/graphql/ws", axum::routing::get(socket::websocket))
        .with_state(state)
}
