//! Orders in PostgreSQL: one store shared by every worker.
//!
//! One connection per process (confirmations are short; they queue on it), opened again
//! whenever it is lost. TLS (rustls, the system's CA certificates) is used when the server
//! offers it, and required with `?sslmode=require` in the URL, as with `psql`. An operation that finds the connection gone is retried on a new
//! one a bounded number of times; confirmations can be retried safely because the
//! idempotency key is a unique constraint. Order numbers come from a one-row counter
//! updated in the order's transaction (see `migrations/postgres/0001_orders.sql`).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use tokio_postgres::{Client, GenericClient, Row};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::migrations::{self, Migration};
use super::sqlite::{OrderRow, assemble};
use super::{
    DeliveryLock, DeliveryOutcome, DeliveryState, DeliveryStatus, DueDelivery, NewOrder,
    OrderOrigin, StoreError, StoredOrder, from_unix_ms, to_sql, unix_ms,
};

/// Attempts of one operation when the connection is lost or cannot be opened.
const ATTEMPTS: u32 = 3;
/// The pause before the second attempt; doubled before each further one.
const FIRST_BACKOFF: Duration = Duration::from_millis(300);
/// The longest one attempt (connecting included) may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// Serialises schema migrations across workers (`pg_advisory_xact_lock`).
const MIGRATION_LOCK: i64 = 0x6265_6c6c_615f_6d31;
/// Makes one process at a time the webhook deliverer (`pg_try_advisory_lock`).
const DELIVERY_LOCK: i64 = 0x6265_6c6c_615f_6431;

/// Runs `$body` with `$client` bound to the shared connection (opened when needed). When
/// the connection is lost or cannot be opened, the body runs again on a new one, up to
/// [`ATTEMPTS`] times in all. (A macro rather than a function taking an async closure:
/// the futures stay `Send` for any borrowed argument.)
macro_rules! retrying {
    ($store:expr, |$client:ident| $body:expr) => {{
        let store: &PostgresOrders = $store;
        let mut attempt = 1_u32;
        loop {
            let mut slot = store.client.lock().await;
            let outcome = tokio::time::timeout(ATTEMPT_TIMEOUT, async {
                let client = match slot.take() {
                    Some(client) if !client.is_closed() => client,
                    _ => store.open().await?,
                };
                let $client: &mut Client = slot.insert(client);
                $body
            })
            .await
            .unwrap_or_else(|_| Err(timed_out()));
            if !worth_retrying(&outcome) {
                break outcome;
            }
            // The connection is gone or unusable: the next attempt opens a new one.
            *slot = None;
            drop(slot);
            if attempt >= ATTEMPTS {
                break Err(unavailable(outcome));
            }
            pause_before_retry(&outcome, attempt).await;
            attempt += 1;
        }
    }};
}

/// Confirmed orders in PostgreSQL. Cheap to clone; clones share one connection.
#[derive(Clone)]
pub struct PostgresOrders {
    config: Arc<tokio_postgres::Config>,
    tls: MakeRustlsConnect,
    client: Arc<Mutex<Option<Client>>>,
}

impl fmt::Debug for PostgresOrders {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresOrders")
            .field("hosts", &self.config.get_hosts())
            .field("dbname", &self.config.get_dbname())
            .finish_non_exhaustive()
    }
}

impl PostgresOrders {
    /// Connects to `url` (`postgres://user:password@host:port/db`) and brings the schema
    /// up to date.
    pub async fn connect(url: &str) -> Result<PostgresOrders, StoreError> {
        let config: tokio_postgres::Config = url.parse()?;
        let store = PostgresOrders {
            config: Arc::new(config),
            tls: tls_connector()?,
            client: Arc::new(Mutex::new(None)),
        };
        retrying!(&store, |client| migrate(client, migrations::POSTGRES).await)?;
        Ok(store)
    }

    pub(super) async fn confirm(&self, new: &NewOrder) -> Result<StoredOrder, StoreError> {
        let stored = retrying!(self, |client| confirm_once(client, new).await)?;
        tracing::info!(order_id = stored.id, total = %stored.total, "order confirmed");
        Ok(stored)
    }

    pub(super) async fn list(
        &self,
        since: Option<&str>,
        after: Option<i64>,
    ) -> Result<Vec<StoredOrder>, StoreError> {
        retrying!(self, |client| {
            let ids: Vec<i64> = client
                .query(
                    "SELECT id FROM orders WHERE created_at >= $1 AND id > $2 ORDER BY id",
                    &[&since.unwrap_or(""), &after.unwrap_or(0)],
                )
                .await?
                .iter()
                .map(|row| row.get(0))
                .collect();
            load_orders(&*client, &ids).await
        })
    }

    pub(super) async fn mark_done(&self, id: i64, now: &str) -> Result<StoredOrder, StoreError> {
        retrying!(self, |client| {
            let changed = client
                .execute(
                    "UPDATE orders SET done_at = COALESCE(done_at, $2) WHERE id = $1",
                    &[&id, &now],
                )
                .await?;
            if changed == 0 {
                return Err(StoreError::NoSuchOrder(id));
            }
            load_orders(&*client, &[id])
                .await?
                .pop()
                .ok_or(StoreError::NoSuchOrder(id))
        })
    }

    pub(super) async fn undelivered(&self) -> Result<Vec<DeliveryStatus>, StoreError> {
        retrying!(self, |client| {
            client
                .query(
                    "SELECT order_id, state, attempts, last_error FROM order_deliveries \
                     WHERE state <> 'delivered' ORDER BY order_id",
                    &[],
                )
                .await?
                .iter()
                .map(|row| {
                    let order_id: i64 = row.get(0);
                    let state: String = row.get(1);
                    let attempts: i32 = row.get(2);
                    Ok(DeliveryStatus {
                        order_id,
                        state: DeliveryState::parse(&state).ok_or_else(|| StoreError::Corrupt {
                            id: order_id,
                            reason: format!("unknown delivery state {state:?}"),
                        })?,
                        attempts: u32::try_from(attempts).unwrap_or(0),
                        last_error: row.get(3),
                    })
                })
                .collect()
        })
    }

    pub(super) async fn next_delivery(&self) -> Result<Option<DueDelivery>, StoreError> {
        retrying!(self, |client| {
            let Some(row) = client
                .query_opt(
                    "SELECT order_id, attempts, next_attempt_ms FROM order_deliveries \
                     WHERE state = 'pending' ORDER BY order_id LIMIT 1",
                    &[],
                )
                .await?
            else {
                return Ok(None);
            };
            let id: i64 = row.get(0);
            let attempts: i32 = row.get(1);
            let next_ms: i64 = row.get(2);
            let order = load_orders(&*client, &[id])
                .await?
                .pop()
                .ok_or(StoreError::NoSuchOrder(id))?;
            Ok(Some(DueDelivery {
                order,
                attempts: u32::try_from(attempts).unwrap_or(0),
                not_before: from_unix_ms(next_ms),
            }))
        })
    }

    pub(super) async fn record_delivery(
        &self,
        id: i64,
        outcome: &DeliveryOutcome,
    ) -> Result<(), StoreError> {
        retrying!(self, |client| {
            match outcome {
                DeliveryOutcome::Delivered { at } => {
                    client
                        .execute(
                            "UPDATE order_deliveries SET state = 'delivered', \
                             attempts = attempts + 1, delivered_at = $2, last_error = NULL \
                             WHERE order_id = $1",
                            &[&id, &super::timestamp::rfc3339(*at)],
                        )
                        .await?
                }
                DeliveryOutcome::Failed { error, retry_at } => {
                    client
                        .execute(
                            "UPDATE order_deliveries SET attempts = attempts + 1, \
                             last_error = $2, next_attempt_ms = $3 WHERE order_id = $1",
                            &[&id, error, &unix_ms(*retry_at)],
                        )
                        .await?
                }
                DeliveryOutcome::Parked { error } => {
                    client
                        .execute(
                            "UPDATE order_deliveries SET state = 'parked', \
                             attempts = attempts + 1, last_error = $2 WHERE order_id = $1",
                            &[&id, error],
                        )
                        .await?
                }
            };
            Ok(())
        })
    }

    /// A session advisory lock on a connection of its own: held until dropped or until
    /// that connection ends (a killed worker's lock is freed at once).
    pub(super) async fn try_delivery_lock(&self) -> Result<Option<AdvisoryLock>, StoreError> {
        let client = self.open().await?;
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&DELIVERY_LOCK])
            .await?
            .get(0);
        Ok(taken.then_some(AdvisoryLock { client }))
    }

    /// A new connection, its I/O driven by a task of its own.
    async fn open(&self) -> Result<Client, StoreError> {
        let (client, connection) =
            tokio::time::timeout(ATTEMPT_TIMEOUT, self.config.connect(self.tls.clone()))
                .await
                .map_err(|_| {
                    StoreError::Unavailable(format!("could not connect within {ATTEMPT_TIMEOUT:?}"))
                })?
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "order database connection ended");
            }
        });
        Ok(client)
    }
}

/// TLS with the system's CA certificates (`SSL_CERT_FILE` and `SSL_CERT_DIR` are
/// honoured) and the ring provider (not the process default: tests and library users need
/// not install one).
fn tls_connector() -> Result<MakeRustlsConnect, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            errors = ?found.errors,
            "no CA certificates found: TLS connections to the order database will fail"
        );
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::Unavailable(format!("TLS set-up: {error}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// The right to deliver webhooks, held by a PostgreSQL session.
pub struct AdvisoryLock {
    client: Client,
}

impl fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AdvisoryLock").finish_non_exhaustive()
    }
}

impl AdvisoryLock {
    /// Whether the session holding the lock is still connected.
    pub fn is_held(&self) -> bool {
        !self.client.is_closed()
    }
}

fn timed_out() -> StoreError {
    StoreError::Unavailable(format!("no answer within {ATTEMPT_TIMEOUT:?}"))
}

/// Whether an attempt failed for want of a connection (rather than on the SQL).
fn worth_retrying<T>(outcome: &Result<T, StoreError>) -> bool {
    match outcome {
        Err(StoreError::Unavailable(_)) => true,
        Err(StoreError::Postgres(error)) => error.is_closed() || is_connection_error(error),
        _ => false,
    }
}

/// The error to report after the last attempt.
fn unavailable<T>(outcome: Result<T, StoreError>) -> StoreError {
    match outcome {
        Err(StoreError::Postgres(error)) => StoreError::Unavailable(error.to_string()),
        Err(other) => other,
        Ok(_) => StoreError::Unavailable("gave up".into()),
    }
}

async fn pause_before_retry<T>(outcome: &Result<T, StoreError>, attempt: u32) {
    if let Err(error) = outcome {
        tracing::warn!(%error, attempt, "order database: trying again on a new connection");
    }
    tokio::time::sleep(FIRST_BACKOFF * 2_u32.pow(attempt - 1)).await;
}

/// An error from the socket rather than from SQL: worth a new connection.
fn is_connection_error(error: &tokio_postgres::Error) -> bool {
    if error.code().is_some() {
        // The server answered with SQLSTATE: 57P01 (admin shutdown) and the 08 class
        // (connection exceptions) mean this session is over.
        return error.code().is_some_and(|code| {
            let code = code.code();
            code.starts_with("08") || code.starts_with("57P")
        });
    }
    std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
}

/// Applies the migrations newer than `schema_migrations`, in one transaction under an
/// advisory lock.
async fn migrate(client: &mut Client, migrations: &[Migration]) -> Result<(), StoreError> {
    let known = migrations::latest(migrations);
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_at TEXT   NOT NULL
         )",
    )
    .await?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await?
        .get(0);
    if current > known {
        return Err(StoreError::NewerSchema {
            found: current,
            known,
        });
    }
    let now = super::timestamp::rfc3339(std::time::SystemTime::now());
    for migration in migrations.iter().filter(|m| m.version > current) {
        tx.batch_execute(migration.sql).await?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&migration.version, &now],
        )
        .await?;
        tracing::info!(
            version = migration.version,
            "order database schema migrated"
        );
    }
    tx.commit().await?;
    Ok(())
}

/// One attempt at storing `new`: numbered from the counter, inserted unless its key is
/// already there (then the stored order is returned and the number given back).
async fn confirm_once(client: &mut Client, new: &NewOrder) -> Result<StoredOrder, StoreError> {
    let stored = &new.stored;
    let tx = client.transaction().await?;
    let id: i64 = tx
        .query_one(
            "UPDATE order_numbers SET last = last + 1 RETURNING last",
            &[],
        )
        .await?
        .get(0);
    let tip_percent = i32::try_from(stored.order.payment.tip_percent)
        .map_err(|_| StoreError::AmountTooLarge(u64::from(stored.order.payment.tip_percent)))?;
    let inserted = tx
        .query_opt(
            "INSERT INTO orders (id, idempotency_key, created_at, subtotal_cents, tip_percent, \
             tip_cents, total_cents, payment_method, caller_phone, room, agent_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (idempotency_key) DO NOTHING RETURNING id",
            &[
                &id,
                &new.key,
                &stored.created_at,
                &to_sql(stored.subtotal)?,
                &tip_percent,
                &to_sql(stored.tip)?,
                &to_sql(stored.total)?,
                &stored.order.payment.method.as_str(),
                &stored.origin.caller_phone,
                &stored.origin.room,
                &stored.origin.agent_id,
            ],
        )
        .await?;
    if inserted.is_none() {
        tx.rollback().await?;
        let existing: i64 = client
            .query_one(
                "SELECT id FROM orders WHERE idempotency_key = $1",
                &[&new.key],
            )
            .await?
            .get(0);
        tracing::debug!(
            order_id = existing,
            "order already confirmed under this key"
        );
        return load_orders(&*client, &[existing])
            .await?
            .pop()
            .ok_or(StoreError::NoSuchOrder(existing));
    }
    let insert_item = tx
        .prepare(
            "INSERT INTO order_items (order_id, position, name, quantity, modifications, \
             unit_price_cents) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .await?;
    for (position, item) in (0_i32..).zip(&stored.order.items) {
        let modifications =
            serde_json::to_string(&item.modifications).map_err(|e| StoreError::Corrupt {
                id,
                reason: e.to_string(),
            })?;
        let quantity = i32::try_from(item.quantity)
            .map_err(|_| StoreError::AmountTooLarge(u64::from(item.quantity)))?;
        tx.execute(
            &insert_item,
            &[
                &id,
                &position,
                &item.name,
                &quantity,
                &modifications,
                &to_sql(item.unit_price)?,
            ],
        )
        .await?;
    }
    if new.outbox {
        tx.execute(
            "INSERT INTO order_deliveries (order_id, state, next_attempt_ms) \
             VALUES ($1, 'pending', 0)",
            &[&id],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(StoredOrder {
        id,
        ..stored.clone()
    })
}

/// The orders numbered `ids`, in that order, with their items (two queries).
async fn load_orders(
    client: &impl GenericClient,
    ids: &[i64],
) -> Result<Vec<StoredOrder>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids = ids.to_vec();
    let rows = client
        .query(
            "SELECT id, created_at, subtotal_cents, tip_percent, tip_cents, total_cents, \
             payment_method, caller_phone, room, agent_id, done_at FROM orders \
             WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .await?;
    let mut items: BTreeMap<i64, Vec<(String, u32, String, i64)>> = BTreeMap::new();
    for row in client
        .query(
            "SELECT order_id, name, quantity, modifications, unit_price_cents \
             FROM order_items WHERE order_id = ANY($1) ORDER BY order_id, position",
            &[&ids],
        )
        .await?
    {
        let quantity: i32 = row.get(2);
        items.entry(row.get(0)).or_default().push((
            row.get(1),
            u32::try_from(quantity).unwrap_or(0),
            row.get(3),
            row.get(4),
        ));
    }
    rows.iter()
        .map(|row| {
            let id: i64 = row.get(0);
            assemble(id, order_row(row), items.remove(&id).unwrap_or_default())
        })
        .collect()
}

fn order_row(row: &Row) -> OrderRow {
    let tip_percent: i32 = row.get(3);
    OrderRow {
        created_at: row.get(1),
        subtotal: row.get(2),
        tip_percent: u32::try_from(tip_percent).unwrap_or(0),
        tip: row.get(4),
        total: row.get(5),
        method: row.get(6),
        origin: OrderOrigin {
            caller_phone: row.get(7),
            room: row.get(8),
            agent_id: row.get(9),
        },
        done_at: row.get(10),
    }
}

impl From<AdvisoryLock> for DeliveryLock {
    fn from(lock: AdvisoryLock) -> Self {
        DeliveryLock::Postgres(lock)
    }
}
