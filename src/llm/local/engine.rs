//! The llama.cpp side of [`LocalLlm`](super::LocalLlm): one thread owns the model and its
//! context and answers requests one after the other. The key-value cache is kept between
//! requests, and only the tokens after the longest common prefix with the previous prompt
//! are evaluated, so a turn in the same task costs its new words, not the whole prompt.
//! A request whose stream was dropped (the caller interrupted) stops at the next token.

use std::num::NonZeroU32;
use std::sync::OnceLock;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc;

use super::prompt::render;
use super::reply::{Fill, Reply, ReplyParser, reply_schema};
use super::{LocalLlmError, LocalLlmSettings};
use crate::llm::{ChatRequest, LlmError, LlmEvent, RequestPurpose};

/// One request and where its events go.
pub(super) struct Job {
    pub(super) request: ChatRequest,
    pub(super) events: mpsc::UnboundedSender<Result<LlmEvent, LlmError>>,
}

/// Tokens evaluated per batch while reading a prompt.
const BATCH: usize = 512;

/// llama.cpp's process-wide state, initialized once.
fn backend() -> Result<&'static LlamaBackend, LocalLlmError> {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    if let Some(backend) = BACKEND.get() {
        return Ok(backend);
    }
    let mut backend = LlamaBackend::init().map_err(|e| LocalLlmError::Backend(e.to_string()))?;
    backend.void_logs();
    Ok(BACKEND.get_or_init(|| backend))
}

/// Loads the model; returns it with its backend, or why not.
pub(super) fn load(
    settings: &LocalLlmSettings,
) -> Result<(&'static LlamaBackend, LlamaModel), LocalLlmError> {
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, &settings.model, &LlamaModelParams::default())
        .map_err(|e| LocalLlmError::Load {
            path: settings.model.clone(),
            message: e.to_string(),
        })?;
    Ok((backend, model))
}

/// Serves jobs until the sender side is gone.
pub(super) fn serve(
    backend: &LlamaBackend,
    model: &LlamaModel,
    settings: &LocalLlmSettings,
    jobs: std::sync::mpsc::Receiver<Job>,
) -> Result<(), LocalLlmError> {
    let threads = settings.threads as i32;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(settings.context_tokens))
        .with_n_batch(BATCH as u32)
        .with_n_threads(threads)
        .with_n_threads_batch(threads);
    let mut context = model
        .new_context(backend, params)
        .map_err(|e| LocalLlmError::Backend(e.to_string()))?;
    let mut engine = Engine {
        model,
        cached: Vec::new(),
        calls: 0,
    };
    while let Ok(job) = jobs.recv() {
        if job.events.is_closed() {
            continue;
        }
        if let Err(error) = engine.answer(&mut context, &job, settings) {
            let _ = job.events.send(Err(error));
        }
    }
    Ok(())
}

struct Engine<'m> {
    model: &'m LlamaModel,
    /// The tokens whose keys and values are in the context, in order.
    cached: Vec<LlamaToken>,
    calls: u64,
}

impl Engine<'_> {
    fn answer(
        &mut self,
        context: &mut LlamaContext<'_>,
        job: &Job,
        settings: &LocalLlmSettings,
    ) -> Result<(), LlmError> {
        let started = std::time::Instant::now();
        let prompt = render(&job.request);
        let tokens = self.model.vocab().tokenize(prompt.as_bytes(), false, true);
        let limit = settings.context_tokens as usize;
        if tokens.len() + settings.max_reply_tokens >= limit {
            return Err(LlmError::InvalidResponse(format!(
                "the conversation ({} tokens) no longer fits the model's context ({limit})",
                tokens.len()
            )));
        }
        let reused = self.read_prompt(context, &tokens, &job.events)?;
        let read = started.elapsed();
        let grammar = match job.request.purpose {
            RequestPurpose::Reply => Some(
                llama_cpp_2::json_schema_to_grammar(
                    &reply_schema(&job.request.tools, job.request.fill.as_deref()).to_string(),
                )
                .map_err(|e| LlmError::InvalidResponse(format!("reply grammar: {e}")))?,
            ),
            RequestPurpose::Summary => None,
        };
        let generated = self.generate(context, grammar.as_deref(), job, settings)?;
        tracing::info!(
            prompt_tokens = tokens.len(),
            reused,
            read_ms = read.as_millis() as u64,
            generated,
            total_ms = started.elapsed().as_millis() as u64,
            "local model answered"
        );
        Ok(())
    }

    /// Evaluates the prompt, keeping what the cache already holds of it; returns how many
    /// tokens were reused.
    fn read_prompt(
        &mut self,
        context: &mut LlamaContext<'_>,
        tokens: &[LlamaToken],
        events: &mpsc::UnboundedSender<Result<LlmEvent, LlmError>>,
    ) -> Result<usize, LlmError> {
        let shared = self
            .cached
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        // The last prompt token is always evaluated again: its logits start the reply.
        let keep = shared.min(tokens.len().saturating_sub(1));
        context
            .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
            .map_err(|e| LlmError::InvalidResponse(format!("cache: {e}")))?;
        self.cached.truncate(keep);
        let mut batch = LlamaBatch::new(BATCH, 1);
        let rest = &tokens[keep..];
        for (index, chunk) in rest.chunks(BATCH).enumerate() {
            if events.is_closed() {
                return Err(LlmError::Connection("cancelled".into()));
            }
            batch.clear();
            let last_chunk = (index + 1) * BATCH >= rest.len();
            for (offset, token) in chunk.iter().enumerate() {
                let position = (keep + index * BATCH + offset) as i32;
                let logits = last_chunk && offset + 1 == chunk.len();
                batch
                    .add(*token, position, &[0], logits)
                    .map_err(|e| LlmError::InvalidResponse(e.to_string()))?;
            }
            context
                .decode(&mut batch)
                .map_err(|e| LlmError::InvalidResponse(format!("reading the prompt: {e}")))?;
            self.cached.extend_from_slice(chunk);
        }
        Ok(keep)
    }

    /// Samples the reply token by token, streaming its words; returns how many tokens it
    /// generated.
    fn generate(
        &mut self,
        context: &mut LlamaContext<'_>,
        grammar: Option<&str>,
        job: &Job,
        settings: &LocalLlmSettings,
    ) -> Result<usize, LlmError> {
        let mut samplers = Vec::new();
        if let Some(grammar) = grammar {
            samplers.push(
                LlamaSampler::grammar(self.model, grammar, "root")
                    .map_err(|e| LlmError::InvalidResponse(format!("reply grammar: {e}")))?,
            );
        }
        samplers.push(LlamaSampler::greedy());
        let mut sampler = LlamaSampler::chain_simple(samplers);
        let vocab = self.model.vocab();
        let fill = job
            .request
            .fill
            .as_deref()
            .and_then(|name| Fill::of(name, &job.request.tools));
        let mut parser = ReplyParser::new(fill);
        let mut plain = String::new();
        let mut pending_bytes = Vec::new();
        let mut batch = LlamaBatch::new(1, 1);
        let mut generated = 0;
        while generated < settings.max_reply_tokens {
            let token = sampler.sample(context, -1);
            if vocab.is_eog(token) {
                break;
            }
            generated += 1;
            pending_bytes.extend(vocab.token_to_piece(token, false, None));
            let piece = take_utf8(&mut pending_bytes);
            if grammar.is_some() {
                if let Some(words) = parser.push(&piece)
                    && job.events.send(Ok(LlmEvent::TextDelta(words))).is_err()
                {
                    return Ok(generated);
                }
                if parser.is_complete() {
                    // The rest of the reply is not needed, and not in the cache either.
                    self.cached.push(token);
                    context
                        .clear_kv_cache_seq(Some(0), Some(self.cached.len() as u32), None)
                        .map_err(|e| LlmError::InvalidResponse(format!("cache: {e}")))?;
                    break;
                }
            } else {
                plain.push_str(&piece);
                if !piece.is_empty() && job.events.send(Ok(LlmEvent::TextDelta(piece))).is_err() {
                    return Ok(generated);
                }
            }
            batch.clear();
            let position = self.cached.len() as i32;
            batch
                .add(token, position, &[0], true)
                .map_err(|e| LlmError::InvalidResponse(e.to_string()))?;
            context
                .decode(&mut batch)
                .map_err(|e| LlmError::InvalidResponse(format!("generating: {e}")))?;
            self.cached.push(token);
        }
        if grammar.is_some() {
            self.calls += 1;
            match parser.finish(format!("local_{}", self.calls)) {
                Ok(Reply::Say(_)) => {}
                Ok(Reply::Call(call)) => {
                    let _ = job.events.send(Ok(LlmEvent::ToolCall(call)));
                }
                Err(error) => return Err(LlmError::InvalidResponse(error)),
            }
        }
        Ok(generated)
    }
}

/// The longest valid UTF-8 prefix of `bytes`, removed from it (a character split across
/// tokens waits for its other bytes).
fn take_utf8(bytes: &mut Vec<u8>) -> String {
    let valid = match std::str::from_utf8(bytes) {
        Ok(text) => text.len(),
        Err(error) if error.error_len().is_none() => error.valid_up_to(),
        // Bytes that can never be valid: keep them out of the text.
        Err(error) => error.valid_up_to() + error.error_len().unwrap_or(1),
    };
    let rest = bytes.split_off(valid);
    let text = String::from_utf8_lossy(bytes).into_owned();
    *bytes = rest;
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_split_across_tokens_wait_for_their_other_bytes() {
        let mut bytes = "é".as_bytes()[..1].to_vec();
        assert_eq!(take_utf8(&mut bytes), "");
        bytes.extend_from_slice(&"é".as_bytes()[1..]);
        bytes.extend_from_slice(b"ab");
        assert_eq!(take_utf8(&mut bytes), "éab");
        assert!(bytes.is_empty());
    }
}
