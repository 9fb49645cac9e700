//! The real LiveKit server for tests, on loopback (one per test, on free ports, stopped on
//! drop), and the official Python SDK as the caller (`tests/livekit/caller.py`).

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// (server binary, python) from `scripts/livekit/install.sh`, once per test binary.
pub fn tools() -> &'static (String, String) {
    static TOOLS: OnceLock<(String, String)> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = Command::new(repo().join("scripts/livekit/install.sh"))
            .output()
            .expect("run install.sh");
        assert!(
            out.status.success(),
            "install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let find = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("install.sh names {key}"))
                .to_owned()
        };
        (find("LIVEKIT_SERVER_BIN="), find("LIVEKIT_PYTHON="))
    })
}

/// A port whose TCP port and UDP port + 2 are free right now.
fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port < 60_000 && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok() {
            return port;
        }
    }
}

/// A running livekit-server (`--dev`: key `devkey`, secret `secret`) in its own directory.
pub struct LiveKit {
    dir: tempfile::TempDir,
    /// The HTTP/WebSocket port (UDP ICE is on port + 2).
    pub port: u16,
}

fn run_start(dir: &Path, port: u16) -> bool {
    let out = Command::new(repo().join("scripts/livekit/start.sh"))
        .arg(dir)
        .env("LIVEKIT_PORT", port.to_string())
        .env("LIVEKIT_SERVER_BIN", &tools().0)
        .output()
        .expect("run start.sh");
    if !out.status.success() {
        eprintln!(
            "start.sh on {port}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    out.status.success()
}

impl LiveKit {
    /// Starts a server on free loopback ports.
    pub fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        for _ in 0..5 {
            let port = free_port();
            if run_start(dir.path(), port) {
                return LiveKit { dir, port };
            }
        }
        panic!(
            "livekit-server did not start; log: {}",
            read_log(dir.path())
        );
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    /// `http://127.0.0.1:PORT`, for the server APIs.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A file in the server's directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Stops the server.
    pub fn stop(&self) {
        if let Err(error) = Command::new(repo().join("scripts/livekit/stop.sh"))
            .arg(self.dir.path())
            .output()
        {
            eprintln!("stop.sh failed: {error}");
        }
    }

    /// Stops the server and starts a new one on the same port (a fresh log).
    pub fn restart(&self) {
        self.stop();
        for _ in 0..50 {
            if run_start(self.dir.path(), self.port) {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        panic!("livekit-server did not restart on port {}", self.port);
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        read_log(self.dir.path())
    }

    /// Waits until the server's log satisfies `check`.
    pub async fn wait_for_log(&self, what: &str, timeout: Duration, check: impl Fn(&str) -> bool) {
        let deadline = std::time::Instant::now() + timeout;
        while !check(&self.log()) {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; server log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until the server logged a worker's registration (an agent worker is ready to
    /// take jobs).
    pub async fn wait_for_worker_registration(&self) {
        self.wait_for_log(
            "the worker's registration",
            Duration::from_secs(10),
            |log| log.contains("worker registered"),
        )
        .await;
    }

    /// Whether the server logged that `job_id` ended with `status` (`JS_SUCCESS`, ...).
    pub fn job_ended(&self, job_id: &str, status: &str) -> bool {
        self.log()
            .lines()
            .any(|l| l.contains("job ended") && l.contains(job_id) && l.contains(status))
    }

    /// Dispatches agent `agent` into `room` through the server API.
    pub async fn dispatch(&self, agent: &str, room: &str) {
        let client = livekit_api::services::agent_dispatch::AgentDispatchClient::with_api_key(
            &self.http_url(),
            "devkey",
            "secret",
        );
        let request = livekit_protocol::CreateAgentDispatchRequest {
            agent_name: agent.into(),
            room: room.into(),
            metadata: format!("{{\"room\":\"{room}\"}}"),
            ..Default::default()
        };
        client
            .create_dispatch(request)
            .await
            .expect("create_dispatch");
    }
}

fn read_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("livekit.log")).unwrap_or_default()
}

impl Drop for LiveKit {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What the caller does.
pub struct CallerPlan<'a> {
    /// The room to join.
    pub room: &'a str,
    /// Its identity.
    pub identity: &'a str,
    /// What it says (a WAV), after `speak_after` seconds.
    pub wav_in: Option<&'a Path>,
    /// Seconds of silence before the WAV.
    pub speak_after: f32,
    /// Total time limit, seconds.
    pub duration: f32,
    /// Agent to dispatch into the room.
    pub agent_name: Option<&'a str>,
}

/// The official SDK as the caller, recording what it hears and what it is sent.
pub struct Caller {
    child: tokio::process::Child,
    json: PathBuf,
    log: PathBuf,
    /// Where the caller's recording of the room goes.
    pub heard: PathBuf,
}

impl Caller {
    /// Starts `caller.py` with this plan.
    pub fn start(server: &LiveKit, plan: CallerPlan<'_>) -> Self {
        Self::start_with_attributes(server, plan, &[])
    }

    /// Starts `caller.py` with participant attributes (`KEY=VALUE`) in its token, as a phone
    /// caller has (`sip.phoneNumber=+1555...`).
    pub fn start_with_attributes(
        server: &LiveKit,
        plan: CallerPlan<'_>,
        attributes: &[&str],
    ) -> Self {
        Self::spawn(server, plan, attributes, false)
    }

    /// Starts `caller.py`, which sets its own `test.ready` attribute once connected: a
    /// test waits for it instead of sleeping before it sends data to the caller.
    pub fn start_announcing_ready(server: &LiveKit, plan: CallerPlan<'_>) -> Self {
        Self::spawn(server, plan, &[], true)
    }

    fn spawn(server: &LiveKit, plan: CallerPlan<'_>, attributes: &[&str], ready: bool) -> Self {
        let json = server.path(&format!("{}.json", plan.identity));
        let log = server.path(&format!("{}.log", plan.identity));
        let heard = server.path(&format!("{}_heard.wav", plan.identity));
        let mut command = tokio::process::Command::new(&tools().1);
        command
            .arg(repo().join("tests/livekit/caller.py"))
            .args([
                "--url",
                &server.url(),
                "--room",
                plan.room,
                "--identity",
                plan.identity,
            ])
            .args(["--duration", &plan.duration.to_string()])
            .args(["--speak-after", &plan.speak_after.to_string()])
            .arg("--json-out")
            .arg(&json)
            .arg("--wav-out")
            .arg(&heard)
            .env("PYTHONWARNINGS", "ignore")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("caller log"))
            .kill_on_drop(true);
        if let Some(wav) = plan.wav_in {
            command.arg("--wav-in").arg(wav);
        }
        for attribute in attributes {
            command.args(["--attribute", attribute]);
        }
        if let Some(agent) = plan.agent_name {
            command.args(["--agent-name", agent]);
        }
        if ready {
            command.arg("--announce-ready");
        }
        Caller {
            child: command.spawn().expect("start caller.py"),
            json,
            log,
            heard,
        }
    }

    /// Waits for the caller to finish (within `limit`) and returns its JSON.
    pub async fn finish(mut self, limit: Duration) -> serde_json::Value {
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("caller finishes")
            .expect("caller status");
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        assert!(status.success(), "caller.py failed: {log}");
        let text = std::fs::read_to_string(&self.json)
            .unwrap_or_else(|_| panic!("no caller JSON; log: {log}"));
        serde_json::from_str(&text).expect("caller JSON")
    }
}
