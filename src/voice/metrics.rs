//! What each turn of a call cost in time, and the call's summary.

use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};

fn millis<S: Serializer>(value: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(d) => serializer.serialize_f64(d.as_secs_f64() * 1000.0),
        None => serializer.serialize_none(),
    }
}

/// Latencies of one turn, in milliseconds in reports. Stages that did not happen are null.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TurnMetrics {
    /// Caller stopped speaking -> turn committed (endpointing wait, STT included).
    #[serde(serialize_with = "millis")]
    pub end_of_utterance_delay: Option<Duration>,
    /// Transcription request -> transcript.
    #[serde(serialize_with = "millis")]
    pub stt: Option<Duration>,
    /// Turn committed -> first reply token from the model.
    #[serde(serialize_with = "millis")]
    pub llm_first_token: Option<Duration>,
    /// First speech request -> its first audio.
    #[serde(serialize_with = "millis")]
    pub tts_first_byte: Option<Duration>,
    /// Turn committed -> first agent audio frame out: what the pipeline and providers add
    /// after the endpointing decision.
    #[serde(serialize_with = "millis")]
    pub commit_to_audio: Option<Duration>,
    /// Caller stopped speaking -> first agent audio frame out.
    #[serde(serialize_with = "millis")]
    pub end_to_end: Option<Duration>,
}

/// One turn of a call, for the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TurnReport {
    /// What the caller said (none for turns the agent started, like the greeting).
    pub caller_text: Option<String>,
    /// What the agent replied (all messages of the turn).
    pub agent_text: String,
    /// Whether the caller talked over the reply.
    pub interrupted: bool,
    /// What the caller heard of it, when interrupted.
    pub heard: Option<String>,
    /// Sentences the agent could not speak (speech synthesis failed); text only.
    pub unspoken: Vec<String>,
    /// When the caller's speech ended, in seconds of call time.
    pub caller_speech_end_s: Option<f64>,
    /// When the agent's audio started and ended, in seconds of call time.
    pub agent_audio_s: Option<(f64, f64)>,
    /// Latencies.
    pub metrics: TurnMetrics,
}

/// Wall-clock marks of a turn in progress (passed in, never read from a clock here).
#[derive(Debug, Clone, Default)]
pub(crate) struct TurnClock {
    pub(crate) committed: Option<Instant>,
    pub(crate) first_token: Option<Instant>,
    pub(crate) first_tts_request: Option<Instant>,
    pub(crate) first_tts_audio: Option<Instant>,
    pub(crate) first_audio_out: Option<Instant>,
    pub(crate) eou_delay: Option<Duration>,
    pub(crate) stt: Option<Duration>,
}

impl TurnClock {
    pub(crate) fn metrics(&self) -> TurnMetrics {
        let between = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
            (Some(a), Some(b)) => Some(b.saturating_duration_since(a)),
            _ => None,
        };
        let commit_to_audio = between(self.committed, self.first_audio_out);
        TurnMetrics {
            end_of_utterance_delay: self.eou_delay,
            stt: self.stt,
            llm_first_token: between(self.committed, self.first_token),
            tts_first_byte: between(self.first_tts_request, self.first_tts_audio),
            commit_to_audio,
            end_to_end: match (self.eou_delay, commit_to_audio) {
                (Some(eou), Some(rest)) => Some(eou + rest),
                _ => None,
            },
        }
    }
}

/// Median and 99th percentile of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    /// How many values.
    pub count: usize,
    /// Median.
    pub median_ms: f64,
    /// 99th percentile (nearest rank).
    pub p99_ms: f64,
    /// Largest.
    pub max_ms: f64,
}

impl Percentiles {
    /// The percentiles of `values`, or `None` when empty.
    pub fn of(values: impl IntoIterator<Item = Duration>) -> Option<Self> {
        let mut ms: Vec<f64> = values
            .into_iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect();
        if ms.is_empty() {
            return None;
        }
        ms.sort_by(f64::total_cmp);
        let rank = |p: f64| ms[((p * ms.len() as f64).ceil() as usize).clamp(1, ms.len()) - 1];
        Some(Percentiles {
            count: ms.len(),
            median_ms: rank(0.5),
            p99_ms: rank(0.99),
            max_ms: ms[ms.len() - 1],
        })
    }
}

/// Per-stage percentiles over a call's turns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallSummary {
    /// Turns in the call.
    pub turns: usize,
    /// Turns the caller interrupted.
    pub interruptions: usize,
    /// End-of-utterance delay.
    pub end_of_utterance_delay: Option<Percentiles>,
    /// Transcription.
    pub stt: Option<Percentiles>,
    /// Model first token.
    pub llm_first_token: Option<Percentiles>,
    /// Speech first byte.
    pub tts_first_byte: Option<Percentiles>,
    /// Commit to first audio.
    pub commit_to_audio: Option<Percentiles>,
    /// End to end.
    pub end_to_end: Option<Percentiles>,
}

impl CallSummary {
    /// Summarizes `turns`.
    pub fn of(turns: &[TurnReport]) -> Self {
        let stage = |pick: fn(&TurnMetrics) -> Option<Duration>| {
            Percentiles::of(turns.iter().filter_map(|t| pick(&t.metrics)))
        };
        CallSummary {
            turns: turns.len(),
            interruptions: turns.iter().filter(|t| t.interrupted).count(),
            end_of_utterance_delay: stage(|m| m.end_of_utterance_delay),
            stt: stage(|m| m.stt),
            llm_first_token: stage(|m| m.llm_first_token),
            tts_first_byte: stage(|m| m.tts_first_byte),
            commit_to_audio: stage(|m| m.commit_to_audio),
            end_to_end: stage(|m| m.end_to_end),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let values = (1..=100).map(Duration::from_millis);
        let p = Percentiles::of(values).unwrap();
        assert_eq!(p.median_ms, 50.0);
        assert_eq!(p.p99_ms, 99.0);
        assert_eq!(p.max_ms, 100.0);
        assert!(Percentiles::of(Vec::new()).is_none());
    }
}
