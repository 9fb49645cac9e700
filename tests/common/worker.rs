//! The real `bella-vista start` binary as a LiveKit worker process for tests: a config file
//! made from `config/default.toml`, its log in a file (kept for inspection), and a guard that
//! kills it when dropped, also when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A fresh directory for one test's files (configs, logs, databases), kept afterwards.
pub fn test_dir(group: &str, name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(group)
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("test dir");
    dir
}

/// A copy of `config/default.toml` with absolute paths to the menu and prompts (the worker
/// may run from any directory), its health endpoint on a free loopback port (several
/// workers run at once), the job count alone deciding its load (tests share two cores with
/// their callers: the CPU rule has unit tests of its own), and each `(from, to)` of
/// `changes` applied; `from` must be in the file.
pub fn write_config(dir: &Path, changes: &[(&str, String)]) -> PathBuf {
    let default = std::fs::read_to_string(repo().join("config/default.toml")).expect("default");
    let paths = [
        (
            "menu = \"config/menu.toml\"",
            format!("menu = {:?}", repo().join("config/menu.toml")),
        ),
        (
            "prompts = \"prompts\"",
            format!("prompts = {:?}", repo().join("prompts")),
        ),
        (
            "http_listen = \"0.0.0.0:8081\"",
            "http_listen = \"127.0.0.1:0\"".to_string(),
        ),
        ("cpu_full = 0.9", "cpu_full = 0".to_string()),
    ];
    let mut text = default;
    for (from, to) in paths.iter().chain(changes) {
        assert!(
            text.contains(from),
            "config/default.toml no longer has `{from}`"
        );
        text = text.replace(from, to);
    }
    let path = dir.join("worker.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// `text` without ANSI escape sequences (in case the log is coloured).
pub fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // ESC [ ... final byte in @..~
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// The value of `key=` in a log line, without quotes.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let start = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[start..];
    let value = rest.split_whitespace().next()?;
    Some(value.trim_matches('"'))
}

/// A `bella-vista start` process with its log in a file; killed when dropped.
pub struct Worker {
    name: String,
    child: Child,
    log: PathBuf,
    exited: Option<ExitStatus>,
}

impl Worker {
    /// Starts a worker with `config` against the LiveKit server at `livekit_url`
    /// (devkey/secret), its model, STT and TTS at `openai`, orders in `dir/orders-NAME.db`.
    pub fn start(name: &str, dir: &Path, config: &Path, livekit_url: &str, openai: &str) -> Self {
        let log = dir.join(format!("worker-{name}.log"));
        let child = worker_command(config, &Self::orders_db_in(dir, name))
            .env("LIVEKIT_URL", livekit_url)
            .env("LIVEKIT_API_KEY", "devkey")
            .env("LIVEKIT_API_SECRET", "secret")
            .env("OPENAI_BASE_URL", openai)
            .env("RUST_LOG", "info")
            .stderr(std::fs::File::create(&log).expect("worker log"))
            .spawn()
            .expect("start bella-vista");
        Worker {
            name: name.to_string(),
            child,
            log,
            exited: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where the worker `name` started in `dir` stores its orders.
    pub fn orders_db_in(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("orders-{name}.db"))
    }

    /// The log so far, without colours.
    pub fn log_text(&self) -> String {
        strip_ansi(&std::fs::read_to_string(&self.log).unwrap_or_default())
    }

    /// The log lines containing `needle`.
    pub fn lines_with(&self, needle: &str) -> Vec<String> {
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle))
            .map(str::to_owned)
            .collect()
    }

    /// Where the worker serves `/health` and `/metrics` (`http://127.0.0.1:PORT`), once it
    /// has said so in its log.
    pub fn http_base(&self) -> Option<String> {
        self.lines_with("health and metrics on")
            .first()
            .and_then(|line| field(line, "address"))
            .map(|address| format!("http://{address}"))
    }

    /// Whether the worker has registered with the server.
    pub fn registered(&self) -> bool {
        !self.lines_with("worker registered").is_empty()
    }

    /// Sends SIGTERM (what `docker stop` sends).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// How the process ended, if it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// The end of the log, for failure messages.
    pub fn tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        let from = lines.len().saturating_sub(40);
        format!(
            "--- worker {} ({}) ---\n{}",
            self.name,
            self.log.display(),
            lines[from..].join("\n")
        )
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.exit_status().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `bella-vista --config CONFIG --orders-db DB start`, with a clean environment for the
/// settings the test controls.
pub fn worker_command(config: &Path, db: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bella-vista"));
    command
        .arg("--config")
        .arg(config)
        .arg("--orders-db")
        .arg(db)
        .arg("start")
        .current_dir(repo())
        .env("NO_COLOR", "1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("BELLA_VISTA_CONFIG")
        .env_remove("BELLA_VISTA_MODEL")
        .env_remove("BELLA_VISTA_ORDERS_DB")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    command
}

/// Polls `done` every 100 ms until it holds or `limit` passes; whether it held.
pub async fn wait_until(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
