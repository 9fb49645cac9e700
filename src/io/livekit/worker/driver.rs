//! The async driver: owns the socket, the job tasks and the timers, and feeds the
//! [`JobBook`] (see [`run_worker`](super::run_worker)).

use std::collections::{HashMap, VecDeque};
use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use livekit_protocol::{WorkerPing, server_message, worker_message};
use tokio::task::{self, JoinError, JoinSet};
use tokio::time::{Instant, sleep_until};

use super::WorkerError;
use super::connection::{ConnectError, Connection, Registration};
use super::job::{AssignedJob, Canceller, JobHandler, cancel_pair};
use super::jobs::{Input, JobBook, JobBookConfig, JobStart, Output};
use super::options::{ServerUrl, WorkerOptions};
use super::timers::{Due, TimerConfig, WorkerTimers};
use crate::io::cpu::CpuMeter;
use crate::telemetry::{self, WorkerState};

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>> + Send>>;

/// The connection to the server, in one of its three states.
enum Link {
    /// Waiting to try again (the timers know when).
    Down,
    /// Connecting and registering.
    Connecting(ConnectFuture),
    /// Registered.
    Up(Connection),
}

/// What the connection did.
enum LinkEvent {
    Connected(Result<Connection, ConnectError>),
    Received(Result<Box<server_message::Message>, ConnectError>),
}

/// What woke the driver.
enum Event {
    ShutdownRequested,
    Link(LinkEvent),
    TaskEnded(Result<(task::Id, Result<(), String>), JoinError>),
    TimerDue,
    BookTimeout,
}

pub(super) struct Driver {
    options: WorkerOptions,
    url: ServerUrl,
    handler: Arc<dyn JobHandler>,
    book: JobBook,
    tasks: JoinSet<Result<(), String>>,
    task_jobs: HashMap<task::Id, String>,
    cancellers: HashMap<String, Canceller>,
    link: Link,
    /// `update_job` messages produced while disconnected, sent after re-registering.
    outbox: VecDeque<worker_message::Message>,
    timers: WorkerTimers,
    cpu: CpuMeter,
    drained: bool,
}

impl Driver {
    pub(super) fn new(
        options: WorkerOptions,
        url: ServerUrl,
        handler: Arc<dyn JobHandler>,
    ) -> Self {
        let book = JobBook::new(JobBookConfig {
            capacity: options.capacity,
            reservation_ttl: options.assignment_timeout,
            participant_name: options.agent_name.clone(),
            cpu_full: options.cpu_full,
        });
        let timers = WorkerTimers::new(
            TimerConfig {
                ping_interval: options.ping_interval,
                load_interval: options.load_interval,
                drain_timeout: options.drain_timeout,
                cancel_grace: options.cancel_grace,
                backoff: options.backoff,
            },
            Instant::now().into_std(),
        );
        Self {
            options,
            url,
            handler,
            book,
            tasks: JoinSet::new(),
            task_jobs: HashMap::new(),
            cancellers: HashMap::new(),
            link: Link::Down,
            outbox: VecDeque::new(),
            timers,
            cpu: CpuMeter::new(),
            drained: false,
        }
    }

    pub(super) async fn run(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), WorkerError> {
        tokio::pin!(shutdown);
        telemetry::global().set_worker_state(WorkerState::Connecting);
        self.link = Link::Connecting(self.connect());
        loop {
            self.flush_book().await;
            if self.drained {
                break;
            }
            let event = tokio::select! {
                () = &mut shutdown, if !self.book.is_draining() => Event::ShutdownRequested,
                event = next_link_event(&mut self.link) => Event::Link(event),
                Some(ended) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => Event::TaskEnded(ended),
                () = sleep_until_some(self.timers.next_deadline().map(Instant::from_std)) => Event::TimerDue,
                () = sleep_until_some(self.book.poll_timeout().map(Instant::from_std)) => Event::BookTimeout,
            };
            if let Err(error) = self.on_event(event).await {
                self.stop_all_jobs();
                return Err(error);
            }
            self.report_telemetry();
        }
        if !self.outbox.is_empty() {
            tracing::warn!(
                updates = self.outbox.len(),
                "job updates not delivered: no connection at shutdown"
            );
        }
        if let Link::Up(connection) = std::mem::replace(&mut self.link, Link::Down) {
            connection.close().await;
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    async fn on_event(&mut self, event: Event) -> Result<(), WorkerError> {
        let now = Instant::now();
        match event {
            Event::ShutdownRequested => {
                tracing::info!(
                    running = self.book.running(),
                    "shutting down: draining the worker"
                );
                self.timers.drain_requested(now.into_std());
                self.book.handle(Input::DrainRequested, now.into_std());
                telemetry::global().set_worker_state(WorkerState::Draining);
            }
            Event::Link(LinkEvent::Connected(result)) => self.on_connected(result, now).await?,
            Event::Link(LinkEvent::Received(Ok(message))) => self.on_message(message, now),
            Event::Link(LinkEvent::Received(Err(error))) => {
                tracing::warn!(%error, "connection to the server lost; reconnecting");
                self.link_lost(now);
            }
            Event::TaskEnded(ended) => self.on_task_ended(ended, now),
            Event::TimerDue => {
                while let Some(due) = self.timers.poll_due(now.into_std()) {
                    self.on_due(due, now).await;
                }
            }
            Event::BookTimeout => self.book.handle(Input::Tick, now.into_std()),
        }
        Ok(())
    }

    /// Acts on what a clock says is due.
    async fn on_due(&mut self, due: Due, now: Instant) {
        match due {
            Due::Reconnect => {
                tracing::debug!(attempt = self.timers.attempt(), "connecting to the server");
                self.link = Link::Connecting(self.connect());
            }
            Due::Ping => self.ping().await,
            Due::ServerSilent => {
                tracing::warn!("no answer from the server; reconnecting");
                self.link = Link::Down;
                self.show_connecting();
            }
            Due::CpuSample => {
                if let Some(share) = self.cpu.sample().await {
                    self.book.handle(Input::CpuMeasured(share), now.into_std());
                }
            }
            Due::DrainDeadline => {
                tracing::warn!(
                    running = self.book.running(),
                    "drain timeout: cancelling the remaining jobs"
                );
                self.book.handle(Input::DrainDeadlinePassed, now.into_std());
            }
            Due::AbortJobs => {
                tracing::warn!(
                    running = self.tasks.len(),
                    "jobs ignored their cancellation; aborting them"
                );
                self.tasks.abort_all();
            }
        }
    }

    async fn on_connected(
        &mut self,
        result: Result<Connection, ConnectError>,
        now: Instant,
    ) -> Result<(), WorkerError> {
        match result {
            Ok(connection) => {
                tracing::info!(
                    worker_id = connection.worker_id(),
                    url = self.url.room_url(),
                    "worker registered"
                );
                self.link = Link::Up(connection);
                if !self.book.is_draining() {
                    telemetry::global().set_worker_state(WorkerState::Registered);
                }
                self.timers.registered(now.into_std());
                self.book.handle(Input::Registered, now.into_std());
                for message in std::mem::take(&mut self.outbox) {
                    self.send(message).await;
                }
                Ok(())
            }
            Err(ConnectError::Unauthorized { status, reason }) => Err(WorkerError::Unauthorized {
                url: self.url.room_url().to_owned(),
                reason: format!("HTTP {status}: {reason}"),
            }),
            Err(ConnectError::Panicked(message)) => Err(WorkerError::Connector(message)),
            Err(error) => {
                let delay = self.timers.connect_failed(now.into_std());
                tracing::warn!(%error, retry_in = ?delay, "cannot register with the server");
                self.link = Link::Down;
                self.show_connecting();
                Ok(())
            }
        }
    }

    fn on_message(&mut self, message: Box<server_message::Message>, now: Instant) {
        self.timers.heard(now.into_std());
        let input = match *message {
            server_message::Message::Availability(request) => Input::AvailabilityRequested(request),
            server_message::Message::Assignment(assignment) => Input::JobAssigned(assignment),
            server_message::Message::Termination(termination) => Input::JobTerminated {
                job_id: termination.job_id,
            },
            server_message::Message::Pong(_) | server_message::Message::Register(_) => return,
            server_message::Message::GoAway(_) => {
                tracing::info!("the server is draining this connection; re-registering");
                self.timers.reconnect_now(now.into_std());
                self.link = Link::Down;
                self.show_connecting();
                return;
            }
        };
        self.book.handle(input, now.into_std());
    }

    fn on_task_ended(
        &mut self,
        ended: Result<(task::Id, Result<(), String>), JoinError>,
        now: Instant,
    ) {
        let (id, outcome) = match ended {
            Ok((id, outcome)) => (id, outcome),
            Err(error) if error.is_panic() => (error.id(), Err("the job panicked".to_owned())),
            Err(error) => (
                error.id(),
                Err("the job was aborted at shutdown".to_owned()),
            ),
        };
        let Some(job_id) = self.task_jobs.remove(&id) else {
            return;
        };
        self.cancellers.remove(&job_id);
        telemetry::global().call_ended(&outcome);
        match &outcome {
            Ok(()) => tracing::info!(job_id, "job finished"),
            Err(error) => tracing::warn!(job_id, error, "job failed"),
        }
        self.book
            .handle(Input::JobFinished { job_id, outcome }, now.into_std());
    }

    async fn ping(&mut self) {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or_default();
        let timestamp = i64::try_from(timestamp).unwrap_or(i64::MAX);
        self.send(worker_message::Message::Ping(WorkerPing { timestamp }))
            .await;
    }

    /// Shows the book's state to the operator (`/metrics`).
    fn report_telemetry(&self) {
        let telemetry = telemetry::global();
        telemetry.set_worker_load(self.book.running(), self.book.load(), self.book.cpu());
    }

    /// Carries out what the book decided.
    async fn flush_book(&mut self) {
        while let Some(output) = self.book.poll_output() {
            match output {
                Output::Send(message) => self.send(*message).await,
                Output::StartJob(start) => self.start(start),
                Output::StopJob { job_id } => {
                    if let Some(canceller) = self.cancellers.get(&job_id) {
                        tracing::info!(job_id, "stopping job");
                        canceller.cancel();
                    }
                }
                Output::Drained => self.drained = true,
            }
        }
    }

    fn start(&mut self, start: JobStart) {
        let (canceller, cancel) = cancel_pair();
        let job = AssignedJob {
            url: start.url.unwrap_or_else(|| self.url.room_url().to_owned()),
            job_id: start.job_id.clone(),
            dispatch_id: start.dispatch_id,
            room_name: start.room_name,
            token: start.token,
            participant_identity: start.participant_identity,
            metadata: start.metadata,
            cancel,
        };
        tracing::info!(job_id = job.job_id, room = job.room_name, "job started");
        let handle = self.tasks.spawn(self.handler.run(job));
        self.task_jobs.insert(handle.id(), start.job_id.clone());
        self.cancellers.insert(start.job_id, canceller);
    }

    /// Sends when connected; keeps job updates for the next connection otherwise.
    async fn send(&mut self, message: worker_message::Message) {
        let Link::Up(connection) = &mut self.link else {
            self.keep_if_job_update(message);
            return;
        };
        if let Err(error) = connection.send(message.clone()).await {
            tracing::warn!(%error, "connection to the server lost while sending; reconnecting");
            self.keep_if_job_update(message);
            self.link_lost(Instant::now());
        }
    }

    fn keep_if_job_update(&mut self, message: worker_message::Message) {
        if matches!(message, worker_message::Message::UpdateJob(_)) {
            self.outbox.push_back(message);
        }
    }

    /// A registered link broke: connect again after the first backoff step.
    fn link_lost(&mut self, now: Instant) {
        self.timers.link_lost(now.into_std());
        self.link = Link::Down;
        self.show_connecting();
    }

    /// Shows the operator the worker is (re)connecting, unless it is draining.
    fn show_connecting(&self) {
        if !self.book.is_draining() {
            telemetry::global().set_worker_state(WorkerState::Connecting);
        }
    }

    fn connect(&self) -> ConnectFuture {
        let endpoint = self.url.agent_endpoint();
        let options = self.options.clone();
        // In a task of its own, so that a panic in the TLS set-up (rustls panics when no
        // crypto provider is chosen) becomes an error instead of ending the worker's caller.
        let task = AbortOnDrop(tokio::spawn(async move {
            let registration = Registration {
                endpoint: &endpoint,
                api_key: &options.api_key,
                api_secret: &options.api_secret,
                agent_name: &options.agent_name,
                timeout: options.register_timeout,
            };
            Connection::open(registration).await
        }));
        Box::pin(async move {
            let mut task = task;
            match (&mut task.0).await {
                Ok(result) => result,
                Err(error) if error.is_panic() => Err(ConnectError::Panicked(panic_message(error))),
                Err(_) => Err(ConnectError::Closed),
            }
        })
    }

    fn stop_all_jobs(&mut self) {
        for canceller in self.cancellers.values() {
            canceller.cancel();
        }
        self.tasks.abort_all();
    }
}

/// Aborts the task when dropped (a connection attempt outliving the worker is useless).
struct AbortOnDrop<T>(task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn panic_message(error: JoinError) -> String {
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned());
    message
        .unwrap_or_else(|| "unknown panic".to_owned())
        .replace('\n', " ")
}

async fn next_link_event(link: &mut Link) -> LinkEvent {
    match link {
        Link::Down => pending().await,
        Link::Connecting(connecting) => LinkEvent::Connected(connecting.as_mut().await),
        Link::Up(connection) => LinkEvent::Received(connection.recv().await),
    }
}

async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => sleep_until(at).await,
        None => pending().await,
    }
}
