//! The voice layer: audio frames, resampling, voice activity detection, speech-to-text,
//! text-to-speech, and the pipeline that turns a caller's audio into session turns and the
//! agent's replies into audio.
//!
//! [`pipeline`] is the turn-taking state machine (no I/O, no clock); [`call`] drives it
//! with real providers and audio endpoints ([`audio_io`]). Speech goes through hosted
//! OpenAI-compatible services ([`stt`], [`tts`]) or stays on this machine
//! ([`whisper_stt`], [`espeak_tts`]).

pub mod audio;
pub mod audio_io;
pub mod call;
pub mod endpointing;
pub mod espeak_tts;
pub mod metrics;
pub mod pipeline;
pub mod playout;
pub mod resample;
pub mod sentences;
pub mod speech_detector;
pub mod stt;
pub mod testing;
pub mod tts;
pub mod vad;
pub mod whisper_stt;
