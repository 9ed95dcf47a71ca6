//! Stored responses of the Responses API: each kept for its project, until
//! it expires, for `GET /v1/responses/{id}` and `previous_response_id`.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{string_len, text, timestamp_with_time_zone, uuid, uuid_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Responses {
    Table,
    Id,
    ProjectId,
    KeyId,
    Model,
    Input,
    Body,
    CreatedAt,
    ExpiresAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Responses::Table)
                    .if_not_exists()
                    .col(string_len(Responses::Id, 64).primary_key())
                    .col(uuid(Responses::ProjectId))
                    .col(uuid_null(Responses::KeyId))
                    .col(string_len(Responses::Model, 255))
                    // The conversation so far as input items, and the response object: JSON.
                    .col(text(Responses::Input))
                    .col(text(Responses::Body))
                    .col(timestamp_with_time_zone(Responses::CreatedAt))
                    .col(timestamp_with_time_zone(Responses::ExpiresAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Responses::Table, Responses::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("responses_expires_at")
                    .table(Responses::Table)
                    .col(Responses::ExpiresAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Responses::Table).if_exists().to_owned()).await
    }
}
