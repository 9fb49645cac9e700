//! What the agent may never say on its own: a price or total, an order number, or that the
//! order is confirmed, unless a tool or the instructions produced it. A small model invents
//! all three ("Your order is confirmed, number 12345, total $120.00" with nothing stored);
//! this check drops such sentences before the caller hears them.

use super::money::Cents;
use crate::agent::{Facts, ReplyCheck, Verdict};

/// The tool whose success makes "your order is confirmed" true.
const CONFIRM_ORDER: &str = "confirm_order";

/// Drops sentences with a price, total or order number no tool produced, and claims that
/// the order is placed before `confirm_order` succeeded.
#[derive(Debug, Default, Clone)]
pub struct OrderFactsGuard {
    /// What is said when a whole reply was dropped.
    pub fallback: String,
}

impl ReplyCheck for OrderFactsGuard {
    fn fallback(&self) -> Option<String> {
        (!self.fallback.is_empty()).then(|| self.fallback.clone())
    }

    fn check(&self, sentence: &str, facts: &Facts<'_>) -> Verdict {
        let invented_amount = money_amounts(sentence)
            .into_iter()
            .any(|amount| !facts.mention(&amount.to_string()));
        let invented_number = order_numbers(sentence)
            .into_iter()
            .any(|number| !facts.mention(&format!("order number {number}")));
        let premature = claims_order_placed(sentence) && !facts.tool_succeeded(CONFIRM_ORDER);
        if invented_amount || invented_number || premature {
            tracing::warn!(
                sentence,
                invented_amount,
                invented_number,
                premature,
                "dropped a sentence with facts no tool produced"
            );
            Verdict::Drop
        } else {
            Verdict::Keep
        }
    }
}

/// Amounts of money in `text`: `$12`, `$12.5`, `$12.50`, `12 dollars`, `12.50 dollars`.
fn money_amounts(text: &str) -> Vec<Cents> {
    let mut amounts = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '$' {
            let (number, end) = read_number(&chars, i + 1);
            if let Some(cents) = number.as_deref().and_then(parse_cents) {
                amounts.push(cents);
            }
            i = end.max(i + 1);
            continue;
        }
        if chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_ascii_alphanumeric()) {
            let (number, end) = read_number(&chars, i);
            let rest: String = chars[end..].iter().collect();
            let rest = rest.trim_start().to_lowercase();
            if (rest.starts_with("dollar") || rest.starts_with("bucks"))
                && let Some(cents) = number.as_deref().and_then(parse_cents)
            {
                amounts.push(cents);
            }
            i = end.max(i + 1);
            continue;
        }
        i += 1;
    }
    amounts
}

/// The number starting at `start` (digits, one `.` and its decimals; `,` thousands
/// separators skipped) and where it ends.
fn read_number(chars: &[char], start: usize) -> (Option<String>, usize) {
    let mut number = String::new();
    let mut end = start;
    while end < chars.len() {
        let c = chars[end];
        let next_is_digit = chars.get(end + 1).is_some_and(char::is_ascii_digit);
        let decimal_point = c == '.' && next_is_digit && !number.contains('.');
        let thousands = c == ',' && next_is_digit && !number.contains('.');
        if c.is_ascii_digit() || decimal_point {
            number.push(c);
        } else if !thousands {
            break;
        }
        end += 1;
    }
    ((!number.is_empty()).then_some(number), end)
}

fn parse_cents(number: &str) -> Option<Cents> {
    number.parse().ok()
}

/// Order numbers stated in `text`: the number after "order number", "order no.", "order #"
/// or "order" itself ("your order 12 is ready"), also with "is" between ("your order
/// number is 12").
fn order_numbers(text: &str) -> Vec<u64> {
    let lower = text.to_lowercase();
    let mut numbers = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("order") {
        let after = from + at + "order".len();
        let rest = lower[after..].trim_start();
        let rest = ["number", "no.", "#", "num"]
            .iter()
            .find_map(|word| rest.strip_prefix(word))
            .unwrap_or(rest)
            .trim_start_matches([' ', ':', '#']);
        let rest = ["is ", "was ", "will be "]
            .iter()
            .find_map(|word| rest.strip_prefix(word))
            .unwrap_or(rest)
            .trim_start_matches([' ', '#']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(number) = digits.parse() {
            numbers.push(number);
        }
        from = after;
    }
    numbers
}

/// Whether `sentence` tells the caller their order is placed (not asks, not denies it).
fn claims_order_placed(sentence: &str) -> bool {
    let lower = sentence.to_lowercase();
    if lower.trim_end().ends_with('?') || !lower.contains("order") {
        return false;
    }
    let negated = [
        "not ", "n't", "before", "once ", "after ", "when ", "will be", "can ",
    ]
    .iter()
    .any(|word| lower.contains(word));
    let claims = [
        "confirmed",
        "been placed",
        "is placed",
        "was placed",
        "placed your order",
        "is on its way",
        "being prepared",
        "all set",
    ]
    .iter()
    .any(|phrase| lower.contains(phrase));
    claims && !negated
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{ChatItem, ChatRequest, RequestPurpose};

    fn request(instructions: &str, outputs: &[(&str, &str)]) -> ChatRequest {
        ChatRequest {
            instructions: instructions.into(),
            items: outputs
                .iter()
                .map(|(name, output)| ChatItem::FunctionOutput {
                    call_id: "c".into(),
                    name: (*name).into(),
                    output: (*output).into(),
                    is_error: false,
                })
                .collect(),
            tools: Vec::new(),
            purpose: RequestPurpose::Reply,
            fill: None,
        }
    }

    fn verdict(sentence: &str, request: &ChatRequest) -> Verdict {
        OrderFactsGuard::default().check(sentence, &Facts::of(request))
    }

    #[test]
    fn amounts_are_read_in_the_ways_people_write_them() {
        let cents = |t: &str| money_amounts(t).iter().map(|c| c.0).collect::<Vec<_>>();
        assert_eq!(
            cents("That's $12.50, or $1,200 total."),
            vec![1250, 120_000]
        );
        assert_eq!(cents("It is 35 dollars and $9.5"), vec![3500, 950]);
        assert_eq!(cents("Two tiramisu at table 4."), Vec::<u64>::new());
    }

    #[test]
    fn prices_must_come_from_the_menu_or_the_tools() {
        let menu = request("Subtotal: $20.00.", &[("check_menu", "Tiramisu $10.00")]);
        assert_eq!(verdict("Your subtotal is $20.00.", &menu), Verdict::Keep);
        assert_eq!(verdict("Tiramisu is 10 dollars.", &menu), Verdict::Keep);
        assert_eq!(verdict("The Ribeye Steak is $50.00.", &menu), Verdict::Drop);
        assert_eq!(
            verdict("The total is $120.00 with tip.", &menu),
            Verdict::Drop
        );
    }

    #[test]
    fn order_numbers_and_confirmations_need_the_stored_order() {
        let before = request("Read the order back.", &[]);
        assert_eq!(
            verdict("Your order has been confirmed.", &before),
            Verdict::Drop
        );
        assert_eq!(
            verdict("Your order number is 12345.", &before),
            Verdict::Drop
        );
        assert_eq!(verdict("Shall I place the order?", &before), Verdict::Keep);
        assert_eq!(
            verdict("Once confirmed, your order will be placed.", &before),
            Verdict::Keep
        );
        let after = request(
            "",
            &[(CONFIRM_ORDER, "Order number 3 is confirmed and saved.")],
        );
        assert_eq!(
            verdict("Your order is confirmed, order number 3.", &after),
            Verdict::Keep
        );
        assert_eq!(verdict("Your order number is 4.", &after), Verdict::Drop);
    }
}
