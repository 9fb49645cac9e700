//! Evaluating an agent against a real model with scripted callers: a [`RuleCaller`] answers
//! the agent by simple rules (the first rule whose words appear in what the agent just
//! said), and [`converse`] plays the conversation through a real session, recording each
//! turn: what was said, which tools ran, what the reply check corrected, and how long the
//! agent took. It is the offline counterpart of an LLM-judged test: the judge is the state
//! the tools leave behind (an application checks it), and the rules make runs repeatable.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::events::SessionEvent;
use super::session::SessionHandle;

/// One rule of a scripted caller.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerRule {
    /// Words or phrases; the rule applies when any of them is in the agent's last words
    /// (case-insensitive).
    pub when: Vec<String>,
    /// What the caller then says.
    pub say: String,
    /// Whether the rule may be used only once.
    #[serde(default)]
    pub once: bool,
}

/// What a scripted caller says: first `opening`, then by the rules.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CallerScript {
    /// The caller's first words.
    pub opening: String,
    /// Answers, tried in order.
    #[serde(default, rename = "answer")]
    pub answers: Vec<AnswerRule>,
    /// What the caller says when no rule applies.
    pub fallback: String,
    /// What the caller says once the goal is reached (the agent should end the call).
    #[serde(default)]
    pub goodbye: Option<String>,
    /// Caller turns before the conversation counts as stuck.
    #[serde(default = "default_max_turns")]
    pub max_turns: usize,
    /// Seconds of conversation before it counts as stuck (a slow model on a busy machine
    /// must not hold an eval run for long).
    #[serde(default = "default_max_seconds")]
    pub max_seconds: u64,
}

fn default_max_turns() -> usize {
    16
}

fn default_max_seconds() -> u64 {
    300
}

/// A caller that answers by its script's rules.
#[derive(Debug, Clone)]
pub struct RuleCaller {
    script: CallerScript,
    used: Vec<bool>,
}

impl RuleCaller {
    /// A caller following `script`.
    pub fn new(script: CallerScript) -> Self {
        let used = vec![false; script.answers.len()];
        RuleCaller { script, used }
    }

    /// What the caller says after the agent said `agent_said`.
    pub fn answer(&mut self, agent_said: &str) -> String {
        let heard = agent_said.to_lowercase();
        for (index, rule) in self.script.answers.iter().enumerate() {
            if rule.once && self.used[index] {
                continue;
            }
            if rule.when.iter().any(|w| heard.contains(&w.to_lowercase())) {
                self.used[index] = true;
                return rule.say.clone();
            }
        }
        self.script.fallback.clone()
    }
}

/// One caller turn and the agent's answer to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnRecord {
    /// What the caller said.
    pub caller: String,
    /// What the agent said, message by message.
    pub agent: Vec<String>,
    /// Tools that ran: name, arguments, and whether they failed.
    pub tools: Vec<ToolRecord>,
    /// Sentences the reply check kept the caller from hearing.
    pub corrected: Vec<String>,
    /// From the caller's words to the agent listening again, seconds.
    pub seconds: f64,
}

/// A tool call in a turn.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolRecord {
    /// The tool.
    pub name: String,
    /// Its arguments as the model wrote them.
    pub arguments: String,
    /// Whether it answered with an error.
    pub failed: bool,
}

/// A whole scripted conversation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversation {
    /// What the agent said before the caller spoke.
    pub greeting: Vec<String>,
    /// The caller's turns, in order.
    pub turns: Vec<TurnRecord>,
    /// Whether the goal was reached.
    pub reached_goal: bool,
    /// Whether the agent ended the call (hung up or the session ended).
    pub agent_ended: bool,
}

/// Plays `caller` against `session` until `goal` holds (then the caller says its goodbye,
/// if any, and the conversation ends after the agent's answer), the agent ends the call,
/// or the caller runs out of turns. `goal` is asked after every agent answer.
pub async fn converse(
    session: &mut SessionHandle,
    mut caller: RuleCaller,
    mut goal: impl FnMut() -> bool,
) -> Conversation {
    let greeting = session.until_listening().await;
    let mut last_words = agent_words(&greeting).join(" ");
    let mut conversation = Conversation {
        greeting: agent_words(&greeting),
        turns: Vec::new(),
        reached_goal: false,
        agent_ended: ended(&greeting),
    };
    let mut line = caller.script.opening.clone();
    let max_turns = caller.script.max_turns;
    let deadline = Instant::now() + Duration::from_secs(caller.script.max_seconds);
    while !conversation.agent_ended
        && conversation.turns.len() < max_turns
        && Instant::now() < deadline
    {
        let started = Instant::now();
        let events = session.send(&line).await;
        let turn = record(line, &events, started.elapsed());
        last_words = if turn.agent.is_empty() {
            last_words
        } else {
            turn.agent.join(" ")
        };
        conversation.agent_ended = ended(&events);
        conversation.turns.push(turn);
        if conversation.reached_goal {
            break;
        }
        if goal() {
            conversation.reached_goal = true;
            match caller.script.goodbye.clone() {
                Some(goodbye) if !conversation.agent_ended => line = goodbye,
                _ => break,
            }
            continue;
        }
        line = caller.answer(&last_words);
    }
    conversation
}

fn record(caller: String, events: &[SessionEvent], took: Duration) -> TurnRecord {
    let mut tools = Vec::new();
    let mut corrected = Vec::new();
    for event in events {
        match event {
            SessionEvent::FunctionCalled {
                name, arguments, ..
            } => tools.push(ToolRecord {
                name: name.clone(),
                arguments: arguments.clone(),
                failed: false,
            }),
            SessionEvent::FunctionReturned { is_error, .. } => {
                if let Some(tool) = tools.last_mut() {
                    tool.failed = *is_error;
                }
            }
            SessionEvent::ReplyCorrected { sentence, .. } => corrected.push(sentence.clone()),
            _ => {}
        }
    }
    TurnRecord {
        caller,
        agent: agent_words(events),
        tools,
        corrected,
        seconds: took.as_secs_f64(),
    }
}

fn agent_words(events: &[SessionEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|event| match event {
            SessionEvent::AgentMessage { text } => Some(text.clone()),
            _ => None,
        })
        .collect()
}

fn ended(events: &[SessionEvent]) -> bool {
    events.iter().any(|event| {
        matches!(
            event,
            SessionEvent::HangUpRequested | SessionEvent::SessionEnded
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script() -> CallerScript {
        CallerScript {
            opening: "Hi.".into(),
            answers: vec![
                AnswerRule {
                    when: vec!["pay".into()],
                    say: "Actually, change my first item.".into(),
                    once: true,
                },
                AnswerRule {
                    when: vec!["pay".into(), "card".into()],
                    say: "Card.".into(),
                    once: false,
                },
            ],
            fallback: "Two tiramisu.".into(),
            goodbye: None,
            max_turns: 4,
            max_seconds: 60,
        }
    }

    #[test]
    fn rules_apply_in_order_and_once_rules_only_once() {
        let mut caller = RuleCaller::new(script());
        assert_eq!(
            caller.answer("How will you PAY?"),
            "Actually, change my first item."
        );
        assert_eq!(caller.answer("How will you pay?"), "Card.");
        assert_eq!(caller.answer("What would you like?"), "Two tiramisu.");
    }
}
