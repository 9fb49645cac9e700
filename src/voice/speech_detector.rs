//! Speech start and end from per-frame VAD decisions, with hysteresis.
//!
//! A VAD flickers: a breath is called speech, a stop consonant silence. The
//! [`SpeechDetector`] turns its decisions into utterances. Speech starts once `min_speech`
//! of speech frames has been heard, allowing gaps of up to `max_gap` inside that run; it
//! ends once `min_silence` of non-speech has followed. Reported times are where the speech
//! really was, not where a threshold was met: a start is the first speech frame of the run,
//! an end the last speech frame's end.
//!
//! No I/O and no clock: time is the sum of the frame durations pushed so far (stream time,
//! zero at the first frame).
//!
//! ```
//! use bella_vista::voice::speech_detector::{SpeechDetector, SpeechDetectorConfig, SpeechEvent};
//! use std::time::Duration;
//!
//! let mut detector = SpeechDetector::new(SpeechDetectorConfig::default());
//! let frame = Duration::from_millis(20);
//! let mut events = Vec::new();
//! for is_speech in [&[false; 5][..], &[true; 10], &[false; 30]].concat() {
//!     events.extend(detector.push(is_speech, frame));
//! }
//! assert_eq!(events, [
//!     SpeechEvent::Started { at: Duration::from_millis(100) },
//!     SpeechEvent::Ended {
//!         started_at: Duration::from_millis(100),
//!         ended_at: Duration::from_millis(300),
//!     },
//! ]);
//! ```

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The detector's thresholds, in milliseconds.
///
/// The defaults (150 / 500 / 20 ms) are tuned with espeak-ng speech through webrtc-vad in
/// `Aggressive` mode (`tests/vad_speech.rs`):
/// - `min_speech_ms` 150: webrtc-vad calls the first 80 ms (Aggressive) to 100 ms
///   (Quality) of any non-silent stream speech while it learns the noise floor, and noise
///   bursts come in runs of up to 100 ms; 150 ms stays clear of both, while the shortest
///   word ("yes", "no") gives over 300 ms. The start is still reported at the run's first
///   frame, so only the moment of reporting moves.
/// - `min_silence_ms` 500: bridges the pauses inside a sentence (up to about 150 ms at a
///   comma in espeak, longer in people) and ends an utterance well before the caller
///   expects an answer; endpointing then decides when the turn is over.
/// - `max_gap_ms` 20: one 20 ms VAD frame, the usual flicker at a stop consonant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpeechDetectorConfig {
    /// Speech frames needed before speech counts as started.
    pub min_speech_ms: u64,
    /// Non-speech needed after speech before it counts as ended.
    pub min_silence_ms: u64,
    /// Longest non-speech gap that does not break a run of speech that has not yet started.
    pub max_gap_ms: u64,
}

impl Default for SpeechDetectorConfig {
    fn default() -> Self {
        SpeechDetectorConfig {
            min_speech_ms: 150,
            min_silence_ms: 500,
            max_gap_ms: 20,
        }
    }
}

/// A change in whether the caller is speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpeechEvent {
    /// Speech started; reported `min_speech` after `at`, when it was confirmed.
    Started {
        /// Start of the first speech frame of the run (stream time).
        at: Duration,
    },
    /// Speech ended; reported `min_silence` after `ended_at`.
    Ended {
        /// When this utterance started (as in [`SpeechEvent::Started`]).
        started_at: Duration,
        /// End of the last speech frame (stream time).
        ended_at: Duration,
    },
}

/// Where the detector is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No speech, or a run of speech frames not yet long enough.
    Quiet { run: Option<Run> },
    /// Speech has started and not yet ended.
    Speaking {
        started_at: Duration,
        last_speech_end: Duration,
        silence: Duration,
    },
}

/// A run of speech frames that may become an utterance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Run {
    start: Duration,
    /// Speech heard in the run (gaps not counted).
    speech: Duration,
    /// Non-speech since the last speech frame.
    gap: Duration,
}

/// Turns per-frame VAD decisions into speech start and end events.
#[derive(Debug, Clone)]
pub struct SpeechDetector {
    min_speech: Duration,
    min_silence: Duration,
    max_gap: Duration,
    now: Duration,
    state: State,
}

impl SpeechDetector {
    /// A detector at stream time zero, not speaking.
    pub fn new(config: SpeechDetectorConfig) -> Self {
        SpeechDetector {
            min_speech: Duration::from_millis(config.min_speech_ms),
            min_silence: Duration::from_millis(config.min_silence_ms),
            max_gap: Duration::from_millis(config.max_gap_ms),
            now: Duration::ZERO,
            state: State::Quiet { run: None },
        }
    }

    /// Takes the VAD decision for the next frame, which lasts `frame_duration`.
    pub fn push(&mut self, is_speech: bool, frame_duration: Duration) -> Option<SpeechEvent> {
        let frame_start = self.now;
        self.now += frame_duration;
        match (&mut self.state, is_speech) {
            (State::Quiet { run }, true) => {
                let run = run.get_or_insert(Run {
                    start: frame_start,
                    speech: Duration::ZERO,
                    gap: Duration::ZERO,
                });
                run.speech += frame_duration;
                run.gap = Duration::ZERO;
                if run.speech < self.min_speech {
                    return None;
                }
                let at = run.start;
                self.state = State::Speaking {
                    started_at: at,
                    last_speech_end: self.now,
                    silence: Duration::ZERO,
                };
                Some(SpeechEvent::Started { at })
            }
            (State::Quiet { run }, false) => {
                if let Some(current) = run {
                    current.gap += frame_duration;
                    if current.gap > self.max_gap {
                        *run = None;
                    }
                }
                None
            }
            (
                State::Speaking {
                    last_speech_end,
                    silence,
                    ..
                },
                true,
            ) => {
                *last_speech_end = self.now;
                *silence = Duration::ZERO;
                None
            }
            (
                State::Speaking {
                    started_at,
                    last_speech_end,
                    silence,
                },
                false,
            ) => {
                *silence += frame_duration;
                if *silence < self.min_silence {
                    return None;
                }
                let event = SpeechEvent::Ended {
                    started_at: *started_at,
                    ended_at: *last_speech_end,
                };
                self.state = State::Quiet { run: None };
                Some(event)
            }
        }
    }

    /// The stream ended: ends speech in progress (at its last speech frame), if any, and
    /// forgets a run that had not yet started.
    pub fn finish(&mut self) -> Option<SpeechEvent> {
        let state = std::mem::replace(&mut self.state, State::Quiet { run: None });
        match state {
            State::Speaking {
                started_at,
                last_speech_end,
                ..
            } => Some(SpeechEvent::Ended {
                started_at,
                ended_at: last_speech_end,
            }),
            State::Quiet { .. } => None,
        }
    }

    /// Whether speech has started and not yet ended.
    pub fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speaking { .. })
    }

    /// How long the current speech has lasted, from its start to the end of its latest
    /// speech frame (a pause in progress is not counted); zero when not speaking.
    pub fn speech_duration_so_far(&self) -> Duration {
        match self.state {
            State::Speaking {
                started_at,
                last_speech_end,
                ..
            } => last_speech_end - started_at,
            State::Quiet { .. } => Duration::ZERO,
        }
    }

    /// Stream time: the total duration of the frames pushed so far.
    pub fn now(&self) -> Duration {
        self.now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn ms(millis: u64) -> Duration {
        Duration::from_millis(millis)
    }

    /// Pushes a pattern of `'#'` (speech) and `'.'` (silence) frames of 20 ms each.
    fn feed(detector: &mut SpeechDetector, pattern: &str) -> Vec<SpeechEvent> {
        pattern
            .chars()
            .filter_map(|c| detector.push(c == '#', FRAME))
            .collect()
    }

    fn detector() -> SpeechDetector {
        SpeechDetector::new(SpeechDetectorConfig {
            min_speech_ms: 100,
            min_silence_ms: 200,
            max_gap_ms: 20,
        })
    }

    #[test]
    fn speech_starts_at_its_first_frame_once_long_enough() {
        let mut detector = detector();
        assert_eq!(feed(&mut detector, "...####"), []);
        assert!(!detector.is_speaking());
        assert_eq!(
            feed(&mut detector, "#"),
            [SpeechEvent::Started { at: ms(60) }]
        );
        assert!(detector.is_speaking());
        assert_eq!(detector.now(), ms(160));
        assert_eq!(detector.speech_duration_so_far(), ms(100));
    }

    #[test]
    fn short_bursts_never_start_speech() {
        let mut detector = detector();
        assert_eq!(feed(&mut detector, "##..###..#.##...####..."), []);
        assert_eq!(detector.speech_duration_so_far(), Duration::ZERO);
    }

    #[test]
    fn a_one_frame_gap_does_not_reset_the_run() {
        let mut detector = detector();
        assert_eq!(
            feed(&mut detector, "..##.###"),
            [SpeechEvent::Started { at: ms(40) }]
        );
    }

    #[test]
    fn speech_ends_after_enough_silence_at_its_last_speech_frame() {
        let mut detector = detector();
        feed(&mut detector, "#####");
        // Pauses shorter than min_silence do not end it.
        assert_eq!(feed(&mut detector, "#.........##"), []);
        assert_eq!(detector.speech_duration_so_far(), ms(340));
        assert_eq!(feed(&mut detector, "...."), []);
        assert_eq!(detector.speech_duration_so_far(), ms(340));
        assert_eq!(feed(&mut detector, "....."), []);
        assert_eq!(
            feed(&mut detector, "."),
            [SpeechEvent::Ended {
                started_at: ms(0),
                ended_at: ms(340),
            }]
        );
        assert!(!detector.is_speaking());
        assert_eq!(detector.speech_duration_so_far(), Duration::ZERO);
    }

    #[test]
    fn utterances_follow_one_another() {
        let mut detector = detector();
        let events = feed(&mut detector, "..######..........######..........");
        assert_eq!(
            events,
            [
                SpeechEvent::Started { at: ms(40) },
                SpeechEvent::Ended {
                    started_at: ms(40),
                    ended_at: ms(160),
                },
                SpeechEvent::Started { at: ms(360) },
                SpeechEvent::Ended {
                    started_at: ms(360),
                    ended_at: ms(480),
                },
            ]
        );
    }

    #[test]
    fn frames_of_any_length_add_up_to_stream_time() {
        let mut detector = detector();
        assert_eq!(detector.push(true, ms(30)), None);
        assert_eq!(detector.push(true, ms(30)), None);
        assert_eq!(detector.push(false, ms(10)), None);
        assert_eq!(detector.push(true, ms(30)), None);
        assert_eq!(
            detector.push(true, ms(30)),
            Some(SpeechEvent::Started { at: ms(0) })
        );
        assert_eq!(detector.push(false, ms(150)), None);
        assert_eq!(detector.now(), ms(280));
        assert_eq!(
            detector.finish(),
            Some(SpeechEvent::Ended {
                started_at: ms(0),
                ended_at: ms(130),
            })
        );
        assert_eq!(detector.finish(), None);
    }

    #[test]
    fn config_reads_milliseconds_and_defaults_missing_fields() {
        let config: SpeechDetectorConfig =
            serde_json::from_str(r#"{"min_silence_ms": 700}"#).unwrap();
        assert_eq!(config.min_silence_ms, 700);
        assert_eq!(config.min_speech_ms, 150);
        assert!(serde_json::from_str::<SpeechDetectorConfig>(r#"{"min_silence": 7}"#).is_err());
    }
}
