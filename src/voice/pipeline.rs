//! The voice pipeline as a state machine without I/O: caller audio (with its VAD
//! decisions), transcripts, session events and synthesized audio go in; requests to
//! transcribe, turns for the session, sentences to synthesize, interruptions and the
//! audio frame to play this tick come out. Stream time and wall time are passed in, so
//! the whole of turn-taking runs in tests on virtual time.
//!
//! What an interruption does to each input: caller audio keeps flowing; transcripts keep
//! counting; session text belonging to the interrupted reply is dropped until the session
//! acknowledges ([`SessionEvent::ReplyInterrupted`]); synthesized audio of dropped
//! sentences is discarded.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::audio::{AudioFrame, move_front, samples_for};
use super::endpointing::{Endpointing, EndpointingConfig};
use super::metrics::{TurnClock, TurnReport};
use super::playout::Playout;
use super::sentences::SentenceSplitter;
use super::speech_detector::{SpeechDetector, SpeechDetectorConfig, SpeechEvent};
use crate::agent::{AgentState, SessionEvent};

/// Sample rate of caller audio inside the pipeline (what VAD and STT get).
pub const CALLER_RATE: u32 = 16_000;

/// When the caller may cut the agent off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterruptionConfig {
    /// Whether caller speech interrupts at all (off: half duplex, for a speaker without
    /// echo cancellation).
    pub enabled: bool,
    /// How long the caller must speak over the agent before it stops, in milliseconds;
    /// shorter sounds (a cough, "mm-hm") do not interrupt.
    pub min_duration_ms: u64,
}

impl Default for InterruptionConfig {
    fn default() -> Self {
        InterruptionConfig {
            enabled: true,
            min_duration_ms: 500,
        }
    }
}

/// Settings of the pipeline.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    /// Speech start/end hysteresis.
    pub speech: SpeechDetectorConfig,
    /// Endpointing delays.
    pub endpointing: EndpointingConfig,
    /// Interruption rules.
    pub interruption: InterruptionConfig,
    /// Audio kept from before speech was detected, so first syllables reach STT.
    pub preroll: Duration,
    /// Length of one tick (and of each caller frame).
    pub frame: Duration,
    /// Sample rate of the agent's audio out.
    pub output_rate: u32,
    /// What the agent says when a transcription fails.
    pub did_not_catch: String,
    /// A caller silent this long while the agent listens is reported
    /// ([`PipelineOutput::CallerSilent`]); `None`: never.
    pub silence_prompt: Option<Duration>,
    /// After the agent's last word before a hang-up or transfer has left, how long to wait
    /// before acting, so it reaches the caller through their jitter buffer and any bridge.
    pub hang_up_tail: Duration,
}

impl Default for PipelineConfig {
    /// Defaults that suit a phone call: 20 ms frames, 300 ms of pre-roll, output at 24 kHz.
    fn default() -> Self {
        PipelineConfig {
            speech: SpeechDetectorConfig::default(),
            endpointing: EndpointingConfig::default(),
            interruption: InterruptionConfig::default(),
            preroll: Duration::from_millis(300),
            frame: Duration::from_millis(20),
            output_rate: 24_000,
            did_not_catch: "Sorry, I didn't catch that. Could you say it again?".into(),
            silence_prompt: None,
            hang_up_tail: Duration::from_millis(300),
        }
    }
}

/// What goes into the pipeline.
#[derive(Debug, Clone)]
pub enum PipelineInput {
    /// One caller frame (mono, [`CALLER_RATE`], one tick long) and whether VAD heard speech.
    CallerFrame {
        /// The audio.
        frame: AudioFrame,
        /// The VAD decision.
        is_speech: bool,
    },
    /// A transcription finished.
    Transcript {
        /// Which utterance.
        utterance: u64,
        /// The text, or why it failed.
        result: Result<String, String>,
    },
    /// Something the session reported.
    Session(SessionEvent),
    /// Synthesized audio for a sentence, already at the output rate.
    SpeechAudio {
        /// Which sentence.
        sentence: u64,
        /// The audio.
        frame: AudioFrame,
    },
    /// A sentence's synthesis ended; with an error, it is skipped (kept as text).
    SpeechFinished {
        /// Which sentence.
        sentence: u64,
        /// Why it failed, if it did.
        error: Option<String>,
    },
    /// The caller pressed a key on their phone keypad. Like speech, it stops the agent at
    /// once (whatever the interruption settings: a key press is never an echo) and is a
    /// turn of its own.
    KeyPressed(char),
}

/// What the pipeline asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum PipelineOutput {
    /// Transcribe this utterance (mono, [`CALLER_RATE`]).
    Transcribe {
        /// Its id, echoed in [`PipelineInput::Transcript`].
        utterance: u64,
        /// The audio.
        audio: AudioFrame,
    },
    /// Send this caller turn to the session.
    UserTurn(String),
    /// Synthesize this sentence.
    Synthesize {
        /// Its id, echoed in the speech inputs.
        sentence: u64,
        /// The text.
        text: String,
    },
    /// Stop all synthesis in flight (its audio is no longer wanted).
    CancelSynthesis,
    /// Tell the session the caller interrupted, with what they heard.
    Interrupt {
        /// The played part of the reply.
        heard: String,
    },
    /// Play this frame now (silence when the agent is quiet).
    Play(AudioFrame),
    /// The agent's state changed.
    StateChanged(AgentState),
    /// A turn ended; its report.
    TurnEnded(Box<TurnReport>),
    /// Send this key press to the session.
    KeyPressed(char),
    /// Tell the session the caller has been silent for the configured time.
    CallerSilent,
    /// Everything said before the hang-up has played: end the call for the caller now.
    HangUp,
    /// Everything said before the transfer request has played: transfer the caller now.
    Transfer {
        /// Where to.
        to: String,
    },
}

/// Where the agent is in hanging up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HangUp {
    /// Not asked to.
    No,
    /// Asked to; due once what was said has played (see [`due_after_playout`]).
    Waiting(Option<Duration>),
    /// Done.
    Done,
}

/// Whether a call action (hang-up, transfer) waiting in `due` may happen at `now`: the
/// first time everything said before it has played, it becomes due `tail` later, so the
/// last words reach the caller through their jitter buffer and any bridge.
fn due_after_playout(
    due: &mut Option<Duration>,
    played_out: bool,
    now: Duration,
    tail: Duration,
) -> bool {
    if due.is_none() && played_out {
        *due = Some(now + tail);
    }
    due.is_some_and(|at| now >= at)
}

#[derive(Debug, Default)]
struct Turn {
    report: TurnReport,
    clock: TurnClock,
    speech_started: bool,
}

/// The pipeline's state.
pub struct Pipeline {
    config: PipelineConfig,
    detector: SpeechDetector,
    endpointing: Endpointing,
    playout: Playout,
    splitter: SentenceSplitter,
    utterance: VecDeque<i16>,
    in_speech: bool,
    next_utterance: u64,
    transcribing_since: Vec<(u64, Instant)>,
    state: AgentState,
    session_listening: bool,
    awaiting_ack: bool,
    streamed_chars: usize,
    turn: Option<Turn>,
    now: Duration,
    deaf_until: Duration,
    hang_up: HangUp,
    /// A transfer waiting for playout: where to, and when it is due.
    transfer: Option<(String, Option<Duration>)>,
    /// Since when the caller has been quiet while the agent listened.
    quiet_since: Option<Duration>,
}

/// How long a half-duplex pipeline keeps ignoring the caller after the agent stops
/// speaking (the room's echo of the last syllable).
const ECHO_TAIL: Duration = Duration::from_millis(300);

impl Pipeline {
    /// A pipeline in the listening state at stream time zero.
    pub fn new(config: PipelineConfig) -> Self {
        Pipeline {
            detector: SpeechDetector::new(config.speech),
            endpointing: Endpointing::new(config.endpointing),
            playout: Playout::new(config.output_rate),
            splitter: SentenceSplitter::default(),
            utterance: VecDeque::new(),
            in_speech: false,
            next_utterance: 0,
            transcribing_since: Vec::new(),
            state: AgentState::Listening,
            session_listening: false,
            awaiting_ack: false,
            streamed_chars: 0,
            turn: None,
            now: Duration::ZERO,
            deaf_until: Duration::ZERO,
            hang_up: HangUp::No,
            transfer: None,
            quiet_since: None,
            config,
        }
    }

    /// Whether the agent has asked to hang up and the call is not over yet.
    pub fn is_hanging_up(&self) -> bool {
        matches!(self.hang_up, HangUp::Waiting(_))
    }

    /// The agent's state.
    pub fn state(&self) -> AgentState {
        self.state
    }

    /// The rate of the agent's audio out.
    pub fn output_rate(&self) -> u32 {
        self.config.output_rate
    }

    /// Stream time: the caller audio consumed so far.
    pub fn now(&self) -> Duration {
        self.now
    }

    /// Whether something is in flight that will produce more output without new caller
    /// audio: a transcript, a reply, or agent audio still to come. (Faster-than-real-time
    /// runs wait for it before feeding more audio.)
    pub fn is_busy(&self) -> bool {
        self.endpointing.is_transcribing()
            || !self.session_listening
            || self.playout.is_waiting_for_audio()
    }

    /// Whether the agent has audio ready to play.
    pub fn has_audio(&self) -> bool {
        self.playout.has_audio()
    }

    /// Feeds one input.
    pub fn handle(&mut self, input: PipelineInput, wall: Instant) -> Vec<PipelineOutput> {
        let mut out = Vec::new();
        match input {
            PipelineInput::CallerFrame { frame, is_speech } => {
                self.caller_frame(frame, is_speech, wall, &mut out)
            }
            PipelineInput::Transcript { utterance, result } => {
                self.transcript(utterance, result, wall, &mut out)
            }
            PipelineInput::Session(event) => self.session_event(event, wall, &mut out),
            PipelineInput::SpeechAudio { sentence, frame } => {
                if let Some(turn) = self.turn.as_mut() {
                    turn.clock.first_tts_audio.get_or_insert(wall);
                }
                self.playout.add_audio(sentence, &frame);
            }
            PipelineInput::SpeechFinished {
                sentence,
                error: None,
            } => self.playout.finish_sentence(sentence),
            PipelineInput::SpeechFinished {
                sentence,
                error: Some(error),
            } => {
                tracing::warn!(%error, "speech synthesis failed; keeping the text");
                if let Some(text) = self.playout.fail_sentence(sentence) {
                    let turn = self.turn.get_or_insert_with(Turn::default);
                    turn.report.unspoken.push(text);
                }
            }
            PipelineInput::KeyPressed(key) => self.key_pressed(key, wall, &mut out),
        }
        out
    }

    /// Advances one tick: commits a finished turn, and plays the next frame.
    pub fn tick(&mut self, wall: Instant) -> Vec<PipelineOutput> {
        let mut out = Vec::new();
        if let Some(committed) = self.endpointing.poll(self.now) {
            let mut turn = Turn::default();
            turn.report.caller_text = Some(committed.text.clone());
            turn.report.caller_speech_end_s = Some(committed.speech_ended_at.as_secs_f64());
            turn.clock.committed = Some(wall);
            turn.clock.eou_delay = Some(committed.committed_at - committed.speech_ended_at);
            turn.clock.stt = self.turn.take().and_then(|t| t.clock.stt);
            self.turn = Some(turn);
            self.session_listening = false;
            self.set_state(AgentState::Thinking, &mut out);
            out.push(PipelineOutput::UserTurn(committed.text));
        }
        let frame = self.config.frame;
        let played = self.playout.pop(frame);
        let start = self.now;
        match played {
            Some(audio) => {
                let turn = self.turn.get_or_insert_with(Turn::default);
                turn.clock.first_audio_out.get_or_insert(wall);
                let end = start + frame;
                let span = turn
                    .report
                    .agent_audio_s
                    .get_or_insert((start.as_secs_f64(), end.as_secs_f64()));
                span.1 = end.as_secs_f64();
                self.set_state(AgentState::Speaking, &mut out);
                out.push(PipelineOutput::Play(pad(
                    audio,
                    self.config.output_rate,
                    frame,
                )));
            }
            None => {
                out.push(PipelineOutput::Play(AudioFrame::silence(
                    self.config.output_rate,
                    1,
                    frame,
                )));
                if self.state == AgentState::Speaking && !self.playout.is_busy() {
                    self.playout.reset_heard();
                    self.set_state(
                        if self.session_listening {
                            AgentState::Listening
                        } else {
                            AgentState::Thinking
                        },
                        &mut out,
                    );
                }
            }
        }
        self.finish_turn_if_done(&mut out);
        self.follow_call_control(&mut out);
        self.watch_silence(&mut out);
        out
    }

    /// A key press: stops the agent like speech would and becomes a turn of its own.
    fn key_pressed(&mut self, key: char, wall: Instant, out: &mut Vec<PipelineOutput>) {
        if self.hang_up != HangUp::No {
            return;
        }
        self.quiet_since = None;
        if self.state != AgentState::Listening && !self.awaiting_ack {
            self.interrupt(out);
        }
        let mut turn = Turn::default();
        turn.report.caller_text = Some(format!("[key {key}]"));
        turn.clock.committed = Some(wall);
        self.turn = Some(turn);
        self.session_listening = false;
        self.set_state(AgentState::Thinking, out);
        out.push(PipelineOutput::KeyPressed(key));
    }

    /// Hangs up or transfers once everything said before the request has played.
    fn follow_call_control(&mut self, out: &mut Vec<PipelineOutput>) {
        let played_out = !self.playout.is_busy() && self.state != AgentState::Speaking;
        let (now, tail) = (self.now, self.config.hang_up_tail);
        if let HangUp::Waiting(due) = &mut self.hang_up
            && due_after_playout(due, played_out, now, tail)
        {
            self.hang_up = HangUp::Done;
            out.push(PipelineOutput::HangUp);
        }
        if let Some((_, due)) = &mut self.transfer
            && due_after_playout(due, played_out, now, tail)
            && let Some((to, _)) = self.transfer.take()
        {
            out.push(PipelineOutput::Transfer { to });
        }
    }

    /// Reports a caller who has been quiet for the configured time while the agent
    /// listened with nothing in flight.
    fn watch_silence(&mut self, out: &mut Vec<PipelineOutput>) {
        let Some(limit) = self.config.silence_prompt else {
            return;
        };
        let idle = self.session_listening
            && self.state == AgentState::Listening
            && self.hang_up == HangUp::No
            && self.transfer.is_none()
            && !self.in_speech
            && !self.detector.is_speaking()
            && !self.playout.is_busy()
            && !self.endpointing.is_transcribing()
            && self.endpointing.deadline().is_none();
        if !idle {
            self.quiet_since = None;
            return;
        }
        let since = *self.quiet_since.get_or_insert(self.now);
        if self.now.saturating_sub(since) >= limit {
            self.quiet_since = None;
            self.session_listening = false;
            out.push(PipelineOutput::CallerSilent);
        }
    }

    fn caller_frame(
        &mut self,
        frame: AudioFrame,
        is_speech: bool,
        wall: Instant,
        out: &mut Vec<PipelineOutput>,
    ) {
        let duration = frame.duration();
        self.now += duration;
        // Half duplex: while the agent speaks (and a moment after), the microphone hears
        // the speaker, not the caller.
        let deaf = !self.config.interruption.enabled
            && (self.state == AgentState::Speaking || self.now <= self.deaf_until);
        let (frame, is_speech) = if deaf {
            (AudioFrame::silence(CALLER_RATE, 1, duration), false)
        } else {
            (frame, is_speech)
        };
        self.utterance.extend(frame.samples());
        if !self.in_speech {
            let keep = samples_for(CALLER_RATE, self.config.preroll + duration);
            let excess = self.utterance.len().saturating_sub(keep);
            self.utterance.drain(..excess);
        }
        match self.detector.push(is_speech, duration) {
            Some(SpeechEvent::Started { .. }) => {
                self.in_speech = true;
                self.endpointing.speech_started();
            }
            Some(SpeechEvent::Ended { ended_at, .. }) => {
                self.in_speech = false;
                self.endpointing.speech_ended(ended_at);
                let utterance = self.next_utterance;
                self.next_utterance += 1;
                let mut samples = Vec::with_capacity(self.utterance.len());
                move_front(&mut self.utterance, usize::MAX, &mut samples);
                self.transcribing_since.push((utterance, wall));
                out.push(PipelineOutput::Transcribe {
                    utterance,
                    audio: AudioFrame::mono(samples, CALLER_RATE),
                });
            }
            None => {}
        }
        self.check_interruption(out);
    }

    fn check_interruption(&mut self, out: &mut Vec<PipelineOutput>) {
        let rules = self.config.interruption;
        let agent_active = self.state != AgentState::Listening;
        if !rules.enabled
            || !agent_active
            || self.awaiting_ack
            || !self.detector.is_speaking()
            || self.detector.speech_duration_so_far() < Duration::from_millis(rules.min_duration_ms)
        {
            return;
        }
        self.interrupt(out);
    }

    /// Stops the agent at once: its audio, the synthesis in flight, and the reply; the
    /// session learns what the caller heard.
    fn interrupt(&mut self, out: &mut Vec<PipelineOutput>) {
        let heard = self.playout.interrupt();
        self.splitter = SentenceSplitter::default();
        self.streamed_chars = 0;
        self.awaiting_ack = true;
        out.push(PipelineOutput::CancelSynthesis);
        out.push(PipelineOutput::Interrupt {
            heard: heard.clone(),
        });
        if let Some(mut turn) = self.turn.take() {
            turn.report.interrupted = true;
            turn.report.heard = Some(heard);
            out.push(PipelineOutput::TurnEnded(Box::new(finish(turn))));
        }
        self.set_state(AgentState::Listening, out);
    }

    fn transcript(
        &mut self,
        utterance: u64,
        result: Result<String, String>,
        wall: Instant,
        out: &mut Vec<PipelineOutput>,
    ) {
        let started = self
            .transcribing_since
            .iter()
            .position(|(id, _)| *id == utterance)
            .map(|index| self.transcribing_since.remove(index).1);
        let turn = self.turn.get_or_insert_with(Turn::default);
        if let Some(started) = started {
            turn.clock.stt = Some(wall.saturating_duration_since(started));
        }
        match result {
            Ok(text) => self.endpointing.transcript(&text),
            Err(error) => {
                tracing::warn!(%error, "transcription failed");
                self.endpointing.transcript_failed();
                let text = self.config.did_not_catch.clone();
                turn.report.agent_text.push_str(&text);
                self.synthesize(&text, wall, out);
                self.set_state(AgentState::Speaking, out);
            }
        }
    }

    fn session_event(&mut self, event: SessionEvent, wall: Instant, out: &mut Vec<PipelineOutput>) {
        match event {
            SessionEvent::TextDelta { text } if !self.awaiting_ack => {
                let turn = self.turn.get_or_insert_with(Turn::default);
                turn.clock.first_token.get_or_insert(wall);
                self.streamed_chars += text.len();
                for sentence in self.splitter.push(&text) {
                    self.synthesize(&sentence, wall, out);
                }
            }
            SessionEvent::AgentMessage { text } if !self.awaiting_ack => {
                if self.streamed_chars == 0 {
                    for sentence in self.splitter.push(&text) {
                        self.synthesize(&sentence, wall, out);
                    }
                }
                if let Some(rest) = self.splitter.finish() {
                    self.synthesize(&rest, wall, out);
                }
                self.streamed_chars = 0;
                let turn = self.turn.get_or_insert_with(Turn::default);
                if !turn.report.agent_text.is_empty() {
                    turn.report.agent_text.push(' ');
                }
                turn.report.agent_text.push_str(&text);
            }
            SessionEvent::ReplyInterrupted { .. } => {
                self.awaiting_ack = false;
                self.splitter = SentenceSplitter::default();
                self.streamed_chars = 0;
            }
            SessionEvent::AgentStateChanged { state } => {
                self.session_listening = state == AgentState::Listening;
                if !self.session_listening && self.state == AgentState::Listening {
                    self.set_state(AgentState::Thinking, out);
                }
            }
            SessionEvent::HangUpRequested if self.hang_up == HangUp::No => {
                self.hang_up = HangUp::Waiting(None);
            }
            SessionEvent::TransferRequested { to } => self.transfer = Some((to, None)),
            _ => {}
        }
    }

    fn synthesize(&mut self, text: &str, wall: Instant, out: &mut Vec<PipelineOutput>) {
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        let sentence = self.playout.add_sentence(text);
        let turn = self.turn.get_or_insert_with(Turn::default);
        turn.clock.first_tts_request.get_or_insert(wall);
        out.push(PipelineOutput::Synthesize {
            sentence,
            text: text.to_string(),
        });
    }

    fn finish_turn_if_done(&mut self, out: &mut Vec<PipelineOutput>) {
        let done = self.session_listening
            && !self.playout.is_busy()
            && !self.endpointing.is_transcribing()
            && self.endpointing.deadline().is_none();
        let has_reply = self
            .turn
            .as_ref()
            .is_some_and(|turn| !turn.report.agent_text.is_empty() || turn.speech_started);
        if done && has_reply {
            if let Some(turn) = self.turn.take() {
                out.push(PipelineOutput::TurnEnded(Box::new(finish(turn))));
            }
            if self.state != AgentState::Listening {
                self.set_state(AgentState::Listening, out);
            }
        }
    }

    fn set_state(&mut self, state: AgentState, out: &mut Vec<PipelineOutput>) {
        if self.state == AgentState::Speaking && state != AgentState::Speaking {
            self.deaf_until = self.now + ECHO_TAIL;
        }
        if self.state != state {
            self.state = state;
            out.push(PipelineOutput::StateChanged(state));
        }
    }
}

fn finish(turn: Turn) -> TurnReport {
    let mut report = turn.report;
    report.metrics = turn.clock.metrics();
    report
}

/// Pads a short frame with silence to exactly one tick.
fn pad(frame: AudioFrame, rate: u32, duration: Duration) -> AudioFrame {
    let wanted = samples_for(rate, duration);
    let mut samples = frame.into_samples();
    samples.resize(wanted.max(samples.len()), 0);
    AudioFrame::mono(samples, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: Duration = Duration::from_millis(20);

    fn config() -> PipelineConfig {
        PipelineConfig {
            speech: SpeechDetectorConfig::default(),
            endpointing: EndpointingConfig::default(),
            interruption: InterruptionConfig::default(),
            preroll: Duration::from_millis(200),
            frame: FRAME,
            output_rate: 1000,
            did_not_catch: "Sorry, I didn't catch that.".into(),
            silence_prompt: None,
            hang_up_tail: Duration::from_millis(300),
        }
    }

    struct Harness {
        pipeline: Pipeline,
        wall: Instant,
        outputs: Vec<PipelineOutput>,
    }

    impl Harness {
        fn new() -> Self {
            let mut harness = Harness {
                pipeline: Pipeline::new(config()),
                wall: Instant::now(),
                outputs: Vec::new(),
            };
            harness.input(PipelineInput::Session(SessionEvent::AgentStateChanged {
                state: AgentState::Listening,
            }));
            harness
        }

        fn input(&mut self, input: PipelineInput) {
            let out = self.pipeline.handle(input, self.wall);
            self.outputs.extend(out);
        }

        /// Caller frames for `ms`, speech or not, with a tick after each.
        fn caller(&mut self, ms: u64, speech: bool) {
            for _ in 0..ms / 20 {
                self.wall += FRAME;
                let frame = AudioFrame::mono(vec![if speech { 1000 } else { 0 }; 320], CALLER_RATE);
                self.input(PipelineInput::CallerFrame {
                    frame,
                    is_speech: speech,
                });
                let out = self.pipeline.tick(self.wall);
                self.outputs.extend(out);
            }
        }

        fn take(&mut self) -> Vec<PipelineOutput> {
            std::mem::take(&mut self.outputs)
        }

        fn session(&mut self, event: SessionEvent) {
            self.input(PipelineInput::Session(event));
        }
    }

    fn non_silent_frames(outputs: &[PipelineOutput]) -> usize {
        outputs
            .iter()
            .filter(|o| matches!(o, PipelineOutput::Play(f) if f.samples().iter().any(|&s| s != 0)))
            .count()
    }

    /// The caller says something, it is transcribed, and the turn is committed.
    fn caller_turn(h: &mut Harness, text: &str) {
        h.caller(600, true);
        h.caller(600, false);
        let utterance = h
            .take()
            .into_iter()
            .find_map(|o| match o {
                PipelineOutput::Transcribe { utterance, audio } => {
                    assert!(audio.duration() >= Duration::from_millis(600));
                    Some(utterance)
                }
                _ => None,
            })
            .expect("an utterance to transcribe");
        h.input(PipelineInput::Transcript {
            utterance,
            result: Ok(text.to_string()),
        });
        h.caller(400, false);
        let turn = h.take().into_iter().find_map(|o| match o {
            PipelineOutput::UserTurn(text) => Some(text),
            _ => None,
        });
        assert_eq!(turn.as_deref(), Some(text));
        h.session(SessionEvent::AgentStateChanged {
            state: AgentState::Thinking,
        });
    }

    /// The session replies with one sentence and its audio (`ms` long) arrives.
    fn reply(h: &mut Harness, text: &str, ms: u64) -> u64 {
        h.session(SessionEvent::TextDelta { text: text.into() });
        h.session(SessionEvent::AgentMessage { text: text.into() });
        let sentence = h
            .take()
            .into_iter()
            .find_map(|o| match o {
                PipelineOutput::Synthesize { sentence, .. } => Some(sentence),
                _ => None,
            })
            .expect("a sentence to synthesize");
        h.session(SessionEvent::AgentStateChanged {
            state: AgentState::Listening,
        });
        let samples = (ms as usize) * 1000 / 1000;
        h.input(PipelineInput::SpeechAudio {
            sentence,
            frame: AudioFrame::mono(vec![500; samples], 1000),
        });
        h.input(PipelineInput::SpeechFinished {
            sentence,
            error: None,
        });
        sentence
    }

    #[test]
    fn a_caller_turn_is_transcribed_committed_answered_and_played() {
        let mut h = Harness::new();
        caller_turn(&mut h, "Two tiramisu, please.");
        reply(&mut h, "Two tiramisu, coming up.", 400);
        h.caller(1000, false);
        let out = h.take();
        assert_eq!(non_silent_frames(&out), 20);
        let report = out
            .iter()
            .find_map(|o| match o {
                PipelineOutput::TurnEnded(report) => Some(report.clone()),
                _ => None,
            })
            .expect("the turn ended");
        assert_eq!(report.caller_text.as_deref(), Some("Two tiramisu, please."));
        assert_eq!(report.agent_text, "Two tiramisu, coming up.");
        assert!(!report.interrupted);
        let eou = report.metrics.end_of_utterance_delay.unwrap();
        assert!(
            eou >= Duration::from_millis(300) && eou <= Duration::from_millis(900),
            "{eou:?}"
        );
        assert!(out.contains(&PipelineOutput::StateChanged(AgentState::Speaking)));
        assert_eq!(h.pipeline.state(), AgentState::Listening);
    }

    #[test]
    fn talking_over_the_agent_stops_its_audio_within_a_frame_and_reports_what_was_heard() {
        let mut h = Harness::new();
        caller_turn(&mut h, "What are the specials?");
        reply(
            &mut h,
            "one two three four five six seven eight nine ten",
            2000,
        );
        h.caller(400, false);
        assert_eq!(non_silent_frames(&h.take()), 20);
        // the caller talks over the agent: after min_speech + min_duration the agent stops
        let mut frames_until_stop = 0;
        let mut interrupted = None;
        for _ in 0..50 {
            h.caller(20, true);
            let out = h.take();
            if let Some(heard) = out.iter().find_map(|o| match o {
                PipelineOutput::Interrupt { heard } => Some(heard.clone()),
                _ => None,
            }) {
                assert!(out.contains(&PipelineOutput::CancelSynthesis));
                assert_eq!(
                    non_silent_frames(&out),
                    0,
                    "the interrupting tick plays silence"
                );
                interrupted = Some(heard);
                break;
            }
            frames_until_stop += 1;
        }
        let heard = interrupted.expect("an interruption");
        assert!(heard.starts_with("one two"), "{heard}");
        assert!(!heard.contains("ten"), "{heard}");
        // speech must last min_duration (500 ms) counted from its start
        assert!(
            (24..=27).contains(&frames_until_stop),
            "{frames_until_stop}"
        );
        h.caller(200, true);
        assert_eq!(
            non_silent_frames(&h.take()),
            0,
            "no agent audio after the interruption"
        );
    }

    #[test]
    fn a_short_cough_does_not_interrupt() {
        let mut h = Harness::new();
        caller_turn(&mut h, "Hello?");
        reply(&mut h, "Welcome to Bella Vista, what can I get you?", 2000);
        h.caller(200, false);
        h.caller(200, true);
        h.caller(800, false);
        let out = h.take();
        assert!(
            !out.iter()
                .any(|o| matches!(o, PipelineOutput::Interrupt { .. }))
        );
        assert_eq!(non_silent_frames(&out), 60);
    }

    #[test]
    fn half_duplex_ignores_the_caller_while_the_agent_speaks() {
        let mut h = Harness::new();
        h.pipeline.config.interruption.enabled = false;
        caller_turn(&mut h, "Hello?");
        reply(&mut h, "Welcome to Bella Vista, what can I get you?", 2000);
        h.caller(200, false);
        h.caller(1000, true);
        let out = h.take();
        assert!(
            !out.iter()
                .any(|o| matches!(o, PipelineOutput::Interrupt { .. }))
        );
        assert!(
            !out.iter()
                .any(|o| matches!(o, PipelineOutput::Transcribe { .. }))
        );
        assert_eq!(non_silent_frames(&out), 60);
    }

    #[test]
    fn a_failed_transcription_makes_the_agent_say_it_did_not_catch_that() {
        let mut h = Harness::new();
        h.caller(600, true);
        h.caller(600, false);
        let utterance = h
            .take()
            .into_iter()
            .find_map(|o| match o {
                PipelineOutput::Transcribe { utterance, .. } => Some(utterance),
                _ => None,
            })
            .unwrap();
        h.input(PipelineInput::Transcript {
            utterance,
            result: Err("timed out".into()),
        });
        let out = h.take();
        assert!(out.iter().any(|o| matches!(o,
            PipelineOutput::Synthesize { text, .. } if text == "Sorry, I didn't catch that.")));
        h.caller(2000, false);
        assert!(
            !h.take()
                .iter()
                .any(|o| matches!(o, PipelineOutput::UserTurn(_)))
        );
    }

    #[test]
    fn sentences_are_synthesized_as_soon_as_they_are_complete() {
        let mut h = Harness::new();
        caller_turn(&mut h, "Hi.");
        h.session(SessionEvent::TextDelta {
            text: "Welcome to Bella Vista. What would".into(),
        });
        let first: Vec<_> = h
            .take()
            .into_iter()
            .filter_map(|o| match o {
                PipelineOutput::Synthesize { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        assert_eq!(first, vec!["Welcome to Bella Vista."]);
        h.session(SessionEvent::TextDelta {
            text: " you like?".into(),
        });
        h.session(SessionEvent::AgentMessage {
            text: "Welcome to Bella Vista. What would you like?".into(),
        });
        let rest: Vec<_> = h
            .take()
            .into_iter()
            .filter_map(|o| match o {
                PipelineOutput::Synthesize { text, .. } => Some(text),
                _ => None,
            })
            .collect();
        assert_eq!(rest, vec!["What would you like?"]);
    }

    fn count(outputs: &[PipelineOutput], wanted: &PipelineOutput) -> usize {
        outputs.iter().filter(|o| *o == wanted).count()
    }

    #[test]
    fn a_hang_up_waits_until_the_goodbye_has_played_then_a_short_tail() {
        let mut h = Harness::new();
        caller_turn(&mut h, "That's all, bye.");
        reply(&mut h, "Thank you for calling, goodbye!", 1000);
        h.session(SessionEvent::HangUpRequested);
        h.session(SessionEvent::SessionEnded);
        assert!(h.pipeline.is_hanging_up());
        h.caller(1000, false);
        let out = h.take();
        assert_eq!(non_silent_frames(&out), 50, "the whole goodbye plays");
        assert_eq!(count(&out, &PipelineOutput::HangUp), 0);
        h.caller(280, false);
        assert_eq!(
            count(&h.take(), &PipelineOutput::HangUp),
            0,
            "within the tail"
        );
        h.caller(100, false);
        assert_eq!(count(&h.take(), &PipelineOutput::HangUp), 1);
        assert!(!h.pipeline.is_hanging_up());
        h.caller(1000, false);
        assert_eq!(count(&h.take(), &PipelineOutput::HangUp), 0, "only once");
    }

    #[test]
    fn a_key_press_stops_the_agent_at_once_even_in_half_duplex_and_is_a_turn() {
        let mut h = Harness::new();
        h.pipeline.config.interruption.enabled = false;
        caller_turn(&mut h, "Read it back, please.");
        reply(
            &mut h,
            "Two tiramisu for twenty dollars, press 1 to confirm",
            2000,
        );
        h.caller(400, false);
        assert_eq!(non_silent_frames(&h.take()), 20);
        h.input(PipelineInput::KeyPressed('1'));
        let out = h.take();
        let heard = out.iter().find_map(|o| match o {
            PipelineOutput::Interrupt { heard } => Some(heard.clone()),
            _ => None,
        });
        assert!(heard.is_some_and(|heard| heard.starts_with("Two")));
        assert!(out.contains(&PipelineOutput::CancelSynthesis));
        assert_eq!(out.last(), Some(&PipelineOutput::KeyPressed('1')));
        assert_eq!(h.pipeline.state(), AgentState::Thinking);
        h.caller(200, false);
        assert_eq!(
            non_silent_frames(&h.take()),
            0,
            "no agent audio after the key"
        );
    }

    #[test]
    fn a_key_press_while_listening_is_a_turn_without_an_interruption() {
        let mut h = Harness::new();
        h.input(PipelineInput::KeyPressed('#'));
        let out = h.take();
        assert!(
            !out.iter()
                .any(|o| matches!(o, PipelineOutput::Interrupt { .. }))
        );
        assert!(out.contains(&PipelineOutput::KeyPressed('#')));
    }

    #[test]
    fn a_quiet_caller_is_reported_after_the_silence_time_counted_from_the_last_word_played() {
        let mut h = Harness::new();
        h.pipeline.config.silence_prompt = Some(Duration::from_secs(5));
        h.caller(4900, false);
        assert_eq!(count(&h.take(), &PipelineOutput::CallerSilent), 0);
        h.caller(200, false);
        assert_eq!(count(&h.take(), &PipelineOutput::CallerSilent), 1);
        // the session asks whether the caller is still there: the next silence is counted
        // from the end of that question
        reply(&mut h, "Are you still there?", 1000);
        h.caller(1000 + 4900, false);
        assert_eq!(count(&h.take(), &PipelineOutput::CallerSilent), 0);
        h.caller(200, false);
        assert_eq!(count(&h.take(), &PipelineOutput::CallerSilent), 1);
        // speaking resets it
        h.session(SessionEvent::AgentStateChanged {
            state: AgentState::Listening,
        });
        h.caller(4000, false);
        caller_turn(&mut h, "Yes, sorry.");
        reply(&mut h, "No problem.", 200);
        h.caller(4000, false);
        assert_eq!(count(&h.take(), &PipelineOutput::CallerSilent), 0);
    }

    #[test]
    fn a_transfer_waits_until_the_notice_has_played_then_a_short_tail() {
        let mut h = Harness::new();
        caller_turn(&mut h, "Can I talk to a person?");
        reply(&mut h, "One moment, I'm transferring you.", 1000);
        let to = "tel:+15550199".to_string();
        h.session(SessionEvent::TransferRequested { to: to.clone() });
        h.caller(1260, false);
        assert_eq!(
            count(&h.take(), &PipelineOutput::Transfer { to: to.clone() }),
            0
        );
        h.caller(100, false);
        assert_eq!(
            count(&h.take(), &PipelineOutput::Transfer { to: to.clone() }),
            1
        );
        h.caller(1000, false);
        assert_eq!(
            count(&h.take(), &PipelineOutput::Transfer { to }),
            0,
            "only once"
        );
    }
}
