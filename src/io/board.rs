//! The kitchen's order board: a web page with today's orders that updates itself.
//!
//! `GET /` is the page (plain HTML, CSS and JS in `assets/board.html`, nothing to build);
//! `GET /api/orders?since=<unix seconds>` lists orders; `GET /api/events` is a
//! server-sent event stream (`order` for a new one, `done` when one is marked done);
//! `POST /api/orders/{id}/done` marks one done. New orders are found by looking at the
//! store every `[board] poll_ms`, so orders confirmed by any worker sharing the database
//! appear. On a loopback address anyone on the machine may use it; anywhere else every
//! request must carry the token (`?token=` or `Authorization: Bearer`), which staff type
//! into the page's address once. The page holds no secret of its own.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use bella_vista::bella_vista::store::OrderStore;
//! use bella_vista::config::BoardConfig;
//! use bella_vista::io::board::Board;
//!
//! let store = OrderStore::open(std::path::Path::new("orders.db"))?;
//! let board = Board::bind(&BoardConfig::default(), store).await?;
//! println!("open {}", board.address_for_people());
//! board.serve().await?;
//! # Ok(())
//! # }
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::bella_vista::store::{OrderStore, StoreError, StoredOrder};
use crate::config::{BoardConfig, Secret};

/// The page, served as is.
const PAGE: &str = include_str!("../../assets/board.html");
/// Updates a slow page may fall behind by before it reloads the list.
const BACKLOG: usize = 256;

/// Why the board could not start.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The address is not `host:port`, or cannot be bound.
    #[error("cannot serve the order board on {listen}: {source}")]
    Bind {
        /// The configured address.
        listen: String,
        /// Why.
        source: std::io::Error,
    },
    /// A non-loopback address without a token would show every caller's number to anyone
    /// on the network.
    #[error(
        "the order board on {0} would be open to the network: set BELLA_VISTA_BOARD_TOKEN, or listen on 127.0.0.1"
    )]
    NeedsToken(SocketAddr),
    /// The order store failed while looking for orders.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A bound board, ready to serve.
pub struct Board {
    listener: tokio::net::TcpListener,
    state: BoardState,
    poll: Duration,
}

#[derive(Clone)]
struct BoardState {
    store: OrderStore,
    token: Option<Arc<Secret>>,
    updates: broadcast::Sender<Update>,
}

/// One change the pages hear about.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Update {
    /// A new order.
    Order(BoardOrder),
    /// An order marked done.
    Done(BoardOrder),
}

/// An order as the board shows it: the `orders list --json` shape plus `done_at`.
#[derive(Debug, Clone, Serialize)]
struct BoardOrder {
    #[serde(flatten)]
    order: StoredOrder,
    done_at: Option<String>,
}

impl From<StoredOrder> for BoardOrder {
    fn from(order: StoredOrder) -> Self {
        BoardOrder {
            done_at: order.done_at().map(str::to_string),
            order,
        }
    }
}

impl Board {
    /// Binds `config.listen`. A non-loopback address needs `config.token`.
    pub async fn bind(config: &BoardConfig, store: OrderStore) -> Result<Board, BoardError> {
        let listener = tokio::net::TcpListener::bind(config.listen.trim())
            .await
            .map_err(|source| BoardError::Bind {
                listen: config.listen.clone(),
                source,
            })?;
        let address = listener.local_addr().map_err(|source| BoardError::Bind {
            listen: config.listen.clone(),
            source,
        })?;
        let token = config
            .token
            .clone()
            .filter(|t| !t.expose().is_empty())
            .map(Arc::new);
        if !address.ip().is_loopback() && token.is_none() {
            return Err(BoardError::NeedsToken(address));
        }
        let (updates, _) = broadcast::channel(BACKLOG);
        Ok(Board {
            listener,
            state: BoardState {
                store,
                token,
                updates,
            },
            poll: Duration::from_millis(config.poll_ms.max(10)),
        })
    }

    /// The address bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address to open in a browser (without the token).
    pub fn address_for_people(&self) -> String {
        match self.listener.local_addr() {
            Ok(address) => format!("http://{address}/"),
            Err(_) => "(unknown address)".into(),
        }
    }

    /// Serves the board until dropped.
    pub async fn serve(self) -> Result<(), BoardError> {
        let last = self
            .state
            .store
            .list(None)
            .await?
            .last()
            .map_or(0, StoredOrder::id);
        let watcher = tokio::spawn(watch_new_orders(
            self.state.store.clone(),
            self.state.updates.clone(),
            last,
            self.poll,
        ));
        let served = axum::serve(self.listener, router(self.state)).await;
        watcher.abort();
        served.map_err(|source| BoardError::Bind {
            listen: "the board".into(),
            source,
        })
    }
}

fn router(state: BoardState) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/orders", get(list_orders))
        .route("/api/events", get(events))
        .route("/api/orders/{id}/done", post(mark_done))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .with_state(state)
}

/// Announces orders numbered above `last` as they appear in the store.
async fn watch_new_orders(
    store: OrderStore,
    updates: broadcast::Sender<Update>,
    mut last: i64,
    poll: Duration,
) {
    let mut ticks = tokio::time::interval(poll);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match store.list_after(last).await {
            Ok(orders) => {
                for order in orders {
                    last = last.max(order.id());
                    let _ = updates.send(Update::Order(order.into()));
                }
            }
            Err(error) => tracing::warn!(%error, "order board: cannot read new orders"),
        }
    }
}

async fn require_token(State(state): State<BoardState>, request: Request, next: Next) -> Response {
    let Some(token) = &state.token else {
        return next.run(request).await;
    };
    let from_header = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string);
    let from_query = request.uri().query().and_then(|query| {
        query
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
            .map(percent_decode)
    });
    let given = from_header.or(from_query).unwrap_or_default();
    if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) {
        next.run(request).await
    } else {
        (
            StatusCode::UNAUTHORIZED,
            "this board needs its token: add ?token=... to the address\n",
        )
            .into_response()
    }
}

async fn page() -> impl IntoResponse {
    ([(header::CACHE_CONTROL, "no-store")], Html(PAGE))
}

#[derive(Deserialize)]
struct ListQuery {
    /// Orders confirmed at or after this Unix time (seconds); absent: all.
    since: Option<u64>,
}

async fn list_orders(
    State(state): State<BoardState>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Vec<BoardOrder>>, (StatusCode, String)> {
    let since = query
        .since
        .map(|secs| SystemTime::UNIX_EPOCH + Duration::from_secs(secs));
    let orders = state.store.list(since).await.map_err(store_failed)?;
    Ok(axum::Json(
        orders.into_iter().map(BoardOrder::from).collect(),
    ))
}

async fn mark_done(
    State(state): State<BoardState>,
    Path(id): Path<i64>,
) -> Result<axum::Json<BoardOrder>, (StatusCode, String)> {
    let order = state
        .store
        .mark_done(id)
        .await
        .map_err(|error| match error {
            StoreError::NoSuchOrder(_) => (StatusCode::NOT_FOUND, error.to_string()),
            other => store_failed(other),
        })?;
    let order = BoardOrder::from(order);
    let _ = state.updates.send(Update::Done(order.clone()));
    Ok(axum::Json(order))
}

async fn events(
    State(state): State<BoardState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.updates.subscribe();
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let event = match receiver.recv().await {
            Ok(update) => {
                let kind = match &update {
                    Update::Order(_) => "order",
                    Update::Done(_) => "done",
                };
                Event::default()
                    .event(kind)
                    .json_data(&update)
                    .unwrap_or_else(|_| Event::default().event("reload").data("{}"))
            }
            // The page fell behind: it reloads the whole list.
            Err(broadcast::error::RecvError::Lagged(_)) => {
                Event::default().event("reload").data("{}")
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        };
        Some((Ok(event), receiver))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

fn store_failed(error: StoreError) -> (StatusCode, String) {
    tracing::warn!(%error, "order board: the order store failed");
    (StatusCode::SERVICE_UNAVAILABLE, error.to_string())
}

/// `%XX` escapes and `+` decoded (enough for a token typed into an address bar).
fn percent_decode(text: &str) -> String {
    let hex = |byte: u8| (byte as char).to_digit(16);
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex(*high).zip(hex(*low)),
            _ => None,
        };
        match (escaped, bytes[index]) {
            (Some((high, low)), _) => {
                out.push(u8::try_from(high * 16 + low).unwrap_or(b'?'));
                index += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, byte) => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Compares without stopping at the first difference (no timing hint at the token).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0_u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bella_vista::money::Cents;
    use crate::bella_vista::order::{Order, OrderItem, Payment, PaymentMethod};
    use crate::bella_vista::store::OrderOrigin;

    fn order() -> Order {
        Order {
            items: vec![OrderItem {
                name: "Tiramisu".into(),
                quantity: 2,
                modifications: vec!["extra cocoa".into()],
                unit_price: Cents(1000),
            }],
            payment: Payment {
                method: PaymentMethod::Cash,
                tip_percent: 10,
            },
        }
    }

    async fn serve(config: BoardConfig, store: OrderStore) -> String {
        let board = Board::bind(&config, store).await.expect("bind");
        let address = board.local_addr().expect("address");
        tokio::spawn(board.serve());
        format!("http://{address}")
    }

    fn local() -> BoardConfig {
        BoardConfig {
            listen: "127.0.0.1:0".into(),
            token: None,
            poll_ms: 20,
        }
    }

    #[tokio::test]
    async fn new_orders_and_done_marks_reach_an_open_event_stream() {
        let store = OrderStore::open_in_memory().expect("store");
        let base = serve(local(), store.clone()).await;
        let page = reqwest::get(format!("{base}/")).await.expect("page");
        assert!(page.text().await.expect("text").contains("<title>"));
        let mut events = reqwest::get(format!("{base}/api/events"))
            .await
            .expect("events");
        store
            .confirm("k", &order(), &OrderOrigin::default())
            .await
            .expect("confirm");
        let mut seen = String::new();
        while !seen.contains("event: order") || !seen.contains("\n\n") {
            let chunk = tokio::time::timeout(Duration::from_secs(5), events.chunk())
                .await
                .expect("an event in time")
                .expect("chunk")
                .expect("open");
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
        assert!(seen.contains("\"name\":\"Tiramisu\""), "{seen}");
        let client = reqwest::Client::new();
        let done = client
            .post(format!("{base}/api/orders/1/done"))
            .send()
            .await
            .expect("done");
        assert_eq!(done.status(), 200);
        let listed: serde_json::Value = reqwest::get(format!("{base}/api/orders?since=0"))
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        assert!(listed[0]["done_at"].is_string(), "{listed}");
        let missing = client
            .post(format!("{base}/api/orders/99/done"))
            .send()
            .await
            .expect("missing");
        assert_eq!(missing.status(), 404);
    }

    #[tokio::test]
    async fn a_token_guards_every_route_and_the_network_needs_one() {
        let store = OrderStore::open_in_memory().expect("store");
        let open = BoardConfig {
            listen: "0.0.0.0:0".into(),
            ..local()
        };
        assert!(matches!(
            Board::bind(&open, store.clone()).await,
            Err(BoardError::NeedsToken(_))
        ));
        let guarded = BoardConfig {
            token: Some(Secret::new("kitchen 42")),
            ..local()
        };
        let base = serve(guarded, store).await;
        for path in ["/", "/api/orders", "/api/events"] {
            let status = reqwest::get(format!("{base}{path}"))
                .await
                .expect("get")
                .status();
            assert_eq!(status, 401, "{path}");
        }
        let page = reqwest::get(format!("{base}/?token=kitchen%2042"))
            .await
            .expect("page");
        assert_eq!(page.status(), 200);
        let listed = reqwest::Client::new()
            .get(format!("{base}/api/orders"))
            .bearer_auth("kitchen 42")
            .send()
            .await
            .expect("list");
        assert_eq!(listed.status(), 200);
    }

    #[test]
    fn tokens_are_decoded_and_compared_whole() {
        assert_eq!(percent_decode("kitchen%2042"), "kitchen 42");
        assert_eq!(percent_decode("a+b%zz%4"), "a b%zz%4");
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
