//! A LiveKit agent worker: registers with livekit-server on `/agent`, accepts the jobs it
//! is offered up to its capacity, runs each with a [`JobHandler`] in a task of its own, and
//! drains on shutdown.
//!
//! The flow (binary protobuf frames, `WorkerMessage` out, `ServerMessage` in):
//!
//! ```text
//! -> register {JT_ROOM, agent_name}            <- register {worker_id}
//! -> ping (every ping_interval)                <- pong
//! <- availability {job}                        -> availability {available, identity}
//! <- assignment {job, token, url?}             -> update_job {JS_RUNNING}; the job runs
//! -> update_job {JS_SUCCESS | JS_FAILED}  and/or  <- termination {job_id}
//! -> update_worker {WS_AVAILABLE | WS_FULL, load = running / capacity} when that changes
//! ```
//!
//! The bookkeeping is a state machine without I/O or clock ([`jobs::JobBook`]); the driver
//! ([`run_worker`]) owns the socket, the tasks and the timers. A lost connection is retried
//! with exponential backoff and the worker registers again; running jobs keep running (they
//! talk to their room, not to this socket). A wrong key or secret ends [`run_worker`] with
//! [`WorkerError::Unauthorized`] at the first attempt (the server answers the upgrade with
//! HTTP 401).
//!
//! ```no_run
//! use std::sync::Arc;
//! use bella_vista::io::livekit::worker::{AssignedJob, JobHandler, WorkerOptions, run_worker};
//!
//! struct Greeter;
//! impl JobHandler for Greeter {
//!     fn run(&self, job: AssignedJob)
//!         -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
//!         Box::pin(async move {
//!             // join job.room_name at job.url with job.token, until job.cancel fires ...
//!             job.cancel.cancelled().await;
//!             Ok(())
//!         })
//!     }
//! }
//!
//! # async fn demo() -> Result<(), bella_vista::io::livekit::worker::WorkerError> {
//! let options = WorkerOptions::new("ws://127.0.0.1:7880", "devkey", "secret", "bella-vista");
//! let shutdown = async { let _ = tokio::signal::ctrl_c().await; };
//! run_worker(options, Arc::new(Greeter), shutdown).await
//! # }
//! ```

mod connection;
mod driver;
mod job;
pub mod jobs;
mod options;
mod timers;

use std::future::Future;
use std::sync::Arc;

pub use connection::ConnectError;
pub use job::{AssignedJob, CancelSignal, Canceller, JobHandler, cancel_pair};
pub use options::{Backoff, ServerUrl, WorkerOptions};

/// Why the worker stopped with an error. Every message is one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The server URL cannot be used.
    #[error("invalid LiveKit URL {0}")]
    InvalidUrl(String),
    /// The options are inconsistent.
    #[error("invalid worker options: {0}")]
    InvalidOptions(String),
    /// The server refused the API key or secret.
    #[error(
        "LiveKit server at {url} refused the worker's credentials ({reason}); check the API key and secret"
    )]
    Unauthorized {
        /// The server URL.
        url: String,
        /// What the server said, e.g. `HTTP 401: token signature is invalid: signature is invalid`.
        reason: String,
    },
    /// The WebSocket client cannot work in this process. For `wss://`: rustls panics when
    /// no crypto provider was chosen; call
    /// `rustls::crypto::ring::default_provider().install_default()` at start-up.
    #[error("the WebSocket client failed: {0}")]
    Connector(String),
}

/// Runs the worker until `shutdown` completes and the drain is over.
///
/// On shutdown the worker reports itself full, declines new jobs, lets running jobs finish
/// for up to `drain_timeout`, then fires their [`CancelSignal`]s (aborting tasks still
/// running `cancel_grace` later, reported as failed), reports the last job states, closes
/// the socket and returns `Ok`. Returns an error only for bad options, refused
/// credentials or a WebSocket client that cannot work ([`WorkerError::Connector`]);
/// connection failures are retried forever. On an error, running jobs are aborted.
pub async fn run_worker(
    options: WorkerOptions,
    handler: Arc<dyn JobHandler>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WorkerError> {
    let url = ServerUrl::parse(&options.url)?;
    if options.api_key.is_empty() || options.api_secret.is_empty() {
        return Err(WorkerError::InvalidOptions(
            "the API key and secret must not be empty".into(),
        ));
    }
    if options.ping_interval.is_zero() {
        return Err(WorkerError::InvalidOptions(
            "the ping interval must not be zero".into(),
        ));
    }
    driver::Driver::new(options, url, handler)
        .run(shutdown)
        .await
}
