//! The agent worker against a real livekit-server (v1.13.5, `--dev`, 127.0.0.1 only), one
//! server per test on a free port: registration and dispatch, capacity, a wrong secret,
//! shutdown with running jobs, and a server restart.
//!
//! The server comes from `scripts/livekit/install.sh`; each test starts its own with
//! `scripts/livekit/start.sh` and a guard stops it (`stop.sh`), even when the test panics.
//! What the server saw is read from its log (`job ended … JS_SUCCESS`, `worker registered`).

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bella_vista::io::livekit::worker::{
    AssignedJob, Backoff, JobHandler, WorkerError, WorkerOptions, run_worker,
};
use livekit_api::access_token::TokenVerifier;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use common::livekit::LiveKit;

const AGENT: &str = "bella-vista-test";

// ---- a recording job handler ---------------------------------------------------------------

/// What a test job does.
#[derive(Clone, Copy)]
enum Behaviour {
    /// Returns `Ok` after this long, ignoring cancellation.
    SleepThenOk(Duration),
    /// Returns `Err("cancelled")` when cancelled, `Ok` after this long otherwise.
    UntilCancelled(Duration),
}

/// What the handler saw.
#[derive(Debug)]
enum Seen {
    Started(AssignedJob),
    Ended { job_id: String, cancelled: bool },
}

struct Recorder {
    behaviour: Behaviour,
    seen: mpsc::UnboundedSender<Seen>,
    running: Arc<AtomicUsize>,
    max_running: Arc<AtomicUsize>,
}

impl Recorder {
    fn new(behaviour: Behaviour) -> (Arc<Self>, mpsc::UnboundedReceiver<Seen>) {
        let (seen, rx) = mpsc::unbounded_channel();
        let running = Arc::new(AtomicUsize::new(0));
        let max_running = Arc::new(AtomicUsize::new(0));
        (
            Arc::new(Self {
                behaviour,
                seen,
                running,
                max_running,
            }),
            rx,
        )
    }
}

impl JobHandler for Recorder {
    fn run(&self, job: AssignedJob) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> {
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_running.fetch_max(now, Ordering::SeqCst);
        let (behaviour, seen, running) = (self.behaviour, self.seen.clone(), self.running.clone());
        Box::pin(async move {
            let (job_id, cancel) = (job.job_id.clone(), job.cancel.clone());
            let _ = seen.send(Seen::Started(job));
            let result = match behaviour {
                Behaviour::SleepThenOk(d) => {
                    tokio::time::sleep(d).await;
                    Ok(())
                }
                Behaviour::UntilCancelled(d) => tokio::select! {
                    () = cancel.cancelled() => Err("cancelled".to_owned()),
                    () = tokio::time::sleep(d) => Ok(()),
                },
            };
            running.fetch_sub(1, Ordering::SeqCst);
            let _ = seen.send(Seen::Ended {
                job_id,
                cancelled: cancel.is_cancelled(),
            });
            result
        })
    }
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>, timeout: Duration) -> Seen {
    let seen = tokio::time::timeout(timeout, rx.recv()).await;
    seen.expect("timed out waiting for the handler")
        .expect("handler channel open")
}

async fn next_start(rx: &mut mpsc::UnboundedReceiver<Seen>, timeout: Duration) -> AssignedJob {
    match next_seen(rx, timeout).await {
        Seen::Started(job) => job,
        other => panic!("expected a job start, got {other:?}"),
    }
}

fn options(server: &LiveKit, capacity: usize) -> WorkerOptions {
    let mut options = WorkerOptions::new(&server.url(), "devkey", "secret", AGENT);
    options.capacity = capacity;
    options.ping_interval = Duration::from_secs(1);
    options.backoff = Backoff {
        initial: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };
    options
}

type Worker = JoinHandle<Result<(), WorkerError>>;

/// Starts the worker and waits until the server has registered it.
async fn start_worker(
    server: &LiveKit,
    options: WorkerOptions,
    handler: Arc<Recorder>,
) -> (Worker, oneshot::Sender<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let worker = tokio::spawn(run_worker(options, handler, shutdown));
    server.wait_for_worker_registration().await;
    (worker, stop)
}

async fn join_worker(worker: Worker, timeout: Duration) -> Result<(), WorkerError> {
    let joined = tokio::time::timeout(timeout, worker)
        .await
        .expect("run_worker returns in time");
    joined.expect("run_worker task")
}

// ---- the tests -----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dispatch_reaches_the_handler_with_a_token_for_its_room() {
    let server = LiveKit::start();
    let (handler, mut seen) = Recorder::new(Behaviour::SleepThenOk(Duration::from_millis(200)));
    let (worker, stop) = start_worker(&server, options(&server, 2), handler).await;

    server.dispatch(AGENT, "order-room").await;
    let job = next_start(&mut seen, Duration::from_secs(10)).await;
    assert_eq!(job.room_name, "order-room");
    assert_eq!(job.url, server.url());
    assert_eq!(job.metadata, "{\"room\":\"order-room\"}");
    assert!(job.job_id.starts_with("AJ_"), "{}", job.job_id);
    assert_eq!(job.participant_identity, format!("agent-{}", job.job_id));
    let claims = TokenVerifier::with_api_key("devkey", "secret")
        .verify(&job.token)
        .expect("a valid token");
    assert_eq!(claims.video.room, "order-room");
    assert!(claims.video.room_join && claims.video.agent);
    assert_eq!(claims.sub, job.participant_identity);
    assert_eq!(
        claims.attributes.get("lk.agent_name").map(String::as_str),
        Some(AGENT)
    );

    let job_id = job.job_id.clone();
    server
        .wait_for_log("the job's end", Duration::from_secs(5), |_| {
            server.job_ended(&job_id, "JS_SUCCESS")
        })
        .await;
    stop.send(()).expect("worker alive");
    join_worker(worker, Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_worker_never_runs_more_than_its_capacity() {
    let server = LiveKit::start();
    let (handler, mut seen) = Recorder::new(Behaviour::SleepThenOk(Duration::from_millis(1500)));
    let max_running = handler.max_running.clone();
    let (worker, stop) = start_worker(&server, options(&server, 1), handler).await;

    tokio::join!(
        server.dispatch(AGENT, "room-a"),
        server.dispatch(AGENT, "room-b")
    );
    let first = next_start(&mut seen, Duration::from_secs(10)).await;
    // The second dispatch is declined (or not offered: the worker reports itself full).
    let mut starts = 1;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, seen.recv()).await {
        if let Seen::Started(_) = event {
            starts += 1;
        }
    }
    assert_eq!(
        max_running.load(Ordering::SeqCst),
        1,
        "at most one job at once"
    );
    assert!(
        server.job_ended(&first.job_id, "JS_SUCCESS"),
        "log:\n{}",
        server.log()
    );
    eprintln!("jobs started with capacity 1 and two dispatches: {starts}");
    stop.send(()).expect("worker alive");
    join_worker(worker, Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_unauthorized_at_once() {
    let server = LiveKit::start();
    let (handler, _seen) = Recorder::new(Behaviour::SleepThenOk(Duration::ZERO));
    let mut options = options(&server, 1);
    options.api_secret = "not-the-secret".into();
    let started = Instant::now();
    let result = run_worker(options, handler, std::future::pending()).await;
    let elapsed = started.elapsed();
    let Err(error @ WorkerError::Unauthorized { .. }) = result else {
        panic!("expected Unauthorized, got {result:?}")
    };
    eprintln!("wrong secret after {elapsed:?}: {error}");
    assert!(elapsed < Duration::from_secs(3), "took {elapsed:?}");
    let message = error.to_string();
    assert!(
        message.contains("HTTP 401") && !message.contains('\n') && !message.contains("eyJ"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_a_running_job_finish() {
    let server = LiveKit::start();
    let (handler, mut seen) = Recorder::new(Behaviour::UntilCancelled(Duration::from_secs(1)));
    let (worker, stop) = start_worker(&server, options(&server, 2), handler).await;

    server.dispatch(AGENT, "finishing-room").await;
    let job = next_start(&mut seen, Duration::from_secs(10)).await;
    let asked = Instant::now();
    stop.send(()).expect("worker alive");
    join_worker(worker, Duration::from_secs(5))
        .await
        .expect("clean shutdown");
    assert!(
        asked.elapsed() >= Duration::from_millis(800),
        "returned before the job ended"
    );
    match next_seen(&mut seen, Duration::from_secs(1)).await {
        Seen::Ended { job_id, cancelled } => assert!(job_id == job.job_id && !cancelled),
        other => panic!("expected the job's end, got {other:?}"),
    }
    let job_id = job.job_id.clone();
    server
        .wait_for_log("the job's end", Duration::from_secs(2), |_| {
            server.job_ended(&job_id, "JS_SUCCESS")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_jobs_still_running_at_the_drain_timeout() {
    let server = LiveKit::start();
    let (handler, mut seen) = Recorder::new(Behaviour::UntilCancelled(Duration::from_secs(60)));
    let mut options = options(&server, 2);
    options.drain_timeout = Duration::from_millis(500);
    let (worker, stop) = start_worker(&server, options, handler).await;

    server.dispatch(AGENT, "long-room").await;
    let job = next_start(&mut seen, Duration::from_secs(10)).await;
    let asked = Instant::now();
    stop.send(()).expect("worker alive");
    join_worker(worker, Duration::from_secs(5))
        .await
        .expect("clean shutdown");
    let elapsed = asked.elapsed();
    assert!(
        (Duration::from_millis(400)..Duration::from_secs(3)).contains(&elapsed),
        "{elapsed:?}"
    );
    match next_seen(&mut seen, Duration::from_secs(1)).await {
        Seen::Ended { job_id, cancelled } => assert!(job_id == job.job_id && cancelled),
        other => panic!("expected the job's end, got {other:?}"),
    }
    let job_id = job.job_id.clone();
    server
        .wait_for_log("the failed job", Duration::from_secs(2), |_| {
            server.job_ended(&job_id, "JS_FAILED")
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_ignores_cancellation_is_aborted_and_reported_failed() {
    let server = LiveKit::start();
    let (handler, mut seen) = Recorder::new(Behaviour::SleepThenOk(Duration::from_secs(60)));
    let mut options = options(&server, 1);
    options.drain_timeout = Duration::from_millis(300);
    options.cancel_grace = Duration::from_millis(300);
    let (worker, stop) = start_worker(&server, options, handler).await;

    server.dispatch(AGENT, "stubborn-room").await;
    let job = next_start(&mut seen, Duration::from_secs(10)).await;
    stop.send(()).expect("worker alive");
    join_worker(worker, Duration::from_secs(3))
        .await
        .expect("clean shutdown");
    let job_id = job.job_id.clone();
    server
        .wait_for_log("the aborted job", Duration::from_secs(2), |_| {
            server.job_ended(&job_id, "JS_FAILED")
        })
        .await;
    assert!(
        server.log().contains("aborted at shutdown"),
        "log:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_re_registers_after_a_server_restart() {
    let server = Arc::new(LiveKit::start());
    // Long enough to outlast the restart and the second dispatch on a busy machine.
    let (handler, mut seen) = Recorder::new(Behaviour::UntilCancelled(Duration::from_secs(12)));
    let (worker, stop) = start_worker(&server, options(&server, 2), handler).await;

    // A job that spans the restart keeps running: it talks to its room, not to the worker socket.
    server.dispatch(AGENT, "before-restart").await;
    let before = next_start(&mut seen, Duration::from_secs(10)).await;
    let restarting = server.clone();
    tokio::task::spawn_blocking(move || restarting.restart())
        .await
        .expect("restart");
    server
        .wait_for_log(
            "the worker's new registration",
            Duration::from_secs(10),
            |log| log.contains("worker registered"),
        )
        .await;

    server.dispatch(AGENT, "after-restart").await;
    let after = next_start(&mut seen, Duration::from_secs(10)).await;
    assert_eq!(after.room_name, "after-restart");
    assert_eq!(after.url, server.url());

    let mut ended = Vec::new();
    while ended.len() < 2 {
        if let Seen::Ended { job_id, cancelled } =
            next_seen(&mut seen, Duration::from_secs(20)).await
        {
            ended.push((job_id, cancelled));
        }
    }
    assert!(ended.contains(&(before.job_id.clone(), false)), "{ended:?}");
    assert!(ended.contains(&(after.job_id.clone(), false)), "{ended:?}");
    let after_id = after.job_id.clone();
    server
        .wait_for_log("the new job's end", Duration::from_secs(2), |_| {
            server.job_ended(&after_id, "JS_SUCCESS")
        })
        .await;
    stop.send(()).expect("worker alive");
    join_worker(worker, Duration::from_secs(5))
        .await
        .expect("clean shutdown");
}

#[tokio::test]
async fn a_bad_url_is_refused_before_connecting() {
    let (handler, _seen) = Recorder::new(Behaviour::SleepThenOk(Duration::ZERO));
    let options = WorkerOptions::new("ftp://127.0.0.1", "devkey", "secret", AGENT);
    let result = run_worker(options, handler, std::future::pending()).await;
    assert!(
        matches!(result, Err(WorkerError::InvalidUrl(_))),
        "{result:?}"
    );
}

/// Documents the state of this crate's TLS set-up: rustls is built with two crypto
/// providers (ring and aws-lc-rs) and none is chosen, so `wss://` cannot work until the
/// binary installs one. The worker reports that as an error instead of panicking.
#[tokio::test]
async fn wss_without_a_crypto_provider_is_an_error_not_a_panic() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let accept = tokio::spawn(async move { listener.accept().await.map(|(socket, _)| socket) });
    let (handler, _seen) = Recorder::new(Behaviour::SleepThenOk(Duration::ZERO));
    let options = WorkerOptions::new(
        &format!("wss://localhost:{port}"),
        "devkey",
        "secret",
        AGENT,
    );
    let result = tokio::time::timeout(
        Duration::from_secs(5),
        run_worker(options, handler, std::future::pending()),
    )
    .await;
    let result = result.expect("run_worker returns");
    let Err(WorkerError::Connector(message)) = &result else {
        panic!("expected a Connector error, got {result:?}")
    };
    assert!(message.contains("CryptoProvider"), "{message}");
    accept.abort();
}
