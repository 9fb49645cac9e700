//! The seam between the voice pipeline and wherever audio lives: a microphone and a
//! speaker, WAV files, a LiveKit room. Two small traits, one per direction.

use std::future::Future;

use super::audio::AudioFrame;

/// The caller's side went away (device closed, caller left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the audio endpoint is closed")]
pub struct AudioClosed;

/// Where caller audio comes from: frames of any rate and length, in order, paced by the
/// source (a device or room in real time; a file as fast as asked).
pub trait AudioInput: Send {
    /// The next frame, or `None` when the caller is gone.
    fn next_frame(&mut self) -> impl Future<Output = Option<AudioFrame>> + Send;
}

/// Where agent audio goes: one frame per pipeline tick, silence included, so stopping
/// the agent takes effect within a frame.
pub trait AudioOutput: Send {
    /// The rate frames must have.
    fn sample_rate(&self) -> u32;

    /// Plays (or records) one frame.
    fn write(&mut self, frame: AudioFrame) -> impl Future<Output = Result<(), AudioClosed>> + Send;
}
