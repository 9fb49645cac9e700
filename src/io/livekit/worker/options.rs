//! How a worker connects and behaves: [`WorkerOptions`], [`Backoff`] and the server URL.

use std::time::Duration;

use super::WorkerError;

/// Everything [`run_worker`](super::run_worker) needs to know.
#[derive(Clone, PartialEq)]
pub struct WorkerOptions {
    /// The server: `ws://`, `wss://`, `http://` or `https://`, with or without a path prefix
    /// (the worker endpoint is `<url>/agent?protocol=1`).
    pub url: String,
    /// The API key.
    pub api_key: String,
    /// The API secret (signs the worker's token; never sent).
    pub api_secret: String,
    /// The agent name dispatches name (explicit dispatch).
    pub agent_name: String,
    /// The most jobs this worker runs at once (0 is treated as 1).
    pub capacity: usize,
    /// On shutdown, how long running jobs may take to finish before they are cancelled.
    pub drain_timeout: Duration,
    /// After a job is cancelled, how long its task may take to return before it is aborted.
    pub cancel_grace: Duration,
    /// How often the worker pings the server; three intervals without any message from
    /// the server count as a lost connection.
    pub ping_interval: Duration,
    /// How long the upgrade and the registration answer may take.
    pub register_timeout: Duration,
    /// How long an accepted job waits for its assignment.
    pub assignment_timeout: Duration,
    /// Delays between connection attempts.
    pub backoff: Backoff,
    /// The CPU share (0 to 1) at which a worker with calls reports itself full; `None`:
    /// only the job count decides.
    pub cpu_full: Option<f32>,
    /// How often the CPU is measured (the load follows it).
    pub load_interval: Duration,
}

impl std::fmt::Debug for WorkerOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerOptions")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("agent_name", &self.agent_name)
            .field("capacity", &self.capacity)
            .field("drain_timeout", &self.drain_timeout)
            .field("cancel_grace", &self.cancel_grace)
            .field("ping_interval", &self.ping_interval)
            .field("register_timeout", &self.register_timeout)
            .field("assignment_timeout", &self.assignment_timeout)
            .field("backoff", &self.backoff)
            .field("cpu_full", &self.cpu_full)
            .field("load_interval", &self.load_interval)
            .finish()
    }
}

impl WorkerOptions {
    /// Options with the defaults: capacity 4, drain 60 s, cancel grace 5 s, ping every 5 s,
    /// registration within 10 s, assignment within 10 s, backoff 0.5 s doubling to 10 s,
    /// full at 90 % CPU with calls running, the CPU measured every 2.5 s.
    pub fn new(url: &str, api_key: &str, api_secret: &str, agent_name: &str) -> Self {
        Self {
            url: url.to_owned(),
            api_key: api_key.to_owned(),
            api_secret: api_secret.to_owned(),
            agent_name: agent_name.to_owned(),
            capacity: 4,
            drain_timeout: Duration::from_secs(60),
            cancel_grace: Duration::from_secs(5),
            ping_interval: Duration::from_secs(5),
            register_timeout: Duration::from_secs(10),
            assignment_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            cpu_full: Some(0.9),
            load_interval: Duration::from_millis(2500),
        }
    }
}

/// Exponential backoff between connection attempts: `initial`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry).
    pub fn delay(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(20)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }
}

/// The server URL, normalized: `ws(s)://host[:port][/prefix]` without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    base: String,
}

impl ServerUrl {
    /// Parses `ws://`, `wss://`, `http://` or `https://` URLs; a query, a fragment, a
    /// trailing slash and a trailing `/agent` are dropped.
    pub fn parse(url: &str) -> Result<Self, WorkerError> {
        let url = url.trim();
        let invalid = |why: &str| WorkerError::InvalidUrl(format!("{url:?}: {why}"));
        let (scheme, rest) = url.split_once("://").ok_or_else(|| invalid("no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            _ => return Err(invalid("the scheme must be ws, wss, http or https")),
        };
        let rest = rest.split(['?', '#']).next().unwrap_or_default();
        let rest = rest.trim_end_matches('/');
        let rest = rest
            .strip_suffix("/agent")
            .unwrap_or(rest)
            .trim_end_matches('/');
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        Ok(Self {
            base: format!("{scheme}://{rest}"),
        })
    }

    /// The URL participants join with, e.g. `ws://127.0.0.1:7880`.
    pub fn room_url(&self) -> &str {
        &self.base
    }

    /// The worker endpoint, e.g. `ws://127.0.0.1:7880/agent?protocol=1`.
    pub fn agent_endpoint(&self) -> String {
        format!("{}/agent?protocol=1", self.base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalized_to_the_agent_endpoint() {
        let cases = [
            ("ws://127.0.0.1:7880", "ws://127.0.0.1:7880"),
            ("http://127.0.0.1:7880/", "ws://127.0.0.1:7880"),
            ("https://x.livekit.cloud", "wss://x.livekit.cloud"),
            (
                "WSS://x.livekit.cloud/agent?protocol=1",
                "wss://x.livekit.cloud",
            ),
            (
                "wss://proxy.example/livekit/",
                "wss://proxy.example/livekit",
            ),
        ];
        for (input, base) in cases {
            let url = ServerUrl::parse(input).expect(input);
            assert_eq!(url.room_url(), base, "{input}");
            assert_eq!(url.agent_endpoint(), format!("{base}/agent?protocol=1"));
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        for input in ["127.0.0.1:7880", "ftp://host", "ws://", "ws:///agent"] {
            assert!(
                matches!(ServerUrl::parse(input), Err(WorkerError::InvalidUrl(_))),
                "{input}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let b = Backoff::default();
        let delays: Vec<u64> = (0..7).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, vec![500, 1000, 2000, 4000, 8000, 10_000, 10_000]);
        assert_eq!(b.delay(u32::MAX), Duration::from_secs(10));
    }

    #[test]
    fn debug_hides_the_secret() {
        let options = WorkerOptions::new("ws://h", "key", "hunter2", "agent");
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
