//! Streaming sentence splitting: text deltas from a model in, whole sentences out, each as
//! soon as it is complete, so text-to-speech can start on the first sentence while the
//! model is still writing the rest.
//!
//! A sentence ends at `.`, `!`, `?` or `…` (closing quotes and brackets may follow) when
//! whitespace comes next, and at a line break. A full stop after a digit with a digit next
//! (`$12.50`) is no end, because no whitespace follows; neither is one after a known
//! abbreviation such as `Mr.` or `e.g.`. Sentences shorter than [`MIN_SENTENCE_CHARS`] are
//! held back and joined to the next one, so speech is not synthesized for a lone "Ok.".
//!
//! ```
//! use bella_vista::voice::sentences::SentenceSplitter;
//!
//! let mut splitter = SentenceSplitter::new();
//! assert!(splitter.push("The Tiramisu is $7.").is_empty());
//! assert_eq!(
//!     splitter.push("50 today. Anything"),
//!     ["The Tiramisu is $7.50 today."]
//! );
//! assert_eq!(splitter.push(" else?").len(), 0);
//! assert_eq!(splitter.finish().as_deref(), Some("Anything else?"));
//! ```

/// Sentences with fewer characters than this are joined to the next sentence.
pub const MIN_SENTENCE_CHARS: usize = 12;

/// Abbreviations (lower case, without the final full stop) after which a full stop never
/// ends a sentence: what follows them is almost always part of the same sentence.
const NEVER_FINAL: &[&str] = &[
    "mr", "mrs", "ms", "dr", "prof", "st", "jr", "sr", "mt", "vs", "e.g", "i.e", "cf", "approx",
    "fig", "ca",
];

/// Abbreviations that end a sentence only when the next word starts with a capital letter.
const FINAL_BEFORE_CAPITAL: &[&str] = &["etc", "a.m", "p.m", "inc", "ltd", "co", "oz", "lb", "min"];

/// Characters that end a sentence when whitespace follows.
const TERMINATORS: &[char] = &['.', '!', '?', '…'];

/// Characters that may sit between a terminator and the whitespace after it.
const CLOSERS: &[char] = &['"', '\'', '”', '’', ')', ']', '»'];

/// Splits streamed text into sentences.
///
/// Feed deltas with [`push`](Self::push), then call [`finish`](Self::finish) for whatever
/// is left when the text ends. Sentences come out trimmed and never empty.
#[derive(Debug, Clone, Default)]
pub struct SentenceSplitter {
    /// Text not yet emitted as (part of) a sentence.
    buffer: String,
    /// Byte offset in `buffer` before which no sentence end can be found any more.
    scan_from: usize,
    /// Complete sentences held back because they were too short to send alone.
    held: String,
}

/// What scanning the buffer found.
enum Scan {
    /// A sentence ends at byte `end`; the rest of the text starts at `end` too.
    End(usize),
    /// No end yet; scanning resumes at this offset when more text arrives.
    Undecided(usize),
}

impl SentenceSplitter {
    /// A splitter with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `delta` and returns the sentences it completed, oldest first.
    pub fn push(&mut self, delta: &str) -> Vec<String> {
        self.buffer.push_str(delta);
        let mut sentences = Vec::new();
        loop {
            match self.scan() {
                Scan::End(end) => {
                    let sentence = self.buffer[..end].trim().to_owned();
                    self.buffer.drain(..end);
                    self.scan_from = 0;
                    if let Some(sentence) = self.hold_if_short(sentence) {
                        sentences.push(sentence);
                    }
                }
                Scan::Undecided(resume) => {
                    self.scan_from = resume;
                    return sentences;
                }
            }
        }
    }

    /// Ends the text: returns what is left (held short sentences included), if anything,
    /// and leaves the splitter empty for new text.
    pub fn finish(&mut self) -> Option<String> {
        let rest = std::mem::take(&mut self.buffer);
        self.scan_from = 0;
        let text = join(std::mem::take(&mut self.held), rest.trim());
        (!text.is_empty()).then_some(text)
    }

    /// `sentence`, with any held text before it, unless the result is still too short.
    fn hold_if_short(&mut self, sentence: String) -> Option<String> {
        let text = join(std::mem::take(&mut self.held), &sentence);
        if text.chars().count() < MIN_SENTENCE_CHARS {
            self.held = text;
            None
        } else {
            Some(text)
        }
    }

    /// Looks for the first sentence end at or after `scan_from`.
    fn scan(&self) -> Scan {
        let text = &self.buffer;
        for (index, c) in text[self.scan_from..].char_indices() {
            let index = self.scan_from + index;
            if c == '\n' {
                return Scan::End(index + 1);
            }
            if !TERMINATORS.contains(&c) {
                continue;
            }
            let end = index
                + text[index..]
                    .char_indices()
                    .find(|&(_, c)| !TERMINATORS.contains(&c) && !CLOSERS.contains(&c))
                    .map_or(text.len() - index, |(offset, _)| offset);
            match text[end..].chars().next() {
                None => return Scan::Undecided(index),
                Some(next) if !next.is_whitespace() => continue,
                Some(_) => {}
            }
            if c != '.' {
                return Scan::End(end);
            }
            let word = word_before(&text[..index]);
            if NEVER_FINAL.contains(&word.as_str()) || is_initial(&word) {
                continue;
            }
            if FINAL_BEFORE_CAPITAL.contains(&word.as_str()) {
                let rest = &text[end..];
                match rest.trim_start_matches([' ', '\t']).chars().next() {
                    None => return Scan::Undecided(index),
                    Some(next) if next == '\n' || next == '\r' || next.is_uppercase() => {
                        return Scan::End(end);
                    }
                    Some(_) => continue,
                }
            }
            return Scan::End(end);
        }
        Scan::Undecided(text.len())
    }
}

/// The lower-cased word that ends `text`, without opening quotes or brackets.
fn word_before(text: &str) -> String {
    let word = text.rsplit(char::is_whitespace).next().unwrap_or_default();
    word.trim_start_matches(['"', '\'', '“', '‘', '(', '[', '«'])
        .to_lowercase()
}

/// Whether `word` is a single letter, like the initial in "J. Smith".
fn is_initial(word: &str) -> bool {
    let mut chars = word.chars();
    matches!((chars.next(), chars.next()), (Some(c), None) if c.is_alphabetic())
}

/// `first` and `second` separated by a space (either may be empty).
fn join(first: String, second: &str) -> String {
    match (first.is_empty(), second.is_empty()) {
        (true, _) => second.to_owned(),
        (_, true) => first,
        (false, false) => format!("{first} {second}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sentence of `text` fed in pieces of `size` characters, `finish` included.
    fn split_in_pieces(text: &str, size: usize) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        let mut splitter = SentenceSplitter::new();
        let mut sentences = Vec::new();
        for piece in chars.chunks(size) {
            sentences.extend(splitter.push(&piece.iter().collect::<String>()));
        }
        sentences.extend(splitter.finish());
        sentences
    }

    fn split_whole(text: &str) -> Vec<String> {
        split_in_pieces(text, usize::MAX / 2)
    }

    #[test]
    fn sentences_come_out_as_soon_as_whitespace_follows_the_end() {
        let mut splitter = SentenceSplitter::new();
        assert!(splitter.push("Welcome to our restaurant").is_empty());
        assert!(splitter.push("!").is_empty(), "the end is not certain yet");
        assert_eq!(splitter.push(" What"), ["Welcome to our restaurant!"]);
        assert_eq!(splitter.push(" can I get you? I"), ["What can I get you?"]);
        assert_eq!(splitter.finish().as_deref(), Some("I"));
        assert_eq!(splitter.finish(), None);
    }

    #[test]
    fn one_character_at_a_time_gives_the_same_sentences_as_one_piece() {
        let text = "Great choice! The Bruschetta is $8.50 and the Tiramisu is $7.25. \
                    Would you like anything else, e.g. a drink? Mr. Rossi recommends it...\n\
                    Your total comes to $15.75.";
        let expected = [
            "Great choice!",
            "The Bruschetta is $8.50 and the Tiramisu is $7.25.",
            "Would you like anything else, e.g. a drink?",
            "Mr. Rossi recommends it...",
            "Your total comes to $15.75.",
        ];
        assert_eq!(split_whole(text), expected);
        for size in [1, 2, 3, 5, 7] {
            assert_eq!(split_in_pieces(text, size), expected, "pieces of {size}");
        }
    }

    #[test]
    fn prices_split_across_deltas_stay_whole() {
        let mut splitter = SentenceSplitter::new();
        let mut sentences = Vec::new();
        for delta in [
            "That", " comes", " to", " $", "12", ".", "50", ".", " Shall", " I",
        ] {
            sentences.extend(splitter.push(delta));
        }
        assert_eq!(sentences, ["That comes to $12.50."]);
        assert_eq!(splitter.finish().as_deref(), Some("Shall I"));
    }

    #[test]
    fn a_price_at_the_end_of_a_sentence_still_ends_it() {
        assert_eq!(
            split_whole("Your total is $12. Thanks for calling."),
            ["Your total is $12.", "Thanks for calling."]
        );
    }

    #[test]
    fn short_sentences_are_joined_to_the_next() {
        assert_eq!(
            split_whole("Ok. Sure. One Margherita pizza, coming up."),
            ["Ok. Sure. One Margherita pizza, coming up."]
        );
        assert_eq!(split_whole("Ok."), ["Ok."], "what is left still comes out");
        assert_eq!(
            split_whole("Thank you very much! Bye."),
            ["Thank you very much!", "Bye."]
        );
    }

    #[test]
    fn line_breaks_end_sentences_and_blank_lines_vanish() {
        assert_eq!(
            split_whole("Here is your order:\n\n- 2 Bruschetta\n- 1 Tiramisu\nAnything else?"),
            [
                "Here is your order:",
                "- 2 Bruschetta",
                "- 1 Tiramisu",
                "Anything else?"
            ]
        );
    }

    #[test]
    fn abbreviations_before_a_capital_may_end_a_sentence() {
        assert_eq!(
            split_whole("We open at 5 p.m. See you then, have a good day."),
            ["We open at 5 p.m.", "See you then, have a good day."]
        );
        assert_eq!(
            split_whole("We open at 5 p.m. on weekdays and noon on Sundays."),
            ["We open at 5 p.m. on weekdays and noon on Sundays."]
        );
        assert_eq!(
            split_whole("Ask for Dr. Bianchi or J. Verdi at the counter."),
            ["Ask for Dr. Bianchi or J. Verdi at the counter."]
        );
    }

    #[test]
    fn quotes_and_brackets_after_the_end_belong_to_the_sentence() {
        assert_eq!(
            split_whole("She said \"that was delicious!\" Then she left a tip (a big one.) Nice."),
            [
                "She said \"that was delicious!\"",
                "Then she left a tip (a big one.)",
                "Nice."
            ]
        );
    }

    #[test]
    fn finish_resets_the_splitter() {
        let mut splitter = SentenceSplitter::new();
        splitter.push("Ok. Half a sent");
        assert_eq!(splitter.finish().as_deref(), Some("Ok. Half a sent"));
        assert_eq!(
            splitter.push("A fresh start here. "),
            ["A fresh start here."]
        );
    }

    #[test]
    fn whitespace_only_text_gives_nothing() {
        assert!(split_whole("  \n \n ").is_empty());
        assert!(split_whole("").is_empty());
    }
}
