//! The first schema: projects, services, models, API keys, audit events,
//! usage records, idempotency records and settings.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{
    big_integer, integer, json_null, pk_uuid, string_len, string_len_null, text, timestamp_with_time_zone,
    timestamp_with_time_zone_null, uuid, uuid_null,
};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Services {
    Table,
    Id,
    ProjectId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Models {
    Table,
    Id,
    ProjectId,
    ServiceId,
    Name,
    Spec,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    ProjectId,
    Name,
    Scopes,
    SecretHash,
    SecretHint,
    CreatedBy,
    CreatedAt,
    ExpiresAt,
    RevokedAt,
    LastUsedAt,
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    At,
    ActorKeyId,
    Actor,
    ProjectId,
    Action,
    ObjectType,
    ObjectId,
    ObjectName,
    Before,
    After,
    Via,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    Id,
    At,
    KeyId,
    ProjectId,
    Model,
    InputTokens,
    OutputTokens,
    LatencyMs,
    WakeMs,
    Status,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    ActorKeyId,
    Key,
    RequestHash,
    Response,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Settings {
    Table,
    Name,
    Value,
}

/// Longest project, service and model name (a DNS label).
const NAME_LEN: u32 = 63;

fn foreign_key(from: (impl IntoIden, impl IntoIden), to: (impl IntoIden, impl IntoIden)) -> ForeignKeyCreateStatement {
    // Children are removed explicitly (each with its audit event), never by a cascade.
    ForeignKey::create().from(from.0, from.1).to(to.0, to.1).on_delete(ForeignKeyAction::Restrict).to_owned()
}

/// Projects: the unit of ownership of services, models and keys.
fn projects() -> TableCreateStatement {
    Table::create()
        .table(Projects::Table)
        .if_not_exists()
        .col(pk_uuid(Projects::Id))
        .col(string_len(Projects::Name, NAME_LEN).unique_key())
        .col(text(Projects::Description))
        .col(timestamp_with_time_zone(Projects::CreatedAt))
        .col(timestamp_with_time_zone(Projects::UpdatedAt))
        .to_owned()
}

/// Services: named groups of a project's models (a custom domain routes to one).
fn services() -> TableCreateStatement {
    Table::create()
        .table(Services::Table)
        .if_not_exists()
        .col(pk_uuid(Services::Id))
        .col(uuid(Services::ProjectId))
        .col(string_len(Services::Name, NAME_LEN))
        .col(text(Services::Description))
        .col(timestamp_with_time_zone(Services::CreatedAt))
        .col(timestamp_with_time_zone(Services::UpdatedAt))
        .foreign_key(&mut foreign_key((Services::Table, Services::ProjectId), (Projects::Table, Projects::Id)))
        .index(Index::create().name("services_project_name").col(Services::ProjectId).col(Services::Name).unique())
        .to_owned()
}

/// Models: each one's spec as JSON, under a name unique on the server.
fn models() -> TableCreateStatement {
    Table::create()
        .table(Models::Table)
        .if_not_exists()
        .col(pk_uuid(Models::Id))
        .col(uuid(Models::ProjectId))
        .col(uuid(Models::ServiceId))
        // Names are global: they are the slug of the model's own URL.
        .col(string_len(Models::Name, NAME_LEN).unique_key())
        .col(text(Models::Spec))
        .col(timestamp_with_time_zone(Models::CreatedAt))
        .col(timestamp_with_time_zone(Models::UpdatedAt))
        .foreign_key(&mut foreign_key((Models::Table, Models::ProjectId), (Projects::Table, Projects::Id)))
        .foreign_key(&mut foreign_key((Models::Table, Models::ServiceId), (Services::Table, Services::Id)))
        .to_owned()
}

/// API keys: only a hash of each secret, and its hint.
fn api_keys() -> TableCreateStatement {
    Table::create()
        .table(ApiKeys::Table)
        .if_not_exists()
        .col(pk_uuid(ApiKeys::Id))
        .col(uuid(ApiKeys::ProjectId))
        .col(string_len(ApiKeys::Name, 128))
        .col(string_len(ApiKeys::Scopes, 128))
        .col(string_len(ApiKeys::SecretHash, 64).unique_key())
        .col(string_len(ApiKeys::SecretHint, 32))
        .col(uuid_null(ApiKeys::CreatedBy))
        .col(timestamp_with_time_zone(ApiKeys::CreatedAt))
        .col(timestamp_with_time_zone_null(ApiKeys::ExpiresAt))
        .col(timestamp_with_time_zone_null(ApiKeys::RevokedAt))
        .col(timestamp_with_time_zone_null(ApiKeys::LastUsedAt))
        .foreign_key(&mut foreign_key((ApiKeys::Table, ApiKeys::ProjectId), (Projects::Table, Projects::Id)))
        .to_owned()
}

/// The audit log: one event per change, kept after what it describes is gone.
fn audit_events() -> TableCreateStatement {
    Table::create()
        .table(AuditEvents::Table)
        .if_not_exists()
        .col(pk_uuid(AuditEvents::Id))
        .col(timestamp_with_time_zone(AuditEvents::At))
        .col(uuid_null(AuditEvents::ActorKeyId))
        .col(string_len(AuditEvents::Actor, 256))
        // No foreign keys: the record outlives what it describes.
        .col(uuid_null(AuditEvents::ProjectId))
        .col(string_len(AuditEvents::Action, 64))
        .col(string_len(AuditEvents::ObjectType, 32))
        .col(uuid_null(AuditEvents::ObjectId))
        .col(string_len_null(AuditEvents::ObjectName, 256))
        .col(json_null(AuditEvents::Before))
        .col(json_null(AuditEvents::After))
        .col(string_len(AuditEvents::Via, 32))
        .to_owned()
}

/// One usage record per request.
fn usage_records() -> TableCreateStatement {
    Table::create()
        .table(UsageRecords::Table)
        .if_not_exists()
        .col(pk_uuid(UsageRecords::Id))
        .col(timestamp_with_time_zone(UsageRecords::At))
        .col(uuid_null(UsageRecords::KeyId))
        .col(uuid(UsageRecords::ProjectId))
        .col(string_len(UsageRecords::Model, NAME_LEN))
        .col(integer(UsageRecords::InputTokens))
        .col(integer(UsageRecords::OutputTokens))
        .col(big_integer(UsageRecords::LatencyMs))
        .col(big_integer(UsageRecords::WakeMs))
        .col(string_len(UsageRecords::Status, 32))
        .to_owned()
}

/// Answers of mutations sent with an idempotency key, replayed on a retry.
fn idempotency_keys() -> TableCreateStatement {
    Table::create()
        .table(IdempotencyKeys::Table)
        .if_not_exists()
        .col(uuid(IdempotencyKeys::ActorKeyId))
        .col(string_len(IdempotencyKeys::Key, 128))
        .col(string_len(IdempotencyKeys::RequestHash, 64))
        .col(text(IdempotencyKeys::Response))
        .col(timestamp_with_time_zone(IdempotencyKeys::CreatedAt))
        .primary_key(Index::create().col(IdempotencyKeys::ActorKeyId).col(IdempotencyKeys::Key))
        .to_owned()
}

/// Server-wide settings: the key-signing secret, a project's prefixes, and the row every write transaction updates first (the write lock).
fn settings() -> TableCreateStatement {
    Table::create()
        .table(Settings::Table)
        .if_not_exists()
        .col(string_len(Settings::Name, 64).primary_key())
        .col(text(Settings::Value))
        .to_owned()
}

/// The indexes the management plane's lookups need (per project, and by time).
fn indexes() -> [IndexCreateStatement; 4] {
    [
        Index::create().if_not_exists().name("models_project").table(Models::Table).col(Models::ProjectId).to_owned(),
        Index::create()
            .if_not_exists()
            .name("api_keys_project")
            .table(ApiKeys::Table)
            .col(ApiKeys::ProjectId)
            .to_owned(),
        Index::create()
            .if_not_exists()
            .name("audit_events_project_at")
            .table(AuditEvents::Table)
            .col(AuditEvents::ProjectId)
            .col(AuditEvents::At)
            .to_owned(),
        Index::create()
            .if_not_exists()
            .name("usage_records_project_at")
            .table(UsageRecords::Table)
            .col(UsageRecords::ProjectId)
            .col(UsageRecords::At)
            .to_owned(),
    ]
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let tables = [
            projects(),
            services(),
            models(),
            api_keys(),
            audit_events(),
            usage_records(),
            idempotency_keys(),
            settings(),
        ];
        for table in tables {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Settings::Table.into_iden(),
            IdempotencyKeys::Table.into_iden(),
            UsageRecords::Table.into_iden(),
            AuditEvents::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            Models::Table.into_iden(),
            Services::Table.into_iden(),
            Projects::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).if_exists().to_owned()).await?;
        }
        Ok(())
    }
}
