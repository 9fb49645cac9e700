//! The agent's instructions, kept as text files in `prompts/`.
//!
//! The files are compiled into the binary, so it runs anywhere; a prompts directory given
//! at run time replaces any of them, so wording can be tuned without a rebuild.
//! Placeholders such as `{subtotal}` are filled in with [`fill`].

use std::path::{Path, PathBuf};

/// Why a prompts directory could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read prompt {path}: {source}")]
pub struct PromptError {
    path: PathBuf,
    source: std::io::Error,
}

/// Every prompt the Bella Vista agent uses.
#[derive(Debug, Clone)]
pub struct Prompts {
    /// The order taker's instructions.
    pub order_taker: String,
    /// How the order taker greets.
    pub greeting: String,
    /// Instructions of one item task.
    pub collect_order_item: String,
    /// What the item task says when it starts.
    pub collect_order_item_enter: String,
    /// Instructions of the payment task.
    pub collect_payment: String,
    /// What the payment task says when it starts.
    pub collect_payment_enter: String,
    /// Instructions of the read-back task.
    pub review_order: String,
    /// What the read-back task says when it starts.
    pub review_order_enter: String,
    /// Instructions for the order summary.
    pub summary: String,
    /// What the caller hears when the model is unreachable.
    pub apology: String,
    /// What the caller hears when their words could not be transcribed.
    pub did_not_catch: String,
    /// What the agent says before it hangs up at the caller's request.
    pub goodbye: String,
    /// What the agent asks a caller who has gone quiet.
    pub still_there: String,
    /// What the agent says before it hangs up on a caller who stayed quiet.
    pub silence_goodbye: String,
    /// What the caller hears before a transfer to staff.
    pub transferring: String,
    /// What the caller hears when the order could not be stored (the database is down).
    pub order_not_placed: String,
    /// What the caller hears when the transfer did not work.
    pub transfer_failed: String,
    /// How a key press without a meaning of its own is put to the model (`{key}`).
    pub key_press: String,
    /// How key 2 during the read-back is put to the model.
    pub review_key_change: String,
    /// What an item task asks, from code, when the model makes no progress.
    pub item_stall: String,
    /// What the payment task asks, from code, when the model makes no progress.
    pub payment_stall: String,
    /// What the read-back asks, from code, when the model makes no progress.
    pub review_stall: String,
    /// What is said when every sentence of a reply stated something no tool produced.
    pub guard_fallback: String,
    /// What the first item task says on entering, from code, for a small model.
    pub item_say: String,
    /// Words callers say besides the dishes, one per line: given to speech-to-text as a
    /// spelling hint after the menu (the payment words; "no tip" kept whisper from hearing
    /// "cash" as "cashew").
    pub speech_vocabulary: String,
    /// Words in a caller's turn that mean more items are coming, one per line ("and then
    /// something else"): with a small model, an item confirmed on such a turn is never the
    /// last (it read them as "no more items").
    pub more_items_words: String,
    /// Words in a caller's turn that ask to take a dish off the order, one per line
    /// ("cancel the cheesecake"): with a small model, an item brought back on such a turn
    /// (the model went back to it instead of calling `remove_item`) cancels itself
    /// instead of asking what the caller wants instead.
    pub cancel_words: String,
    /// What a later item task says on entering, from code, for a small model.
    pub item_next_say: String,
    /// What an item task says on entering again to change its item (`{item}`), from code,
    /// for a small model.
    pub item_change_say: String,
    /// How the order taker greets, from code, for a small model.
    pub greeting_say: String,
    /// What the payment task says on entering, from code, for a small model.
    pub payment_say: String,
    /// What the read-back says on entering, from code, for a small model.
    pub review_say: String,
}

macro_rules! embedded {
    ($name:literal) => {
        ($name, include_str!(concat!("../../prompts/", $name, ".md")))
    };
}

const EMBEDDED: [(&str, &str); 32] = [
    embedded!("order_taker"),
    embedded!("greeting"),
    embedded!("collect_order_item"),
    embedded!("collect_order_item_enter"),
    embedded!("collect_payment"),
    embedded!("collect_payment_enter"),
    embedded!("review_order"),
    embedded!("review_order_enter"),
    embedded!("summary"),
    embedded!("apology"),
    embedded!("did_not_catch"),
    embedded!("goodbye"),
    embedded!("still_there"),
    embedded!("silence_goodbye"),
    embedded!("transferring"),
    embedded!("order_not_placed"),
    embedded!("transfer_failed"),
    embedded!("key_press"),
    embedded!("review_key_change"),
    embedded!("item_stall"),
    embedded!("payment_stall"),
    embedded!("review_stall"),
    embedded!("guard_fallback"),
    embedded!("item_say"),
    embedded!("speech_vocabulary"),
    embedded!("more_items_words"),
    embedded!("cancel_words"),
    embedded!("item_next_say"),
    embedded!("item_change_say"),
    embedded!("greeting_say"),
    embedded!("payment_say"),
    embedded!("review_say"),
];

impl Default for Prompts {
    /// The prompts compiled into the binary.
    fn default() -> Self {
        Self::build(|name| {
            EMBEDDED
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| text.to_string())
                .unwrap_or_default()
        })
    }
}

impl Prompts {
    /// The embedded prompts, each replaced by `DIR/NAME.md` where that file exists.
    pub fn load(dir: &Path) -> Result<Self, PromptError> {
        let mut texts = Vec::new();
        for (name, embedded) in EMBEDDED {
            let path = dir.join(format!("{name}.md"));
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => embedded.to_string(),
                Err(source) => return Err(PromptError { path, source }),
            };
            texts.push((name, text));
        }
        Ok(Self::build(|name| {
            texts
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, text)| text.clone())
                .unwrap_or_default()
        }))
    }

    fn build(get: impl Fn(&str) -> String) -> Self {
        let get = |name: &str| get(name).trim().to_string();
        Prompts {
            order_taker: get("order_taker"),
            greeting: get("greeting"),
            collect_order_item: get("collect_order_item"),
            collect_order_item_enter: get("collect_order_item_enter"),
            collect_payment: get("collect_payment"),
            collect_payment_enter: get("collect_payment_enter"),
            review_order: get("review_order"),
            review_order_enter: get("review_order_enter"),
            summary: get("summary"),
            apology: get("apology"),
            did_not_catch: get("did_not_catch"),
            goodbye: get("goodbye"),
            still_there: get("still_there"),
            silence_goodbye: get("silence_goodbye"),
            transferring: get("transferring"),
            order_not_placed: get("order_not_placed"),
            transfer_failed: get("transfer_failed"),
            key_press: get("key_press"),
            review_key_change: get("review_key_change"),
            item_stall: get("item_stall"),
            payment_stall: get("payment_stall"),
            review_stall: get("review_stall"),
            guard_fallback: get("guard_fallback"),
            item_say: get("item_say"),
            speech_vocabulary: get("speech_vocabulary"),
            more_items_words: get("more_items_words"),
            cancel_words: get("cancel_words"),
            item_next_say: get("item_next_say"),
            item_change_say: get("item_change_say"),
            greeting_say: get("greeting_say"),
            payment_say: get("payment_say"),
            review_say: get("review_say"),
        }
    }
}

/// Whether `text` contains any of the phrases of `word_list` (one per line, any case): the
/// small-model checks of a caller's turn (`more_items_words`, `cancel_words`).
pub fn mentions_any(text: &str, word_list: &str) -> bool {
    let text = text.to_lowercase();
    word_list
        .lines()
        .map(|words| words.trim().to_lowercase())
        .any(|words| !words.is_empty() && text.contains(&words))
}

/// Replaces each `{key}` in `template` with its value.
pub fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut text = template.to_string();
    for (key, value) in values {
        text = text.replace(&format!("{{{key}}}"), value);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_prompts_are_all_present() {
        let prompts = Prompts::default();
        assert!(prompts.order_taker.contains("take_order"));
        assert!(prompts.collect_payment.contains("{subtotal}"));
        assert!(!prompts.apology.is_empty());
    }

    #[test]
    fn a_directory_overrides_only_the_files_it_has() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("greeting.md"), "Say ciao.").unwrap();
        let prompts = Prompts::load(dir.path()).unwrap();
        assert_eq!(prompts.greeting, "Say ciao.");
        assert_eq!(prompts.summary, Prompts::default().summary);
    }

    #[test]
    fn fill_replaces_placeholders() {
        assert_eq!(
            fill("Total {total}.", &[("total", "$3.00")]),
            "Total $3.00."
        );
    }
}
