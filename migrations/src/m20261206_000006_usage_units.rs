//! Usage in the units speech and reranking are counted in: seconds of audio
//! heard (kept as milliseconds), characters spoken, documents ranked.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::big_integer;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden, Clone, Copy)]
enum UsageRecords {
    Table,
    AudioMs,
    Characters,
    Documents,
}

const COLUMNS: [UsageRecords; 3] = [UsageRecords::AudioMs, UsageRecords::Characters, UsageRecords::Documents];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one column at a time.
        for column in COLUMNS {
            manager
                .alter_table(
                    Table::alter().table(UsageRecords::Table).add_column(big_integer(column).default(0)).to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in COLUMNS {
            manager.alter_table(Table::alter().table(UsageRecords::Table).drop_column(column).to_owned()).await?;
        }
        Ok(())
    }
}
