//! A language model inside the process: llama.cpp (through `llama-cpp-2`, built from
//! source) running a GGUF model file, so the agent runs with no account and no server.
//!
//! Built for small models on a CPU:
//! - every reply is constrained to one JSON form (see [`reply`]): words to say, or one call
//!   to a tool offered in this step with arguments that match its schema;
//! - the key-value cache is kept across requests, so a turn evaluates only its new tokens;
//! - one request runs at a time, on a thread of its own; a dropped stream (an interrupted
//!   reply) stops at the next token, so nothing piles up behind an abandoned request.
//!
//! [`prompt`] and [`reply`] are plain functions, tested without a model; the engine needs
//! the `local-llm` feature (on by default).

#[cfg(feature = "local-llm")]
pub mod files;
pub mod prompt;
pub mod reply;

#[cfg(feature = "local-llm")]
mod engine;

use std::path::PathBuf;

/// How the local model runs.
#[derive(Debug, Clone)]
pub struct LocalLlmSettings {
    /// The GGUF file.
    pub model: PathBuf,
    /// Tokens of conversation the context holds (prompt and reply).
    pub context_tokens: u32,
    /// Longest reply, in tokens.
    pub max_reply_tokens: usize,
    /// CPU threads for evaluation.
    pub threads: usize,
}

/// Why the local model could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalLlmError {
    /// llama.cpp could not start.
    #[error("llama.cpp: {0}")]
    Backend(String),
    /// The model file could not be loaded.
    #[error("cannot load the model {path}: {message}")]
    Load {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// This build has no local model support.
    #[error("this bella-vista was built without the local model (cargo feature local-llm)")]
    NotBuilt,
}

#[cfg(feature = "local-llm")]
pub use running::LocalLlm;

#[cfg(feature = "local-llm")]
mod running {
    use std::sync::Mutex;

    use futures_util::stream;
    use tokio::sync::mpsc;

    use super::engine::{self, Job};
    use super::{LocalLlmError, LocalLlmSettings};
    use crate::llm::{ChatRequest, Llm, LlmError, LlmStream};

    /// A GGUF model served in-process by llama.cpp, one request at a time.
    pub struct LocalLlm {
        jobs: Mutex<std::sync::mpsc::Sender<Job>>,
    }

    impl LocalLlm {
        /// Loads the model (seconds for a 1 GB file) and starts its thread.
        pub fn load(settings: LocalLlmSettings) -> Result<Self, LocalLlmError> {
            let (jobs, queue) = std::sync::mpsc::channel::<Job>();
            let (loaded, load_result) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name("local-llm".into())
                .spawn(move || match engine::load(&settings) {
                    Ok((backend, model)) => {
                        let _ = loaded.send(Ok(()));
                        if let Err(error) = engine::serve(backend, &model, &settings, queue) {
                            tracing::error!(%error, "the local model stopped");
                        }
                    }
                    Err(error) => {
                        let _ = loaded.send(Err(error));
                    }
                })
                .map_err(|e| LocalLlmError::Backend(e.to_string()))?;
            load_result
                .recv()
                .map_err(|_| LocalLlmError::Backend("the model thread ended".into()))??;
            Ok(LocalLlm {
                jobs: Mutex::new(jobs),
            })
        }
    }

    impl Llm for LocalLlm {
        fn chat(&self, request: ChatRequest) -> LlmStream {
            let (events, mut receiver) = mpsc::unbounded_channel();
            let queued = self
                .jobs
                .lock()
                .map(|jobs| jobs.send(Job { request, events }).is_ok())
                .unwrap_or(false);
            if !queued {
                return Box::pin(stream::once(async {
                    Err(LlmError::Connection("the local model has stopped".into()))
                }));
            }
            Box::pin(stream::poll_fn(move |cx| receiver.poll_recv(cx)))
        }
    }
}
