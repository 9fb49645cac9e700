//! A fake OpenAI-compatible server for integration tests.
//!
//! Plain HTTP/1.1 on `127.0.0.1`, one request per connection (`Connection: close`). Each
//! endpoint answers from its own queue of scripted [`Response`]s, in order, and every
//! request is recorded for assertions.
//!
//! ```ignore
//! let server = FakeOpenAi::start().await;
//! server.push(Endpoint::ChatCompletions, Response::Stream(text_chunks(&["Hel", "lo"])));
//! let llm = OpenAiLlm::new(OpenAiSettings { base_url: Some(server.base_url()), .. })?;
//! ```
//!
//! To serve another endpoint, add an [`Endpoint`] variant and its paths in
//! [`Endpoint::for_path`]; add a [`Response`] variant if it answers in a new way.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// An API operation the fake server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions` (or `/chat/completions`).
    ChatCompletions,
}

impl Endpoint {
    /// The endpoint served at `path` (without query string), if any.
    fn for_path(path: &str) -> Option<Self> {
        match path.strip_prefix("/v1").unwrap_or(path) {
            "/chat/completions" => Some(Endpoint::ChatCompletions),
            _ => None,
        }
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Response {
    /// `200` with a server-sent event stream: `data: <chunk>` for each chunk, then
    /// `data: [DONE]`.
    Stream(Vec<Value>),
    /// These chunks, then nothing more: the connection stays open and silent.
    StreamThenHang(Vec<Value>),
    /// An error status with this body (sent as JSON when it parses as JSON).
    Status(u16, String),
    /// The request is read, never answered; the connection stays open.
    Hang,
}

/// A request as the server received it.
#[derive(Debug, Clone)]
pub struct ReceivedRequest {
    /// Which endpoint it reached; `None` for an unknown path.
    pub endpoint: Option<Endpoint>,
    /// The request path, without query string.
    pub path: String,
    /// Header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// The body as JSON (`Value::Null` if it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

#[derive(Debug, Default)]
struct State {
    scripts: HashMap<Endpoint, VecDeque<Response>>,
    received: Vec<ReceivedRequest>,
}

/// The running server; stops (and drops every open connection) when dropped.
#[derive(Debug)]
pub struct FakeOpenAi {
    address: SocketAddr,
    state: Arc<Mutex<State>>,
    accept_loop: JoinHandle<()>,
}

impl FakeOpenAi {
    /// Starts a server on a free port of `127.0.0.1`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake server");
        let address = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let accept_loop = tokio::spawn(accept(listener, Arc::clone(&state)));
        Self {
            address,
            state,
            accept_loop,
        }
    }

    /// The API base URL, `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Queues `response` as the next answer of `endpoint`.
    pub fn push(&self, endpoint: Endpoint, response: Response) {
        lock(&self.state)
            .scripts
            .entry(endpoint)
            .or_default()
            .push_back(response);
    }

    /// Every request received so far, oldest first.
    pub fn received(&self) -> Vec<ReceivedRequest> {
        lock(&self.state).received.clone()
    }

    /// The JSON bodies of the chat completion requests received so far.
    pub fn chat_requests(&self) -> Vec<Value> {
        self.received()
            .iter()
            .filter(|request| request.endpoint == Some(Endpoint::ChatCompletions))
            .map(ReceivedRequest::json)
            .collect()
    }
}

impl Drop for FakeOpenAi {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// A streamed text reply: one chunk per piece, then a chunk that finishes with `stop`.
pub fn text_chunks(pieces: &[&str]) -> Vec<Value> {
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let pieces = pieces
        .iter()
        .map(|piece| chunk(json!({"content": piece}), None));
    let last = chunk(json!({}), Some("stop"));
    std::iter::once(first)
        .chain(pieces)
        .chain(std::iter::once(last))
        .collect()
}

/// Streamed tool calls `(id, name, arguments)`: each call opens with its id and name,
/// then its arguments follow in pieces of `piece_len` characters; the last chunk
/// finishes with `tool_calls`.
pub fn tool_call_chunks(calls: &[(&str, &str, &str)], piece_len: usize) -> Vec<Value> {
    let mut chunks = vec![chunk(json!({"role": "assistant", "content": null}), None)];
    for (index, (id, name, arguments)) in calls.iter().enumerate() {
        chunks.push(tool_call_chunk(
            index,
            json!({"id": id, "type": "function", "function": {"name": name, "arguments": ""}}),
        ));
        let characters: Vec<char> = arguments.chars().collect();
        for piece in characters.chunks(piece_len.max(1)) {
            let piece: String = piece.iter().collect();
            chunks.push(tool_call_chunk(
                index,
                json!({"function": {"arguments": piece}}),
            ));
        }
    }
    chunks.push(chunk(json!({}), Some("tool_calls")));
    chunks
}

/// One `chat.completion.chunk` with a single choice.
pub fn chunk(delta: Value, finish_reason: Option<&str>) -> Value {
    json!({
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "fake-model",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    })
}

/// A chunk carrying one fragment (`id`, `function`, ...) of the tool call at `index`.
pub fn tool_call_chunk(index: usize, mut fragment: Value) -> Value {
    fragment["index"] = json!(index);
    chunk(json!({"tool_calls": [fragment]}), None)
}

/// An OpenAI-style error body.
pub fn error_body(message: &str) -> String {
    json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
        .to_string()
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn accept(listener: TcpListener, state: Arc<Mutex<State>>) {
    // Dropped (with every connection in it) when the accept loop is aborted.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    connections.spawn(serve(stream, Arc::clone(&state)));
                }
                Err(_) => return,
            },
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (reader, mut writer) = stream.into_split();
    let Some(request) = read_request(&mut BufReader::new(reader)).await else {
        return;
    };
    let endpoint = request.endpoint;
    let path = request.path.clone();
    let response = {
        let mut state = lock(&state);
        state.received.push(request);
        endpoint.and_then(|endpoint| state.scripts.get_mut(&endpoint)?.pop_front())
    };
    let response = match (endpoint, response) {
        (_, Some(response)) => response,
        (None, None) => Response::Status(404, error_body(&format!("no route for {path}"))),
        (Some(_), None) => Response::Status(
            418,
            error_body(&format!(
                "fake server: no scripted response left for {path}"
            )),
        ),
    };
    // Write errors mean the client went away, which is the client's business.
    let _ = match response {
        Response::Stream(chunks) => write_events(&mut writer, &chunks, true).await,
        Response::StreamThenHang(chunks) => {
            let _ = write_events(&mut writer, &chunks, false).await;
            std::future::pending().await
        }
        Response::Status(status, body) => write_status(&mut writer, status, &body).await,
        Response::Hang => std::future::pending().await,
    };
}

async fn read_request<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<ReceivedRequest> {
    let mut line = String::new();
    reader.read_line(&mut line).await.ok()?;
    let target = line.split_whitespace().nth(1)?;
    let path = target.split('?').next().unwrap_or(target).to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.clone())
    };
    let body = if header("transfer-encoding").is_some_and(|value| value.contains("chunked")) {
        read_chunked(reader).await?
    } else {
        let length = header("content-length").and_then(|value| value.parse().ok());
        let mut body = vec![0; length.unwrap_or(0)];
        reader.read_exact(&mut body).await.ok()?;
        body
    };
    Some(ReceivedRequest {
        endpoint: Endpoint::for_path(&path),
        path,
        headers,
        body,
    })
}

async fn read_chunked<R: AsyncRead + Unpin>(reader: &mut BufReader<R>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).await.ok()?;
        let size_text = size_line.trim().split(';').next()?;
        let size = usize::from_str_radix(size_text, 16).ok()?;
        if size == 0 {
            // The last chunk: skip optional trailers up to the blank line.
            loop {
                let mut trailer = String::new();
                if reader.read_line(&mut trailer).await.ok()? == 0 || trailer.trim().is_empty() {
                    return Some(body);
                }
            }
        }
        let mut piece = vec![0; size + 2];
        reader.read_exact(&mut piece).await.ok()?;
        body.extend_from_slice(&piece[..size]);
    }
}

async fn write_events<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    chunks: &[Value],
    done: bool,
) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\nconnection: close\r\n\r\n";
    writer.write_all(head.as_bytes()).await?;
    for chunk in chunks {
        writer
            .write_all(format!("data: {chunk}\n\n").as_bytes())
            .await?;
        writer.flush().await?;
    }
    if done {
        writer.write_all(b"data: [DONE]\n\n").await?;
        writer.shutdown().await?;
    }
    writer.flush().await
}

async fn write_status<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    let content_type = if serde_json::from_str::<Value>(body).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    let head = format!(
        "HTTP/1.1 {status} Scripted\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body.as_bytes()).await?;
    writer.shutdown().await
}
