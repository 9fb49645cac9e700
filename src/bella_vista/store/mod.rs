//! The order store: confirmed orders, each written exactly once, in SQLite (one machine)
//! or PostgreSQL (many workers sharing one database).
//!
//! Every confirmation carries an idempotency key; confirming again with the same key
//! returns the order already stored and writes nothing, so a retry never doubles an order.
//! An order is durable once [`OrderStore::confirm`] returns, so the agent tells the caller
//! a number only for an order that is on disk. When a webhook is configured the order's
//! delivery is queued in the same transaction (the outbox, see
//! [`crate::bella_vista::delivery`]), so an order confirmed is an order delivered, even if
//! the worker dies a moment later.
//!
//! Schemas are versioned migrations checked in under `migrations/` and applied by
//! [`OrderStore::connect`]; workers starting together apply each one once.

mod migrations;
mod postgres;
mod sqlite;
pub(crate) mod timestamp;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::bella_vista::money::Cents;
use crate::bella_vista::order::{Order, OrderItem, PaymentMethod};

pub use postgres::PostgresOrders;
pub use sqlite::SqliteOrders;

/// Where orders are kept: a SQLite file, or a PostgreSQL database given by URL.
#[derive(Clone, PartialEq, Eq)]
pub enum OrdersDb {
    /// A SQLite database file (created with its folders when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL (`postgres://user:password@host:port/db`).
    Postgres(String),
}

impl OrdersDb {
    /// A `postgres://` or `postgresql://` URL names PostgreSQL; anything else is a path.
    pub fn parse(text: &str) -> OrdersDb {
        let trimmed = text.trim();
        if trimmed.starts_with("postgres://") || trimmed.starts_with("postgresql://") {
            OrdersDb::Postgres(trimmed.to_string())
        } else {
            OrdersDb::Sqlite(PathBuf::from(text))
        }
    }
}

impl fmt::Debug for OrdersDb {
    /// Shows a PostgreSQL URL without its password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrdersDb::Sqlite(path) => write!(f, "Sqlite({})", path.display()),
            OrdersDb::Postgres(url) => write!(f, "Postgres({})", redact_password(url)),
        }
    }
}

impl fmt::Display for OrdersDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrdersDb::Sqlite(path) => write!(f, "{}", path.display()),
            OrdersDb::Postgres(url) => write!(f, "{}", redact_password(url)),
        }
    }
}

impl<'de> serde::Deserialize<'de> for OrdersDb {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(|text| OrdersDb::parse(&text))
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Where a confirmed order came from, stored with it and sent with its webhook.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderOrigin {
    /// The caller's phone number, for a phone call.
    pub caller_phone: Option<String>,
    /// The LiveKit room of the call.
    pub room: Option<String>,
    /// The agent participant's identity in that room.
    pub agent_id: Option<String>,
}

/// An order as stored, with its number, timestamp and the totals computed at confirmation.
///
/// Serializes to `{id, created_at, items, subtotal_cents, tip_percent, tip_cents,
/// total_cents, payment_method, caller_phone}` (the shape of `orders list --json`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredOrder {
    id: i64,
    created_at: String,
    order: Order,
    subtotal: Cents,
    tip: Cents,
    total: Cents,
    origin: OrderOrigin,
    done_at: Option<String>,
}

/// The webhook delivery of one order, as the outbox holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryStatus {
    /// The order.
    pub order_id: i64,
    /// `pending`, `delivered` or `parked` (refused by the receiver; not retried).
    pub state: DeliveryState,
    /// Attempts made so far.
    pub attempts: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

/// Where an order's webhook delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryState {
    /// Not yet accepted by the receiver; retried.
    Pending,
    /// The receiver answered 2xx.
    Delivered,
    /// The receiver refused it (4xx); kept for a person to look at, not retried.
    Parked,
}

impl DeliveryState {
    fn parse(text: &str) -> Option<DeliveryState> {
        match text {
            "pending" => Some(DeliveryState::Pending),
            "delivered" => Some(DeliveryState::Delivered),
            "parked" => Some(DeliveryState::Parked),
            _ => None,
        }
    }
}

/// The next delivery to attempt: the oldest order whose delivery is still pending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    /// The order, as stored.
    pub order: StoredOrder,
    /// Attempts made so far.
    pub attempts: u32,
    /// Not to be tried before this.
    pub not_before: SystemTime,
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
    /// PostgreSQL reported an error or could not be reached.
    #[error("order database (PostgreSQL): {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// PostgreSQL could not be reached within the retries allowed.
    #[error("the order database is unreachable: {0}")]
    Unavailable(String),
    /// The order has no items.
    #[error("cannot confirm an order with no items")]
    EmptyOrder,
    /// The idempotency key is blank.
    #[error("the idempotency key must not be empty")]
    EmptyKey,
    /// An amount does not fit in a database integer.
    #[error("amount of {0} cents is too large to store")]
    AmountTooLarge(u64),
    /// No order has this number.
    #[error("there is no order {0}")]
    NoSuchOrder(i64),
    /// The database holds something this code cannot read back.
    #[error("order store holds an unreadable order {id}: {reason}")]
    Corrupt {
        /// The order's id.
        id: i64,
        /// What is wrong.
        reason: String,
    },
    /// The database was migrated by a newer version of this program.
    #[error(
        "the order database has schema version {found}, newer than this program knows ({known}); upgrade bella-vista"
    )]
    NewerSchema {
        /// The version in the database.
        found: i64,
        /// The newest version this program has.
        known: i64,
    },
    /// A blocking database call stopped before returning.
    #[error("the order store stopped: {0}")]
    Stopped(String),
}

/// Confirmed orders, in SQLite or PostgreSQL. Cheap to clone; clones share connections.
#[derive(Debug, Clone)]
pub struct OrderStore {
    backend: Backend,
    outbox: bool,
    confirmed: Arc<tokio::sync::Notify>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(SqliteOrders),
    Postgres(PostgresOrders),
}

impl OrderStore {
    /// Opens (or creates) the SQLite database at `path`, creating folders and the schema.
    pub fn open(path: &Path) -> Result<OrderStore, StoreError> {
        Ok(OrderStore::with_backend(Backend::Sqlite(
            SqliteOrders::open(path)?,
        )))
    }

    /// A throwaway SQLite store in memory, for tests.
    pub fn open_in_memory() -> Result<OrderStore, StoreError> {
        Ok(OrderStore::with_backend(Backend::Sqlite(
            SqliteOrders::open_in_memory()?,
        )))
    }

    /// Opens the store at `db`: a SQLite file, or PostgreSQL (connecting and migrating).
    pub async fn connect(db: &OrdersDb) -> Result<OrderStore, StoreError> {
        match db {
            OrdersDb::Sqlite(path) => {
                let path = path.clone();
                let sqlite = blocking(move || SqliteOrders::open(&path)).await?;
                Ok(OrderStore::with_backend(Backend::Sqlite(sqlite)))
            }
            OrdersDb::Postgres(url) => Ok(OrderStore::with_backend(Backend::Postgres(
                PostgresOrders::connect(url).await?,
            ))),
        }
    }

    fn with_backend(backend: Backend) -> OrderStore {
        OrderStore {
            backend,
            outbox: false,
            confirmed: Arc::new(tokio::sync::Notify::new()),
        }
    }

    /// The SQLite store underneath, if it is one: synchronous reads for tests and benches.
    pub fn sqlite(&self) -> Option<&SqliteOrders> {
        match &self.backend {
            Backend::Sqlite(db) => Some(db),
            Backend::Postgres(_) => None,
        }
    }

    /// Queues every order confirmed from now on for webhook delivery, in the order's own
    /// transaction.
    pub fn with_outbox(mut self) -> OrderStore {
        self.outbox = true;
        self
    }

    /// Which database this is, for messages.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Writes a confirmed order once, stamped with the current time. See
    /// [`OrderStore::confirm_at`].
    pub async fn confirm(
        &self,
        idempotency_key: &str,
        order: &Order,
        origin: &OrderOrigin,
    ) -> Result<StoredOrder, StoreError> {
        self.confirm_at(idempotency_key, order, origin, SystemTime::now())
            .await
    }

    /// Writes a confirmed order once, stamped `now`. If an order with `idempotency_key` is
    /// already stored, returns it (same number) and writes nothing, even if `order`
    /// differs. Returns once the order is durable.
    pub async fn confirm_at(
        &self,
        idempotency_key: &str,
        order: &Order,
        origin: &OrderOrigin,
        now: SystemTime,
    ) -> Result<StoredOrder, StoreError> {
        if idempotency_key.trim().is_empty() {
            return Err(StoreError::EmptyKey);
        }
        if order.items.is_empty() {
            return Err(StoreError::EmptyOrder);
        }
        let new = NewOrder {
            key: idempotency_key.to_string(),
            stored: StoredOrder::new(order, origin, now),
            outbox: self.outbox,
        };
        let stored = match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.confirm(&new)).await?
            }
            Backend::Postgres(db) => db.confirm(&new).await?,
        };
        self.confirmed.notify_waiters();
        Ok(stored)
    }

    /// Stored orders, oldest (lowest number) first: all of them, or those confirmed at or
    /// after `since`.
    pub async fn list(&self, since: Option<SystemTime>) -> Result<Vec<StoredOrder>, StoreError> {
        let since = since.map(timestamp::rfc3339);
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.list(since.as_deref(), None)).await
            }
            Backend::Postgres(db) => db.list(since.as_deref(), None).await,
        }
    }

    /// Orders numbered above `after`, oldest first (what a live view has not seen yet).
    pub async fn list_after(&self, after: i64) -> Result<Vec<StoredOrder>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.list(None, Some(after))).await
            }
            Backend::Postgres(db) => db.list(None, Some(after)).await,
        }
    }

    /// Marks order `id` done in the kitchen (once; marking again keeps the first time).
    pub async fn mark_done(&self, id: i64) -> Result<StoredOrder, StoreError> {
        let now = timestamp::rfc3339(SystemTime::now());
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.mark_done(id, &now)).await
            }
            Backend::Postgres(db) => db.mark_done(id, &now).await,
        }
    }

    /// Deliveries not yet accepted by the webhook receiver (pending or parked), oldest
    /// first.
    pub async fn undelivered(&self) -> Result<Vec<DeliveryStatus>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.undelivered()).await
            }
            Backend::Postgres(db) => db.undelivered().await,
        }
    }

    /// The oldest pending delivery, whether or not it is due yet.
    pub async fn next_delivery(&self) -> Result<Option<DueDelivery>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.next_delivery()).await
            }
            Backend::Postgres(db) => db.next_delivery().await,
        }
    }

    /// Records the outcome of one delivery attempt of order `id`.
    pub async fn record_delivery(
        &self,
        id: i64,
        outcome: DeliveryOutcome,
    ) -> Result<(), StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.record_delivery(id, &outcome)).await
            }
            Backend::Postgres(db) => db.record_delivery(id, &outcome).await,
        }
    }

    /// Takes the right to deliver webhooks, if no other process holds it: one deliverer
    /// at a time keeps deliveries in order. Held until the lock is dropped or the process
    /// dies (a file lock for SQLite, a session advisory lock for PostgreSQL).
    pub async fn try_delivery_lock(&self) -> Result<Option<DeliveryLock>, StoreError> {
        match &self.backend {
            Backend::Sqlite(db) => {
                let db = db.clone();
                blocking(move || db.try_delivery_lock()).await
            }
            Backend::Postgres(db) => Ok(db.try_delivery_lock().await?.map(DeliveryLock::Postgres)),
        }
    }

    /// Resolves when an order is confirmed through this store (or a clone of it) after
    /// the returned future was first polled or enabled.
    pub fn confirmed(&self) -> tokio::sync::futures::Notified<'_> {
        self.confirmed.notified()
    }
}

impl From<SqliteOrders> for OrderStore {
    fn from(db: SqliteOrders) -> Self {
        OrderStore::with_backend(Backend::Sqlite(db))
    }
}

/// What came of one webhook delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver accepted it.
    Delivered {
        /// When.
        at: SystemTime,
    },
    /// It failed in a way worth retrying; try again at `retry_at`.
    Failed {
        /// Why.
        error: String,
        /// When to try again.
        retry_at: SystemTime,
    },
    /// The receiver refused it; keep it for a person and move on.
    Parked {
        /// Why.
        error: String,
    },
}

/// The right to deliver webhooks, held by one process at a time.
#[derive(Debug)]
pub enum DeliveryLock {
    /// An exclusive lock on a file beside the SQLite database.
    File(std::fs::File),
    /// A session advisory lock, held by its own connection.
    Postgres(postgres::AdvisoryLock),
    /// The lock of an in-memory store (tests).
    Memory(sqlite::MemoryLock),
}

impl DeliveryLock {
    /// Whether the lock is still held (a PostgreSQL lock ends with its connection).
    pub fn is_held(&self) -> bool {
        match self {
            DeliveryLock::File(_) | DeliveryLock::Memory(_) => true,
            DeliveryLock::Postgres(lock) => lock.is_held(),
        }
    }
}

/// An order about to be written, with the totals and timestamp fixed.
struct NewOrder {
    key: String,
    stored: StoredOrder,
    outbox: bool,
}

impl StoredOrder {
    fn new(order: &Order, origin: &OrderOrigin, now: SystemTime) -> StoredOrder {
        StoredOrder {
            id: 0,
            created_at: timestamp::rfc3339(now),
            order: order.clone(),
            subtotal: order.subtotal(),
            tip: order.tip(),
            total: order.total(),
            origin: origin.clone(),
            done_at: None,
        }
    }

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
        self.origin.caller_phone.as_deref()
    }

    /// The call the order came from.
    pub fn origin(&self) -> &OrderOrigin {
        &self.origin
    }

    /// When the kitchen marked it done, RFC 3339 in UTC.
    pub fn done_at(&self) -> Option<&str> {
        self.done_at.as_deref()
    }

    /// The JSON a webhook receiver gets: the `orders list --json` shape plus the call's
    /// room and the agent's id.
    pub fn webhook_json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(object) = value.as_object_mut() {
            object.insert("room".into(), self.origin.room.clone().into());
            object.insert("agent_id".into(), self.origin.agent_id.clone().into());
        }
        value
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
            caller_phone: self.origin.caller_phone.as_deref(),
        }
        .serialize(serializer)
    }
}

fn to_sql(amount: Cents) -> Result<i64, StoreError> {
    i64::try_from(amount.0).map_err(|_| StoreError::AmountTooLarge(amount.0))
}

fn from_sql(id: i64, value: i64) -> Result<Cents, StoreError> {
    u64::try_from(value)
        .map(Cents)
        .map_err(|_| StoreError::Corrupt {
            id,
            reason: format!("negative amount {value}"),
        })
}

/// Unix milliseconds of `time` (0 before 1970).
fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The instant `ms` Unix milliseconds name.
fn from_unix_ms(ms: i64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Runs a SQLite call off the async runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::Stopped(e.to_string()))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bella_vista::order::Payment;
    use rusqlite::Connection;
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

    fn phone(number: &str) -> OrderOrigin {
        OrderOrigin {
            caller_phone: Some(number.to_owned()),
            ..OrderOrigin::default()
        }
    }

    fn count_rows(path: &Path, table: &str) -> i64 {
        let connection = Connection::open(path).expect("open");
        connection
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .expect("count")
    }

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
        assert_shareable::<OrderStore>();
    }

    #[tokio::test]
    async fn confirming_twice_with_one_key_writes_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("nested/dir/orders.db");
        let store = OrderStore::open(&path).expect("open");
        let none = OrderOrigin::default();
        let first = store
            .confirm("call-1", &order(), &none)
            .await
            .expect("first");
        let mut changed = order();
        changed.items.pop();
        let second = store
            .confirm("call-1", &changed, &none)
            .await
            .expect("second");
        assert_eq!(first.id(), 1);
        assert_eq!(second, first);
        assert_eq!(count_rows(&path, "orders"), 1);
        let other = store
            .confirm("call-2", &order(), &none)
            .await
            .expect("other");
        assert_eq!(other.id(), 2);
        assert_eq!(store.list(None).await.expect("list").len(), 2);
    }

    #[tokio::test]
    async fn a_confirmed_order_is_visible_to_a_new_connection() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orders.db");
        let store = OrderStore::open(&path).expect("open");
        let stored = store
            .confirm("k", &order(), &phone("+15550100"))
            .await
            .expect("confirm");
        let reopened = OrderStore::open(&path).expect("second open");
        assert_eq!(reopened.list(None).await.expect("list"), vec![stored]);
        let mode: String = Connection::open(&path)
            .and_then(|c| c.query_row("PRAGMA journal_mode", [], |r| r.get(0)))
            .expect("journal mode");
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn rejects_empty_orders_and_keys() {
        let store = OrderStore::open_in_memory().expect("open");
        let mut empty = order();
        empty.items.clear();
        let none = OrderOrigin::default();
        assert!(matches!(
            store.confirm("k", &empty, &none).await,
            Err(StoreError::EmptyOrder)
        ));
        assert!(matches!(
            store.confirm(" ", &order(), &none).await,
            Err(StoreError::EmptyKey)
        ));
        assert!(store.list(None).await.expect("list").is_empty());
    }

    #[tokio::test]
    async fn list_json_has_the_documented_shape() {
        let store = OrderStore::open_in_memory().expect("open");
        let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        store
            .confirm_at("a", &order(), &OrderOrigin::default(), at)
            .await
            .expect("confirm");
        let json = serde_json::to_value(store.list(None).await.expect("list")).expect("json");
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

    #[tokio::test]
    async fn list_is_ordered_by_id_and_keeps_the_phone() {
        let store = OrderStore::open_in_memory().expect("open");
        for key in ["x", "y", "z"] {
            store
                .confirm(key, &order(), &phone("+15550100"))
                .await
                .expect("confirm");
        }
        let orders = store.list(None).await.expect("list");
        let ids: Vec<i64> = orders.iter().map(StoredOrder::id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(orders[0].caller_phone(), Some("+15550100"));
        assert_eq!(orders[0].total(), Cents(7788));
        assert!(orders[0].created_at().ends_with('Z'));
        let later = store.list_after(1).await.expect("after");
        assert_eq!(
            later.iter().map(StoredOrder::id).collect::<Vec<_>>(),
            [2, 3]
        );
    }

    #[tokio::test]
    async fn since_keeps_only_orders_confirmed_from_then_on() {
        let store = OrderStore::open_in_memory().expect("open");
        let day = |d: u64| UNIX_EPOCH + Duration::from_secs(1_700_000_000 + d * 86_400);
        let none = OrderOrigin::default();
        store
            .confirm_at("a", &order(), &none, day(0))
            .await
            .expect("a");
        store
            .confirm_at("b", &order(), &none, day(1))
            .await
            .expect("b");
        let today = store.list(Some(day(1))).await.expect("list");
        assert_eq!(today.iter().map(StoredOrder::id).collect::<Vec<_>>(), [2]);
    }

    #[tokio::test]
    async fn the_outbox_is_written_with_the_order_and_walks_through_its_states() {
        let store = OrderStore::open_in_memory().expect("open").with_outbox();
        let origin = OrderOrigin {
            caller_phone: Some("+15550100".into()),
            room: Some("call-7".into()),
            agent_id: Some("agent-A".into()),
        };
        store.confirm("a", &order(), &origin).await.expect("a");
        store.confirm("b", &order(), &origin).await.expect("b");
        let next = store.next_delivery().await.expect("next").expect("one due");
        assert_eq!(next.order.id(), 1);
        assert_eq!(next.attempts, 0);
        let json = next.order.webhook_json();
        assert_eq!(json["room"], "call-7");
        assert_eq!(json["agent_id"], "agent-A");
        assert_eq!(json["caller_phone"], "+15550100");
        assert_eq!(json["total_cents"], 7788);

        let retry_at = UNIX_EPOCH + Duration::from_secs(2_000_000_000);
        let failed = DeliveryOutcome::Failed {
            error: "HTTP 503".into(),
            retry_at,
        };
        store.record_delivery(1, failed).await.expect("failed");
        let next = store
            .next_delivery()
            .await
            .expect("next")
            .expect("still due");
        assert_eq!(
            (next.order.id(), next.attempts, next.not_before),
            (1, 1, retry_at)
        );

        let parked = DeliveryOutcome::Parked {
            error: "HTTP 400".into(),
        };
        store.record_delivery(1, parked).await.expect("parked");
        let at = SystemTime::now();
        store
            .record_delivery(2, DeliveryOutcome::Delivered { at })
            .await
            .expect("delivered");
        assert!(store.next_delivery().await.expect("next").is_none());
        let undelivered = store.undelivered().await.expect("undelivered");
        assert_eq!(
            undelivered,
            vec![DeliveryStatus {
                order_id: 1,
                state: DeliveryState::Parked,
                attempts: 2,
                last_error: Some("HTTP 400".into()),
            }]
        );
    }

    #[tokio::test]
    async fn without_a_webhook_nothing_is_queued() {
        let store = OrderStore::open_in_memory().expect("open");
        store
            .confirm("a", &order(), &OrderOrigin::default())
            .await
            .expect("a");
        assert!(store.next_delivery().await.expect("next").is_none());
    }

    #[tokio::test]
    async fn marking_done_keeps_the_first_time_and_unknown_orders_are_an_error() {
        let store = OrderStore::open_in_memory().expect("open");
        store
            .confirm("a", &order(), &OrderOrigin::default())
            .await
            .expect("a");
        let done = store.mark_done(1).await.expect("done");
        let first = done.done_at().expect("stamped").to_owned();
        let again = store.mark_done(1).await.expect("again");
        assert_eq!(again.done_at(), Some(first.as_str()));
        assert!(matches!(
            store.mark_done(9).await,
            Err(StoreError::NoSuchOrder(9))
        ));
    }

    #[tokio::test]
    async fn one_deliverer_at_a_time_per_database_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orders.db");
        let one = OrderStore::open(&path).expect("one");
        let two = OrderStore::open(&path).expect("two");
        let lock = one.try_delivery_lock().await.expect("lock").expect("taken");
        assert!(lock.is_held());
        assert!(two.try_delivery_lock().await.expect("lock").is_none());
        drop(lock);
        assert!(two.try_delivery_lock().await.expect("lock").is_some());
    }

    #[test]
    fn a_database_from_before_migrations_is_brought_up_to_date() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orders.db");
        let old = Connection::open(&path).expect("old");
        old.execute_batch(migrations::SQLITE[0].sql)
            .expect("old schema");
        old.execute(
            "INSERT INTO orders (idempotency_key, created_at, subtotal_cents, tip_percent, \
             tip_cents, total_cents, payment_method) VALUES ('k', 'x', 1, 0, 0, 1, 'cash')",
            [],
        )
        .expect("old row");
        drop(old);
        let store = SqliteOrders::open(&path).expect("migrated");
        assert_eq!(store.list_all().expect("list")[0].id(), 1);
        let version: i64 = Connection::open(&path)
            .and_then(|c| c.query_row("PRAGMA user_version", [], |r| r.get(0)))
            .expect("version");
        assert_eq!(version, migrations::latest(migrations::SQLITE));
    }

    #[test]
    fn a_database_from_a_newer_program_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("orders.db");
        SqliteOrders::open(&path).expect("create");
        Connection::open(&path)
            .and_then(|c| c.pragma_update(None, "user_version", 99))
            .expect("bump");
        assert!(matches!(
            SqliteOrders::open(&path),
            Err(StoreError::NewerSchema { found: 99, .. })
        ));
    }

    #[test]
    fn a_postgres_url_is_told_from_a_path_and_its_password_never_shown() {
        let db = OrdersDb::parse("postgres://bella:hunter2@db.example:5432/orders");
        assert!(matches!(db, OrdersDb::Postgres(_)));
        let shown = format!("{db:?} {db}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("bella:***@db.example:5432/orders"),
            "{shown}"
        );
        assert_eq!(
            OrdersDb::parse("/data/orders.db"),
            OrdersDb::Sqlite(PathBuf::from("/data/orders.db"))
        );
        assert!(matches!(
            OrdersDb::parse("postgresql://localhost/x"),
            OrdersDb::Postgres(_)
        ));
    }
}
