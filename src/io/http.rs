//! The worker's HTTP endpoint for operators, like LiveKit's own workers have: `/health`
//! for orchestrators (200 while registered with the server, 503 while connecting or
//! draining) and `/metrics` for Prometheus.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! let telemetry = bella_vista::telemetry::global();
//! bella_vista::io::http::serve(listener, telemetry, std::future::pending()).await
//! # }
//! ```

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::telemetry::{METRICS_CONTENT_TYPE, Telemetry};

/// The routes: `/` and `/health` (LiveKit's workers answer health checks on `/`), and
/// `/metrics`.
pub fn router(telemetry: &'static Telemetry) -> Router {
    Router::new()
        .route("/", get(health))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(telemetry)
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    telemetry: &'static Telemetry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(telemetry))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn health(State(telemetry): State<&'static Telemetry>) -> impl IntoResponse {
    let state = telemetry.worker_state();
    let status = if state.is_healthy() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, format!("{}\n", state.as_str()))
}

async fn metrics(State(telemetry): State<&'static Telemetry>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        telemetry.encode(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::WorkerState;

    async fn get_text(url: &str) -> (u16, String, String) {
        let response = reqwest::get(url).await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        (status, content_type, response.text().await.unwrap())
    }

    #[tokio::test]
    async fn health_follows_the_worker_state_and_metrics_are_openmetrics() {
        let telemetry: &'static Telemetry = Box::leak(Box::new(Telemetry::new()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, telemetry, async {
            let _ = stopped.await;
        }));

        let (status, _, body) = get_text(&format!("{base}/health")).await;
        assert_eq!((status, body.as_str()), (503, "connecting\n"));
        telemetry.set_worker_state(WorkerState::Registered);
        assert_eq!(get_text(&format!("{base}/health")).await.0, 200);
        assert_eq!(get_text(&format!("{base}/")).await.0, 200);
        telemetry.set_worker_state(WorkerState::Draining);
        let (status, _, body) = get_text(&format!("{base}/health")).await;
        assert_eq!((status, body.as_str()), (503, "draining\n"));

        telemetry.call_ended(&Ok(()));
        let (status, content_type, body) = get_text(&format!("{base}/metrics")).await;
        assert_eq!(status, 200);
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(body.contains("bella_vista_calls_total{outcome=\"finished\"} 1"));
        assert!(body.ends_with("# EOF\n"));
        assert_eq!(get_text(&format!("{base}/nothing")).await.0, 404);

        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }
}
