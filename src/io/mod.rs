//! Where the conversation comes from and goes to. Today: the text console; the voice
//! layer adds the microphone and speaker, WAV files and LiveKit rooms.

pub mod board;
pub mod console;
pub mod cpu;
pub mod file_audio;
pub mod http;
pub mod livekit;
#[cfg(feature = "local-audio")]
pub mod local;
pub mod wav;
