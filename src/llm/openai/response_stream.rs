//! One streamed completion as an [`LlmStream`]: attempts, time-outs, retries, and the
//! mapping from chunks to [`LlmEvent`]s.
//!
//! The stream is driven by its consumer: nothing is spawned, so dropping the stream cancels
//! the request, any back-off sleep and the response being read. (async-openai reads the SSE
//! body in a task of its own, which ends as soon as its receiver, held here, is dropped.)

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_openai::Client;
use async_openai::config::OpenAIConfig;
use async_openai::types::chat::{ChatCompletionResponseStream, CreateChatCompletionRequest};
use futures_util::StreamExt;
use tokio::time::{Instant, timeout, timeout_at};

use super::tool_call_assembler::ToolCallAssembler;
use super::transport::llm_error;
use crate::llm::{LlmError, LlmEvent, LlmStream};
use crate::openai_http::retry::{Backoff, Drive, Phase, Retries, driven_stream};

/// Makes ids for tool calls that arrive without one unique within the process.
static NEXT_RESPONSE: AtomicU64 = AtomicU64::new(1);

/// Time-outs and retry policy of one request.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Enforced by the transport; reported when a connection attempt times out.
    pub(super) connect_timeout: Duration,
    /// From the start of an attempt to its first chunk.
    pub(super) first_token_timeout: Duration,
    /// Longest gap between two chunks.
    pub(super) idle_timeout: Duration,
    /// Attempts after the first one.
    pub(super) max_retries: u32,
    /// Back-off before the first retry; doubles for each further one.
    pub(super) initial_backoff: Duration,
    /// Longest back-off.
    pub(super) max_backoff: Duration,
}

impl Limits {
    /// The retries one request may make.
    pub(super) fn retries(&self) -> Retries {
        let backoff = Backoff::new(self.initial_backoff, self.max_backoff);
        Retries::new(self.max_retries, backoff)
    }
}

/// Streams the completion of `request`, retrying failures until something was yielded.
pub(super) fn response_stream(
    client: Arc<Client<OpenAIConfig>>,
    request: CreateChatCompletionRequest,
    limits: Limits,
) -> LlmStream {
    let response = NEXT_RESPONSE.fetch_add(1, Ordering::Relaxed);
    let driver = Driver {
        client,
        request,
        limits,
        id_prefix: format!("call_bv{response}"),
        retries: limits.retries(),
        pending: VecDeque::new(),
        phase: Phase::Opening,
    };
    driven_stream(driver)
}

/// A request whose response headers arrived.
struct Attempt {
    chunks: ChatCompletionResponseStream,
    assembler: ToolCallAssembler,
    first_chunk_deadline: Instant,
    received_chunk: bool,
}

/// What one chunk means.
enum Progress {
    /// More chunks may follow.
    Continuing,
    /// The model said it is done (a finish reason, or the end of the stream).
    Complete,
}

struct Driver {
    client: Arc<Client<OpenAIConfig>>,
    request: CreateChatCompletionRequest,
    limits: Limits,
    id_prefix: String,
    /// Stopped once an event reached the consumer: from then on a failure is final.
    retries: Retries,
    pending: VecDeque<LlmEvent>,
    phase: Phase<Attempt>,
}

impl Drive for Driver {
    type Item = Result<LlmEvent, LlmError>;

    /// The next item for the consumer; `None` when the stream is over.
    async fn next(&mut self) -> Option<Result<LlmEvent, LlmError>> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                self.retries.stop();
                return Some(Ok(event));
            }
            let step = match &mut self.phase {
                Phase::Finished => return None,
                Phase::Opening => self.open().await,
                Phase::Reading(attempt) => read(attempt, &self.limits, &mut self.pending).await,
            };
            match step {
                Ok(Progress::Continuing) => {}
                Ok(Progress::Complete) => {
                    if let Phase::Reading(attempt) =
                        std::mem::replace(&mut self.phase, Phase::Finished)
                    {
                        let calls = attempt.assembler.finish();
                        self.pending
                            .extend(calls.into_iter().map(LlmEvent::ToolCall));
                    }
                }
                Err(error) => {
                    let retryable = error.is_retryable();
                    if !self
                        .retries
                        .back_off(&error, retryable, "model request", "llm")
                        .await
                    {
                        self.phase = Phase::Finished;
                        return Some(Err(error));
                    }
                    self.phase = Phase::Opening;
                }
            }
        }
    }
}

impl Driver {
    /// Sends the request and waits for the response headers.
    async fn open(&mut self) -> Result<Progress, LlmError> {
        let deadline = Instant::now() + self.limits.first_token_timeout;
        let chat = self.client.chat();
        let opening = chat.create_stream(self.request.clone());
        let chunks = match timeout_at(deadline, opening).await {
            Err(_elapsed) => return Err(LlmError::Timeout(self.limits.first_token_timeout)),
            Ok(Err(error)) => return Err(llm_error(error, self.limits.connect_timeout)),
            Ok(Ok(chunks)) => chunks,
        };
        let id_prefix = format!("{}_{}", self.id_prefix, self.retries.made());
        self.phase = Phase::Reading(Attempt {
            chunks,
            assembler: ToolCallAssembler::new(id_prefix),
            first_chunk_deadline: deadline,
            received_chunk: false,
        });
        Ok(Progress::Continuing)
    }
}

/// Reads one chunk of `attempt` within its time limit; text goes to `pending` at once,
/// tool-call fragments to the attempt's assembler.
async fn read(
    attempt: &mut Attempt,
    limits: &Limits,
    pending: &mut VecDeque<LlmEvent>,
) -> Result<Progress, LlmError> {
    let next = if attempt.received_chunk {
        timeout(limits.idle_timeout, attempt.chunks.next())
            .await
            .map_err(|_elapsed| LlmError::Timeout(limits.idle_timeout))?
    } else {
        timeout_at(attempt.first_chunk_deadline, attempt.chunks.next())
            .await
            .map_err(|_elapsed| LlmError::Timeout(limits.first_token_timeout))?
    };
    let chunk = match next {
        None => return Ok(Progress::Complete),
        Some(chunk) => chunk.map_err(|error| llm_error(error, limits.connect_timeout))?,
    };
    attempt.received_chunk = true;
    let mut progress = Progress::Continuing;
    for choice in chunk.choices.into_iter().filter(|choice| choice.index == 0) {
        let delta = choice.delta;
        let text = [delta.content, delta.refusal].into_iter().flatten();
        pending.extend(text.filter(|t| !t.is_empty()).map(LlmEvent::TextDelta));
        for fragment in delta.tool_calls.into_iter().flatten() {
            attempt.assembler.push(fragment);
        }
        if choice.finish_reason.is_some() {
            progress = Progress::Complete;
        }
    }
    Ok(progress)
}
