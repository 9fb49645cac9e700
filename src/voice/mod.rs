//! The voice layer: audio frames, resampling, voice activity detection, speech-to-text,
//! text-to-speech, and the pipeline that turns a caller's audio into session turns and the
//! agent's replies into audio.

pub mod audio;
