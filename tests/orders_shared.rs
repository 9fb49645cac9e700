//! Orders that reach the kitchen from many workers: one PostgreSQL store, webhook
//! delivery through the outbox, and what happens when things fail. Real PostgreSQL (a
//! throwaway server per test, on a loopback port), the real binary as the workers, and a
//! webhook receiver that fails on purpose.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bella_vista::bella_vista::delivery::verify;
use bella_vista::bella_vista::money::Cents;
use bella_vista::bella_vista::order::{Order, OrderItem, Payment, PaymentMethod};
use bella_vista::bella_vista::store::{OrderOrigin, OrderStore, OrdersDb};
use common::orders::*;
use common::worker::wait_until;
use tokio::io::{AsyncBufReadExt, BufReader};

fn order(quantity: u32) -> Order {
    Order {
        items: vec![OrderItem {
            name: "Margherita Pizza".into(),
            quantity,
            modifications: vec![],
            unit_price: Cents(1600),
        }],
        payment: Payment {
            method: PaymentMethod::Card,
            tip_percent: 10,
        },
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_confirming_at_once_store_every_order_once_with_unique_numbers() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("shared").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_orders_config(dir.path(), "", "");

    // Two worker processes, each taking three console calls, at the same time.
    let worker = |name: &'static str| {
        let url = url.clone();
        let config = config.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                let stdout = console_order(&url, &config).await;
                assert!(stdout.contains("-> confirm_order("), "{name}: {stdout}");
            }
        })
    };
    let (a, b) = (worker("a"), worker("b"));
    a.await.unwrap();
    b.await.unwrap();
    let listed = orders_json(&url, &config, false).await;
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [1, 2, 3, 4, 5, 6], "six orders, numbered without gaps");
    assert!(
        listed
            .as_array()
            .unwrap()
            .iter()
            .all(|o| o["total_cents"] == 2300)
    );

    // Heavier: two workers' stores (two connections) confirming 100 orders each at once,
    // every key also retried by the other worker.
    let one = OrderStore::connect(&OrdersDb::Postgres(url.clone()))
        .await
        .unwrap();
    let two = OrderStore::connect(&OrdersDb::Postgres(url.clone()))
        .await
        .unwrap();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (n, store) in [one.clone(), two.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut numbers = Vec::new();
            for i in 0..100 {
                // Both workers confirm keys 0..100: each key is stored once.
                let key = format!("call-{}", (i + n * 50) % 100);
                let at = Instant::now();
                let stored = store
                    .confirm(&key, &order(1 + (i % 3) as u32), &OrderOrigin::default())
                    .await
                    .unwrap();
                latencies.push(at.elapsed());
                numbers.push((key, stored.id()));
            }
            (latencies, numbers)
        }));
    }
    let mut latencies = Vec::new();
    let mut by_key = std::collections::BTreeMap::new();
    for task in tasks {
        let (l, numbers) = task.await.unwrap();
        latencies.extend(l);
        for (key, id) in numbers {
            let previous = by_key.insert(key.clone(), id);
            assert!(
                previous.is_none_or(|p| p == id),
                "{key} got {previous:?} and {id}"
            );
        }
    }
    let elapsed = started.elapsed();
    let all = one.list(None).await.unwrap();
    assert_eq!(
        all.len(),
        106,
        "every order once, the retried ones not twice"
    );
    let numbers: BTreeSet<i64> = all.iter().map(|o| o.id()).collect();
    assert_eq!(numbers, (1..=106).collect(), "unique numbers, none missing");
    let announced: BTreeSet<i64> = by_key.values().copied().collect();
    assert_eq!(announced.len(), 100, "each key announced one number");
    latencies.sort();
    eprintln!(
        "postgres: 200 confirmations (100 orders) from 2 workers in {:.2} s: {:.0} confirmations/s; \
         confirmation durable p50 {:.1} ms p99 {:.1} ms",
        elapsed.as_secs_f64(),
        200.0 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_reconnected_and_a_database_down_confirms_nothing() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("faults").await;
    let store = OrderStore::connect(&OrdersDb::Postgres(url.clone()))
        .await
        .unwrap();
    store
        .confirm("before", &order(1), &OrderOrigin::default())
        .await
        .unwrap();
    assert!(
        pg.drop_connections("faults").await >= 1,
        "the worker's session was ended"
    );
    let after = store
        .confirm("after", &order(2), &OrderOrigin::default())
        .await
        .expect("a new connection is made");
    assert_eq!(after.id(), 2);

    pg.stop();
    let started = Instant::now();
    let down = store
        .confirm("down", &order(3), &OrderOrigin::default())
        .await;
    let waited = started.elapsed();
    assert!(down.is_err(), "no confirmation while the database is down");
    assert!(
        waited < Duration::from_secs(20),
        "bounded retries, gave up after {waited:?}"
    );
    pg.restart();
    let again = store
        .confirm("down", &order(3), &OrderOrigin::default())
        .await
        .expect("works once the database is back");
    assert_eq!(again.id(), 3);
    assert_eq!(store.list(None).await.unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_hears_the_order_was_not_placed_when_the_database_is_down() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("down").await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_orders_config(dir.path(), "", "");
    // The worker starts with the database up (the schema is made), then it goes down.
    console_order(&url, &config).await;
    let fake = common::openai_server::FakeOpenAi::start().await;
    script_one_order(&fake);
    let mut child = bella(Some(&fake), &url, &config)
        .arg("console")
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut stdin = child.stdin.take().unwrap();
    // The greeting means the store was opened; then the database goes away.
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("Welcome") {
            break;
        }
    }
    pg.stop();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, ORDER_LINES)
        .await
        .unwrap();
    drop(stdin);
    let mut rest = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push_str(&line);
        rest.push('\n');
    }
    child.wait().await.unwrap();
    assert!(rest.contains("couldn't place your order"), "{rest}");
    assert!(!rest.contains("Order number 2"), "{rest}");
    pg.restart();
    let listed = orders_json(&url, &config, false).await;
    assert_eq!(
        listed.as_array().unwrap().len(),
        1,
        "nothing half-stored: {listed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_after_the_announcement_still_delivers_after_a_restart() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("crash").await;
    let receiver = Receiver::start().await;
    // The receiver is slow: the worker dies while its POST is in flight.
    receiver.delay(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let config = write_orders_config(
        dir.path(),
        &format!(
            "webhook_url = \"{}\"\nretry_max_ms = 1000\npoll_ms = 200",
            receiver.url()
        ),
        "",
    );
    let fake = common::openai_server::FakeOpenAi::start().await;
    script_one_order(&fake);
    let mut child = bella(Some(&fake), &url, &config)
        .arg("console")
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stdin, ORDER_LINES)
        .await
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = lines.next_line().await.unwrap() {
        if line.contains("Grazie") {
            break;
        }
    }
    // Announced: kill -9 (stdin still open, so the console was waiting for more).
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    drop(stdin);
    let stored = orders_json(&url, &config, false).await;
    assert_eq!(
        stored.as_array().unwrap().len(),
        1,
        "the order is in the database"
    );
    let id = stored[0]["id"].as_i64().unwrap();

    receiver.delay(Duration::ZERO);
    let mut deliverer = bella(None, &url, &config)
        .args(["orders", "deliver"])
        .spawn()
        .unwrap();
    let delivered = wait_until(Duration::from_secs(20), || receiver.accepted_ids() == [id]).await;
    assert!(
        delivered,
        "delivered after the restart: {:?}",
        receiver.received()
    );
    // The deliverer marks the order delivered after the receiver's answer: wait for that
    // before stopping it.
    let mut undelivered = orders_json(&url, &config, true).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while undelivered != serde_json::json!([]) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        undelivered = orders_json(&url, &config, true).await;
    }
    deliverer.start_kill().unwrap();
    let ids: BTreeSet<i64> = receiver
        .received()
        .iter()
        .map(|r| r.json()["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([id]), "never seen with another id");
    for received in receiver.received() {
        assert_eq!(
            received.idempotency_key.as_deref(),
            Some(id.to_string().as_str())
        );
        let json = received.json();
        assert_eq!(json["total_cents"], 2300);
        assert!(
            json.get("room").is_some() && json.get("agent_id").is_some(),
            "{json}"
        );
    }
    assert_eq!(undelivered, serde_json::json!([]), "marked delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_down_for_a_while_gets_every_order_in_order_signed_and_refusals_are_parked() {
    let Some(pg) = Postgres::start() else { return };
    let url = pg.database("outage").await;
    let receiver = Receiver::start().await;
    receiver.answer(Answer::Unavailable);
    receiver.refuse(&[3]);
    let dir = tempfile::tempdir().unwrap();
    let config = write_orders_config(
        dir.path(),
        &format!(
            "webhook_url = \"{}\"\nretry_max_ms = 500\npoll_ms = 100",
            receiver.url()
        ),
        "",
    );
    // Workers confirm with the outbox on; one process delivers for all of them.
    let store = OrderStore::connect(&OrdersDb::Postgres(url.clone()))
        .await
        .unwrap()
        .with_outbox();
    let origin = OrderOrigin {
        caller_phone: Some("+15550100".into()),
        room: Some("call-room".into()),
        agent_id: Some("agent-1".into()),
    };
    for n in 1..=5 {
        store
            .confirm(&format!("k{n}"), &order(n), &origin)
            .await
            .unwrap();
    }
    let mut deliverer = bella(None, &url, &config)
        .args(["orders", "deliver"])
        .spawn()
        .unwrap();
    // Down: the first order is tried again and again, the others wait their turn.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let during = receiver.received();
    assert!(during.len() >= 2, "retried while down: {during:?}");
    assert!(
        during.iter().all(|r| r.json()["id"] == 1),
        "in order: {during:?}"
    );
    receiver.answer(Answer::Accept);
    let arrived = wait_until(Duration::from_secs(20), || {
        receiver.accepted_ids().len() == 4
    })
    .await;
    assert!(arrived, "{:?}", receiver.accepted_ids());
    assert_eq!(
        receiver.accepted_ids(),
        [1, 2, 4, 5],
        "in order; 3 was refused"
    );
    for received in receiver.received() {
        let signature = received.signature.as_deref().expect("signed");
        assert!(
            verify(WEBHOOK_SECRET, signature, &received.body),
            "{signature}"
        );
        assert!(!verify("wrong", signature, &received.body));
        let json = received.json();
        assert_eq!(json["caller_phone"], "+15550100");
        assert_eq!(json["room"], "call-room");
        assert_eq!(json["agent_id"], "agent-1");
    }
    let refused = receiver
        .received()
        .iter()
        .filter(|r| r.status == 400)
        .count();
    assert_eq!(refused, 1, "a refusal is not retried");
    let undelivered = orders_json(&url, &config, true).await;
    assert_eq!(undelivered.as_array().unwrap().len(), 1, "{undelivered}");
    assert_eq!(undelivered[0]["order_id"], 3);
    assert_eq!(undelivered[0]["state"], "parked");
    assert_eq!(undelivered[0]["last_error"], "HTTP 400");

    // A second deliverer waits: one at a time keeps the order.
    let mut second = bella(None, &url, &config)
        .args(["orders", "deliver"])
        .spawn()
        .unwrap();
    store.confirm("k6", &order(6), &origin).await.unwrap();
    let sixth = wait_until(Duration::from_secs(10), || {
        receiver.accepted_ids().len() == 5
    })
    .await;
    assert!(sixth);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.accepted_ids(), [1, 2, 4, 5, 6], "delivered once");
    deliverer.start_kill().unwrap();
    second.start_kill().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_that_requires_tls_is_reached_over_tls_with_a_verified_certificate() {
    let Some(pg) = Postgres::start_tls() else {
        return;
    };
    let url = format!("{}?sslmode=require", pg.database("secure").await);
    let dir = tempfile::tempdir().unwrap();
    let config = write_orders_config(dir.path(), "", "");
    // The worker trusts the server's CA (as a deployment trusts its provider's).
    let trusted = bella(None, &url, &config)
        .env("SSL_CERT_FILE", pg.ca_file())
        .args(["orders", "list", "--json"])
        .output()
        .await
        .unwrap();
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&trusted.stdout).trim(), "[]");
    // A certificate from an unknown CA is refused, not used unverified.
    let unknown = tempfile::NamedTempFile::new().unwrap();
    let untrusted = bella(None, &url, &config)
        .env("SSL_CERT_FILE", unknown.path())
        .env("SSL_CERT_DIR", dir.path())
        .args(["orders", "list", "--json"])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&untrusted.stderr);
    assert!(
        !untrusted.status.success(),
        "connected without trusting the CA"
    );
    assert!(stderr.contains("order"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_not_a_url_stops_the_start_with_a_config_error() {
    let dir = tempfile::tempdir().unwrap();
    for (bad, says) in [
        ("kitchen.local/orders", "orders.webhook_url"),
        ("ftp://kitchen/orders", "http:// or https://"),
    ] {
        let config = write_orders_config(dir.path(), &format!("webhook_url = \"{bad}\""), "");
        let db = dir.path().join("orders.db").display().to_string();
        let output = bella(None, &db, &config)
            .args(["orders", "list"])
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(says), "{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmation_to_webhook_and_durable_latency_on_sqlite_and_postgres() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = bella_vista::config::Config::builtin().unwrap();
    config.orders.webhook_url = receiver.url();
    config.orders.webhook_secret = Some(bella_vista::config::Secret::new(WEBHOOK_SECRET));
    config.orders.poll_ms = 1000;
    let webhook = bella_vista::bella_vista::delivery::Webhook::from_config(&config.orders)
        .unwrap()
        .unwrap();
    let pg = Postgres::start();
    let mut dbs = vec![OrdersDb::Sqlite(dir.path().join("orders.db"))];
    if let Some(pg) = &pg {
        dbs.push(OrdersDb::Postgres(pg.database("latency").await));
    }
    for db in dbs {
        let store = OrderStore::connect(&db).await.unwrap().with_outbox();
        let before = receiver.received().len();
        let _delivery =
            bella_vista::bella_vista::delivery::DeliveryTask::spawn(store.clone(), webhook.clone());
        let mut durable = Vec::new();
        let mut to_webhook = Vec::new();
        for n in 0..40 {
            let at = Instant::now();
            store
                .confirm(&format!("latency-{n}"), &order(1), &OrderOrigin::default())
                .await
                .unwrap();
            durable.push(at.elapsed());
            let want = before + n + 1;
            assert!(wait_until(Duration::from_secs(5), || receiver.received().len() >= want).await);
            to_webhook.push(receiver.received()[want - 1].at.duration_since(at));
        }
        durable.sort();
        to_webhook.sort();
        eprintln!(
            "{}: confirmation durable p50 {:.2} ms p99 {:.2} ms; confirmation -> webhook received p50 {:.2} ms p99 {:.2} ms",
            store.kind(),
            percentile(&durable, 0.5).as_secs_f64() * 1000.0,
            percentile(&durable, 0.99).as_secs_f64() * 1000.0,
            percentile(&to_webhook, 0.5).as_secs_f64() * 1000.0,
            percentile(&to_webhook, 0.99).as_secs_f64() * 1000.0,
        );
        assert!(
            percentile(&to_webhook, 0.5) < Duration::from_millis(500),
            "delivered at once, not on the next poll"
        );
    }
}

/// Orders per second one PostgreSQL takes from N workers confirming at once (each worker
/// its own connection, as separate processes would have). A measurement, not a check:
/// `cargo test --release --test orders_shared -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "a measurement; run by hand"]
async fn postgres_orders_per_second_by_worker_count() {
    let Some(pg) = Postgres::start() else { return };
    for workers in [1_usize, 2, 4, 8, 16] {
        let url = pg.database(&format!("rate{workers}")).await;
        let mut stores = Vec::new();
        for _ in 0..workers {
            stores.push(
                OrderStore::connect(&OrdersDb::Postgres(url.clone()))
                    .await
                    .unwrap(),
            );
        }
        let per_worker = 400 / workers;
        let started = Instant::now();
        let tasks: Vec<_> = stores
            .into_iter()
            .enumerate()
            .map(|(w, store)| {
                tokio::spawn(async move {
                    for i in 0..per_worker {
                        store
                            .confirm(&format!("w{w}-{i}"), &order(1), &OrderOrigin::default())
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!(
            "{workers:>2} workers: {} orders in {elapsed:.2} s = {:.0} orders/s",
            per_worker * workers,
            (per_worker * workers) as f64 / elapsed
        );
    }
}
