//! Per-key rate limits: the limits on `api_keys`, and the counting windows
//! that every gateway replica sharing the database updates atomically.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{big_integer, integer, integer_null, uuid};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    RequestsPerMinute,
    TokensPerMinute,
}

#[derive(DeriveIden)]
enum RateWindows {
    Table,
    KeyId,
    WindowStart,
    Requests,
    Tokens,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for column in [integer_null(ApiKeys::RequestsPerMinute), integer_null(ApiKeys::TokensPerMinute)] {
            let mut column = column;
            manager.alter_table(Table::alter().table(ApiKeys::Table).add_column(&mut column).to_owned()).await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(RateWindows::Table)
                    .if_not_exists()
                    .col(uuid(RateWindows::KeyId))
                    // Unix seconds at which the window opened.
                    .col(big_integer(RateWindows::WindowStart))
                    .col(integer(RateWindows::Requests))
                    .col(big_integer(RateWindows::Tokens))
                    .primary_key(Index::create().col(RateWindows::KeyId).col(RateWindows::WindowStart))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_table(Table::drop().table(RateWindows::Table).if_exists().to_owned()).await?;
        for column in [ApiKeys::RequestsPerMinute, ApiKeys::TokensPerMinute] {
            manager.alter_table(Table::alter().table(ApiKeys::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
