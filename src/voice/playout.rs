//! The agent's audio waiting to be played, in sentence order, and what of the reply's
//! text has been heard so far.
//!
//! Sentences are synthesized concurrently and may finish out of order; they play in the
//! order they were written. When the caller interrupts, [`Playout::heard_text`] estimates
//! the words already played: whole sentences played, plus the share of the current
//! sentence's words proportional to the share of its audio played.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use super::audio::{AudioFrame, move_front, samples_for};

#[derive(Debug)]
struct Sentence {
    text: String,
    audio: VecDeque<i16>,
    synthesized: bool,
    total_samples: usize,
    played_samples: usize,
}

/// Queued reply audio at one output rate.
#[derive(Debug)]
pub struct Playout {
    sample_rate: u32,
    sentences: BTreeMap<u64, Sentence>,
    next_id: u64,
    heard: Vec<String>,
}

impl Playout {
    /// An empty queue for audio at `sample_rate`.
    pub fn new(sample_rate: u32) -> Self {
        Playout {
            sample_rate,
            sentences: BTreeMap::new(),
            next_id: 0,
            heard: Vec::new(),
        }
    }

    /// Registers a sentence that will be synthesized; returns its id.
    pub fn add_sentence(&mut self, text: &str) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.sentences.insert(
            id,
            Sentence {
                text: text.to_string(),
                audio: VecDeque::new(),
                synthesized: false,
                total_samples: 0,
                played_samples: 0,
            },
        );
        id
    }

    /// Adds synthesized audio (already at this queue's rate) to sentence `id`. Audio for
    /// a sentence no longer queued (interrupted) is dropped.
    pub fn add_audio(&mut self, id: u64, frame: &AudioFrame) {
        if let Some(sentence) = self.sentences.get_mut(&id) {
            sentence.audio.extend(frame.samples());
            sentence.total_samples += frame.samples().len();
        }
    }

    /// Sentence `id` has all its audio (or failed: then it is skipped).
    pub fn finish_sentence(&mut self, id: u64) {
        if let Some(sentence) = self.sentences.get_mut(&id) {
            sentence.synthesized = true;
        }
    }

    /// Sentence `id` could not be synthesized. With no audio at all it is dropped and its
    /// text returned (to be reported as unspoken); otherwise what arrived still plays.
    pub fn fail_sentence(&mut self, id: u64) -> Option<String> {
        let sentence = self.sentences.get_mut(&id)?;
        if sentence.total_samples == 0 {
            return self.sentences.remove(&id).map(|s| s.text);
        }
        sentence.synthesized = true;
        None
    }

    /// Takes up to `duration` of audio in order. Stops early at a sentence still being
    /// synthesized (the caller should then wait or play silence).
    pub fn pop(&mut self, duration: Duration) -> Option<AudioFrame> {
        let wanted = samples_for(self.sample_rate, duration);
        let mut out = Vec::with_capacity(wanted);
        while out.len() < wanted {
            let Some((&id, sentence)) = self.sentences.iter_mut().next() else {
                break;
            };
            let take = (wanted - out.len()).min(sentence.audio.len());
            move_front(&mut sentence.audio, take, &mut out);
            sentence.played_samples += take;
            if sentence.audio.is_empty() {
                if sentence.synthesized {
                    let done = self.sentences.remove(&id);
                    if let Some(done) = done.filter(|s| s.total_samples > 0) {
                        self.heard.push(done.text);
                    }
                    continue;
                }
                break;
            }
        }
        if out.is_empty() {
            None
        } else {
            Some(AudioFrame::mono(out, self.sample_rate))
        }
    }

    /// Whether any sentence is queued (playing, waiting for audio, or to come).
    pub fn is_busy(&self) -> bool {
        !self.sentences.is_empty()
    }

    /// Whether audio is ready to play now.
    pub fn has_audio(&self) -> bool {
        self.sentences
            .values()
            .next()
            .is_some_and(|sentence| !sentence.audio.is_empty())
    }

    /// Whether the head sentence is waiting for synthesis (an underrun).
    pub fn is_waiting_for_audio(&self) -> bool {
        self.sentences
            .values()
            .next()
            .is_some_and(|sentence| sentence.audio.is_empty() && !sentence.synthesized)
    }

    /// The text heard of the current reply: finished sentences, plus the played share of
    /// the current one's words.
    pub fn heard_text(&self) -> String {
        let mut parts = self.heard.clone();
        if let Some(current) = self.sentences.values().next()
            && current.played_samples > 0
            && current.total_samples > 0
        {
            let words: Vec<&str> = current.text.split_whitespace().collect();
            let share = current.played_samples as f64 / current.total_samples as f64;
            let count = ((words.len() as f64) * share).floor() as usize;
            if count > 0 {
                parts.push(words[..count.min(words.len())].join(" "));
            }
        }
        parts.join(" ")
    }

    /// Stops everything: drops queued audio; returns the text that was heard.
    pub fn interrupt(&mut self) -> String {
        let heard = self.heard_text();
        self.sentences.clear();
        self.heard.clear();
        heard
    }

    /// A reply has fully played (or was interrupted): start a new heard-text record.
    pub fn reset_heard(&mut self) {
        self.heard.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(ms: u64) -> AudioFrame {
        AudioFrame::mono(
            vec![100; samples_for(1000, Duration::from_millis(ms))],
            1000,
        )
    }

    #[test]
    fn sentences_play_in_order_even_when_synthesized_out_of_order() {
        let mut playout = Playout::new(1000);
        let first = playout.add_sentence("Hello there.");
        let second = playout.add_sentence("How are you?");
        playout.add_audio(second, &audio(100));
        playout.finish_sentence(second);
        assert!(playout.is_waiting_for_audio());
        assert_eq!(playout.pop(Duration::from_millis(20)), None);
        playout.add_audio(first, &audio(40));
        playout.finish_sentence(first);
        let frame = playout.pop(Duration::from_millis(80)).unwrap();
        assert_eq!(frame.samples().len(), 80);
        assert_eq!(playout.heard_text(), "Hello there. How");
    }

    #[test]
    fn interrupting_reports_the_played_words_and_drops_the_rest() {
        let mut playout = Playout::new(1000);
        let id = playout.add_sentence("one two three four");
        playout.add_audio(id, &audio(400));
        playout.finish_sentence(id);
        playout.pop(Duration::from_millis(200));
        assert_eq!(playout.interrupt(), "one two");
        assert!(!playout.is_busy());
        playout.add_audio(id, &audio(100));
        assert!(
            !playout.has_audio(),
            "late audio of a dropped sentence is ignored"
        );
    }
}
