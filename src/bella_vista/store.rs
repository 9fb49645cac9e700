//! The order store: confirmed orders in SQLite, each written exactly once.
//!
//! Every confirmation carries an idempotency key; confirming again with the same key
//! returns the order already stored and writes nothing, so a retry never doubles an order.
//! The database runs in WAL mode with `synchronous=FULL`, so an order is on disk once
//! [`OrderStore::confirm`] returns. Calls block; async callers use `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior, params};
use serde::Serialize;

use crate::bella_vista::money::Cents;
use crate::bella_vista::order::{Order, OrderItem, Payment, PaymentMethod};

/// Tables for orders and their lines. `AUTOINCREMENT` keeps ids from ever being reused.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS orders (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key TEXT    NOT NULL UNIQUE,
    created_at      TEXT    NOT NULL,
    subtotal_cents  INTEGER NOT NULL,
    tip_percent     INTEGER NOT NULL,
    tip_cents       INTEGER NOT NULL,
    total_cents     INTEGER NOT NULL,
    payment_method  TEXT    NOT NULL,
    caller_phone    TEXT
);
CREATE TABLE IF NOT EXISTS order_items (
    order_id         INTEGER NOT NULL REFERENCES orders(id),
    position         INTEGER NOT NULL,
    name             TEXT    NOT NULL,
    quantity         INTEGER NOT NULL,
    modifications    TEXT    NOT NULL, -- JSON array of strings
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, position)
);
";

/// How long to wait for another process holding the database lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Confirmed orders in a SQLite database. Cheap to clone; clones share one connection.
#[derive(Debug, Clone)]
pub struct OrderStore {
    connection: Arc<Mutex<Connection>>,
}

/// An order as stored, with its id, timestamp and the totals computed at confirmation.
///
/// Serializes to `{id, created_at, items, subtotal_cents, tip_percent, tip_cents,
/// total_cents, payment_method, caller_phone}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    id: i64,
    created_at: String,
    order: Order,
    subtotal: Cents,
    tip: Cents,
    total: Cents,
    caller_phone: Option<String>,
}

/// Why the order store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database's folder could not be created.
    #[error("cannot create the folder for the order store {}: {source}", path.display())]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// SQLite reported an error.
    #[error("order store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The order has no items.
    #[error("cannot confirm an order with no items")]
    EmptyOrder,
    /// The idempotency key is blank.
    #[error("the idempotency key must not be empty")]
    EmptyKey,
    /// An amount does not fit in a SQLite integer.
    #[error("amount of {0} cents is too large to store")]
    AmountTooLarge(u64),
    /// The database holds something this code cannot read back.
    #[error("order store holds an unreadable order {id}: {reason}")]
    Corrupt {
        /// The order's id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
}

impl OrderStore {
    /// Opens (or creates) the database at `path`, creating parent folders and the schema.
    pub fn open(path: &Path) -> Result<OrderStore, StoreError> {
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
        OrderStore::init(connection)
    }

    /// A throwaway store in memory, for tests.
    pub fn open_in_memory() -> Result<OrderStore, StoreError> {
        OrderStore::init(Connection::open_in_memory()?)
    }

    fn init(connection: Connection) -> Result<OrderStore, StoreError> {
        connection.pragma_update(None, "synchronous", "FULL")?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        connection.execute_batch(SCHEMA)?;
        Ok(OrderStore {
            connection: Arc::new(Mutex::new(connection)),
        })
    }

    /// Writes a confirmed order once, stamped with the current time.
    ///
    /// If an order with `idempotency_key` is already stored, returns it (same id) and writes
    /// nothing, even if `order` differs.
    pub fn confirm(
        &self,
        idempotency_key: &str,
        order: &Order,
        caller_phone: Option<&str>,
    ) -> Result<StoredOrder, StoreError> {
        self.confirm_at(idempotency_key, order, caller_phone, SystemTime::now())
    }

    /// [`OrderStore::confirm`] with the confirmation time given.
    pub fn confirm_at(
        &self,
        idempotency_key: &str,
        order: &Order,
        caller_phone: Option<&str>,
        now: SystemTime,
    ) -> Result<StoredOrder, StoreError> {
        if idempotency_key.trim().is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if order.items.is_empty() {
            return Err(StoreError::EmptyOrder);
        }
        let mut connection = self.lock();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let existing: Option<i64> = tx
            .query_row(
                "SELECT id FROM orders WHERE idempotency_key = ?1",
                [idempotency_key],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(id) = existing {
            let stored = load_order(&tx, id)?;
            tx.commit()?;
            tracing::debug!(order_id = id, "order already confirmed under this key");
            return Ok(stored);
        }
        let stored = StoredOrder {
            id: 0,
            created_at: timestamp::rfc3339(now),
            order: order.clone(),
            subtotal: order.subtotal(),
            tip: order.tip(),
            total: order.total(),
            caller_phone: caller_phone.map(str::to_owned),
        };
        let id = insert_order(&tx, idempotency_key, &stored)?;
        tx.commit()?;
        tracing::info!(order_id = id, total = %stored.total, "order confirmed");
        Ok(StoredOrder { id, ..stored })
    }

    /// Every stored order, oldest (lowest id) first.
    pub fn list(&self) -> Result<Vec<StoredOrder>, StoreError> {
        let mut connection = self.lock();
        let tx = connection.transaction()?;
        let ids: Vec<i64> = tx
            .prepare("SELECT id FROM orders ORDER BY id")?
            .query_map([], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        let orders = ids
            .into_iter()
            .map(|id| load_order(&tx, id))
            .collect::<Result<_, _>>()?;
        tx.commit()?;
        Ok(orders)
    }

    /// The connection. A panic while holding the lock leaves no open transaction (it rolls
    /// back on drop), so a poisoned lock is safe to reuse.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl StoredOrder {
    /// The order number to tell the caller (1, 2, 3, ...).
    pub fn id(&self) -> i64 {
        self.id
    }

    /// When the order was confirmed, RFC 3339 in UTC (`2024-05-01T18:30:00Z`).
    pub fn created_at(&self) -> &str {
        &self.created_at
    }

    /// The items and payment as confirmed.
    pub fn order(&self) -> &Order {
        &self.order
    }

    /// The subtotal at confirmation.
    pub fn subtotal(&self) -> Cents {
        self.subtotal
    }

    /// The tip at confirmation.
    pub fn tip(&self) -> Cents {
        self.tip
    }

    /// The total at confirmation.
    pub fn total(&self) -> Cents {
        self.total
    }

    /// The caller's phone number, when known.
    pub fn caller_phone(&self) -> Option<&str> {
        self.caller_phone.as_deref()
    }
}

/// The JSON shape of a [`StoredOrder`].
#[derive(Serialize)]
struct StoredOrderJson<'a> {
    id: i64,
    created_at: &'a str,
    items: &'a [OrderItem],
    subtotal_cents: Cents,
    tip_percent: u32,
    tip_cents: Cents,
    total_cents: Cents,
    payment_method: PaymentMethod,
    caller_phone: Option<&'a str>,
}

impl Serialize for StoredOrder {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        StoredOrderJson {
            id: self.id,
            created_at: &self.created_at,
            items: &self.order.items,
            subtotal_cents: self.subtotal,
            tip_percent: self.order.payment.tip_percent,
            tip_cents: self.tip,
            total_cents: self.total,
            payment_method: self.order.payment.method,
            caller_phone: self.caller_phone.as_deref(),
        }
        .serialize(serializer)
    }
}

fn to_sql(amount: Cents) -> Result<i64, StoreError> {
    i64::try_from(amount.0).map_err(|_| StoreError::AmountTooLarge(amount.0))
}

fn insert_order(tx: &Transaction<'_>, key: &str, stored: &StoredOrder) -> Result<i64, StoreError> {
    tx.execute(
        "INSERT INTO orders (idempotency_key, created_at, subtotal_cents, tip_percent, \
         tip_cents, total_cents, payment_method, caller_phone) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        params![
            key,
            stored.created_at,
            to_sql(stored.subtotal)?,
            stored.order.payment.tip_percent,
            to_sql(stored.tip)?,
            to_sql(stored.total)?,
            stored.order.payment.method.as_str(),
            stored.caller_phone,
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

fn load_order(tx: &Transaction<'_>, id: i64) -> Result<StoredOrder, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { id, reason };
    let (created_at, subtotal, tip_percent, tip, total, method, caller_phone): (
        String,
        i64,
        u32,
        i64,
        i64,
        String,
        Option<String>,
    ) = tx.query_row(
        "SELECT created_at, subtotal_cents, tip_percent, tip_cents, total_cents, \
         payment_method, caller_phone FROM orders WHERE id = ?1",
        [id],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        },
    )?;
    let cents = |value: i64| {
        u64::try_from(value)
            .map(Cents)
            .map_err(|_| corrupt(format!("negative amount {value}")))
    };
    let method: PaymentMethod = method.parse().map_err(|e| corrupt(format!("{e}")))?;
    let rows: Vec<(String, u32, String, i64)> = tx
        .prepare(
            "SELECT name, quantity, modifications, unit_price_cents FROM order_items \
             WHERE order_id = ?1 ORDER BY position",
        )?
        .query_map([id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut items = Vec::with_capacity(rows.len());
    for (name, quantity, modifications, unit_price) in rows {
        items.push(OrderItem {
            name,
            quantity,
            modifications: serde_json::from_str(&modifications)
                .map_err(|e| corrupt(format!("modifications: {e}")))?,
            unit_price: cents(unit_price)?,
        });
    }
    Ok(StoredOrder {
        id,
        created_at,
        order: Order {
            items,
            payment: Payment {
                method,
                tip_percent,
            },
        },
        subtotal: cents(subtotal)?,
        tip: cents(tip)?,
        total: cents(total)?,
        caller_phone,
    })
}

/// RFC 3339 timestamps from `SystemTime` without a date library.
mod timestamp {
    use std::time::{SystemTime, UNIX_EPOCH};

    /// `time` in UTC to the second, e.g. `2023-11-14T22:13:20Z`; times before 1970 clamp
    /// to the epoch.
    pub(super) fn rfc3339(time: SystemTime) -> String {
        let secs = time
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
        let of_day = secs % 86_400;
        let (year, month, day) = civil_from_days(days);
        format!(
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
            of_day / 3600,
            of_day % 3600 / 60,
            of_day % 60
        )
    }

    /// (year, month, day) of the proleptic Gregorian calendar for days since 1970-01-01
    /// (Howard Hinnant's `civil_from_days`).
    pub(super) fn civil_from_days(days: i64) -> (i64, u32, u32) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097); // day of era, 0..=146096
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of year from March 1st
        let mp = (5 * doy + 2) / 153; // month from March, 0..=11
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Both values are small by construction (1..=31, 1..=12).
        (year, day_or_month(month), day_or_month(day))
    }

    fn day_or_month(value: i64) -> u32 {
        u32::try_from(value).unwrap_or(0)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::time::Duration;

        fn at(secs: u64) -> String {
            rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
        }

        #[test]
        fn formats_known_instants() {
            assert_eq!(at(0), "1970-01-01T00:00:00Z");
            assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
            assert_eq!(at(1_700_000_000), "2023-11-14T22:13:20Z");
            assert_eq!(at(1_709_164_799), "2024-02-28T23:59:59Z");
            assert_eq!(at(4_102_444_799), "2099-12-31T23:59:59Z");
            assert_eq!(at(253_402_300_799), "9999-12-31T23:59:59Z");
        }

        #[test]
        fn civil_dates_roll_over_correctly() {
            assert_eq!(civil_from_days(0), (1970, 1, 1));
            assert_eq!(civil_from_days(-1), (1969, 12, 31));
            assert_eq!(civil_from_days(59), (1970, 3, 1));
            assert_eq!(civil_from_days(10_956), (1999, 12, 31));
            assert_eq!(civil_from_days(10_957), (2000, 1, 1));
            // 2100 is not a leap year: Feb 28 is followed by Mar 1.
            assert_eq!(civil_from_days(47_540), (2100, 2, 28));
            assert_eq!(civil_from_days(47_541), (2100, 3, 1));
        }

        #[test]
        fn before_the_epoch_clamps() {
            let early = UNIX_EPOCH - Duration::from_secs(10);
            assert_eq!(rfc3339(early), "1970-01-01T00:00:00Z");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn order() -> Order {
        Order {
            items: vec![
                OrderItem {
                    name: "Grilled Salmon".to_owned(),
                    quantity: 2,
                    modifications: vec!["no lemon".to_owned()],
                    unit_price: Cents(2800),
                },
                OrderItem {
                    name: "Tiramisu".to_owned(),
                    quantity: 1,
                    modifications: vec![],
                    unit_price: Cents(1000),
                },
            ],
            payment: Payment {
                method: PaymentMethod::Card,
                tip_percent: 18,
            },
        }
    }

    fn count_rows(path: &Path) -> i64 {
        let connection = Connection::open(path).expect("open");
        connection
            .query_row("SELECT COUNT(*) FROM orders", [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<OrderStore>();
    }

    #[test]
    fn confirming_twice_with_one_key_writes_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dir/orders.db");
        let store = OrderStore::open(&path).expect("open");
        let first = store
            .confirm("call-1", &order(), None)
            .expect("first confirm");
        let mut changed = order();
        changed.items.pop();
        let second = store
            .confirm("call-1", &changed, None)
            .expect("second confirm");
        assert_eq!(first.id(), 1);
        assert_eq!(second, first);
        assert_eq!(count_rows(&path), 1);
        let other = store.confirm("call-2", &order(), None).expect("other key");
        assert_eq!(other.id(), 2);
        assert_eq!(store.list().expect("list").len(), 2);
    }

    #[test]
    fn a_confirmed_order_is_visible_to_a_new_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orders.db");
        let store = OrderStore::open(&path).expect("open");
        let stored = store
            .confirm("k", &order(), Some("+15550100"))
            .expect("confirm");
        let reopened = OrderStore::open(&path).expect("second open");
        assert_eq!(reopened.list().expect("list"), vec![stored]);
        let mode: String = Connection::open(&path)
            .and_then(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .expect("journal mode");
        assert_eq!(mode, "wal");
    }

    #[test]
    fn rejects_empty_orders_and_keys() {
        let store = OrderStore::open_in_memory().expect("open");
        let mut empty = order();
        empty.items.clear();
        assert!(matches!(
            store.confirm("k", &empty, None),
            Err(StoreError::EmptyOrder)
        ));
        assert!(matches!(
            store.confirm(" ", &order(), None),
            Err(StoreError::EmptyKey)
        ));
        assert!(store.list().expect("list").is_empty());
    }

    #[test]
    fn list_json_has_the_documented_shape() {
        let store = OrderStore::open_in_memory().expect("open");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        store.confirm_at("a", &order(), None, at).expect("confirm");
        let json = serde_json::to_value(store.list().expect("list")).expect("json");
        assert_eq!(
            json,
            serde_json::json!([{
                "id": 1,
                "created_at": "2023-11-14T22:13:20Z",
                "items": [
                    {"name": "Grilled Salmon", "quantity": 2, "modifications": ["no lemon"],
                     "unit_price_cents": 2800},
                    {"name": "Tiramisu", "quantity": 1, "modifications": [],
                     "unit_price_cents": 1000}
                ],
                "subtotal_cents": 6600,
                "tip_percent": 18,
                "tip_cents": 1188,
                "total_cents": 7788,
                "payment_method": "card",
                "caller_phone": null
            }])
        );
    }

    #[test]
    fn list_is_ordered_by_id_and_keeps_the_phone() {
        let store = OrderStore::open_in_memory().expect("open");
        for key in ["x", "y", "z"] {
            store
                .confirm(key, &order(), Some("+15550100"))
                .expect("confirm");
        }
        let orders = store.list().expect("list");
        let ids: Vec<i64> = orders.iter().map(StoredOrder::id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(orders[0].caller_phone(), Some("+15550100"));
        assert_eq!(orders[0].total(), Cents(7788));
        assert!(orders[0].created_at().ends_with('Z'));
    }
}
