//! The text console: caller lines in, the agent's replies out, with the active task and
//! tool calls shown in a quieter style.
//!
//! Interactive (a terminal): a prompt, replies streamed as they are written. Piped: one
//! caller turn per input line, and the program ends after the reply to the last line, so
//! scripts and tests can drive a whole call.

use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use crate::agent::{SessionEvent, SessionHandle, TaskEnd};

/// Turns session events into console lines. No I/O of its own beyond the writer.
pub struct ConsoleRenderer<W> {
    out: W,
    styled: bool,
    streaming: bool,
}

impl<W: Write> ConsoleRenderer<W> {
    /// Writes to `out`; `styled` adds ANSI dimming for the quieter lines.
    pub fn new(out: W, styled: bool) -> Self {
        ConsoleRenderer {
            out,
            styled,
            streaming: false,
        }
    }

    /// The writer back.
    pub fn into_inner(self) -> W {
        self.out
    }

    /// Renders one event.
    pub fn render(&mut self, event: &SessionEvent) -> std::io::Result<()> {
        match event {
            SessionEvent::TextDelta { text } if self.styled => {
                if !self.streaming {
                    write!(self.out, "agent> ")?;
                    self.streaming = true;
                }
                write!(self.out, "{text}")?;
                self.out.flush()
            }
            SessionEvent::TextDelta { .. } => Ok(()),
            SessionEvent::AgentMessage { text } => {
                if self.streaming {
                    self.streaming = false;
                    writeln!(self.out)
                } else {
                    writeln!(self.out, "agent> {text}")
                }
            }
            SessionEvent::TaskStarted { name, group_id } => {
                let label = match group_id {
                    Some(id) => format!("[{name} · {id}]"),
                    None => format!("[{name}]"),
                };
                self.quiet(&label)
            }
            SessionEvent::TaskCompleted { name, end, .. } => match end {
                TaskEnd::Done => Ok(()),
                TaskEnd::Interrupted => self.quiet(&format!("[{name} interrupted]")),
                TaskEnd::Failed(message) => self.quiet(&format!("[{name} failed: {message}]")),
            },
            SessionEvent::FunctionCalled {
                name, arguments, ..
            } => self.quiet(&format!("  -> {name}({arguments})")),
            SessionEvent::FunctionReturned {
                output, is_error, ..
            } => {
                let mark = if *is_error { "error" } else { "ok" };
                self.quiet(&format!("     {mark}: {output}"))
            }
            SessionEvent::Regressed { from, targets } => self.quiet(&format!(
                "  <- back to {} (from {from})",
                targets.join(", ")
            )),
            SessionEvent::DependentInvalidated {
                task_id,
                because_of,
            } => self.quiet(&format!("  ~ {task_id} again ({because_of} changed)")),
            SessionEvent::ReplyFailed { error } => self.quiet(&format!("  ! {error}")),
            SessionEvent::ReplyInterrupted { heard } => {
                self.quiet(&format!("  (interrupted after: {heard:?})"))
            }
            SessionEvent::KeyPressReceived { key } => self.quiet(&format!("  [key {key}]")),
            SessionEvent::ReplyCorrected { sentence, .. } => {
                self.quiet(&format!("  (withheld, no tool said so: {sentence:?})"))
            }
            SessionEvent::HangUpRequested => self.quiet("[the agent hung up]"),
            SessionEvent::TransferRequested { to } => self.quiet(&format!("[transfer to {to}]")),
            SessionEvent::AgentStateChanged { .. }
            | SessionEvent::UserTurnReceived { .. }
            | SessionEvent::SessionEnded => Ok(()),
        }
    }

    fn quiet(&mut self, line: &str) -> std::io::Result<()> {
        if self.streaming {
            writeln!(self.out)?;
            self.streaming = false;
        }
        if self.styled {
            writeln!(self.out, "\x1b[2m{line}\x1b[0m")
        } else {
            writeln!(self.out, "{line}")
        }
    }
}

/// A console line that presses phone keys instead of saying something: `/press 1`.
pub const KEY_PRESS_COMMAND: &str = "/press ";

/// Presses each key of `keys` (ignoring spaces) as a phone caller would, one after the
/// other, and returns what happened.
async fn press_keys(session: &mut SessionHandle, keys: &str) -> Vec<SessionEvent> {
    let mut events = Vec::new();
    for key in keys.chars().filter(|c| !c.is_whitespace()) {
        events.extend(session.press_key(key).await);
    }
    events
}

/// Runs a console conversation on `session`, reading caller lines from `input`, until
/// the input ends or the agent hangs up. `interactive` shows a prompt before each line;
/// a line `/press 1` presses phone keys instead.
pub async fn run<R, W>(
    mut session: SessionHandle,
    input: R,
    renderer: &mut ConsoleRenderer<W>,
    interactive: bool,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: Write,
{
    let mut lines = BufReader::new(input).lines();
    for event in session.until_listening().await {
        renderer.render(&event)?;
    }
    loop {
        if interactive {
            write!(renderer.out, "you> ")?;
            renderer.out.flush()?;
        }
        let Some(line) = lines.next_line().await? else {
            break;
        };
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if !interactive {
            renderer.quiet(&format!("you> {line}"))?;
        }
        let events = match line.strip_prefix(KEY_PRESS_COMMAND) {
            Some(keys) => press_keys(&mut session, keys).await,
            None => session.send(line).await,
        };
        for event in &events {
            renderer.render(event)?;
        }
        if events
            .iter()
            .any(|event| matches!(event, SessionEvent::SessionEnded))
        {
            return Ok(());
        }
    }
    for event in session.close().await {
        renderer.render(&event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_rendering_shows_replies_tasks_and_tools() {
        let mut renderer = ConsoleRenderer::new(Vec::new(), false);
        let events = [
            SessionEvent::TextDelta { text: "Hi".into() },
            SessionEvent::AgentMessage { text: "Hi".into() },
            SessionEvent::FunctionCalled {
                call_id: "1".into(),
                name: "take_order".into(),
                arguments: "{}".into(),
            },
            SessionEvent::TaskStarted {
                name: "CollectOrderItem".into(),
                group_id: Some("item_1".into()),
            },
        ];
        for event in &events {
            renderer.render(event).unwrap();
        }
        let text = String::from_utf8(renderer.into_inner()).unwrap();
        assert_eq!(
            text,
            "agent> Hi\n  -> take_order({})\n[CollectOrderItem · item_1]\n"
        );
    }

    #[test]
    fn styled_rendering_streams_and_dims() {
        let mut renderer = ConsoleRenderer::new(Vec::new(), true);
        for event in [
            SessionEvent::TextDelta { text: "Hel".into() },
            SessionEvent::TextDelta { text: "lo".into() },
            SessionEvent::AgentMessage {
                text: "Hello".into(),
            },
            SessionEvent::ReplyFailed {
                error: "down".into(),
            },
        ] {
            renderer.render(&event).unwrap();
        }
        let text = String::from_utf8(renderer.into_inner()).unwrap();
        assert_eq!(text, "agent> Hello\n\x1b[2m  ! down\x1b[0m\n");
    }
}
