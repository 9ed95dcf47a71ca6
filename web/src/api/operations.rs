//! The console's GraphQL operations (`web/graphql/console.graphql`), their
//! variables and answers as types generated from `api/schema.graphql`.

#![allow(clippy::upper_case_acronyms)]

use graphql_client::GraphQLQuery;

/// The schema's scalars, under the names the generated code looks up.
pub type DateTime = String;
pub type JSON = serde_json::Value;

macro_rules! operations {
    ($variables_derives:literal: $($name:ident),* $(,)?) => {$(
        #[derive(GraphQLQuery)]
        #[graphql(
            schema_path = "../api/schema.graphql",
            query_path = "graphql/console.graphql",
            response_derives = "Debug, Clone",
            variables_derives = $variables_derives
        )]
        pub struct $name;
    )*};
}

// Inputs with optional fields are written as `..Default::default()`.
operations!(
    "Debug, Clone, Default":
    Viewer,
    Models,
    ModelLogs,
    WakeModel,
    SleepModel,
    UpdateModel,
    Keys,
    CreateApiKey,
    RevokeApiKey,
    Projects,
    CreateProject,
    DeleteProject,
    CreateService,
    DeleteService,
    Nodes,
    AuditEvents,
    ModelEvents,
    Artifacts,
    ProjectDocument,
    PlanDocument,
    ApplyDocument,
    AddDomain,
    VerifyDomain,
    RemoveDomain,
    ModelPage,
);
// Enums (`UsageGroup`, `UsageBucket`) have no default.
operations!("Debug, Clone": Usage);
