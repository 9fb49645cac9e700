//! The schema as versioned migrations, checked in under `migrations/` and applied in
//! order, each once, in its own transaction. SQLite keeps the version in `user_version`;
//! PostgreSQL in `schema_migrations`, under an advisory lock so workers starting together
//! do not race.

/// One schema change.
pub(super) struct Migration {
    /// Applied in increasing order, from 1.
    pub version: i64,
    /// The SQL, one or more statements.
    pub sql: &'static str,
}

/// SQLite's schema history.
pub(super) const SQLITE: &[Migration] = &[
    Migration {
        version: 1,
        sql: include_str!("../../../migrations/sqlite/0001_orders.sql"),
    },
    Migration {
        version: 2,
        sql: include_str!("../../../migrations/sqlite/0002_delivery_and_board.sql"),
    },
];

/// PostgreSQL's schema history.
pub(super) const POSTGRES: &[Migration] = &[Migration {
    version: 1,
    sql: include_str!("../../../migrations/postgres/0001_orders.sql"),
}];

/// The newest version in `migrations`.
pub(super) fn latest(migrations: &[Migration]) -> i64 {
    migrations.last().map_or(0, |m| m.version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_count_up_from_one() {
        for list in [SQLITE, POSTGRES] {
            for (index, migration) in list.iter().enumerate() {
                assert_eq!(migration.version, index as i64 + 1);
                assert!(!migration.sql.trim().is_empty());
            }
        }
    }
}
