//! The worker's clocks, without I/O: when to ping the server and when it has gone quiet,
//! when to measure the CPU, when to try connecting again (exponential backoff), when a
//! drain has run out of time and when jobs that ignored their cancellation are aborted.
//!
//! Like the [`JobBook`](super::jobs::JobBook), it is told what happened with `now`, and
//! says what is due: the driver sleeps until [`WorkerTimers::next_deadline`], then acts on
//! each [`Due`] that [`WorkerTimers::poll_due`] returns. Tested on virtual time below.

use std::time::{Duration, Instant};

use super::options::Backoff;

/// How long each clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimerConfig {
    /// Between pings; three without a word from the server and the link is lost.
    pub ping_interval: Duration,
    /// Between CPU measurements.
    pub load_interval: Duration,
    /// How long running jobs may take to finish once a drain was asked for.
    pub drain_timeout: Duration,
    /// How long cancelled jobs get to stop before they are aborted.
    pub cancel_grace: Duration,
    /// The pause before each connection attempt after a failure.
    pub backoff: Backoff,
}

/// What a clock says is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Due {
    /// Connect again (this is attempt [`WorkerTimers::attempt`]).
    Reconnect,
    /// Ping the server.
    Ping,
    /// The server said nothing for three ping intervals: treat the link as lost.
    ServerSilent,
    /// Measure the CPU.
    CpuSample,
    /// The drain ran out of time: cancel the jobs still running.
    DrainDeadline,
    /// The cancelled jobs had their grace: abort them.
    AbortJobs,
}

/// The worker's timers (see the module documentation).
#[derive(Debug)]
pub(crate) struct WorkerTimers {
    config: TimerConfig,
    /// Failed connection attempts since the last registration.
    attempt: u32,
    retry_at: Option<Instant>,
    /// Set while registered.
    next_ping: Option<Instant>,
    last_heard: Instant,
    next_cpu_sample: Instant,
    drain_deadline: Option<Instant>,
    abort_at: Option<Instant>,
    /// Whether a drain was asked for (it is never started twice).
    draining: bool,
}

impl WorkerTimers {
    /// Timers for a worker that starts connecting at `now` (the CPU is measured at once).
    pub(crate) fn new(config: TimerConfig, now: Instant) -> Self {
        WorkerTimers {
            config,
            attempt: 0,
            retry_at: None,
            next_ping: None,
            last_heard: now,
            next_cpu_sample: now,
            drain_deadline: None,
            abort_at: None,
            draining: false,
        }
    }

    /// The number of the connection attempt under way or next (0 after a registration).
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Registered: the failures are forgotten and pings start now.
    pub(crate) fn registered(&mut self, now: Instant) {
        self.attempt = 0;
        self.retry_at = None;
        self.last_heard = now;
        self.next_ping = Some(now);
    }

    /// A message came from the server.
    pub(crate) fn heard(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// A connection attempt failed: try again after the backoff for this attempt. Returns
    /// the pause.
    pub(crate) fn connect_failed(&mut self, now: Instant) -> Duration {
        let delay = self.config.backoff.delay(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.down_until(now + delay);
        delay
    }

    /// A registered link was lost: try again after the first backoff step.
    pub(crate) fn link_lost(&mut self, now: Instant) -> Duration {
        self.attempt = 0;
        self.connect_failed(now)
    }

    /// The server asked us to go (it is draining): connect again at once.
    pub(crate) fn reconnect_now(&mut self, now: Instant) {
        self.attempt = 0;
        self.down_until(now);
    }

    fn down_until(&mut self, retry_at: Instant) {
        self.retry_at = Some(retry_at);
        self.next_ping = None;
    }

    /// A drain was asked for: the jobs have until the drain timeout.
    pub(crate) fn drain_requested(&mut self, now: Instant) {
        if !self.draining {
            self.draining = true;
            self.drain_deadline = Some(now + self.config.drain_timeout);
        }
    }

    /// The earliest time something is due.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        [
            self.retry_at,
            self.next_ping,
            Some(self.next_cpu_sample),
            self.drain_deadline,
            self.abort_at,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// One thing due at `now`, if any (call until `None`); its clock is moved on.
    pub(crate) fn poll_due(&mut self, now: Instant) -> Option<Due> {
        let due = |at: Option<Instant>| at.is_some_and(|at| at <= now);
        if due(self.abort_at) {
            self.abort_at = None;
            return Some(Due::AbortJobs);
        }
        if due(self.drain_deadline) {
            self.drain_deadline = None;
            self.abort_at = Some(now + self.config.cancel_grace);
            return Some(Due::DrainDeadline);
        }
        if due(self.retry_at) {
            self.retry_at = None;
            return Some(Due::Reconnect);
        }
        if due(self.next_ping) {
            let interval = self.config.ping_interval;
            if now.duration_since(self.last_heard) > interval * 3 {
                self.link_lost(now);
                return Some(Due::ServerSilent);
            }
            self.next_ping = Some(now + interval);
            return Some(Due::Ping);
        }
        if self.next_cpu_sample <= now {
            self.next_cpu_sample = now + self.config.load_interval;
            return Some(Due::CpuSample);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TimerConfig {
        TimerConfig {
            ping_interval: Duration::from_secs(10),
            load_interval: Duration::from_millis(2500),
            drain_timeout: Duration::from_secs(30),
            cancel_grace: Duration::from_secs(5),
            backoff: Backoff::default(),
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    /// Everything due at `now`.
    fn all_due(timers: &mut WorkerTimers, now: Instant) -> Vec<Due> {
        std::iter::from_fn(|| timers.poll_due(now)).collect()
    }

    #[test]
    fn pings_start_at_registration_and_repeat_while_the_server_answers() {
        let t0 = Instant::now();
        let mut timers = WorkerTimers::new(config(), t0);
        assert_eq!(all_due(&mut timers, t0), vec![Due::CpuSample]);
        assert_eq!(
            timers.next_deadline(),
            Some(t0 + secs(2.5)),
            "no ping before registering"
        );
        timers.registered(t0 + secs(1.0));
        assert_eq!(all_due(&mut timers, t0 + secs(1.0)), vec![Due::Ping]);
        assert_eq!(timers.next_deadline(), Some(t0 + secs(2.5)));
        assert_eq!(all_due(&mut timers, t0 + secs(2.5)), vec![Due::CpuSample]);
        timers.heard(t0 + secs(9.0));
        assert_eq!(
            all_due(&mut timers, t0 + secs(11.0)),
            vec![Due::Ping, Due::CpuSample]
        );
    }

    #[test]
    fn a_silent_server_loses_the_link_after_three_ping_intervals() {
        let t0 = Instant::now();
        let mut timers = WorkerTimers::new(config(), t0);
        timers.registered(t0);
        let mut pings = 0;
        let now = loop {
            let now = timers.next_deadline().expect("a timer runs");
            match timers.poll_due(now) {
                Some(Due::Ping) => pings += 1,
                Some(Due::ServerSilent) => break now,
                _ => {}
            }
        };
        assert_eq!(now, t0 + secs(40.0));
        assert_eq!(pings, 4, "pings at 0, 10, 20 and 30 s went unanswered");
        assert_eq!(
            all_due(&mut timers, now + secs(0.5)),
            vec![Due::Reconnect, Due::CpuSample]
        );
        assert_eq!(timers.attempt(), 1);
    }

    #[test]
    fn failed_connections_back_off_doubling_and_a_registration_resets_it() {
        let t0 = Instant::now();
        let mut timers = WorkerTimers::new(config(), t0);
        let mut now = t0;
        let mut pauses = Vec::new();
        for _ in 0..6 {
            pauses.push(timers.connect_failed(now).as_millis());
            now += timers.config.backoff.delay(timers.attempt() - 1);
            assert!(all_due(&mut timers, now).contains(&Due::Reconnect));
        }
        assert_eq!(pauses, vec![500, 1000, 2000, 4000, 8000, 10_000]);
        timers.registered(now);
        assert_eq!(timers.attempt(), 0);
        assert_eq!(timers.link_lost(now).as_millis(), 500);
        assert!(
            !all_due(&mut timers, now + secs(0.4)).contains(&Due::Reconnect),
            "not before the pause"
        );
        assert!(
            !all_due(&mut timers, now + secs(0.4)).contains(&Due::Ping),
            "no pings while down"
        );
    }

    #[test]
    fn the_server_going_away_reconnects_at_once() {
        let t0 = Instant::now();
        let mut timers = WorkerTimers::new(config(), t0);
        timers.connect_failed(t0);
        timers.reconnect_now(t0 + secs(0.1));
        assert_eq!(timers.attempt(), 0);
        assert!(all_due(&mut timers, t0 + secs(0.1)).contains(&Due::Reconnect));
    }

    #[test]
    fn a_drain_runs_out_then_the_cancelled_jobs_get_their_grace() {
        let t0 = Instant::now();
        let mut timers = WorkerTimers::new(config(), t0);
        all_due(&mut timers, t0);
        timers.drain_requested(t0 + secs(1.0));
        timers.drain_requested(t0 + secs(20.0));
        let due_at = |timers: &mut WorkerTimers, wanted: Due| loop {
            let now = timers.next_deadline().expect("a timer runs");
            if all_due(timers, now).contains(&wanted) {
                return now;
            }
        };
        assert_eq!(
            due_at(&mut timers, Due::DrainDeadline),
            t0 + secs(31.0),
            "a second request does not extend it"
        );
        assert_eq!(due_at(&mut timers, Due::AbortJobs), t0 + secs(36.0));
        timers.drain_requested(t0 + secs(40.0));
        assert!(
            timers.next_deadline() <= Some(t0 + secs(40.0 + 2.5)),
            "a finished drain is not started again: only the CPU clock runs"
        );
    }
}
