//! Serving in production: a key's bound on requests in flight at once, and
//! the request id each usage record was answered under (to find one
//! request's record from the `x-request-id` a client logged).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::{integer_null, string_len_null};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    MaxConcurrentRequests,
}

#[derive(DeriveIden)]
enum UsageRecords {
    Table,
    RequestId,
}

const REQUEST_ID_INDEX: &str = "usage_records_request_id";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        manager
            .alter_table(
                Table::alter()
                    .table(ApiKeys::Table)
                    .add_column(integer_null(ApiKeys::MaxConcurrentRequests))
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(UsageRecords::Table)
                    .add_column(string_len_null(UsageRecords::RequestId, 128))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(REQUEST_ID_INDEX)
                    .table(UsageRecords::Table)
                    .col(UsageRecords::RequestId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.drop_index(Index::drop().name(REQUEST_ID_INDEX).table(UsageRecords::Table).to_owned()).await?;
        manager
            .alter_table(Table::alter().table(UsageRecords::Table).drop_column(UsageRecords::RequestId).to_owned())
            .await?;
        manager
            .alter_table(Table::alter().table(ApiKeys::Table).drop_column(ApiKeys::MaxConcurrentRequests).to_owned())
            .await
    }
}
