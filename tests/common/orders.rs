//! Harness for the order store's real components: a throwaway PostgreSQL server, a webhook
//! receiver that can fail on purpose, and console calls that confirm an order through the
//! real binary.
//!
//! PostgreSQL comes from Debian's `postgresql` package (`scripts/setup` installs it). When
//! it is missing the tests say so and pass, unless `BELLA_VISTA_REQUIRE_POSTGRES=1` (set
//! by `scripts/test`), which makes a missing server a failure.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::openai_server::{Endpoint, FakeOpenAi, Response, text_chunks, tool_call_chunks};

pub const BIN: &str = env!("CARGO_BIN_EXE_bella-vista");

/// A PostgreSQL server of its own: a fresh data directory, a free loopback port, stopped
/// (immediately) when dropped.
pub struct Postgres {
    bin: PathBuf,
    data: tempfile::TempDir,
    port: u16,
    run_as: Option<String>,
}

impl Postgres {
    /// Starts a server, or `None` when PostgreSQL is not installed (and not required).
    pub fn start() -> Option<Postgres> {
        Postgres::start_with(false)
    }

    /// Starts a server that offers TLS with a certificate for 127.0.0.1 signed by a CA of
    /// its own (`ca.crt` in [`Postgres::ca_file`]).
    pub fn start_tls() -> Option<Postgres> {
        Postgres::start_with(true)
    }

    /// The CA certificate of a [`Postgres::start_tls`] server.
    pub fn ca_file(&self) -> PathBuf {
        self.data.path().join("ca.crt")
    }

    fn start_with(tls: bool) -> Option<Postgres> {
        let Some(bin) = postgres_bin() else {
            assert!(
                std::env::var("BELLA_VISTA_REQUIRE_POSTGRES").as_deref() != Ok("1"),
                "PostgreSQL is required here (BELLA_VISTA_REQUIRE_POSTGRES=1) but initdb was not found"
            );
            eprintln!("PostgreSQL is not installed: skipping (scripts/setup installs it)");
            return None;
        };
        // PostgreSQL refuses to run as root: as root, run it as the package's user.
        let run_as = is_root().then(|| "postgres".to_string());
        let data = tempfile::Builder::new()
            .prefix("bv-pg-")
            .tempdir()
            .expect("data dir");
        if let Some(user) = &run_as {
            let status = Command::new("chown")
                .args([user.as_str(), &data.path().display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let port = free_port();
        let server = Postgres {
            bin,
            data,
            port,
            run_as,
        };
        let pgdata = server.pgdata();
        server.run(
            "initdb",
            &[
                "-D",
                &pgdata,
                "-U",
                "bella",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        if tls {
            server.make_certificates();
        }
        server.restart();
        Some(server)
    }

    /// A CA and a server certificate for 127.0.0.1 (openssl), and `ssl = on`.
    fn make_certificates(&self) {
        let dir = self.data.path();
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("openssl");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=Bella Vista test CA",
        ]);
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        let pgdata = self.data.path().join("data");
        for file in ["server.crt", "server.key"] {
            std::fs::copy(dir.join(file), pgdata.join(file)).unwrap();
        }
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(pgdata.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut conf, b"ssl = on\n").unwrap();
        if let Some(user) = &self.run_as {
            let status = Command::new("chown")
                .args(["-R", user.as_str(), &pgdata.display().to_string()])
                .status()
                .expect("chown");
            assert!(status.success());
        }
        let status = Command::new("chmod")
            .args(["600", &pgdata.join("server.key").display().to_string()])
            .status()
            .expect("chmod");
        assert!(status.success());
    }

    fn pgdata(&self) -> String {
        format!("{}/data", self.data.path().display())
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let mut command = match &self.run_as {
            Some(user) => {
                let mut command = Command::new("runuser");
                command.args(["-u", user, "--"]).arg(&program);
                command
            }
            None => Command::new(&program),
        };
        let output = command.args(args).output().expect(tool);
        assert!(
            output.status.success(),
            "{tool} {args:?}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// The URL of database `name`, created if needed.
    pub async fn database(&self, name: &str) -> String {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);
        let _ = client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await;
        self.url(name)
    }

    /// `postgres://bella@127.0.0.1:<port>/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("postgres://bella@127.0.0.1:{}/{name}", self.port)
    }

    /// Ends every session of database `name` but the caller's (a connection lost
    /// mid-call, as after a failover).
    pub async fn drop_connections(&self, name: &str) -> u64 {
        let (client, connection) =
            tokio_postgres::connect(&self.url("postgres"), tokio_postgres::NoTls)
                .await
                .expect("connect");
        tokio::spawn(connection);
        client
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&name],
            )
            .await
            .expect("terminate")
            .len() as u64
    }

    /// Stops the server (fast: sessions are ended).
    pub fn stop(&self) {
        self.run(
            "pg_ctl",
            &["-D", &self.pgdata(), "-m", "fast", "-w", "stop"],
        );
    }

    /// Starts it again after [`Postgres::stop`].
    pub fn restart(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200",
            self.port,
            self.data.path().display()
        );
        let log = format!("{}/server.log", self.data.path().display());
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.pgdata(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let pgdata = self.pgdata();
        let args = ["-D", pgdata.as_str(), "-m", "immediate", "stop"];
        let _ = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .output(),
            None => Command::new(&program).args(args).output(),
        };
    }
}

fn postgres_bin() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
        .filter(|bin| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// 200.
    Accept,
    /// 503: down for a while.
    Unavailable,
}

/// One POST the receiver got.
#[derive(Debug, Clone)]
pub struct Received {
    pub body: String,
    pub signature: Option<String>,
    pub idempotency_key: Option<String>,
    pub status: u16,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

#[derive(Default)]
struct ReceiverState {
    answer: Option<Answer>,
    refuse_ids: Vec<i64>,
    delay: Duration,
    received: Vec<Received>,
}

/// A webhook receiver on 127.0.0.1 that records every POST and answers as told.
#[derive(Clone)]
pub struct Receiver {
    address: SocketAddr,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let state = Arc::new(Mutex::new(ReceiverState {
            answer: Some(Answer::Accept),
            ..ReceiverState::default()
        }));
        let app = axum::Router::new()
            .route("/orders", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { address, state }
    }

    pub fn url(&self) -> String {
        format!("http://{}/orders", self.address)
    }

    pub fn answer(&self, answer: Answer) {
        self.state.lock().unwrap().answer = Some(answer);
    }

    /// Answers 400 for these orders.
    pub fn refuse(&self, ids: &[i64]) {
        self.state.lock().unwrap().refuse_ids = ids.to_vec();
    }

    /// Waits this long before answering.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// The orders accepted (2xx), in the order they were accepted.
    pub fn accepted_ids(&self) -> Vec<i64> {
        self.received()
            .iter()
            .filter(|r| r.status == 200)
            .map(|r| r.json()["id"].as_i64().expect("id"))
            .collect()
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let delay = state.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let body = String::from_utf8_lossy(&body).into_owned();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let id = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["id"].as_i64());
    let mut state = state.lock().unwrap();
    let status = if id.is_some_and(|id| state.refuse_ids.contains(&id)) {
        StatusCode::BAD_REQUEST
    } else if state.answer == Some(Answer::Unavailable) {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    state.received.push(Received {
        body,
        signature: header("bella-vista-signature"),
        idempotency_key: header("idempotency-key"),
        status: status.as_u16(),
        at: Instant::now(),
    });
    status
}

/// A config file: the defaults with these `[orders]` and `[board]` settings (TOML lines)
/// put over them.
pub fn write_orders_config(dir: &Path, orders: &str, board: &str) -> PathBuf {
    let text = std::fs::read_to_string("config/default.toml").expect("default config");
    let mut config: toml::Table = text.parse().expect("default config parses");
    for (section, lines) in [("orders", orders), ("board", board)] {
        let changes: toml::Table = lines.parse().expect("settings parse");
        let table = config
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a table");
        table.extend(changes);
    }
    let path = dir.join("config.toml");
    std::fs::write(&path, config.to_string()).expect("write config");
    path
}

/// Scripts `fake` with one whole order (two tiramisu, cash, 15 % tip), as the console
/// test does: the model calls each tool in turn and says the number the tool gave.
pub fn script_one_order(fake: &FakeOpenAi) {
    let say = |text: &str| {
        let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
        let pieces: Vec<&str> = words.iter().map(String::as_str).collect();
        fake.push(
            Endpoint::ChatCompletions,
            Response::Stream(text_chunks(&pieces)),
        );
    };
    let call = |name: &str, arguments: &str| {
        fake.push(
            Endpoint::ChatCompletions,
            Response::Stream(tool_call_chunks(&[("call_1", name, arguments)], 7)),
        );
    };
    say("Welcome to Bella Vista! What would you like?");
    call("take_order", "{}");
    say("What would you like to order?");
    call(
        "confirm_item",
        r#"{"name": "Tiramisu", "quantity": 2, "modifications": ["extra cocoa"], "more_items": false}"#,
    );
    say("That's $20.00. Card, cash or mobile?");
    call(
        "confirm_payment",
        r#"{"method": "cash", "tip_percentage": 15}"#,
    );
    say("Two tiramisu, $23.00 in cash. Shall I place it?");
    call("confirm_order", "{}");
    say("Two tiramisu, cash, confirmed.");
    say("Your order is placed. Grazie!");
}

/// What the caller types in [`script_one_order`]'s conversation.
pub const ORDER_LINES: &[u8] =
    b"I'd like to order\ntwo tiramisu with extra cocoa\ncash, 15 percent\nyes please\n";

/// The binary with the test's settings: the fake model server, the order database, the
/// config file.
pub fn bella(fake: Option<&FakeOpenAi>, db: &str, config: &Path) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_remove("OPENAI_API_KEY")
        .env_remove("BELLA_VISTA_ORDERS_DB")
        .env("BELLA_VISTA_WEBHOOK_SECRET", WEBHOOK_SECRET)
        .env("RUST_LOG", "bella_vista=info")
        .arg("--config")
        .arg(config)
        .arg("--orders-db")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    match fake {
        Some(fake) => command.env("OPENAI_BASE_URL", fake.base_url()),
        None => command.env("OPENAI_BASE_URL", "http://127.0.0.1:9/v1"),
    };
    command
}

/// The secret the tests sign webhooks with.
pub const WEBHOOK_SECRET: &str = "kitchen-secret";

/// Runs one console call that orders through `fake` and waits for it to end; returns its
/// stdout.
pub async fn console_order(db: &str, config: &Path) -> String {
    let fake = FakeOpenAi::start().await;
    script_one_order(&fake);
    let mut child = bella(Some(&fake), db, config)
        .arg("console")
        .spawn()
        .expect("console starts");
    let mut stdin = child.stdin.take().expect("stdin");
    tokio::io::AsyncWriteExt::write_all(&mut stdin, ORDER_LINES)
        .await
        .expect("write");
    drop(stdin);
    let output = child.wait_with_output().await.expect("console ends");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "console failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `orders list --json` (or `--undelivered`) through the binary.
pub async fn orders_json(db: &str, config: &Path, undelivered: bool) -> serde_json::Value {
    let mut command = bella(None, db, config);
    command.args(["orders", "list", "--json"]);
    if undelivered {
        command.arg("--undelivered");
    }
    let output = command.output().await.expect("orders list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}
