//! Webhook delivery of confirmed orders: at least once, in order, signed.
//!
//! A confirmation writes the order and its delivery (the outbox row) in one transaction
//! (see [`crate::bella_vista::store`]). One process at a time holds the delivery lock and
//! POSTs the oldest pending order, then the next: a 2xx marks it delivered; a timeout, a
//! refused connection, 408, 425, 429 or 5xx keeps it first in line and tries again after a
//! pause that doubles from 1 s up to `[orders] retry_max_ms`; any other answer (a 4xx)
//! parks it (kept for `orders list --undelivered`, logged, not retried) and the line moves
//! on. A worker that dies holding the lock frees it (a file lock, or a PostgreSQL session
//! lock), so another process, or the same one restarted, carries on where it stopped.
//!
//! Receivers see each order at least once with the same `id` (also in the
//! `Idempotency-Key` header): a retry after a lost answer repeats it, never renumbers it.
//! The `Bella-Vista-Signature` header is `t=<unix seconds>,v1=<hex HMAC-SHA256 of
//! "<t>.<body>" with the shared secret>`.

use std::time::{Duration, SystemTime};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::bella_vista::store::{DeliveryOutcome, DueDelivery, OrderStore};
use crate::config::{ConfigError, OrdersConfig, Secret};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "Bella-Vista-Signature";
/// The header carrying the order number, the receiver's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// The first pause after a failed attempt; it doubles with each further failure.
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Where and how confirmed orders are POSTed.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: reqwest::Url,
    secret: Secret,
    client: reqwest::Client,
    retry_max: Duration,
    poll: Duration,
}

impl Webhook {
    /// The webhook in `[orders]`, or `None` when no URL is set. A URL that is not an
    /// absolute http(s) URL, or a webhook without a secret, is an error.
    pub fn from_config(orders: &OrdersConfig) -> Result<Option<Webhook>, ConfigError> {
        let Some(url) = orders.webhook()? else {
            return Ok(None);
        };
        let secret = orders
            .webhook_secret
            .clone()
            .filter(|s| !s.expose().is_empty())
            .ok_or_else(|| {
                ConfigError::Invalid(
                    "orders.webhook_url needs a signing secret: set BELLA_VISTA_WEBHOOK_SECRET"
                        .into(),
                )
            })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_millis(orders.webhook_timeout_ms))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError::Invalid(format!("orders.webhook_url: {e}")))?;
        Ok(Some(Webhook {
            url,
            secret,
            client,
            retry_max: Duration::from_millis(orders.retry_max_ms.max(1)),
            poll: Duration::from_millis(orders.poll_ms.max(10)),
        }))
    }

    /// POSTs one order and says what came of it, at `now`.
    pub async fn attempt(&self, due: &DueDelivery, now: SystemTime) -> DeliveryOutcome {
        let id = due.order.id();
        let body = due.order.webhook_json().to_string();
        let signature = sign(self.secret.expose(), unix_seconds(now), &body);
        let sent = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, id.to_string())
            .header(SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await;
        let retry_at = now + retry_delay(due.attempts, self.retry_max);
        match sent {
            Ok(response) => {
                let status = response.status();
                let outcome = judge(status.as_u16(), retry_at);
                if let DeliveryOutcome::Parked { error } = &outcome {
                    let answer = response.text().await.unwrap_or_default();
                    let answer: String = answer.chars().take(200).collect();
                    tracing::warn!(order_id = id, %error, %answer, "webhook receiver refused the order; parked (orders list --undelivered)");
                }
                outcome
            }
            Err(error) => DeliveryOutcome::Failed {
                error: describe_send_error(&error),
                retry_at,
            },
        }
    }
}

/// What an HTTP status means for a delivery.
fn judge(status: u16, retry_at: SystemTime) -> DeliveryOutcome {
    match status {
        200..=299 => DeliveryOutcome::Delivered {
            at: SystemTime::now(),
        },
        408 | 425 | 429 | 500..=599 => DeliveryOutcome::Failed {
            error: format!("HTTP {status}"),
            retry_at,
        },
        _ => DeliveryOutcome::Parked {
            error: format!("HTTP {status}"),
        },
    }
}

fn describe_send_error(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "no answer in time".into()
    } else if error.is_connect() {
        "cannot connect".into()
    } else {
        error.to_string()
    }
}

/// The pause before the next attempt after `attempts` earlier ones: 1 s, 2 s, 4 s, ...
/// up to `max`.
pub fn retry_delay(attempts: u32, max: Duration) -> Duration {
    FIRST_RETRY
        .checked_mul(1_u32.checked_shl(attempts.min(31)).unwrap_or(u32::MAX))
        .unwrap_or(max)
        .min(max)
}

/// The signature header's value for `body` sent at `timestamp` (Unix seconds).
pub fn sign(secret: &str, timestamp: u64, body: &str) -> String {
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac(secret, timestamp, body))
    )
}

/// Checks a signature header's value against `body` (for receivers written in Rust, and
/// for tests).
pub fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", value)) => timestamp = value.parse::<u64>().ok(),
            Some(("v1", value)) => signature = hex::decode(value).ok(),
            _ => {}
        }
    }
    let (Some(timestamp), Some(signature)) = (timestamp, signature) else {
        return false;
    };
    let Ok(mut check) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    check.update(format!("{timestamp}.{body}").as_bytes());
    check.verify_slice(&signature).is_ok()
}

fn mac(secret: &str, timestamp: u64, body: &str) -> Vec<u8> {
    // HMAC takes keys of any length; this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(format!("{timestamp}.{body}").as_bytes());
    mac.finalize().into_bytes().to_vec()
}

fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Delivery running in the background; stops when dropped (an attempt cut short is
/// repeated later: delivery is at least once).
#[derive(Debug)]
pub struct DeliveryTask(tokio::task::JoinHandle<()>);

impl DeliveryTask {
    /// Starts delivering `store`'s pending orders to `webhook`.
    pub fn spawn(store: OrderStore, webhook: Webhook) -> DeliveryTask {
        DeliveryTask(tokio::spawn(deliver_forever(store, webhook)))
    }
}

impl Drop for DeliveryTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What the delivery loop does next.
enum Next {
    /// Nothing pending.
    Idle,
    /// The oldest pending order is not due for this long.
    Wait(Duration),
    /// An attempt was made.
    Attempted,
}

/// Delivers pending orders, in order, whenever this process holds the delivery lock;
/// otherwise waits for it. Runs until dropped.
pub async fn deliver_forever(store: OrderStore, webhook: Webhook) {
    loop {
        let lock = match store.try_delivery_lock().await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                tokio::time::sleep(webhook.poll).await;
                continue;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot take the webhook delivery lock");
                tokio::time::sleep(webhook.poll).await;
                continue;
            }
        };
        tracing::info!(url = %webhook.url, "delivering confirmed orders to the webhook");
        while lock.is_held() {
            let confirmed = store.confirmed();
            tokio::pin!(confirmed);
            confirmed.as_mut().enable();
            match deliver_next(&store, &webhook).await {
                Ok(Next::Attempted) => {}
                Ok(Next::Idle) => {
                    tokio::select! {
                        () = confirmed => {}
                        () = tokio::time::sleep(webhook.poll) => {}
                    }
                }
                Ok(Next::Wait(pause)) => tokio::time::sleep(pause.min(webhook.retry_max)).await,
                Err(error) => {
                    tracing::warn!(%error, "webhook delivery: the order store failed");
                    tokio::time::sleep(webhook.poll).await;
                }
            }
        }
        tracing::warn!("lost the webhook delivery lock (database connection ended)");
    }
}

async fn deliver_next(
    store: &OrderStore,
    webhook: &Webhook,
) -> Result<Next, crate::bella_vista::store::StoreError> {
    let Some(due) = store.next_delivery().await? else {
        return Ok(Next::Idle);
    };
    let now = SystemTime::now();
    if let Ok(wait) = due.not_before.duration_since(now)
        && !wait.is_zero()
    {
        return Ok(Next::Wait(wait));
    }
    let outcome = webhook.attempt(&due, now).await;
    let telemetry = crate::telemetry::global();
    match &outcome {
        DeliveryOutcome::Delivered { .. } => {
            telemetry.webhook_attempted("delivered");
            tracing::info!(order_id = due.order.id(), "order delivered to the webhook");
        }
        DeliveryOutcome::Failed { error, .. } => {
            telemetry.webhook_attempted("failed");
            tracing::warn!(
                order_id = due.order.id(),
                attempt = due.attempts + 1,
                %error,
                "webhook delivery failed; trying again later"
            );
        }
        DeliveryOutcome::Parked { .. } => telemetry.webhook_attempted("parked"),
    }
    store.record_delivery(due.order.id(), outcome).await?;
    Ok(Next::Attempted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_only_with_its_secret_and_body() {
        let header = sign("s3cret", 1_700_000_000, r#"{"id":1}"#);
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify("s3cret", &header, r#"{"id":1}"#));
        assert!(!verify("other", &header, r#"{"id":1}"#));
        assert!(!verify("s3cret", &header, r#"{"id":2}"#));
        assert!(!verify("s3cret", "v1=00", r#"{"id":1}"#));
        let forged = header.replace("t=1700000000", "t=1700000001");
        assert!(!verify("s3cret", &forged, r#"{"id":1}"#));
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let header = sign("Jefe", 0, "what do ya want for nothing?");
        let expected = {
            let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").expect("key");
            mac.update(b"0.what do ya want for nothing?");
            hex::encode(mac.finalize().into_bytes())
        };
        assert_eq!(header, format!("t=0,v1={expected}"));
    }

    #[test]
    fn pauses_double_from_one_second_up_to_the_maximum() {
        let max = Duration::from_secs(60);
        let pauses: Vec<u64> = (0..8).map(|n| retry_delay(n, max).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(retry_delay(u32::MAX, max), max);
    }

    #[test]
    fn server_trouble_is_retried_and_refusals_are_parked() {
        let later = SystemTime::UNIX_EPOCH + Duration::from_secs(5);
        assert!(matches!(
            judge(204, later),
            DeliveryOutcome::Delivered { .. }
        ));
        for status in [408, 425, 429, 500, 502, 503] {
            assert!(
                matches!(judge(status, later), DeliveryOutcome::Failed { retry_at, .. } if retry_at == later),
                "{status}"
            );
        }
        for status in [301, 400, 401, 404, 422] {
            assert!(
                matches!(judge(status, later), DeliveryOutcome::Parked { .. }),
                "{status}"
            );
        }
    }
}
