//! One WebSocket connection to the server's worker endpoint: the upgrade with the worker's
//! token, the registration, and binary protobuf frames both ways ([`Connection`]).
//!
//! The server answers a bad token at the upgrade, with `401 Unauthorized` and a plain-text
//! body (`invalid token: <jwt>, error: token signature is invalid: …` for a wrong secret,
//! `invalid API key: <key>` for an unknown key); that becomes
//! [`ConnectError::Unauthorized`] with the reason only (the token is not repeated).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use livekit_api::access_token::{AccessToken, VideoGrants};
use livekit_protocol::{
    JobType, RegisterWorkerRequest, RegisterWorkerResponse, ServerMessage, WorkerMessage,
    server_message, worker_message,
};
use prost::Message as _;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode, header};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Why a connection could not be made or was lost.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The server refused the credentials (HTTP 401/403 at the upgrade).
    #[error("HTTP {status}: {reason}")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The server's reason, one line.
        reason: String,
    },
    /// The server answered the upgrade with another HTTP error.
    #[error("HTTP {status} at the upgrade: {reason}")]
    Rejected {
        /// The HTTP status.
        status: u16,
        /// The server's reason, one line.
        reason: String,
    },
    /// The worker's token could not be made.
    #[error("cannot make the worker token: {0}")]
    Token(String),
    /// A WebSocket or network failure.
    #[error("websocket: {0}")]
    WebSocket(#[from] tungstenite::Error),
    /// A step took too long.
    #[error("timed out {0}")]
    TimedOut(&'static str),
    /// The server closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// The WebSocket client panicked (e.g. `wss://` with no rustls crypto provider chosen).
    #[error("the WebSocket client failed: {0}")]
    Panicked(String),
}

/// A registered connection.
#[derive(Debug)]
pub struct Connection {
    ws: Box<WebSocketStream<MaybeTlsStream<TcpStream>>>,
    worker_id: String,
}

/// What [`Connection::open`] needs.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    /// The worker endpoint URL (`…/agent?protocol=1`).
    pub endpoint: &'a str,
    /// The API key.
    pub api_key: &'a str,
    /// The API secret.
    pub api_secret: &'a str,
    /// The agent name to register.
    pub agent_name: &'a str,
    /// How long the upgrade and the registration answer may take, each.
    pub timeout: Duration,
}

impl Connection {
    /// Connects, sends `register` and waits for the server's answer.
    pub async fn open(reg: Registration<'_>) -> Result<Self, ConnectError> {
        let request = upgrade_request(&reg)?;
        let upgrade = tokio_tungstenite::connect_async(request);
        let (ws, _response) = tokio::time::timeout(reg.timeout, upgrade)
            .await
            .map_err(|_| ConnectError::TimedOut("connecting"))?
            .map_err(classify)?;
        let mut connection = Self {
            ws: Box::new(ws),
            worker_id: String::new(),
        };
        let register = RegisterWorkerRequest {
            r#type: JobType::JtRoom as i32,
            agent_name: reg.agent_name.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        };
        connection
            .send(worker_message::Message::Register(register))
            .await?;
        let answer = tokio::time::timeout(reg.timeout, connection.wait_for_registration());
        let response = answer
            .await
            .map_err(|_| ConnectError::TimedOut("waiting for the registration"))??;
        connection.worker_id = response.worker_id;
        Ok(connection)
    }

    /// The id the server gave this worker (`AW_…`).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// Sends one message as a binary protobuf frame.
    pub async fn send(&mut self, message: worker_message::Message) -> Result<(), ConnectError> {
        let bytes = WorkerMessage {
            message: Some(message),
        }
        .encode_to_vec();
        self.ws.send(Message::Binary(bytes.into())).await?;
        Ok(())
    }

    /// The next server message. Cancel-safe. Frames that do not decode are skipped.
    pub async fn recv(&mut self) -> Result<Box<server_message::Message>, ConnectError> {
        loop {
            let frame = self.ws.next().await.ok_or(ConnectError::Closed)??;
            let bytes = match frame {
                Message::Binary(bytes) => bytes,
                Message::Close(_) => return Err(ConnectError::Closed),
                Message::Text(_) | Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {
                    continue;
                }
            };
            match ServerMessage::decode(bytes) {
                Ok(ServerMessage {
                    message: Some(message),
                }) => return Ok(Box::new(message)),
                Ok(ServerMessage { message: None }) => {
                    tracing::debug!("server message of an unknown kind; skipped")
                }
                Err(error) => tracing::warn!(%error, "undecodable server message; skipped"),
            }
        }
    }

    /// Closes the connection politely (bounded to one second).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(1),
            WebSocketStream::close(&mut self.ws, None),
        )
        .await;
    }

    async fn wait_for_registration(&mut self) -> Result<RegisterWorkerResponse, ConnectError> {
        loop {
            match *self.recv().await? {
                server_message::Message::Register(response) => return Ok(response),
                other => tracing::debug!(message = ?other, "before registration; ignored"),
            }
        }
    }
}

fn upgrade_request(
    reg: &Registration<'_>,
) -> Result<tungstenite::handshake::client::Request, ConnectError> {
    let grants = VideoGrants {
        agent: true,
        ..Default::default()
    };
    let token = AccessToken::with_api_key(reg.api_key, reg.api_secret)
        .with_grants(grants)
        .to_jwt()
        .map_err(|e| ConnectError::Token(e.to_string()))?;
    let mut request = reg.endpoint.into_client_request()?;
    let bearer = HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|e| ConnectError::Token(e.to_string()))?;
    request.headers_mut().insert(header::AUTHORIZATION, bearer);
    Ok(request)
}

/// Maps an upgrade failure: HTTP answers by status, the rest as they are.
fn classify(error: tungstenite::Error) -> ConnectError {
    let tungstenite::Error::Http(response) = error else {
        return ConnectError::WebSocket(error);
    };
    let status = response.status();
    let body = response.body().as_deref().unwrap_or_default();
    let reason = reason_from_body(&String::from_utf8_lossy(body), status);
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        ConnectError::Unauthorized {
            status: status.as_u16(),
            reason,
        }
    } else {
        ConnectError::Rejected {
            status: status.as_u16(),
            reason,
        }
    }
}

/// The server's reason, one line, without the token it may echo.
fn reason_from_body(body: &str, status: StatusCode) -> String {
    let body = body.trim();
    let reason = match body.split_once(", error: ") {
        Some((_, error)) => error,
        None if body.starts_with("invalid token:") => "invalid token",
        None => body,
    };
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if reason.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no reason given")
            .to_owned()
    } else {
        reason
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_tungstenite::tungstenite::http::Response;

    fn http_error(status: u16, body: &str) -> tungstenite::Error {
        let response = Response::builder()
            .status(status)
            .body(Some(body.as_bytes().to_vec()));
        tungstenite::Error::Http(Box::new(response.expect("response")))
    }

    #[test]
    fn a_bad_signature_is_unauthorized_without_the_token() {
        let body = "invalid token: eyJhbGciOi.eyJ2aWRlbyI6.Fm6yEotnc, error: token signature is invalid: signature is invalid";
        let error = classify(http_error(401, body));
        let ConnectError::Unauthorized {
            status: 401,
            reason,
        } = &error
        else {
            panic!("{error:?}")
        };
        assert_eq!(reason, "token signature is invalid: signature is invalid");
        assert!(!error.to_string().contains("eyJ"));
    }

    #[test]
    fn other_refusals_keep_their_reason() {
        let error = classify(http_error(401, "invalid API key: nokey\n"));
        assert_eq!(error.to_string(), "HTTP 401: invalid API key: nokey");
        let error = classify(http_error(404, ""));
        assert!(
            matches!(&error, ConnectError::Rejected { status: 404, reason } if reason == "Not Found")
        );
    }

    #[test]
    fn the_upgrade_carries_a_bearer_token_with_the_agent_grant() {
        let reg = Registration {
            endpoint: "ws://127.0.0.1:7880/agent?protocol=1",
            api_key: "devkey",
            api_secret: "secret",
            agent_name: "bella-vista",
            timeout: Duration::from_secs(1),
        };
        let request = upgrade_request(&reg).expect("request");
        let auth = request.headers()[header::AUTHORIZATION]
            .to_str()
            .expect("ascii");
        let token = auth.strip_prefix("Bearer ").expect("bearer");
        let claims = livekit_api::access_token::TokenVerifier::with_api_key("devkey", "secret")
            .verify(token)
            .expect("valid token");
        assert!(claims.video.agent);
        assert!(claims.sub.is_empty());
        assert_eq!(request.uri().query(), Some("protocol=1"));
    }
}
