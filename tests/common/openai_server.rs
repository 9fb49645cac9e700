//! A fake OpenAI-compatible server for integration tests.
//!
//! Plain HTTP/1.1 on `127.0.0.1`, one request per connection (`Connection: close`). Each
//! endpoint answers from its own queue of scripted [`Response`]s, in order, and every
//! request is recorded, with the time it arrived, for assertions.
//!
//! The speech endpoint needs no script: with its queue empty it speaks any text as a
//! deterministic tone ([`speech_pcm`]), streamed in chunks as real servers do.
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
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// An API operation the fake server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /v1/chat/completions` (or `/chat/completions`).
    ChatCompletions,
    /// `POST /v1/audio/transcriptions`: a multipart upload, answered with a transcript.
    Transcriptions,
    /// `POST /v1/audio/speech`: JSON in, audio out; see [`speech_pcm`] for the default.
    Speech,
}

impl Endpoint {
    /// The endpoint served at `path` (without query string), if any.
    fn for_path(path: &str) -> Option<Self> {
        match path.strip_prefix("/v1").unwrap_or(path) {
            "/chat/completions" => Some(Endpoint::ChatCompletions),
            "/audio/transcriptions" => Some(Endpoint::Transcriptions),
            "/audio/speech" => Some(Endpoint::Speech),
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
    /// `200` with OpenAI's transcription JSON: `{"text": .., "usage": {..}}`.
    Transcript(String),
    /// `200` with `{"text": ..}` and no `usage`, as several compatible servers answer.
    TranscriptWithoutUsage(String),
    /// `200` with a `text/plain` body, as servers that ignore `response_format` answer.
    PlainText(String),
    /// `200` with these bytes as `audio/pcm`, chunked as the [`SpeechPacing`] says.
    Audio(Vec<u8>),
    /// These bytes, chunked as [`Response::Audio`], then nothing more: the connection stays
    /// open and silent.
    AudioThenHang(Vec<u8>),
}

/// How audio responses are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpeechPacing {
    /// Pause between the response headers and the first audio chunk.
    pub first_byte_delay: Duration,
    /// Bytes per HTTP chunk; odd by default, so samples are split between chunks.
    pub chunk_bytes: usize,
    /// Pause between two chunks.
    pub chunk_interval: Duration,
}

impl Default for SpeechPacing {
    /// No pauses, chunks of 2401 bytes (about 50 ms at 24 kHz).
    fn default() -> Self {
        Self {
            first_byte_delay: Duration::ZERO,
            chunk_bytes: 2401,
            chunk_interval: Duration::ZERO,
        }
    }
}

/// Sample rate of the default speech audio.
pub const SPEECH_SAMPLE_RATE: u32 = 24_000;

/// Play time of the default speech audio per character of input.
pub const SPEECH_PER_CHAR: Duration = Duration::from_millis(60);

/// Frequency of the default speech tone.
pub const SPEECH_TONE_HZ: f64 = 220.0;

/// Peak level of the default speech tone, in dBFS.
pub const SPEECH_TONE_DBFS: f64 = -12.0;

/// The audio the speech endpoint sends for `text` when nothing is scripted: a
/// [`SPEECH_TONE_HZ`] sine at [`SPEECH_TONE_DBFS`] peak, [`SPEECH_PER_CHAR`] per character,
/// as OpenAI's `pcm` format (16-bit little-endian mono at [`SPEECH_SAMPLE_RATE`]).
pub fn speech_pcm(text: &str) -> Vec<u8> {
    let samples = speech_samples(text);
    let amplitude = 32767.0 * 10_f64.powf(SPEECH_TONE_DBFS / 20.0);
    let step = std::f64::consts::TAU * SPEECH_TONE_HZ / f64::from(SPEECH_SAMPLE_RATE);
    (0..samples)
        .map(|i| ((i as f64 * step).sin() * amplitude).round() as i16)
        .flat_map(i16::to_le_bytes)
        .collect()
}

/// Samples (per channel) in [`speech_pcm`]`(text)`.
pub fn speech_samples(text: &str) -> usize {
    let per_char = u128::from(SPEECH_SAMPLE_RATE) * SPEECH_PER_CHAR.as_nanos() / 1_000_000_000;
    text.chars().count() * per_char as usize
}

/// Play time of [`speech_pcm`]`(text)`.
pub fn speech_duration(text: &str) -> Duration {
    SPEECH_PER_CHAR * text.chars().count() as u32
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
    /// When the server had read the whole request.
    pub arrived: Instant,
}

/// One part of a `multipart/form-data` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormPart {
    /// The field name.
    pub name: String,
    /// The file name, for file fields.
    pub filename: Option<String>,
    /// The part's content type, if given.
    pub content_type: Option<String>,
    /// The content.
    pub data: Vec<u8>,
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

    /// The parts of a `multipart/form-data` body, in order; empty for any other body.
    pub fn form(&self) -> Vec<FormPart> {
        let boundary = self
            .header("content-type")
            .filter(|value| value.starts_with("multipart/form-data"))
            .and_then(|value| {
                value
                    .split(';')
                    .find_map(|p| p.trim().strip_prefix("boundary="))
            })
            .map(|boundary| boundary.trim_matches('"').to_owned());
        match boundary {
            Some(boundary) => parse_form(&self.body, &boundary),
            None => Vec::new(),
        }
    }

    /// The form part called `name`, if any.
    pub fn form_part(&self, name: &str) -> Option<FormPart> {
        self.form().into_iter().find(|part| part.name == name)
    }

    /// The text of the form field `name`, if any.
    pub fn form_text(&self, name: &str) -> Option<String> {
        self.form_part(name)
            .map(|part| String::from_utf8_lossy(&part.data).into_owned())
    }
}

#[derive(Debug, Default)]
struct State {
    scripts: HashMap<Endpoint, VecDeque<Response>>,
    received: Vec<ReceivedRequest>,
    speech_pacing: SpeechPacing,
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
        self.requests_to(Endpoint::ChatCompletions)
            .iter()
            .map(ReceivedRequest::json)
            .collect()
    }

    /// The requests that reached `endpoint` so far, oldest first.
    pub fn requests_to(&self, endpoint: Endpoint) -> Vec<ReceivedRequest> {
        lock(&self.state)
            .received
            .iter()
            .filter(|request| request.endpoint == Some(endpoint))
            .cloned()
            .collect()
    }

    /// The transcription requests received so far (read them with
    /// [`ReceivedRequest::form`]).
    pub fn transcription_requests(&self) -> Vec<ReceivedRequest> {
        self.requests_to(Endpoint::Transcriptions)
    }

    /// The `input` texts of the speech requests received so far, oldest first.
    pub fn speech_texts(&self) -> Vec<String> {
        self.speech_arrivals()
            .into_iter()
            .map(|(text, _)| text)
            .collect()
    }

    /// The `input` text of each speech request received so far with the time it arrived,
    /// oldest first.
    pub fn speech_arrivals(&self) -> Vec<(String, Instant)> {
        self.requests_to(Endpoint::Speech)
            .iter()
            .map(|request| (speech_input(request), request.arrived))
            .collect()
    }

    /// Sets how audio responses are chunked and paced from now on.
    pub fn set_speech_pacing(&self, pacing: SpeechPacing) {
        lock(&self.state).speech_pacing = pacing;
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
    let speech_text = speech_input(&request);
    let (response, pacing) = {
        let mut state = lock(&state);
        state.received.push(request);
        let response = endpoint.and_then(|endpoint| state.scripts.get_mut(&endpoint)?.pop_front());
        (response, state.speech_pacing)
    };
    let response = match (endpoint, response) {
        (_, Some(response)) => response,
        (Some(Endpoint::Speech), None) => Response::Audio(speech_pcm(&speech_text)),
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
        Response::Transcript(text) => {
            let words = text.split_whitespace().count();
            let body = json!({
                "text": text,
                "usage": {
                    "type": "tokens",
                    "input_tokens": 50,
                    "output_tokens": words,
                    "total_tokens": 50 + words,
                },
            });
            write_ok(&mut writer, "application/json", body.to_string().as_bytes()).await
        }
        Response::TranscriptWithoutUsage(text) => {
            let body = json!({ "text": text }).to_string();
            write_ok(&mut writer, "application/json", body.as_bytes()).await
        }
        Response::PlainText(text) => write_ok(&mut writer, "text/plain", text.as_bytes()).await,
        Response::Audio(bytes) => write_audio(&mut writer, &bytes, pacing, true).await,
        Response::AudioThenHang(bytes) => {
            let _ = write_audio(&mut writer, &bytes, pacing, false).await;
            std::future::pending().await
        }
    };
}

/// The `input` of a speech request (empty if it has none).
fn speech_input(request: &ReceivedRequest) -> String {
    request.json()["input"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The parts of a multipart `body` delimited by `boundary`.
fn parse_form(body: &[u8], boundary: &str) -> Vec<FormPart> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut rest = match find(body, delimiter.as_bytes()) {
        Some(start) => &body[start + delimiter.len()..],
        None => return parts,
    };
    let next_delimiter = format!("\r\n{delimiter}");
    while !rest.starts_with(b"--") {
        let Some(end) = find(rest, next_delimiter.as_bytes()) else {
            break;
        };
        let part = rest[..end].strip_prefix(b"\r\n").unwrap_or(&rest[..end]);
        rest = &rest[end + next_delimiter.len()..];
        let Some(head_end) = find(part, b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&part[..head_end]);
        let mut form_part = FormPart {
            name: String::new(),
            filename: None,
            content_type: None,
            data: part[head_end + 4..].to_vec(),
        };
        for line in head.lines() {
            let Some((header, value)) = line.split_once(':') else {
                continue;
            };
            match header.trim().to_ascii_lowercase().as_str() {
                "content-disposition" => {
                    for param in value.split(';').map(str::trim) {
                        if let Some(name) = param.strip_prefix("name=") {
                            form_part.name = name.trim_matches('"').to_owned();
                        } else if let Some(filename) = param.strip_prefix("filename=") {
                            form_part.filename = Some(filename.trim_matches('"').to_owned());
                        }
                    }
                }
                "content-type" => form_part.content_type = Some(value.trim().to_owned()),
                _ => {}
            }
        }
        parts.push(form_part);
    }
    parts
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
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
        arrived: Instant::now(),
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

async fn write_ok<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await?;
    writer.write_all(body).await?;
    writer.shutdown().await
}

/// `bytes` as a chunked `audio/pcm` response; the final chunk only when `done`.
async fn write_audio<W: AsyncWriteExt + Unpin>(
    writer: &mut W,
    bytes: &[u8],
    pacing: SpeechPacing,
    done: bool,
) -> std::io::Result<()> {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: audio/pcm\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n";
    writer.write_all(head.as_bytes()).await?;
    writer.flush().await?;
    if !pacing.first_byte_delay.is_zero() {
        tokio::time::sleep(pacing.first_byte_delay).await;
    }
    for (index, chunk) in bytes.chunks(pacing.chunk_bytes.max(1)).enumerate() {
        if index > 0 && !pacing.chunk_interval.is_zero() {
            tokio::time::sleep(pacing.chunk_interval).await;
        }
        writer
            .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
            .await?;
        writer.write_all(chunk).await?;
        writer.write_all(b"\r\n").await?;
        writer.flush().await?;
    }
    if done {
        writer.write_all(b"0\r\n\r\n").await?;
        writer.shutdown().await?;
    }
    writer.flush().await
}
