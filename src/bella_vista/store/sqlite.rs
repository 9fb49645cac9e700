//! Orders in a SQLite file: the embedded store for one machine.
//!
//! WAL mode with `synchronous=FULL`, so an order is on disk once its transaction commits.
//! Confirmations run in `BEGIN IMMEDIATE` transactions, so two processes sharing the file
//! never number two orders alike. Calls block; [`super::OrderStore`] runs them on the
//! blocking pool.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};

use super::migrations::{self, Migration};
use super::{
    DeliveryOutcome, DeliveryState, DeliveryStatus, DueDelivery, NewOrder, OrderOrigin, StoreError,
    StoredOrder, from_sql, from_unix_ms, to_sql, unix_ms,
};
use crate::bella_vista::order::{Order, OrderItem, Payment, PaymentMethod};

/// How long to wait for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Confirmed orders in a SQLite database. Cheap to clone; clones share one connection.
#[derive(Debug, Clone)]
pub struct SqliteOrders {
    connection: Arc<Mutex<Connection>>,
    /// The database file; `None` in memory.
    path: Option<PathBuf>,
    /// The delivery lock of an in-memory store (no file to lock).
    memory_lock: Arc<AtomicBool>,
}

impl SqliteOrders {
    /// Opens (or creates) the database at `path`, creating parent folders, and brings its
    /// schema up to date.
    pub fn open(path: &Path) -> Result<SqliteOrders, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::CreateDir {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let connection = Connection::open(path)?;
        connection.busy_timeout(BUSY_TIMEOUT)?;
        let mode: String =
            connection.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            tracing::warn!(%mode, path = %path.display(), "order store could not switch to WAL");
        }
        SqliteOrders::init(connection, Some(path.to_path_buf()))
    }

    /// A throwaway store in memory, for tests.
    pub fn open_in_memory() -> Result<SqliteOrders, StoreError> {
        SqliteOrders::init(Connection::open_in_memory()?, None)
    }

    fn init(mut connection: Connection, path: Option<PathBuf>) -> Result<SqliteOrders, StoreError> {
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&mut connection, migrations::SQLITE)?;
        Ok(SqliteOrders {
            connection: Arc::new(Mutex::new(connection)),
            path,
            memory_lock: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Every stored order, oldest (lowest number) first.
    pub fn list_all(&self) -> Result<Vec<StoredOrder>, StoreError> {
        self.list(None, None)
    }

    pub(super) fn confirm(&self, new: &NewOrder) -> Result<StoredOrder, StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM orders WHERE idempotency_key = ?1",
                [&new.key],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            let stored = load_order(&tx, id)?;
            tx.commit()?;
            tracing::debug!(order_id = id, "order already confirmed under this key");
            return Ok(stored);
        }
        let id = insert_order(&tx, &new.key, &new.stored)?;
        if new.outbox {
            tx.execute(
                "INSERT INTO order_deliveries (order_id, state, next_attempt_ms) \
                 VALUES (?1, 'pending', 0)",
                [id],
            )?;
        }
        tx.commit()?;
        tracing::info!(order_id = id, total = %new.stored.total, "order confirmed");
        Ok(StoredOrder {
            id,
            ..new.stored.clone()
        })
    }

    /// Orders confirmed at or after `since` (RFC 3339) and numbered above `after`.
    pub(super) fn list(
        &self,
        since: Option<&str>,
        after: Option<i64>,
    ) -> Result<Vec<StoredOrder>, StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let ids: Vec<i64> = tx
            .prepare("SELECT id FROM orders WHERE created_at >= ?1 AND id > ?2 ORDER BY id")?
            .query_map(params![since.unwrap_or(""), after.unwrap_or(0)], |row| {
                row.get(0)
            })?
            .collect::<Result<_, _>>()?;
        let orders = ids
            .into_iter()
            .map(|id| load_order(&tx, id))
            .collect::<Result<_, _>>()?;
        tx.commit()?;
        Ok(orders)
    }

    pub(super) fn mark_done(&self, id: i64, now: &str) -> Result<StoredOrder, StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let changed = tx.execute(
            "UPDATE orders SET done_at = COALESCE(done_at, ?2) WHERE id = ?1",
            params![id, now],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchOrder(id));
        }
        let stored = load_order(&tx, id)?;
        tx.commit()?;
        Ok(stored)
    }

    pub(super) fn undelivered(&self) -> Result<Vec<DeliveryStatus>, StoreError> {
        let connection = self.lock();
        let rows: Vec<(i64, String, u32, Option<String>)> = connection
            .prepare(
                "SELECT order_id, state, attempts, last_error FROM order_deliveries \
                 WHERE state <> 'delivered' ORDER BY order_id",
            )?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
            .collect::<Result<_, _>>()?;
        rows.into_iter()
            .map(|(order_id, state, attempts, last_error)| {
                Ok(DeliveryStatus {
                    order_id,
                    state: parse_state(order_id, &state)?,
                    attempts,
                    last_error,
                })
            })
            .collect()
    }

    pub(super) fn next_delivery(&self) -> Result<Option<DueDelivery>, StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let next: Option<(i64, u32, i64)> = tx
            .query_row(
                "SELECT order_id, attempts, next_attempt_ms FROM order_deliveries \
                 WHERE state = 'pending' ORDER BY order_id LIMIT 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let due = match next {
            None => None,
            Some((id, attempts, next_ms)) => Some(DueDelivery {
                order: load_order(&tx, id)?,
                attempts,
                not_before: from_unix_ms(next_ms),
            }),
        };
        tx.commit()?;
        Ok(due)
    }

    pub(super) fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError> {
        let connection = self.lock();
        match outcome {
            DeliveryOutcome::Delivered { at } => connection.execute(
                "UPDATE order_deliveries SET state = 'delivered', attempts = attempts + 1, \
                 delivered_at = ?2, last_error = NULL WHERE order_id = ?1",
                params![id, super::timestamp::rfc3339(*at)],
            )?,
            DeliveryOutcome::Failed { error, retry_at } => connection.execute(
                "UPDATE order_deliveries SET attempts = attempts + 1, last_error = ?2, \
                 next_attempt_ms = ?3 WHERE order_id = ?1",
                params![id, error, unix_ms(*retry_at)],
            )?,
            DeliveryOutcome::Parked { error } => connection.execute(
                "UPDATE order_deliveries SET state = 'parked', attempts = attempts + 1, \
                 last_error = ?2 WHERE order_id = ?1",
                params![id, error],
            )?,
        };
        Ok(())
    }

    /// An exclusive lock on `<database>.deliver.lock`, released when the process ends.
    pub(super) fn try_delivery_lock(&self) -> Result<Option<super::DeliveryLock>, StoreError> {
        let Some(path) = &self.path else {
            return Ok(MemoryLock::try_take(&self.memory_lock).map(super::DeliveryLock::Memory));
        };
        let mut lock_path = path.clone().into_os_string();
        lock_path.push(".deliver.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| StoreError::CreateDir {
                path: PathBuf::from(&lock_path),
                source,
            })?;
        match file.try_lock() {
            Ok(()) => Ok(Some(super::DeliveryLock::File(file))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(source)) => Err(StoreError::CreateDir {
                path: PathBuf::from(&lock_path),
                source,
            }),
        }
    }

    /// The connection. A panic while holding the lock leaves no open transaction (it rolls
    /// back on drop), so a poisoned lock is safe to reuse.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The delivery lock of an in-memory store: a flag, cleared on drop.
#[derive(Debug)]
pub struct MemoryLock(Arc<AtomicBool>);

impl MemoryLock {
    fn try_take(flag: &Arc<AtomicBool>) -> Option<MemoryLock> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| MemoryLock(flag.clone()))
    }
}

impl Drop for MemoryLock {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Applies the migrations newer than the database's `user_version`, each in its own
/// immediate transaction (so two processes opening a new file do not both apply one).
fn migrate(connection: &mut Connection, migrations: &[Migration]) -> Result<(), StoreError> {
    let known = migrations::latest(migrations);
    for migration in migrations {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > known {
            return Err(StoreError::NewerSchema {
                found: version,
                known,
            });
        }
        if version < migration.version {
            tx.execute_batch(migration.sql)?;
            tx.pragma_update(None, "user_version", migration.version)?;
            tracing::debug!(version = migration.version, "order store schema migrated");
        }
        tx.commit()?;
    }
    Ok(())
}

fn parse_state(id: i64, state: &str) -> Result<DeliveryState, StoreError> {
    DeliveryState::parse(state).ok_or_else(|| StoreError::Corrupt {
        id,
        reason: format!("unknown delivery state {state:?}"),
    })
}

fn insert_order(tx: &Transaction<'_>, key: &str, stored: &StoredOrder) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO orders (idempotency_key, created_at, subtotal_cents, tip_percent, \
         tip_cents, total_cents, payment_method, caller_phone, room, agent_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        params![
            key,
            stored.created_at,
            to_sql(stored.subtotal)?,
            stored.order.payment.tip_percent,
            to_sql(stored.tip)?,
            to_sql(stored.total)?,
            stored.order.payment.method.as_str(),
            stored.origin.caller_phone,
            stored.origin.room,
            stored.origin.agent_id,
        ],
    )?;
    let id = tx.last_insert_rowid();
    let mut insert_item = tx.prepare(
        "INSERT INTO order_items (order_id, position, name, quantity, modifications, \
         unit_price_cents) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for (position, item) in (0_i64..).zip(&stored.order.items) {
        let modifications =
            serde_json::to_string(&item.modifications).map_err(|e| StoreError::Corrupt {
                id,
                reason: e.to_string(),
            })?;
        insert_item.execute(params![
            id,
            position,
            item.name,
            item.quantity,
            modifications,
            to_sql(item.unit_price)?,
        ])?;
    }
    Ok(id)
}

/// One `orders` row, before its items are attached.
pub(super) struct OrderRow {
    pub created_at: String,
    pub subtotal: i64,
    pub tip_percent: u32,
    pub tip: i64,
    pub total: i64,
    pub method: String,
    pub origin: OrderOrigin,
    pub done_at: Option<String>,
}

fn load_order(tx: &Transaction<'_>, id: i64) -> Result<StoredOrder, StoreError> {
    let row = tx.query_row(
        "SELECT created_at, subtotal_cents, tip_percent, tip_cents, total_cents, \
         payment_method, caller_phone, room, agent_id, done_at FROM orders WHERE id = ?1",
        [id],
        |r| {
            Ok(OrderRow {
                created_at: r.get(0)?,
                subtotal: r.get(1)?,
                tip_percent: r.get(2)?,
                tip: r.get(3)?,
                total: r.get(4)?,
                method: r.get(5)?,
                origin: OrderOrigin {
                    caller_phone: r.get(6)?,
                    room: r.get(7)?,
                    agent_id: r.get(8)?,
                },
                done_at: r.get(9)?,
            })
        },
    )?;
    let items: Vec<(String, u32, String, i64)> = tx
        .prepare(
            "SELECT name, quantity, modifications, unit_price_cents FROM order_items \
             WHERE order_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    assemble(id, row, items)
}

/// A stored order from its row and its item rows `(name, quantity, modifications JSON,
/// unit price)`; shared with PostgreSQL, whose rows have the same shape.
pub(super) fn assemble(
    id: i64,
    row: OrderRow,
    items: Vec<(String, u32, String, i64)>,
) -> Result<StoredOrder, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { id, reason };
    let method: PaymentMethod = row.method.parse().map_err(|e| corrupt(format!("{e}")))?;
    let mut order_items = Vec::with_capacity(items.len());
    for (name, quantity, modifications, unit_price) in items {
        order_items.push(OrderItem {
            name,
            quantity,
            modifications: serde_json::from_str(&modifications)
                .map_err(|e| corrupt(format!("modifications: {e}")))?,
            unit_price: from_sql(id, unit_price)?,
        });
    }
    Ok(StoredOrder {
        id,
        created_at: row.created_at,
        order: Order {
            items: order_items,
            payment: Payment {
                method,
                tip_percent: row.tip_percent,
            },
        },
        subtotal: from_sql(id, row.subtotal)?,
        tip: from_sql(id, row.tip)?,
        total: from_sql(id, row.total)?,
        origin: row.origin,
        done_at: row.done_at,
    })
}
