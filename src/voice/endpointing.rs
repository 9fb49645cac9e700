//! Endpointing: when a caller's utterance is finished enough to answer.
//!
//! The speech detector says when speech stopped; a pause is not yet the end of a turn.
//! The transcript decides how long to wait: a sentence that ends like one (`.`, `?`, `!`)
//! is committed `min_delay` after the speech ended, anything else after `max_delay`.
//! Speech that resumes before the commit continues the same turn. No clock inside: every
//! call gets the stream time.

use std::time::Duration;

use serde::Deserialize;

/// Endpointing delays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointingConfig {
    /// Wait after speech ends when the transcript looks complete, in milliseconds.
    pub min_delay_ms: u64,
    /// Wait after speech ends when it does not, in milliseconds.
    pub max_delay_ms: u64,
}

impl Default for EndpointingConfig {
    fn default() -> Self {
        EndpointingConfig {
            min_delay_ms: 300,
            max_delay_ms: 1200,
        }
    }
}

/// What endpointing holds: text heard so far in this turn and when to commit it.
#[derive(Debug, Default)]
pub struct Endpointing {
    config: EndpointingConfig,
    text: String,
    speech_ended_at: Option<Duration>,
    awaiting_transcripts: usize,
    caller_speaking: bool,
}

/// A turn ready to be answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedTurn {
    /// What the caller said (all parts of the turn, joined).
    pub text: String,
    /// When their speech ended (stream time).
    pub speech_ended_at: Duration,
    /// When it was committed (stream time).
    pub committed_at: Duration,
}

impl Endpointing {
    /// Endpointing with these delays.
    pub fn new(config: EndpointingConfig) -> Self {
        Endpointing {
            config,
            ..Endpointing::default()
        }
    }

    /// The caller started speaking (again): hold any commit.
    pub fn speech_started(&mut self) {
        self.caller_speaking = true;
    }

    /// The caller stopped speaking at `ended_at`; a transcript will follow.
    pub fn speech_ended(&mut self, ended_at: Duration) {
        self.caller_speaking = false;
        self.speech_ended_at = Some(ended_at);
        self.awaiting_transcripts += 1;
    }

    /// A transcript arrived (empty or noise-only transcripts add nothing).
    pub fn transcript(&mut self, text: &str) {
        self.awaiting_transcripts = self.awaiting_transcripts.saturating_sub(1);
        let text = text.trim();
        if is_meaningful(text) {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(text);
        }
    }

    /// A transcription failed: the utterance counts as heard-nothing.
    pub fn transcript_failed(&mut self) {
        self.awaiting_transcripts = self.awaiting_transcripts.saturating_sub(1);
    }

    /// When the current turn will be committed, if nothing else happens.
    pub fn deadline(&self) -> Option<Duration> {
        if self.caller_speaking || self.awaiting_transcripts > 0 || self.text.is_empty() {
            return None;
        }
        let ended = self.speech_ended_at?;
        let delay = if looks_complete(&self.text) {
            self.config.min_delay_ms
        } else {
            self.config.max_delay_ms
        };
        Some(ended + Duration::from_millis(delay))
    }

    /// Commits the turn if its deadline has passed at `now`.
    pub fn poll(&mut self, now: Duration) -> Option<CommittedTurn> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        let speech_ended_at = self.speech_ended_at.take()?;
        Some(CommittedTurn {
            text: std::mem::take(&mut self.text),
            speech_ended_at,
            committed_at: now,
        })
    }

    /// Whether a transcript is still awaited.
    pub fn is_transcribing(&self) -> bool {
        self.awaiting_transcripts > 0
    }
}

/// Whether a transcript carries words (not empty, not just punctuation or a noise tag such
/// as `[noise]` or `(coughs)`).
pub fn is_meaningful(text: &str) -> bool {
    let mut stripped = String::new();
    let mut depth = 0usize;
    for c in text.chars() {
        match c {
            '[' | '(' | '*' if depth == 0 => depth = 1,
            ']' | ')' | '*' if depth > 0 => depth = 0,
            _ if depth == 0 => stripped.push(c),
            _ => {}
        }
    }
    stripped.chars().any(char::is_alphanumeric)
}

fn looks_complete(text: &str) -> bool {
    matches!(text.trim_end().chars().last(), Some('.' | '?' | '!'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_complete_sentence_commits_after_the_min_delay() {
        let mut e = Endpointing::new(EndpointingConfig::default());
        e.speech_started();
        e.speech_ended(ms(1000));
        assert_eq!(e.poll(ms(5000)), None, "no transcript yet");
        e.transcript("Two tiramisu, please.");
        assert_eq!(e.deadline(), Some(ms(1300)));
        assert_eq!(e.poll(ms(1299)), None);
        let turn = e.poll(ms(1300)).unwrap();
        assert_eq!(turn.text, "Two tiramisu, please.");
        assert_eq!(turn.speech_ended_at, ms(1000));
        assert_eq!(e.poll(ms(9000)), None);
    }

    #[test]
    fn an_unfinished_sentence_waits_longer_and_resumed_speech_continues_the_turn() {
        let mut e = Endpointing::new(EndpointingConfig::default());
        e.speech_ended(ms(1000));
        e.transcript("I'd like the");
        assert_eq!(e.deadline(), Some(ms(2200)));
        e.speech_started();
        assert_eq!(e.poll(ms(3000)), None);
        e.speech_ended(ms(3500));
        e.transcript("grilled salmon.");
        let turn = e.poll(ms(3800)).unwrap();
        assert_eq!(turn.text, "I'd like the grilled salmon.");
    }

    #[test]
    fn noise_only_transcripts_start_no_turn() {
        let mut e = Endpointing::new(EndpointingConfig::default());
        e.speech_ended(ms(1000));
        e.transcript(" [noise] ");
        assert_eq!(e.poll(ms(9000)), None);
        e.speech_ended(ms(2000));
        e.transcript("...");
        assert_eq!(e.poll(ms(9000)), None);
        assert!(!is_meaningful("(coughs)"));
        assert!(is_meaningful("yes"));
    }
}
