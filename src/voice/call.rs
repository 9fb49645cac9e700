//! Running one voice call: the async driver around the [`Pipeline`] state machine. It owns
//! the audio endpoints and the providers, executes what the pipeline asks for, and feeds
//! back what comes of it.
//!
//! Two paces: [`Pace::RealTime`] follows the input's own clock (a microphone, a room);
//! [`Pace::Fast`] reads the input as fast as possible and, whenever the pipeline waits for
//! a provider, waits too before feeding more audio, so provider latency takes no call time
//! and a recorded call replays deterministically.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::audio::{AudioFrame, move_front, samples_for};
use super::audio_io::{AudioInput, AudioOutput};
use super::metrics::{CallSummary, TurnReport};
use super::pipeline::{CALLER_RATE, Pipeline, PipelineConfig, PipelineInput, PipelineOutput};
use super::resample::Resampler;
use super::stt::Stt;
use super::tts::Tts;
use super::vad::{VadPool, VadStream};
use crate::agent::{AgentState, SessionEvent, SessionHandle, SessionInput, SessionSender};

/// The providers a call uses.
#[derive(Clone)]
pub struct VoiceServices {
    /// Speech to text.
    pub stt: Arc<dyn Stt>,
    /// Text to speech.
    pub tts: Arc<dyn Tts>,
    /// Voice activity detection.
    pub vad: VadPool,
    /// Words the caller is likely to say (menu items), as a transcription hint.
    pub vocabulary: Vec<String>,
}

/// How time passes in a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// Follow the input's clock.
    RealTime,
    /// As fast as the machine allows; provider waits take no call time.
    Fast,
}

/// Why a call stopped early.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Voice activity detection failed.
    #[error("voice activity detection failed: {0}")]
    Vad(String),
    /// Audio could not be converted between rates.
    #[error("resampling failed: {0}")]
    Resample(String),
}

/// When the agent's state changed, in call time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StateChange {
    /// Seconds into the call.
    pub at_s: f64,
    /// The new state.
    pub state: AgentState,
}

/// What happened in a call: every turn with its metrics, and their summary.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CallReport {
    /// Length of the call in call time, seconds.
    pub duration_s: f64,
    /// Each turn, in order.
    pub turns: Vec<TurnReport>,
    /// Percentiles per stage.
    pub summary: CallSummary,
    /// The agent's state changes.
    pub states: Vec<StateChange>,
    /// Whether the agent ended the call (rather than the caller leaving or the input
    /// ending); the transport then hangs up for the caller.
    pub hung_up: bool,
}

/// What a call reports live, for whoever shows it (a LiveKit room's transcription stream
/// and `lk.agent.state` attribute).
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// The agent's state changed.
    StateChanged(AgentState),
    /// A caller turn was committed with this transcript.
    UserTranscript(String),
    /// The agent is about to say this sentence.
    AgentTranscript(String),
    /// The agent asks to transfer the caller to `to`, now that what it said has played;
    /// the transport answers with [`CallInput::TransferFinished`].
    TransferRequested {
        /// Where to (`tel:...` or `sip:...`).
        to: String,
    },
}

/// What a transport tells a running call besides audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallInput {
    /// The caller pressed a key on their phone keypad (DTMF).
    KeyPressed(char),
    /// The outcome of a [`CallEvent::TransferRequested`].
    TransferFinished(Result<(), String>),
}

/// The two-way link between a call and a transport that shows it and can act on it (a
/// LiveKit room): events out, inputs in.
#[derive(Debug)]
pub struct CallLink {
    /// Where the call reports what happens.
    pub events: mpsc::UnboundedSender<CallEvent>,
    /// What the transport tells the call.
    pub inputs: mpsc::UnboundedReceiver<CallInput>,
}

impl CallLink {
    /// A link and the transport's ends of it: the events to read, the inputs to send.
    pub fn new() -> (
        CallLink,
        mpsc::UnboundedReceiver<CallEvent>,
        mpsc::UnboundedSender<CallInput>,
    ) {
        let (events, events_rx) = mpsc::unbounded_channel();
        let (inputs_tx, inputs) = mpsc::unbounded_channel();
        (CallLink { events, inputs }, events_rx, inputs_tx)
    }
}

/// How long a fast-paced call waits for one provider result before moving on.
const SETTLE_LIMIT: Duration = Duration::from_secs(30);
/// Silence fed after the caller's audio ends, so the last reply can play out.
const MAX_TRAILING: Duration = Duration::from_secs(60);

/// Runs a call until the input ends (and, at [`Pace::Fast`], the agent has finished
/// speaking), then ends the session. Returns the report and the output back.
pub async fn run_call<I: AudioInput, O: AudioOutput>(
    session: SessionHandle,
    services: &VoiceServices,
    config: PipelineConfig,
    input: I,
    output: O,
    pace: Pace,
) -> Result<(CallReport, O), CallError> {
    run_call_with_events(session, services, config, input, output, pace, None).await
}

/// Like [`run_call`], also reporting [`CallEvent`]s as they happen and taking
/// [`CallInput`]s from the transport through `link`.
pub async fn run_call_with_events<I: AudioInput, O: AudioOutput>(
    session: SessionHandle,
    services: &VoiceServices,
    mut config: PipelineConfig,
    mut input: I,
    mut output: O,
    pace: Pace,
    link: Option<CallLink>,
) -> Result<(CallReport, O), CallError> {
    config.output_rate = output.sample_rate();
    let mut feed = CallerFeed::new(config.frame, pace);
    // In real time the call's clock is the caller's audio. A sender with DTX sends nothing
    // while quiet; without this, time (and the agent's audio) would stand still until its
    // next packet. So silence is supplied when audio is overdue.
    let mut gap_clock = tokio::time::interval(config.frame);
    gap_clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let (results_tx, mut results) = mpsc::unbounded_channel();
    let (events, mut call_inputs) = match link {
        Some(link) => (Some(link.events), Some(link.inputs)),
        None => (None, None),
    };
    let sender = session.sender();
    let forward = tokio::spawn(forward_events(session, results_tx.clone()));
    let mut driver = Driver::new(config, services, sender, results_tx, events);

    loop {
        if pace == Pace::Fast {
            driver.settle(&mut results, &mut output).await;
        }
        if driver.call_over() {
            break;
        }
        let samples = match feed.next_frame(&driver.pipeline) {
            NextFrame::Ready(samples) => samples,
            NextFrame::End => break,
            NextFrame::Wait => {
                tokio::select! {
                    biased;
                    Some(result) = results.recv() => {
                        driver.feed(result, &mut output).await;
                    }
                    Some(call_input) = next_input(&mut call_inputs) => {
                        driver.take_input(call_input, &mut output).await;
                    }
                    next = input.next_frame() => feed.receive(next)?,
                    _ = gap_clock.tick(), if pace == Pace::RealTime => feed.fill_overdue_gap(),
                }
                continue;
            }
        };
        driver.hear(samples, &mut results, &mut output).await?;
    }
    Ok((driver.finish(forward).await, output))
}

/// What the caller's side offers the loop next.
enum NextFrame {
    /// One frame of the caller's audio at [`CALLER_RATE`].
    Ready(Vec<i16>),
    /// Nothing yet: wait for audio, a provider result or the transport.
    Wait,
    /// The caller's audio has ended and the agent has nothing more to do.
    End,
}

/// The caller's audio cut into the pipeline's frames: converted to [`CALLER_RATE`],
/// silence supplied for DTX gaps in real time, and trailing silence after the input ends
/// (at fast pace) so the agent can finish what it is doing.
struct CallerFeed {
    caller: CallerAudio,
    frame: Duration,
    frame_samples: usize,
    pace: Pace,
    input_done: bool,
    trailing: Duration,
    /// When the input last delivered audio (or a gap was filled up to).
    audio_until: tokio::time::Instant,
}

impl CallerFeed {
    fn new(frame: Duration, pace: Pace) -> Self {
        Self {
            caller: CallerAudio::default(),
            frame,
            frame_samples: samples_for(CALLER_RATE, frame),
            pace,
            input_done: false,
            trailing: Duration::ZERO,
            audio_until: tokio::time::Instant::now(),
        }
    }

    /// A frame when one is buffered; after the input ended, silence while the agent is
    /// still busy at fast pace (up to [`MAX_TRAILING`]), else the end.
    fn next_frame(&mut self, pipeline: &Pipeline) -> NextFrame {
        if self.caller.buffered() >= self.frame_samples {
            return NextFrame::Ready(self.caller.take(self.frame_samples));
        }
        if !self.input_done {
            return NextFrame::Wait;
        }
        let idle = !pipeline.is_busy()
            && !pipeline.has_audio()
            && pipeline.state() == AgentState::Listening;
        if self.pace == Pace::RealTime || idle || self.trailing >= MAX_TRAILING {
            return NextFrame::End;
        }
        self.trailing += self.frame;
        NextFrame::Ready(vec![0; self.frame_samples])
    }

    /// Takes what the input delivered: audio, or its end.
    fn receive(&mut self, next: Option<AudioFrame>) -> Result<(), CallError> {
        match next {
            Some(audio) => {
                self.caller.push(&audio)?;
                self.audio_until = tokio::time::Instant::now();
            }
            None => {
                self.input_done = true;
                self.caller.flush(self.frame_samples)?;
            }
        }
        Ok(())
    }

    /// Supplies a frame of silence when the input's audio is [`GAP_FRAMES`] overdue.
    fn fill_overdue_gap(&mut self) {
        if self.audio_until.elapsed() >= self.frame * GAP_FRAMES {
            self.caller.fill_gap(self.frame_samples);
            self.audio_until += self.frame;
        }
    }
}

/// The next input from the transport, or never when there is no transport link (or it
/// closed).
async fn next_input(inputs: &mut Option<mpsc::UnboundedReceiver<CallInput>>) -> Option<CallInput> {
    match inputs {
        Some(receiver) => match receiver.recv().await {
            Some(input) => Some(input),
            None => {
                *inputs = None;
                std::future::pending().await
            }
        },
        None => std::future::pending().await,
    }
}

/// How many frames of caller audio may be overdue before silence is supplied.
const GAP_FRAMES: u32 = 3;

/// Caller audio converted to the pipeline's rate, waiting to be cut into frames.
#[derive(Default)]
struct CallerAudio {
    resampler: Option<Resampler>,
    samples: std::collections::VecDeque<i16>,
    /// Silence supplied for a gap that the input will still deliver (a DTX pause comes out
    /// of the decoder as silence when the next packet arrives): that much leading silence
    /// is dropped, so the gap is not counted twice.
    gap_debt: usize,
}

impl CallerAudio {
    fn fill_gap(&mut self, samples: usize) {
        self.samples.extend(std::iter::repeat_n(0, samples));
        self.gap_debt += samples;
    }

    /// Appends converted samples, first paying back supplied silence.
    fn extend(&mut self, samples: &[i16]) {
        let mut skip = 0;
        while skip < samples.len() && self.gap_debt > 0 && samples[skip].unsigned_abs() < 16 {
            skip += 1;
            self.gap_debt -= 1;
        }
        if skip < samples.len() {
            self.gap_debt = 0;
        }
        self.samples.extend(&samples[skip..]);
    }

    fn push(&mut self, frame: &AudioFrame) -> Result<(), CallError> {
        let mono = frame.to_mono();
        if mono.sample_rate() == CALLER_RATE {
            self.extend(mono.samples());
            return Ok(());
        }
        let resampler = match &mut self.resampler {
            Some(resampler) if resampler.input_rate() == mono.sample_rate() => resampler,
            slot => slot.insert(
                Resampler::new(mono.sample_rate(), CALLER_RATE, 1)
                    .map_err(|e| CallError::Resample(e.to_string()))?,
            ),
        };
        let converted = resampler
            .process(&mono)
            .map_err(|e| CallError::Resample(e.to_string()))?;
        self.extend(converted.samples());
        Ok(())
    }

    fn flush(&mut self, frame_samples: usize) -> Result<(), CallError> {
        if let Some(resampler) = &mut self.resampler {
            let rest = resampler
                .flush()
                .map_err(|e| CallError::Resample(e.to_string()))?;
            self.samples.extend(rest.samples());
        }
        let partial = self.samples.len() % frame_samples;
        if partial > 0 {
            self.samples
                .extend(std::iter::repeat_n(0, frame_samples - partial));
        }
        Ok(())
    }

    fn buffered(&self) -> usize {
        self.samples.len()
    }

    fn take(&mut self, count: usize) -> Vec<i16> {
        let mut out = Vec::with_capacity(count);
        move_front(&mut self.samples, count, &mut out);
        out
    }
}

/// Executes pipeline outputs and feeds results back.
struct Driver {
    pipeline: Pipeline,
    services: VoiceServices,
    sender: SessionSender,
    results_tx: mpsc::UnboundedSender<PipelineInput>,
    vad: VadStream,
    synthesis: Vec<JoinHandle<()>>,
    turns: Vec<TurnReport>,
    states: Vec<StateChange>,
    ended: bool,
    hung_up: bool,
    events: Option<mpsc::UnboundedSender<CallEvent>>,
}

impl Driver {
    fn new(
        config: PipelineConfig,
        services: &VoiceServices,
        sender: SessionSender,
        results_tx: mpsc::UnboundedSender<PipelineInput>,
        events: Option<mpsc::UnboundedSender<CallEvent>>,
    ) -> Self {
        Driver {
            pipeline: Pipeline::new(config),
            services: services.clone(),
            sender,
            results_tx,
            vad: services.vad.open_stream(),
            synthesis: Vec::new(),
            turns: Vec::new(),
            states: Vec::new(),
            ended: false,
            hung_up: false,
            events,
        }
    }

    /// At fast pace, waits for the providers while the agent is busy and silent, so their
    /// time takes no call time (up to [`SETTLE_LIMIT`] for each result).
    async fn settle<O: AudioOutput>(
        &mut self,
        results: &mut mpsc::UnboundedReceiver<PipelineInput>,
        output: &mut O,
    ) {
        while self.pipeline.is_busy() && !self.pipeline.has_audio() && !self.ended {
            match tokio::time::timeout(SETTLE_LIMIT, results.recv()).await {
                Ok(Some(result)) => self.feed(result, output).await,
                _ => break,
            }
        }
    }

    /// Whether the call is over: hung up, or the session ended and no goodbye is playing.
    fn call_over(&self) -> bool {
        self.hung_up || (self.ended && !self.pipeline.is_hanging_up())
    }

    /// One frame of the caller's audio through the VAD and the pipeline, then the clock
    /// tick and whatever results arrived meanwhile.
    async fn hear<O: AudioOutput>(
        &mut self,
        samples: Vec<i16>,
        results: &mut mpsc::UnboundedReceiver<PipelineInput>,
        output: &mut O,
    ) -> Result<(), CallError> {
        let frame = AudioFrame::mono(samples, CALLER_RATE);
        let is_speech = self
            .vad
            .classify(frame.clone())
            .await
            .map_err(|e| CallError::Vad(e.to_string()))?;
        let outputs = self
            .pipeline
            .handle(PipelineInput::CallerFrame { frame, is_speech }, call_now());
        self.execute(outputs, output).await;
        let outputs = self.pipeline.tick(call_now());
        self.execute(outputs, output).await;
        while let Ok(result) = results.try_recv() {
            self.feed(result, output).await;
        }
        Ok(())
    }

    /// Stops speech still being made, closes the session and reports the call.
    async fn finish(mut self, forward: JoinHandle<()>) -> CallReport {
        let duration_s = self.pipeline.now().as_secs_f64();
        for task in self.synthesis.drain(..) {
            task.abort();
        }
        let _ = self.sender.send(SessionInput::Close).await;
        let _ = forward.await;
        let report = CallReport {
            duration_s,
            summary: CallSummary::of(&self.turns),
            turns: self.turns,
            states: self.states,
            hung_up: self.hung_up,
        };
        tracing::info!(duration_s, summary = ?report.summary, "call ended");
        report
    }

    async fn feed<O: AudioOutput>(&mut self, input: PipelineInput, output: &mut O) {
        if matches!(input, PipelineInput::Session(SessionEvent::SessionEnded)) {
            self.ended = true;
        }
        let outputs = self.pipeline.handle(input, call_now());
        self.execute(outputs, output).await;
    }

    async fn take_input<O: AudioOutput>(&mut self, input: CallInput, output: &mut O) {
        match input {
            CallInput::KeyPressed(key) => {
                self.feed(PipelineInput::KeyPressed(key), output).await;
            }
            CallInput::TransferFinished(result) => {
                let _ = self
                    .sender
                    .send(SessionInput::TransferFinished(result))
                    .await;
            }
        }
    }

    async fn tell_session(&mut self, input: SessionInput) {
        if self.sender.send(input).await.is_err() {
            self.ended = true;
        }
    }

    fn report(&self, event: CallEvent) {
        if let Some(events) = &self.events {
            let _ = events.send(event);
        }
    }

    async fn execute<O: AudioOutput>(&mut self, outputs: Vec<PipelineOutput>, output: &mut O) {
        for item in outputs {
            match item {
                PipelineOutput::Transcribe { utterance, audio } => {
                    self.transcribe(utterance, audio)
                }
                PipelineOutput::UserTurn(text) => {
                    self.report(CallEvent::UserTranscript(text.clone()));
                    self.tell_session(SessionInput::UserTurn(text)).await;
                }
                PipelineOutput::KeyPressed(key) => {
                    self.tell_session(SessionInput::KeyPressed(key)).await;
                }
                PipelineOutput::CallerSilent => self.tell_session(SessionInput::CallerSilent).await,
                PipelineOutput::HangUp => self.hung_up = true,
                PipelineOutput::Transfer { to } => match &self.events {
                    Some(events) if events.send(CallEvent::TransferRequested { to }).is_ok() => {}
                    _ => {
                        let refused = Err("this call cannot be transferred".to_string());
                        self.tell_session(SessionInput::TransferFinished(refused))
                            .await;
                    }
                },
                PipelineOutput::Synthesize { sentence, text } => {
                    self.report(CallEvent::AgentTranscript(text.clone()));
                    self.synthesize(sentence, text);
                }
                PipelineOutput::CancelSynthesis => {
                    for task in self.synthesis.drain(..) {
                        task.abort();
                    }
                }
                PipelineOutput::Interrupt { heard } => {
                    let _ = self.sender.send(SessionInput::Interrupted { heard }).await;
                }
                PipelineOutput::Play(frame) => {
                    if output.write(frame).await.is_err() {
                        self.ended = true;
                    }
                }
                PipelineOutput::StateChanged(state) => {
                    self.report(CallEvent::StateChanged(state));
                    self.states.push(StateChange {
                        at_s: self.pipeline.now().as_secs_f64(),
                        state,
                    });
                }
                PipelineOutput::TurnEnded(report) => {
                    tracing::info!(metrics = ?report.metrics, caller = ?report.caller_text, "turn");
                    self.turns.push(*report);
                }
            }
        }
    }

    fn transcribe(&self, utterance: u64, audio: AudioFrame) {
        let stt = self.services.stt.clone();
        let vocabulary = self.services.vocabulary.clone();
        let results = self.results_tx.clone();
        tokio::spawn(async move {
            let result = stt
                .transcribe(audio, &vocabulary)
                .await
                .map(|transcript| transcript.text)
                .map_err(|error| error.to_string());
            let _ = results.send(PipelineInput::Transcript { utterance, result });
        });
    }

    fn synthesize(&mut self, sentence: u64, text: String) {
        self.synthesis.retain(|task| !task.is_finished());
        let tts = self.services.tts.clone();
        let results = self.results_tx.clone();
        let rate = self.pipeline_output_rate();
        self.synthesis.push(tokio::spawn(async move {
            let error = speak(tts.as_ref(), &text, rate, sentence, &results)
                .await
                .err();
            let _ = results.send(PipelineInput::SpeechFinished { sentence, error });
        }));
    }

    fn pipeline_output_rate(&self) -> u32 {
        self.pipeline.output_rate()
    }
}

/// Streams one sentence's audio, converted to `rate`, into the results.
async fn speak(
    tts: &dyn Tts,
    text: &str,
    rate: u32,
    sentence: u64,
    results: &mpsc::UnboundedSender<PipelineInput>,
) -> Result<(), String> {
    use futures_util::StreamExt;
    let mut stream = tts.synthesize(text);
    let mut resampler: Option<Resampler> = None;
    while let Some(frame) = stream.next().await {
        let frame = frame.map_err(|e| e.to_string())?.to_mono();
        let frame = if frame.sample_rate() == rate {
            frame
        } else {
            let resampler = match &mut resampler {
                Some(r) => r,
                slot => slot.insert(
                    Resampler::new(frame.sample_rate(), rate, 1).map_err(|e| e.to_string())?,
                ),
            };
            resampler.process(&frame).map_err(|e| e.to_string())?
        };
        if !frame.is_empty() {
            let _ = results.send(PipelineInput::SpeechAudio { sentence, frame });
        }
    }
    if let Some(resampler) = &mut resampler {
        let rest = resampler.flush().map_err(|e| e.to_string())?;
        if !rest.is_empty() {
            let _ = results.send(PipelineInput::SpeechAudio {
                sentence,
                frame: rest,
            });
        }
    }
    Ok(())
}

/// Forwards the session's events into the pipeline's results until the session ends.
async fn forward_events(mut session: SessionHandle, results: mpsc::UnboundedSender<PipelineInput>) {
    while let Some(event) = session.next_event().await {
        let ended = matches!(event, SessionEvent::SessionEnded);
        if results.send(PipelineInput::Session(event)).is_err() || ended {
            break;
        }
    }
}

/// The call's clock: tokio's, so the pipeline's timers and the call's metrics run on the
/// same time as the call's sleeps and time-outs (virtual time in paused tests).
fn call_now() -> Instant {
    tokio::time::Instant::now().into_std()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_supplied_for_a_gap_is_not_counted_twice() {
        let mut caller = CallerAudio::default();
        caller.fill_gap(320);
        caller.fill_gap(320);
        // the decoder delivers the pause as silence, then speech
        let mut late: Vec<i16> = vec![0; 800];
        late.extend(vec![1000; 320]);
        caller.push(&AudioFrame::mono(late, CALLER_RATE)).unwrap();
        assert_eq!(caller.buffered(), 640 + 160 + 320);
        // speech pays back nothing: a late real frame is kept whole
        caller.fill_gap(320);
        caller
            .push(&AudioFrame::mono(vec![1000; 320], CALLER_RATE))
            .unwrap();
        assert_eq!(caller.buffered(), 640 + 160 + 320 + 320 + 320);
    }
}
