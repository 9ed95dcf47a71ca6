//! Custom domains: a hostname bound to a service, routed once its TXT
//! verification token is found in DNS.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{pk_uuid, string_len, timestamp_with_time_zone, timestamp_with_time_zone_null, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Domains {
    Table,
    Id,
    ProjectId,
    ServiceId,
    Hostname,
    Token,
    VerifiedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Services {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Domains::Table)
                    .if_not_exists()
                    .col(pk_uuid(Domains::Id))
                    .col(uuid(Domains::ProjectId))
                    .col(uuid(Domains::ServiceId))
                    // A DNS name is at most 253 characters.
                    .col(string_len(Domains::Hostname, 253).unique_key())
                    .col(string_len(Domains::Token, 64))
                    .col(timestamp_with_time_zone_null(Domains::VerifiedAt))
                    .col(timestamp_with_time_zone(Domains::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Domains::Table, Domains::ProjectId)
                            .to(Projects::Table, Projects::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Domains::Table, Domains::ServiceId)
                            .to(Services::Table, Services::Id)
                            .on_delete(ForeignKeyAction::Restrict),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(Domains::Table).if_exists().to_owned()).await
    }
}
