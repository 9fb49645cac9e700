//! Voice activity detection with WebRTC's VAD, hosted on one dedicated thread.
//!
//! `webrtc_vad::Vad` wraps a raw pointer, so it may not move between threads, and the
//! pipeline runs on a multi-thread runtime whose tasks do. A [`VadPool`] therefore owns one
//! OS thread that holds every VAD instance; a [`VadStream`] is a handle to one instance (one
//! caller's audio, with its own adaptive state) that sends frames to that thread and gets the
//! decision back. Frames are classified in the order they are sent.
//!
//! ```
//! use bella_vista::voice::audio::AudioFrame;
//! use bella_vista::voice::vad::{VadAggressiveness, VadPool};
//! use std::time::Duration;
//!
//! let pool = VadPool::start(VadAggressiveness::Aggressive);
//! let mut stream = pool.open_stream();
//! let silence = AudioFrame::silence(16_000, 1, Duration::from_millis(20));
//! assert!(!stream.classify_blocking(silence)?);
//! # Ok::<(), bella_vista::voice::vad::VadError>(())
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use webrtc_vad::{SampleRate, Vad, VadMode};

use super::audio::AudioFrame;

/// The only rate the VAD takes; resample to it first.
pub const VAD_SAMPLE_RATE: u32 = 16_000;

/// Frame lengths the VAD takes, in samples at [`VAD_SAMPLE_RATE`]: 10, 20 and 30 ms.
pub const VAD_FRAME_SAMPLES: [usize; 3] = [160, 320, 480];

/// How readily the VAD calls a frame speech. More aggressive modes miss more quiet speech
/// and report less noise as speech. Written in config as `quality`, `low_bitrate`,
/// `aggressive` or `very_aggressive`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VadAggressiveness {
    /// Mode 0: reports the most speech, including much noise.
    Quality,
    /// Mode 1.
    LowBitrate,
    /// Mode 2: the default, a balance for phone and microphone audio.
    #[default]
    Aggressive,
    /// Mode 3: reports the least noise as speech, may clip quiet speech.
    VeryAggressive,
}

impl VadAggressiveness {
    fn mode(self) -> VadMode {
        match self {
            VadAggressiveness::Quality => VadMode::Quality,
            VadAggressiveness::LowBitrate => VadMode::LowBitrate,
            VadAggressiveness::Aggressive => VadMode::Aggressive,
            VadAggressiveness::VeryAggressive => VadMode::VeryAggressive,
        }
    }
}

/// Why a frame was not classified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VadError {
    /// The frame is not 10, 20 or 30 ms of mono audio at 16 kHz.
    #[error(
        "the VAD takes 10, 20 or 30 ms of mono 16 kHz audio, \
         got {samples} samples at {sample_rate} Hz in {channels} channels"
    )]
    UnsupportedFrame {
        /// The frame's rate.
        sample_rate: u32,
        /// The frame's channel count.
        channels: u16,
        /// The frame's sample count.
        samples: usize,
    },
    /// The VAD library refused the frame.
    #[error("the VAD refused a frame of {samples} samples")]
    Rejected {
        /// The frame's sample count.
        samples: usize,
    },
    /// The VAD thread is gone (it panicked).
    #[error("the VAD thread has stopped")]
    Stopped,
}

/// Where the VAD thread sends a decision.
enum Reply {
    Async(oneshot::Sender<Result<bool, VadError>>),
    Blocking(mpsc::SyncSender<Result<bool, VadError>>),
}

impl Reply {
    fn send(self, decision: Result<bool, VadError>) {
        // The asker may have given up waiting; then nobody needs the answer.
        match self {
            Reply::Async(sender) => {
                let _ = sender.send(decision);
            }
            Reply::Blocking(sender) => {
                let _ = sender.send(decision);
            }
        }
    }
}

/// What a handle asks of the VAD thread.
enum Command {
    Open {
        stream: u64,
    },
    Classify {
        stream: u64,
        samples: Vec<i16>,
        reply: Reply,
    },
    Close {
        stream: u64,
    },
}

/// A handle to the thread that runs the VAD instances. Cheap to clone and shareable; the
/// thread ends when the last pool handle and the last stream are dropped.
#[derive(Debug, Clone)]
pub struct VadPool {
    commands: mpsc::Sender<Command>,
    next_stream: Arc<AtomicU64>,
}

impl VadPool {
    /// Starts the VAD thread; its streams use `aggressiveness`.
    ///
    /// # Panics
    ///
    /// If the OS cannot start a thread, like [`std::thread::spawn`].
    pub fn start(aggressiveness: VadAggressiveness) -> VadPool {
        Self::spawn(aggressiveness, None)
    }

    fn spawn(aggressiveness: VadAggressiveness, exited: Option<mpsc::Sender<()>>) -> VadPool {
        let (commands, inbox) = mpsc::channel();
        std::thread::Builder::new()
            .name("vad".into())
            .spawn(move || {
                serve(aggressiveness, &inbox);
                if let Some(exited) = exited {
                    let _ = exited.send(());
                }
            })
            .expect("failed to start the VAD thread");
        VadPool {
            commands,
            next_stream: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A new VAD instance on the pool's thread, for one audio stream. Dropping the stream
    /// frees the instance.
    pub fn open_stream(&self) -> VadStream {
        let stream = self.next_stream.fetch_add(1, Ordering::Relaxed);
        // If the thread is gone, every classify on this stream reports `Stopped`.
        let _ = self.commands.send(Command::Open { stream });
        VadStream {
            stream,
            commands: self.commands.clone(),
        }
    }
}

/// One audio stream's VAD instance. Frames are classified in the order they are sent.
#[derive(Debug)]
pub struct VadStream {
    stream: u64,
    commands: mpsc::Sender<Command>,
}

impl VadStream {
    /// Whether one 10, 20 or 30 ms mono 16 kHz frame is speech.
    ///
    /// The frame is sent when this is called (so frames keep their call order); the returned
    /// future only waits for the decision and borrows nothing.
    pub fn classify(
        &mut self,
        frame: AudioFrame,
    ) -> impl Future<Output = Result<bool, VadError>> + Send + 'static + use<> {
        let (reply, answer) = oneshot::channel();
        let sent = self.send(frame, Reply::Async(reply));
        async move {
            sent?;
            answer.await.map_err(|_| VadError::Stopped)?
        }
    }

    /// [`classify`](Self::classify) for callers outside async code: blocks until the VAD
    /// thread answers (well under a millisecond).
    pub fn classify_blocking(&mut self, frame: AudioFrame) -> Result<bool, VadError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.send(frame, Reply::Blocking(reply))?;
        answer.recv().map_err(|_| VadError::Stopped)?
    }

    fn send(&self, frame: AudioFrame, reply: Reply) -> Result<(), VadError> {
        check_frame(&frame)?;
        let command = Command::Classify {
            stream: self.stream,
            samples: frame.into_samples(),
            reply,
        };
        self.commands.send(command).map_err(|_| VadError::Stopped)
    }
}

impl Drop for VadStream {
    fn drop(&mut self) {
        // A stopped thread has nothing left to free.
        let _ = self.commands.send(Command::Close {
            stream: self.stream,
        });
    }
}

fn check_frame(frame: &AudioFrame) -> Result<(), VadError> {
    let samples = frame.samples().len();
    if frame.sample_rate() != VAD_SAMPLE_RATE
        || frame.channels() != 1
        || !VAD_FRAME_SAMPLES.contains(&samples)
    {
        return Err(VadError::UnsupportedFrame {
            sample_rate: frame.sample_rate(),
            channels: frame.channels(),
            samples,
        });
    }
    Ok(())
}

/// The VAD thread: runs commands until every handle is gone.
fn serve(aggressiveness: VadAggressiveness, inbox: &mpsc::Receiver<Command>) {
    let mut streams: HashMap<u64, Vad> = HashMap::new();
    while let Ok(command) = inbox.recv() {
        match command {
            Command::Open { stream } => {
                let vad = Vad::new_with_rate_and_mode(SampleRate::Rate16kHz, aggressiveness.mode());
                streams.insert(stream, vad);
            }
            Command::Classify {
                stream,
                samples,
                reply,
            } => {
                let decision = match streams.get_mut(&stream) {
                    Some(vad) => vad
                        .is_voice_segment(&samples)
                        .map_err(|()| VadError::Rejected {
                            samples: samples.len(),
                        }),
                    // Unreachable: a stream's `Open` is always sent before its frames.
                    None => Err(VadError::Stopped),
                };
                reply.send(decision);
            }
            Command::Close { stream } => {
                streams.remove(&stream);
            }
        }
    }
    tracing::debug!("VAD thread stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// 20 ms of a voiced-sounding signal: a 140 Hz buzz with harmonics, as a vowel has.
    fn voiced(index: usize) -> AudioFrame {
        let samples = (0..320)
            .map(|i| {
                let t = (index * 320 + i) as f32 / 16_000.0;
                let buzz: f32 = (1..=12)
                    .map(|h| {
                        let h = h as f32;
                        (2.0 * std::f32::consts::PI * 140.0 * h * t).sin() / h
                    })
                    .sum();
                (buzz * 6000.0) as i16
            })
            .collect();
        AudioFrame::mono(samples, 16_000)
    }

    fn silence() -> AudioFrame {
        AudioFrame::silence(16_000, 1, Duration::from_millis(20))
    }

    /// Frame `i` of a test pattern: 300 ms of silence and 300 ms of buzz, alternating.
    fn pattern(i: usize) -> AudioFrame {
        if (i / 15).is_multiple_of(2) {
            silence()
        } else {
            voiced(i)
        }
    }

    #[test]
    fn silence_is_not_speech_and_a_voiced_buzz_is() {
        let pool = VadPool::start(VadAggressiveness::Aggressive);
        let mut stream = pool.open_stream();
        for _ in 0..10 {
            assert!(!stream.classify_blocking(silence()).unwrap());
        }
        let decisions: Vec<bool> = (0..25)
            .map(|i| stream.classify_blocking(voiced(i)).unwrap())
            .collect();
        assert!(decisions[5..].iter().all(|&d| d), "{decisions:?}");
    }

    #[test]
    fn frames_of_the_wrong_shape_are_refused() {
        let pool = VadPool::start(VadAggressiveness::Quality);
        let mut stream = pool.open_stream();
        for frame in [
            AudioFrame::mono(vec![0; 320], 8_000),
            AudioFrame::mono(vec![0; 321], 16_000),
            AudioFrame::mono(vec![], 16_000),
            AudioFrame::new(vec![0; 640], 16_000, 2).unwrap(),
        ] {
            assert!(matches!(
                stream.classify_blocking(frame),
                Err(VadError::UnsupportedFrame { .. })
            ));
        }
        for samples in VAD_FRAME_SAMPLES {
            let frame = AudioFrame::mono(vec![0; samples], 16_000);
            assert_eq!(stream.classify_blocking(frame), Ok(false));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_streams_keep_their_own_state() {
        let pool = VadPool::start(VadAggressiveness::Aggressive);
        let mut solo = pool.open_stream();
        let expected: Vec<bool> = (0..300)
            .map(|i| solo.classify_blocking(pattern(i)).unwrap())
            .collect();
        assert!(expected.contains(&true) && expected.contains(&false));

        let tasks: Vec<_> = (0..6)
            .map(|_| {
                let mut stream = pool.open_stream();
                tokio::spawn(async move {
                    let mut decisions = Vec::new();
                    for i in 0..300 {
                        decisions.push(stream.classify(pattern(i)).await.unwrap());
                        tokio::task::yield_now().await;
                    }
                    decisions
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap(), expected);
        }
    }

    #[test]
    fn the_thread_ends_when_the_last_handle_is_dropped() {
        let (exited, exit) = mpsc::channel();
        let pool = VadPool::spawn(VadAggressiveness::Aggressive, Some(exited));
        let mut stream = pool.open_stream();
        drop(pool);
        assert!(exit.recv_timeout(Duration::from_millis(50)).is_err());
        assert_eq!(stream.classify_blocking(silence()), Ok(false));
        drop(stream);
        assert!(exit.recv_timeout(Duration::from_secs(5)).is_ok());
    }

    #[test]
    fn handles_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<VadPool>();
        assert_send_sync::<VadStream>();
    }

    #[test]
    fn aggressiveness_reads_from_config_words() {
        let mode: VadAggressiveness = serde_json::from_str("\"very_aggressive\"").unwrap();
        assert_eq!(mode, VadAggressiveness::VeryAggressive);
        assert_eq!(
            serde_json::to_string(&VadAggressiveness::LowBitrate).unwrap(),
            "\"low_bitrate\""
        );
    }
}
