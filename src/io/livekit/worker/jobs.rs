//! The worker's job bookkeeping, without I/O or a clock: [`JobBook`].
//!
//! The driver feeds it what the server said and what the job tasks did ([`Input`]), with the
//! current time, and reads back what to do ([`Output`]): messages to send, jobs to start or
//! stop, and when a drain is complete.
//!
//! Invariants:
//! - a job is *reserved* between the availability answer "yes" and its assignment, and
//!   *running* from its assignment until its task reports back; both count toward capacity;
//! - a reservation whose assignment never arrives expires `reservation_ttl` after it was made;
//! - once draining, every availability request is declined and the status stays `WS_FULL`;
//! - a worker with a call whose measured CPU use reaches `cpu_full` is `WS_FULL` too (one
//!   with no call never is: it has nothing to shed, and a busy machine is not its doing);
//! - [`Output::Drained`] is emitted once, when draining and no job is reserved or running.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use bella_vista::io::livekit::worker::jobs::{Input, JobBook, JobBookConfig, Output};
//!
//! let mut book = JobBook::new(JobBookConfig {
//!     capacity: 2,
//!     reservation_ttl: Duration::from_secs(10),
//!     participant_name: "Bella Vista".into(),
//!     cpu_full: Some(0.9),
//! });
//! let now = Instant::now();
//! book.handle(Input::DrainRequested, now);
//! let outputs: Vec<Output> = std::iter::from_fn(|| book.poll_output()).collect();
//! assert!(matches!(outputs.last(), Some(Output::Drained)));
//! ```

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use livekit_protocol::{
    AvailabilityRequest, AvailabilityResponse, JobAssignment, JobStatus, UpdateJobStatus,
    UpdateWorkerStatus, WorkerStatus, worker_message,
};

/// livekit-server's default `target_load`: it dispatches no job to a worker reporting this
/// load or more.
pub const SERVER_TARGET_LOAD: f32 = 0.7;

/// How a [`JobBook`] is sized.
#[derive(Debug, Clone, PartialEq)]
pub struct JobBookConfig {
    /// The most jobs reserved or running at once; at least 1 (0 is treated as 1).
    pub capacity: usize,
    /// How long an accepted job waits for its assignment before its slot is released.
    pub reservation_ttl: Duration,
    /// The display name of the agent's participant in the room.
    pub participant_name: String,
    /// The CPU share (0 to 1) at which a worker with calls says it is full; `None`: the CPU
    /// is not considered (only the job count is).
    pub cpu_full: Option<f32>,
}

/// What happened, as the book sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The worker (re-)registered on a new connection: the server knows nothing of this
    /// worker's status and pending reservations are moot.
    Registered,
    /// The server offered a job.
    AvailabilityRequested(AvailabilityRequest),
    /// The server assigned a job (normally one this worker accepted).
    JobAssigned(JobAssignment),
    /// The server ended a job.
    JobTerminated {
        /// The job's id.
        job_id: String,
    },
    /// A job's task returned: `Err` carries the reason it failed.
    JobFinished {
        /// The job's id.
        job_id: String,
        /// How it ended.
        outcome: Result<(), String>,
    },
    /// The worker should stop taking jobs and end once the current ones are done.
    DrainRequested,
    /// The drain took too long: the remaining jobs must be stopped.
    DrainDeadlinePassed,
    /// The share of the CPU in use (0 to 1), measured over the last few seconds.
    CpuMeasured(f32),
    /// Time passed (see [`JobBook::poll_timeout`]).
    Tick,
}

/// A job the driver should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStart {
    /// The job's id (`AJ_…`).
    pub job_id: String,
    /// The dispatch that created the job (`AD_…`), empty when unknown.
    pub dispatch_id: String,
    /// The room to join.
    pub room_name: String,
    /// The join token the server made for this job's participant.
    pub token: String,
    /// The server URL to join, when the server named one (else: the worker's own URL).
    pub url: Option<String>,
    /// The identity the agent's participant will have.
    pub participant_identity: String,
    /// The dispatch's metadata.
    pub metadata: String,
}

/// What the driver should do.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this message to the server (when disconnected, `UpdateJob` is worth keeping;
    /// the rest is superseded by what [`Input::Registered`] produces).
    Send(Box<worker_message::Message>),
    /// Start a job's task.
    StartJob(JobStart),
    /// Ask a job's task to stop; it still reports [`Input::JobFinished`].
    StopJob {
        /// The job's id.
        job_id: String,
    },
    /// Draining is complete: no job is reserved or running.
    Drained,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Reservation {
    participant_identity: String,
    expires_at: Instant,
}

/// The worker's jobs: capacity, reservations, running jobs and the drain. See the module
/// documentation for its invariants.
#[derive(Debug)]
pub struct JobBook {
    config: JobBookConfig,
    reserved: HashMap<String, Reservation>,
    running: HashMap<String, bool>,
    draining: bool,
    drained_sent: bool,
    last_status: Option<(WorkerStatus, usize)>,
    last_load: f32,
    cpu: f32,
    seq: u64,
    outputs: VecDeque<Output>,
}

/// A change of reported load smaller than this is not worth a status message.
const LOAD_STEP: f32 = 0.05;

impl JobBook {
    /// An empty book, not draining.
    pub fn new(mut config: JobBookConfig) -> Self {
        config.capacity = config.capacity.max(1);
        Self {
            config,
            reserved: HashMap::new(),
            running: HashMap::new(),
            draining: false,
            drained_sent: false,
            last_status: None,
            last_load: 0.0,
            cpu: 0.0,
            seq: 0,
            outputs: VecDeque::new(),
        }
    }

    /// Applies one input at time `now`; read the consequences with [`JobBook::poll_output`].
    pub fn handle(&mut self, input: Input, now: Instant) {
        match input {
            Input::Registered => self.on_registered(),
            Input::AvailabilityRequested(request) => self.on_availability(request, now),
            Input::JobAssigned(assignment) => self.on_assigned(assignment),
            Input::JobTerminated { job_id } => self.on_terminated(&job_id),
            Input::JobFinished { job_id, outcome } => self.on_finished(job_id, outcome),
            Input::DrainRequested => self.draining = true,
            Input::DrainDeadlinePassed => self.on_drain_deadline(),
            Input::CpuMeasured(share) => self.cpu = share.clamp(0.0, 1.0),
            Input::Tick => {}
        }
        self.expire(now);
        self.announce_status();
        self.check_drained();
    }

    /// The next thing to do, in order; `None` when there is nothing left.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When the book next needs an [`Input::Tick`]: the earliest reservation expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.reserved.values().map(|r| r.expires_at).min()
    }

    /// Jobs running (assigned and not yet finished).
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Jobs accepted and waiting for their assignment.
    pub fn reserved(&self) -> usize {
        self.reserved.len()
    }

    /// The last CPU share measured (0 to 1).
    pub fn cpu(&self) -> f32 {
        self.cpu
    }

    /// Whether a drain was requested.
    pub fn is_draining(&self) -> bool {
        self.draining
    }

    /// The load reported to the server: the larger of the share of capacity in use and the
    /// share of `cpu_full` in use, scaled so that a full worker reports
    /// [`SERVER_TARGET_LOAD`]. livekit-server sends no job to a worker at or above that load,
    /// so reporting the plain share would leave the last 30 % unused; fullness itself is
    /// said by the `WS_FULL` status. A worker with no call stays just under the target.
    pub fn load(&self) -> f32 {
        let jobs = (self.running.len() as f32 / self.config.capacity as f32).min(1.0);
        let cpu = match self.config.cpu_full {
            Some(full) if full > 0.0 => (self.cpu / full).min(1.0),
            _ => 0.0,
        };
        let cpu = if self.running.is_empty() {
            cpu.min(0.99)
        } else {
            cpu
        };
        jobs.max(cpu) * SERVER_TARGET_LOAD
    }

    /// Whether a worker with calls uses as much CPU as it should.
    fn cpu_saturated(&self) -> bool {
        !self.running.is_empty() && self.config.cpu_full.is_some_and(|full| self.cpu >= full)
    }

    fn status(&self) -> WorkerStatus {
        if self.draining
            || self.running.len() + self.reserved.len() >= self.config.capacity
            || self.cpu_saturated()
        {
            WorkerStatus::WsFull
        } else {
            WorkerStatus::WsAvailable
        }
    }

    fn on_registered(&mut self) {
        self.reserved.clear();
        self.last_status = None;
        self.seq = 0;
    }

    fn on_availability(&mut self, request: AvailabilityRequest, now: Instant) {
        let Some(job) = request.job else {
            tracing::warn!("availability request without a job; ignored");
            return;
        };
        let known = self.reserved.contains_key(&job.id) || self.running.contains_key(&job.id);
        let accept = !job.id.is_empty() && !known && self.status() == WorkerStatus::WsAvailable;
        let participant_identity = format!("agent-{}", job.id);
        if accept {
            let expires_at = now + self.config.reservation_ttl;
            let reservation = Reservation {
                participant_identity: participant_identity.clone(),
                expires_at,
            };
            self.reserved.insert(job.id.clone(), reservation);
        }
        let response = AvailabilityResponse {
            job_id: job.id,
            available: accept,
            participant_identity: if accept {
                participant_identity
            } else {
                String::new()
            },
            participant_name: if accept {
                self.config.participant_name.clone()
            } else {
                String::new()
            },
            ..Default::default()
        };
        self.send(worker_message::Message::Availability(response));
    }

    fn on_assigned(&mut self, assignment: JobAssignment) {
        let Some(job) = assignment.job else {
            tracing::warn!("job assignment without a job; ignored");
            return;
        };
        if job.id.is_empty() || self.running.contains_key(&job.id) {
            return;
        }
        let reservation = self.reserved.remove(&job.id);
        let fits = self.running.len() + self.reserved.len() < self.config.capacity;
        if reservation.is_none() && (self.draining || !fits) {
            // Not accepted by us (or its reservation expired) and no room for it now.
            self.send_job_status(&job.id, JobStatus::JsFailed, "worker has no free slot");
            return;
        }
        let participant_identity = match reservation {
            Some(r) => r.participant_identity,
            None => job
                .state
                .as_ref()
                .map(|s| s.participant_identity.clone())
                .filter(|id| !id.is_empty())
                .unwrap_or_else(|| format!("agent-{}", job.id)),
        };
        self.running.insert(job.id.clone(), false);
        self.send_job_status(&job.id, JobStatus::JsRunning, "");
        self.outputs.push_back(Output::StartJob(JobStart {
            room_name: job.room.map(|room| room.name).unwrap_or_default(),
            dispatch_id: job.dispatch_id,
            metadata: job.metadata,
            job_id: job.id,
            token: assignment.token,
            url: assignment.url.filter(|url| !url.is_empty()),
            participant_identity,
        }));
    }

    fn on_terminated(&mut self, job_id: &str) {
        if self.reserved.remove(job_id).is_some() {
            return;
        }
        self.stop(job_id);
    }

    fn on_finished(&mut self, job_id: String, outcome: Result<(), String>) {
        if self.running.remove(&job_id).is_none() {
            return;
        }
        match outcome {
            Ok(()) => self.send_job_status(&job_id, JobStatus::JsSuccess, ""),
            Err(error) => self.send_job_status(&job_id, JobStatus::JsFailed, &error),
        }
    }

    fn on_drain_deadline(&mut self) {
        self.draining = true;
        self.reserved.clear();
        let mut ids: Vec<String> = self.running.keys().cloned().collect();
        ids.sort();
        for id in ids {
            self.stop(&id);
        }
    }

    /// Asks a running job to stop, once.
    fn stop(&mut self, job_id: &str) {
        if let Some(stopping) = self.running.get_mut(job_id)
            && !*stopping
        {
            *stopping = true;
            self.outputs.push_back(Output::StopJob {
                job_id: job_id.to_owned(),
            });
        }
    }

    fn expire(&mut self, now: Instant) {
        self.reserved.retain(|job_id, r| {
            let keep = r.expires_at > now;
            if !keep {
                tracing::info!(job_id, "no assignment for an accepted job; slot released");
            }
            keep
        });
    }

    fn announce_status(&mut self) {
        let current = (self.status(), self.running.len());
        let load = self.load();
        if self.last_status == Some(current) && (load - self.last_load).abs() < LOAD_STEP {
            return;
        }
        self.last_status = Some(current);
        self.last_load = load;
        self.seq += 1;
        let update = UpdateWorkerStatus {
            status: Some(current.0 as i32),
            load,
            job_count: u32::try_from(current.1).unwrap_or(u32::MAX),
            draining: self.draining,
            seq: self.seq,
        };
        self.send(worker_message::Message::UpdateWorker(update));
    }

    fn check_drained(&mut self) {
        if self.draining
            && !self.drained_sent
            && self.running.is_empty()
            && self.reserved.is_empty()
        {
            self.drained_sent = true;
            self.outputs.push_back(Output::Drained);
        }
    }

    fn send_job_status(&mut self, job_id: &str, status: JobStatus, error: &str) {
        let update = UpdateJobStatus {
            job_id: job_id.to_owned(),
            status: status as i32,
            error: error.to_owned(),
        };
        self.send(worker_message::Message::UpdateJob(update));
    }

    fn send(&mut self, message: worker_message::Message) {
        self.outputs.push_back(Output::Send(Box::new(message)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use livekit_protocol::{Job, Room};
    use worker_message::Message;

    const TTL: Duration = Duration::from_secs(10);

    fn book(capacity: usize) -> JobBook {
        JobBook::new(JobBookConfig {
            capacity,
            reservation_ttl: TTL,
            participant_name: "Bella".into(),
            cpu_full: Some(0.8),
        })
    }

    fn job(id: &str) -> Job {
        Job {
            id: id.into(),
            dispatch_id: format!("AD_{id}"),
            room: Some(Room {
                name: format!("room-{id}"),
                ..Default::default()
            }),
            metadata: "meta".into(),
            ..Default::default()
        }
    }

    fn offer(id: &str) -> Input {
        Input::AvailabilityRequested(AvailabilityRequest {
            job: Some(job(id)),
            resuming: false,
        })
    }

    fn assign(id: &str) -> Input {
        Input::JobAssigned(JobAssignment {
            job: Some(job(id)),
            url: None,
            token: format!("tok-{id}"),
        })
    }

    fn finished(id: &str, outcome: Result<(), String>) -> Input {
        Input::JobFinished {
            job_id: id.into(),
            outcome,
        }
    }

    fn drain(book: &mut JobBook) -> Vec<Output> {
        std::iter::from_fn(|| book.poll_output()).collect()
    }

    fn sent(outputs: &[Output]) -> impl Iterator<Item = &Message> {
        outputs.iter().filter_map(|o| match o {
            Output::Send(message) => Some(message.as_ref()),
            _ => None,
        })
    }

    fn availability(outputs: &[Output]) -> Vec<(String, bool)> {
        let answers = sent(outputs).filter_map(|m| match m {
            Message::Availability(a) => Some((a.job_id.clone(), a.available)),
            _ => None,
        });
        answers.collect()
    }

    /// Worker status updates sent, with the share of capacity each reports.
    fn worker_updates(outputs: &[Output]) -> Vec<(WorkerStatus, f32, u32)> {
        let updates = sent(outputs).filter_map(|m| match m {
            Message::UpdateWorker(u) => {
                let status = WorkerStatus::try_from(u.status.unwrap_or_default()).ok()?;
                // The share of capacity in use (the load unscaled, rounded for comparison).
                let share = (u.load / SERVER_TARGET_LOAD * 1000.0).round() / 1000.0;
                Some((status, share, u.job_count))
            }
            _ => None,
        });
        updates.collect()
    }

    fn job_updates(outputs: &[Output]) -> Vec<(String, JobStatus, String)> {
        let updates = sent(outputs).filter_map(|m| match m {
            Message::UpdateJob(u) => Some((
                u.job_id.clone(),
                JobStatus::try_from(u.status).ok()?,
                u.error.clone(),
            )),
            _ => None,
        });
        updates.collect()
    }

    fn starts(outputs: &[Output]) -> Vec<JobStart> {
        let starts = outputs.iter().filter_map(|o| match o {
            Output::StartJob(s) => Some(s.clone()),
            _ => None,
        });
        starts.collect()
    }

    #[test]
    fn registration_announces_an_available_idle_worker() {
        let mut b = book(2);
        b.handle(Input::Registered, Instant::now());
        assert_eq!(
            worker_updates(&drain(&mut b)),
            vec![(WorkerStatus::WsAvailable, 0.0, 0)]
        );
    }

    #[test]
    fn an_accepted_job_starts_on_assignment_with_its_token_and_room() {
        let mut b = book(2);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        let out = drain(&mut b);
        assert_eq!(availability(&out), vec![("J1".to_owned(), true)]);
        let Some(Message::Availability(answer)) = sent(&out).next() else {
            panic!("the answer comes first: {out:?}");
        };
        assert_eq!(answer.participant_identity, "agent-J1");
        assert_eq!(answer.participant_name, "Bella");

        b.handle(assign("J1"), t0 + Duration::from_millis(5));
        let out = drain(&mut b);
        assert_eq!(
            job_updates(&out),
            vec![("J1".to_owned(), JobStatus::JsRunning, String::new())]
        );
        let start = &starts(&out)[0];
        assert_eq!(start.room_name, "room-J1");
        assert_eq!(start.token, "tok-J1");
        assert_eq!(start.url, None);
        assert_eq!(start.participant_identity, "agent-J1");
        assert_eq!(start.dispatch_id, "AD_J1");
        assert_eq!(start.metadata, "meta");
        assert_eq!(
            worker_updates(&out),
            vec![(WorkerStatus::WsAvailable, 0.5, 1)]
        );
        assert_eq!((b.running(), b.reserved()), (1, 0));
    }

    #[test]
    fn a_full_worker_declines_and_reservations_count_toward_capacity() {
        let mut b = book(1);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        let out = drain(&mut b);
        assert_eq!(availability(&out), vec![("J1".to_owned(), true)]);
        assert_eq!(worker_updates(&out), vec![(WorkerStatus::WsFull, 0.0, 0)]);
        b.handle(offer("J2"), t0);
        assert_eq!(availability(&drain(&mut b)), vec![("J2".to_owned(), false)]);
        b.handle(assign("J1"), t0);
        b.handle(offer("J3"), t0);
        let out = drain(&mut b);
        assert_eq!(availability(&out), vec![("J3".to_owned(), false)]);
        assert_eq!(worker_updates(&out), vec![(WorkerStatus::WsFull, 1.0, 1)]);
    }

    #[test]
    fn load_follows_running_jobs() {
        let mut b = book(4);
        let t0 = Instant::now();
        let mut loads = Vec::new();
        for id in ["A", "B", "C", "D"] {
            b.handle(offer(id), t0);
            b.handle(assign(id), t0);
            loads.extend(worker_updates(&drain(&mut b)));
        }
        b.handle(finished("B", Ok(())), t0);
        loads.extend(worker_updates(&drain(&mut b)));
        use WorkerStatus::{WsAvailable as Free, WsFull as Full};
        let expected = vec![
            (Free, 0.0, 0),  // A reserved: first announcement
            (Free, 0.25, 1), // A running (B reserved: no change)
            (Free, 0.5, 2),
            (Free, 0.75, 3),
            (Full, 0.75, 3), // D reserved takes the last slot
            (Full, 1.0, 4),
            (Free, 0.75, 3), // B finished
        ];
        assert_eq!(loads, expected);
    }

    #[test]
    fn a_worker_whose_calls_saturate_the_cpu_is_full_until_it_cools_down() {
        let mut b = book(8);
        let t0 = Instant::now();
        // A busy machine with no call here: the load stays under the target, still free.
        b.handle(Input::CpuMeasured(0.95), t0);
        let idle = worker_updates(&drain(&mut b));
        assert_eq!(idle.len(), 1);
        assert_eq!(idle[0].0, WorkerStatus::WsAvailable);
        assert!(b.load() < SERVER_TARGET_LOAD);
        b.handle(Input::CpuMeasured(0.2), t0);
        drain(&mut b);
        b.handle(offer("A"), t0);
        b.handle(assign("A"), t0);
        drain(&mut b);
        // One call of eight, CPU at 60 % of the 80 % limit: the load follows the CPU.
        b.handle(Input::CpuMeasured(0.48), t0);
        let updates = worker_updates(&drain(&mut b));
        assert_eq!(updates, vec![(WorkerStatus::WsAvailable, 0.6, 1)]);
        // A small change is not worth a message.
        b.handle(Input::CpuMeasured(0.49), t0);
        assert!(worker_updates(&drain(&mut b)).is_empty());
        // At the limit the worker is full: the next offer is declined.
        b.handle(Input::CpuMeasured(0.85), t0);
        let updates = worker_updates(&drain(&mut b));
        assert_eq!(updates, vec![(WorkerStatus::WsFull, 1.0, 1)]);
        b.handle(offer("B"), t0);
        assert_eq!(availability(&drain(&mut b)), vec![("B".to_owned(), false)]);
        b.handle(Input::CpuMeasured(0.3), t0);
        let updates = worker_updates(&drain(&mut b));
        assert_eq!(updates[0].0, WorkerStatus::WsAvailable);
        b.handle(offer("C"), t0);
        assert_eq!(availability(&drain(&mut b)), vec![("C".to_owned(), true)]);
    }

    #[test]
    fn success_and_failure_are_reported_and_release_the_slot() {
        let mut b = book(1);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        b.handle(assign("J1"), t0);
        drain(&mut b);
        b.handle(finished("J1", Err("room not found".into())), t0);
        let out = drain(&mut b);
        let failed = (
            "J1".to_owned(),
            JobStatus::JsFailed,
            "room not found".to_owned(),
        );
        assert_eq!(job_updates(&out), vec![failed]);
        assert_eq!(
            worker_updates(&out),
            vec![(WorkerStatus::WsAvailable, 0.0, 0)]
        );
        b.handle(offer("J2"), t0);
        b.handle(assign("J2"), t0);
        b.handle(finished("J2", Ok(())), t0);
        let out = drain(&mut b);
        assert_eq!(
            job_updates(&out).last(),
            Some(&("J2".to_owned(), JobStatus::JsSuccess, String::new()))
        );
        // A second report of the same job is ignored.
        b.handle(finished("J2", Ok(())), t0);
        assert!(drain(&mut b).is_empty());
    }

    #[test]
    fn termination_stops_a_running_job_once_and_it_still_reports() {
        let mut b = book(2);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        b.handle(assign("J1"), t0);
        drain(&mut b);
        b.handle(
            Input::JobTerminated {
                job_id: "J1".into(),
            },
            t0,
        );
        assert_eq!(
            drain(&mut b),
            vec![Output::StopJob {
                job_id: "J1".into()
            }]
        );
        b.handle(
            Input::JobTerminated {
                job_id: "J1".into(),
            },
            t0,
        );
        assert!(drain(&mut b).is_empty());
        assert_eq!(
            b.running(),
            1,
            "a stopped job holds its slot until its task returns"
        );
        b.handle(finished("J1", Ok(())), t0);
        assert_eq!(job_updates(&drain(&mut b))[0].1, JobStatus::JsSuccess);
        b.handle(
            Input::JobTerminated {
                job_id: "unknown".into(),
            },
            t0,
        );
        assert!(drain(&mut b).is_empty());
    }

    #[test]
    fn termination_of_a_reserved_job_releases_its_slot() {
        let mut b = book(1);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        drain(&mut b);
        b.handle(
            Input::JobTerminated {
                job_id: "J1".into(),
            },
            t0,
        );
        assert_eq!(
            worker_updates(&drain(&mut b)),
            vec![(WorkerStatus::WsAvailable, 0.0, 0)]
        );
        assert_eq!(b.reserved(), 0);
    }

    #[test]
    fn a_reservation_expires_when_no_assignment_comes() {
        let mut b = book(1);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        drain(&mut b);
        assert_eq!(b.poll_timeout(), Some(t0 + TTL));
        b.handle(Input::Tick, t0 + TTL - Duration::from_millis(1));
        assert!(drain(&mut b).is_empty());
        assert_eq!(b.reserved(), 1);
        b.handle(Input::Tick, t0 + TTL);
        assert_eq!(
            worker_updates(&drain(&mut b)),
            vec![(WorkerStatus::WsAvailable, 0.0, 0)]
        );
        assert_eq!(b.poll_timeout(), None);
        b.handle(offer("J2"), t0 + TTL);
        assert_eq!(availability(&drain(&mut b)), vec![("J2".to_owned(), true)]);
    }

    #[test]
    fn a_late_assignment_runs_when_a_slot_is_free_and_fails_otherwise() {
        let mut b = book(1);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        b.handle(Input::Tick, t0 + TTL);
        drain(&mut b);
        b.handle(assign("J1"), t0 + TTL);
        assert_eq!(starts(&drain(&mut b)).len(), 1);
        b.handle(assign("J2"), t0 + TTL);
        let out = drain(&mut b);
        assert!(starts(&out).is_empty());
        assert_eq!(
            job_updates(&out),
            vec![(
                "J2".into(),
                JobStatus::JsFailed,
                "worker has no free slot".into()
            )]
        );
        // A duplicate assignment of a running job changes nothing.
        b.handle(assign("J1"), t0 + TTL);
        assert!(drain(&mut b).is_empty());
    }

    #[test]
    fn drain_declines_new_jobs_and_waits_for_running_ones() {
        let mut b = book(3);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        b.handle(assign("J1"), t0);
        b.handle(offer("J2"), t0);
        drain(&mut b);
        b.handle(Input::DrainRequested, t0);
        let out = drain(&mut b);
        assert_eq!(worker_updates(&out), vec![(WorkerStatus::WsFull, 0.333, 1)]);
        assert!(!out.contains(&Output::Drained));
        b.handle(offer("J3"), t0);
        assert_eq!(availability(&drain(&mut b)), vec![("J3".to_owned(), false)]);
        // The job accepted before the drain still runs when it is assigned.
        b.handle(assign("J2"), t0);
        assert_eq!(starts(&drain(&mut b)).len(), 1);
        b.handle(finished("J1", Ok(())), t0);
        assert!(!drain(&mut b).contains(&Output::Drained));
        b.handle(finished("J2", Ok(())), t0);
        let out = drain(&mut b);
        assert_eq!(out.last(), Some(&Output::Drained));
        assert_eq!(worker_updates(&out), vec![(WorkerStatus::WsFull, 0.0, 0)]);
        b.handle(Input::Tick, t0);
        assert!(drain(&mut b).is_empty(), "Drained is emitted once");
    }

    #[test]
    fn drain_completes_when_an_unassigned_reservation_expires() {
        let mut b = book(2);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        b.handle(Input::DrainRequested, t0);
        assert!(!drain(&mut b).contains(&Output::Drained));
        b.handle(Input::Tick, t0 + TTL);
        assert_eq!(drain(&mut b).last(), Some(&Output::Drained));
    }

    #[test]
    fn the_drain_deadline_stops_every_running_job() {
        let mut b = book(2);
        let t0 = Instant::now();
        for id in ["J1", "J2"] {
            b.handle(offer(id), t0);
            b.handle(assign(id), t0);
        }
        b.handle(Input::DrainRequested, t0);
        drain(&mut b);
        b.handle(Input::DrainDeadlinePassed, t0);
        let stops = vec![
            Output::StopJob {
                job_id: "J1".into(),
            },
            Output::StopJob {
                job_id: "J2".into(),
            },
        ];
        assert_eq!(drain(&mut b), stops);
        b.handle(finished("J1", Err("cancelled".into())), t0);
        b.handle(finished("J2", Ok(())), t0);
        let out = drain(&mut b);
        assert_eq!(job_updates(&out).len(), 2);
        assert_eq!(out.last(), Some(&Output::Drained));
    }

    #[test]
    fn re_registration_forgets_reservations_and_re_announces_the_status() {
        let mut b = book(2);
        let t0 = Instant::now();
        b.handle(offer("J1"), t0);
        b.handle(assign("J1"), t0);
        b.handle(offer("J2"), t0);
        drain(&mut b);
        b.handle(Input::Registered, t0);
        let out = drain(&mut b);
        assert_eq!(
            worker_updates(&out),
            vec![(WorkerStatus::WsAvailable, 0.5, 1)]
        );
        let Some(Message::UpdateWorker(update)) = sent(&out).next() else {
            panic!("{out:?}")
        };
        assert_eq!(update.seq, 1, "seq restarts per registration");
        assert_eq!((b.running(), b.reserved()), (1, 0));
    }

    #[test]
    fn malformed_offers_are_ignored_or_declined() {
        let mut b = book(1);
        let t0 = Instant::now();
        b.handle(
            Input::AvailabilityRequested(AvailabilityRequest::default()),
            t0,
        );
        assert!(availability(&drain(&mut b)).is_empty());
        b.handle(offer(""), t0);
        assert_eq!(availability(&drain(&mut b)), vec![(String::new(), false)]);
        b.handle(Input::JobAssigned(JobAssignment::default()), t0);
        assert!(drain(&mut b).is_empty());
        b.handle(offer("J1"), t0);
        b.handle(offer("J1"), t0);
        let answers = availability(&drain(&mut b));
        assert_eq!(
            answers,
            vec![("J1".to_owned(), true), ("J1".to_owned(), false)]
        );
    }

    #[test]
    fn zero_capacity_means_one() {
        let mut b = book(0);
        b.handle(offer("J1"), Instant::now());
        assert_eq!(availability(&drain(&mut b)), vec![("J1".to_owned(), true)]);
    }
}
