//! What a job is to the code that runs it: [`JobHandler`], [`AssignedJob`] and the
//! cancellation signal, [`CancelSignal`].

use std::future::Future;
use std::pin::Pin;

use tokio::sync::watch;

/// Runs the jobs the server assigns: one call per job, each in its own task, many at once.
///
/// The future joins the room with [`AssignedJob::token`] and returns when the job is over:
/// `Ok` is reported as `JS_SUCCESS`, `Err(reason)` as `JS_FAILED` with that reason. It must
/// return soon after [`AssignedJob::cancel`] fires (the server ended the job, or the worker
/// is shutting down and the drain time is up); a task still running after the worker's
/// cancel grace is aborted.
pub trait JobHandler: Send + Sync {
    /// Runs one job to its end.
    fn run(&self, job: AssignedJob) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;
}

/// One job, as given to [`JobHandler::run`].
#[derive(Debug, Clone)]
pub struct AssignedJob {
    /// The job's id (`AJ_…`).
    pub job_id: String,
    /// The dispatch that created it (`AD_…`), empty when unknown.
    pub dispatch_id: String,
    /// The room to join.
    pub room_name: String,
    /// A join token for that room, made by the server for this job's participant.
    pub token: String,
    /// The server URL to join with the token (`ws(s)://…`).
    pub url: String,
    /// The agent participant's identity (set in the token).
    pub participant_identity: String,
    /// The dispatch's metadata (often JSON), possibly empty.
    pub metadata: String,
    /// Fires when the job must stop.
    pub cancel: CancelSignal,
}

/// The receiving end of a job's cancellation. Clones observe the same signal. When the
/// sending end ([`Canceller`]) is dropped, the signal counts as fired.
#[derive(Debug, Clone)]
pub struct CancelSignal {
    rx: watch::Receiver<bool>,
}

/// The sending end of a job's cancellation.
#[derive(Debug)]
pub struct Canceller {
    tx: watch::Sender<bool>,
}

/// A new, unfired cancellation pair.
pub fn cancel_pair() -> (Canceller, CancelSignal) {
    let (tx, rx) = watch::channel(false);
    (Canceller { tx }, CancelSignal { rx })
}

impl Canceller {
    /// Fires the signal (idempotent).
    pub fn cancel(&self) {
        self.tx.send_replace(true);
    }
}

impl CancelSignal {
    /// Whether the signal has fired (or its sender is gone).
    pub fn is_cancelled(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Completes when the signal fires (or its sender is gone). Cancel-safe.
    pub async fn cancelled(&self) {
        let mut rx = self.rx.clone();
        // Err: the sender is gone, which counts as cancelled.
        let _ = rx.wait_for(|cancelled| *cancelled).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn the_signal_fires_for_every_clone() {
        let (canceller, signal) = cancel_pair();
        let other = signal.clone();
        assert!(!signal.is_cancelled());
        let waiter = tokio::spawn(async move { other.cancelled().await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(!waiter.is_finished());
        canceller.cancel();
        canceller.cancel();
        waiter.await.expect("waiter");
        assert!(signal.is_cancelled());
        signal.cancelled().await;
    }

    #[tokio::test]
    async fn a_dropped_canceller_counts_as_cancelled() {
        let (canceller, signal) = cancel_pair();
        drop(canceller);
        assert!(signal.is_cancelled());
        signal.cancelled().await;
    }
}
