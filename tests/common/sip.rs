//! Phone calls for tests, through the real LiveKit SIP stack on loopback: redis,
//! livekit-server with redis and livekit-sip (`scripts/sip/start.sh`), an inbound trunk and
//! a dispatch rule naming the agent (`scripts/sip/provision.py`), and sipp as the caller,
//! playing espeak-ng speech and DTMF as PCMU/RFC 4733 from a pcap. tcpdump records what the
//! caller hears, and `tests/sip/analyze_capture.py` measures it (the agent's audio spans,
//! SIP messages, the BYE). Each stack runs on its own free ports, so tests run side by
//! side; everything is stopped by guards, also when a test fails.

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The trunk's number: what the caller dials.
pub const TRUNK_NUMBER: &str = "+15550100";
/// The caller's number (sipp's From), as `sip.phoneNumber` will say.
pub const CALLER_NUMBER: &str = "+15550142";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The tools `scripts/sip/install.sh` installs (once per test binary).
pub struct SipTools {
    /// The Python with the LiveKit SDK (for provisioning).
    pub python: String,
    /// livekit-server.
    pub livekit_server: String,
    /// livekit-sip.
    pub livekit_sip: String,
}

/// Installs (or finds) the SIP tools.
pub fn tools() -> &'static SipTools {
    static TOOLS: OnceLock<SipTools> = OnceLock::new();
    TOOLS.get_or_init(|| {
        let out = Command::new(repo().join("scripts/sip/install.sh"))
            .stderr(Stdio::inherit())
            .output()
            .expect("run scripts/sip/install.sh");
        assert!(out.status.success(), "scripts/sip/install.sh failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let find = |key: &str| {
            stdout
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .unwrap_or_else(|| panic!("install.sh names {key}"))
                .to_owned()
        };
        SipTools {
            python: find("LIVEKIT_PYTHON="),
            livekit_server: find("LIVEKIT_SERVER_BIN="),
            livekit_sip: find("LIVEKIT_SIP_BIN="),
        }
    })
}

/// A TCP port that is free now, with UDP `port + 2` free too (livekit-server's ICE mux).
fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        if port < 60_000
            && UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
}

/// A block of 100 RTP ports for one livekit-sip, different for each stack of this process.
fn rtp_ports() -> String {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 21_000 + (NEXT.fetch_add(1, Ordering::Relaxed) % 80) * 100;
    format!("{base}-{}", base + 99)
}

/// redis + livekit-server + livekit-sip on loopback, provisioned for `bella-vista`.
pub struct SipStack {
    dir: PathBuf,
    /// livekit-server's HTTP/WebSocket port.
    pub livekit_port: u16,
    /// livekit-sip's SIP port (UDP and TCP).
    pub sip_port: u16,
}

impl SipStack {
    /// Starts the stack with its state in `dir`, and creates the trunk and dispatch rule.
    pub fn start(dir: &Path) -> Self {
        let tools = tools();
        let state = dir.join("stack");
        for _ in 0..5 {
            let livekit_port = free_port_pair();
            let sip_port = free_port_pair();
            let redis = TcpListener::bind("127.0.0.1:0").expect("bind");
            let redis_port = redis.local_addr().expect("addr").port();
            drop(redis);
            let out = Command::new(repo().join("scripts/sip/start.sh"))
                .arg(&state)
                .env("LIVEKIT_PORT", livekit_port.to_string())
                .env("SIP_PORT", sip_port.to_string())
                .env("REDIS_PORT", redis_port.to_string())
                .env("RTP_PORTS", rtp_ports())
                .env("LIVEKIT_SERVER_BIN", &tools.livekit_server)
                .env("LIVEKIT_SIP_BIN", &tools.livekit_sip)
                .output()
                .expect("run scripts/sip/start.sh");
            if !out.status.success() {
                eprintln!(
                    "scripts/sip/start.sh: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                stop(&state);
                continue;
            }
            let stack = SipStack {
                dir: state,
                livekit_port,
                sip_port,
            };
            stack.provision();
            return stack;
        }
        panic!("the SIP stack did not start; see {}", state.display());
    }

    fn provision(&self) {
        let out = Command::new(&tools().python)
            .arg(repo().join("scripts/sip/provision.py"))
            .args(["--url", &self.http_url(), "--number", TRUNK_NUMBER])
            .env("PYTHONWARNINGS", "ignore")
            .output()
            .expect("run provision.py");
        assert!(
            out.status.success(),
            "provision.py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `ws://127.0.0.1:PORT`.
    pub fn livekit_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.livekit_port)
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.livekit_port)
    }

    /// livekit-sip's log so far.
    pub fn sip_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("sip.log")).unwrap_or_default()
    }
}

fn stop(state: &Path) {
    if let Err(error) = Command::new(repo().join("scripts/sip/stop.sh"))
        .arg(state)
        .output()
    {
        eprintln!("scripts/sip/stop.sh failed: {error}");
    }
}

impl Drop for SipStack {
    fn drop(&mut self) {
        stop(&self.dir);
    }
}

/// One piece of what the caller sends.
#[derive(Debug, Clone)]
pub enum Segment {
    /// These words, spoken by espeak-ng.
    Say(&'static str),
    /// Silence, seconds.
    Silence(f32),
    /// These keys, as RFC 4733 events (each followed by half a second of silence).
    Keys(&'static str),
}

/// How the caller behaves at the SIP level (the sipp scenario).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerScript {
    /// Waits for the far end to hang up (BYE), or accepts a transfer (REFER: 202 and a
    /// NOTIFY saying it worked) and then waits for the BYE.
    WaitForHangUp,
    /// Like [`CallerScript::WaitForHangUp`], but declines every REFER (603).
    DeclineTransfers,
    /// Hangs up itself (BYE) once its audio has played.
    HangUpWhenDone,
}

impl CallerScript {
    fn scenario(self) -> &'static str {
        match self {
            CallerScript::WaitForHangUp => "tests/sip/uac_call.xml",
            CallerScript::DeclineTransfers => "tests/sip/uac_refer_reject.xml",
            CallerScript::HangUpWhenDone => "tests/sip/uac_hangup.xml",
        }
    }
}

/// A phone call in progress: sipp calling the trunk, tcpdump recording what it hears.
pub struct PhoneCall {
    dir: PathBuf,
    sip_port: u16,
    media_port: u16,
    sipp: Child,
    /// tcpdump, unless the call is not captured on its own.
    tcpdump: Option<Child>,
    /// What `make_rtp_pcap.py` said about the caller's audio (segments and their times).
    pub plan: Value,
}

/// What a finished call looked like from the caller's side.
#[derive(Debug)]
pub struct CallOutcome {
    /// sipp's exit code (0: the scenario completed).
    pub sipp_exit: i32,
    /// `analyze_capture.py`'s measurements: SIP messages, `loud_spans` (the agent's audio
    /// at the caller, seconds from the 200 OK), `caller_loud_spans`, `bye_from_sip`, ...
    pub capture: Value,
    /// The directory with the pcap, sipp's logs and the capture.
    pub dir: PathBuf,
}

impl CallOutcome {
    /// The agent's audio at the caller, as `(start, end)` seconds after the answer.
    pub fn agent_spans(&self) -> Vec<(f64, f64)> {
        spans(&self.capture["loud_spans"])
    }

    /// The caller's speech as sent, as `(start, end)` seconds after the answer.
    pub fn caller_spans(&self) -> Vec<(f64, f64)> {
        spans(&self.capture["caller_loud_spans"])
    }

    /// For each caller utterance, the time from its end to the start of the agent's next
    /// audio (the latency the caller hears), when the agent answered before the caller
    /// spoke again.
    pub fn response_delays(&self) -> Vec<f64> {
        let agent = self.agent_spans();
        let caller = self.caller_spans();
        caller
            .iter()
            .enumerate()
            .filter_map(|(i, (_, end))| {
                let next_caller = caller.get(i + 1).map_or(f64::MAX, |s| s.0);
                agent
                    .iter()
                    .find(|(start, _)| start > end && *start < next_caller)
                    .map(|(start, _)| start - end)
            })
            .collect()
    }
}

fn spans(value: &Value) -> Vec<(f64, f64)> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| Some((s[0].as_f64()?, s[1].as_f64()?)))
        .collect()
}

/// A free UDP port whose neighbour `+2` is free too (sipp's media and its second stream).
fn free_media_port() -> u16 {
    loop {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("bind");
        let port = socket.local_addr().expect("addr").port();
        if port < 60_000
            && port.is_multiple_of(2)
            && UdpSocket::bind(("127.0.0.1", port + 2)).is_ok()
        {
            return port;
        }
    }
}

impl PhoneCall {
    /// Dials the trunk of `stack` from [`CALLER_NUMBER`], sending `segments` as audio once
    /// answered, behaving as `script` says, and records what the caller hears. Files go to
    /// `dir`.
    pub fn place(stack: &SipStack, dir: &Path, segments: &[Segment], script: CallerScript) -> Self {
        std::fs::create_dir_all(dir).expect("call dir");
        let plan = make_pcap(dir, segments);
        let media_port = free_media_port();
        let tcpdump = capture(stack, dir, &format!("port {media_port}"));
        Self::dial(stack, dir, plan, media_port, script, Some(tcpdump))
    }

    /// Like [`PhoneCall::place`] with the caller's audio ready in `pcap` (described by
    /// `plan`), and no capture of its own (the caller records all calls with [`capture`]).
    pub fn place_uncaptured(
        stack: &SipStack,
        dir: &Path,
        pcap: &Path,
        plan: &Value,
        script: CallerScript,
    ) -> Self {
        std::fs::create_dir_all(dir).expect("call dir");
        std::fs::copy(pcap, dir.join("caller.pcap")).expect("copy the caller's pcap");
        Self::dial(stack, dir, plan.clone(), free_media_port(), script, None)
    }

    /// The caller's audio for `segments`, made once in `dir` for several calls: the pcap
    /// and its plan.
    pub fn prepare_audio(dir: &Path, segments: &[Segment]) -> (PathBuf, Value) {
        std::fs::create_dir_all(dir).expect("audio dir");
        let plan = make_pcap(dir, segments);
        (dir.join("caller.pcap"), plan)
    }

    /// The caller's RTP port.
    pub fn media_port(&self) -> u16 {
        self.media_port
    }

    /// sipp's process id.
    pub fn sipp_pid(&self) -> u32 {
        self.sipp.id()
    }

    fn dial(
        stack: &SipStack,
        dir: &Path,
        plan: Value,
        media_port: u16,
        script: CallerScript,
        tcpdump: Option<Child>,
    ) -> Self {
        let sip_port = free_media_port();
        let seconds = plan["seconds"].as_f64().unwrap_or(0.0);
        let mut sipp = Command::new("sipp");
        sipp.arg(format!("127.0.0.1:{}", stack.sip_port))
            .arg("-sf")
            .arg(repo().join(script.scenario()))
            .args(["-s", TRUNK_NUMBER, "-i", "127.0.0.1"])
            .args(["-p", &sip_port.to_string()])
            .args(["-mi", "127.0.0.1", "-mp", &media_port.to_string()])
            .args(["-m", "1", "-timeout", "150s", "-timeout_error", "-nostdin"])
            .args(["-trace_msg", "-message_file", "sipp_messages.log"])
            .args(["-trace_err", "-error_file", "sipp_errors.log"])
            .args(["-trace_logs", "-log_file", "sipp.log"])
            .current_dir(dir)
            .stdout(std::fs::File::create(dir.join("sipp.out")).expect("sipp out"))
            .stderr(Stdio::null());
        if script == CallerScript::HangUpWhenDone {
            sipp.args(["-d", &format!("{}", (seconds * 1000.0) as u64)]);
        }
        let sipp = sipp.spawn().expect("start sipp");
        PhoneCall {
            dir: dir.to_path_buf(),
            sip_port: stack.sip_port,
            media_port,
            sipp,
            tcpdump,
            plan,
        }
    }

    /// Waits up to `limit` for sipp to finish, stops the capture and measures it (an
    /// uncaptured call has `Value::Null` as its capture).
    pub async fn finish(mut self, limit: Duration) -> CallOutcome {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.sipp.try_wait().expect("sipp status") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.sipp.kill();
                break self.sipp.wait().expect("sipp status");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let capture = match self.tcpdump.take() {
            Some(tcpdump) => {
                // The last packets (a BYE's 200 OK, retransmissions) before it stops.
                tokio::time::sleep(Duration::from_millis(500)).await;
                stop_capture(tcpdump);
                analyze(
                    &self.dir,
                    &self.dir.join("call.pcap"),
                    self.sip_port,
                    self.media_port,
                )
            }
            None => Value::Null,
        };
        CallOutcome {
            sipp_exit: status.code().unwrap_or(-1),
            capture,
            dir: self.dir.clone(),
        }
    }
}

impl Drop for PhoneCall {
    fn drop(&mut self) {
        for child in std::iter::once(&mut self.sipp).chain(self.tcpdump.as_mut()) {
            if child.try_wait().ok().flatten().is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

/// Starts tcpdump on `lo` writing `dir/call.pcap`: UDP to and from the stack's SIP port and
/// what `ports` (a pcap filter such as `port 6000` or `portrange 6000-6100`) selects.
/// Returns once it listens. Needs root.
pub fn capture(stack: &SipStack, dir: &Path, ports: &str) -> Child {
    let log = dir.join("tcpdump.log");
    let tcpdump = Command::new("tcpdump")
        // immediate mode: packets reach the file as they come, not in blocks (which would
        // keep the last ones, such as the BYE, from a capture stopped soon after)
        .args(["-i", "lo", "-nn", "-U", "--immediate-mode", "-w"])
        .arg(dir.join("call.pcap"))
        .arg(format!("udp and (port {} or {ports})", stack.sip_port))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("tcpdump log"))
        .spawn()
        .expect("start tcpdump (scripts/sip/install.sh installs it)");
    let listening = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening on")
    {
        assert!(
            Instant::now() < listening,
            "tcpdump did not start (it needs root): {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    tcpdump
}

/// Stops a capture started with [`capture`], letting it write what it has.
pub fn stop_capture(mut tcpdump: Child) {
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();
}

/// `analyze_capture.py`'s measurements of the call whose caller used `media_port`, from
/// `pcap`; also written to `dir/capture.json` (and what the caller heard to
/// `dir/caller_heard.wav`).
pub fn analyze(dir: &Path, pcap: &Path, sip_port: u16, media_port: u16) -> Value {
    let out = Command::new("python3")
        .arg(repo().join("tests/sip/analyze_capture.py"))
        .arg(pcap)
        .args(["--sip-port", &sip_port.to_string()])
        .args(["--media-port", &media_port.to_string()])
        .arg("--wav-out")
        .arg(dir.join("caller_heard.wav"))
        .output()
        .expect("run analyze_capture.py");
    assert!(
        out.status.success(),
        "analyze_capture.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("capture.json"), &out.stdout).expect("write capture");
    serde_json::from_slice(&out.stdout).expect("capture JSON")
}

/// `dir/caller.pcap` from `segments` (espeak-ng speech, silences, keys); returns the
/// summary `make_rtp_pcap.py` prints.
fn make_pcap(dir: &Path, segments: &[Segment]) -> Value {
    let mut args: Vec<String> = Vec::new();
    for (index, segment) in segments.iter().enumerate() {
        let arg = match segment {
            Segment::Say(text) => {
                let wav = dir.join(format!("say{index}.wav"));
                let status = Command::new("espeak-ng")
                    .arg("-w")
                    .arg(&wav)
                    .arg(text)
                    .status()
                    .expect("run espeak-ng");
                assert!(status.success(), "espeak-ng failed");
                format!("speech:{}", wav.display())
            }
            Segment::Silence(seconds) => format!("silence:{seconds}"),
            Segment::Keys(keys) => format!("dtmf:{keys}"),
        };
        args.push("--segment".into());
        args.push(arg);
    }
    let out = Command::new("python3")
        .arg(repo().join("tests/sip/make_rtp_pcap.py"))
        .args(&args)
        .arg("--out")
        .arg(dir.join("caller.pcap"))
        .output()
        .expect("run make_rtp_pcap.py");
    assert!(
        out.status.success(),
        "make_rtp_pcap.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("pcap summary JSON")
}
