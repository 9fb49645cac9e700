//! Voice calls from audio in memory against the fake OpenAI server (STT and TTS) and a
//! scripted model, answered by the Bella Vista order taker.

use std::sync::Arc;
use std::time::Duration;

use bella_vista::agent::{AgentSession, SessionOptions};
use bella_vista::bella_vista::order_taker;
use bella_vista::io::file_audio::{FileInput, Recording};
use bella_vista::llm::scripted::ScriptedLlm;
use bella_vista::voice::audio::AudioFrame;
use bella_vista::voice::call::{CallReport, Pace, VoiceServices, run_call};
use bella_vista::voice::pipeline::PipelineConfig;
use bella_vista::voice::stt::{OpenAiStt, OpenAiSttSettings};
use bella_vista::voice::tts::{OpenAiTts, OpenAiTtsSettings};
use bella_vista::voice::vad::{VadAggressiveness, VadPool};

use super::openai_server::FakeOpenAi;

/// Speech-to-text and text-to-speech at the fake server, with short time-outs.
pub fn services(server: &FakeOpenAi) -> VoiceServices {
    let stt = OpenAiStt::new(OpenAiSttSettings {
        base_url: Some(server.base_url()),
        timeout: Duration::from_millis(800),
        max_retries: 1,
        initial_backoff: Duration::from_millis(10),
        ..OpenAiSttSettings::default()
    })
    .expect("stt settings");
    let tts = OpenAiTts::new(OpenAiTtsSettings {
        base_url: Some(server.base_url()),
        first_byte_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(800),
        max_retries: 1,
        initial_backoff: Duration::from_millis(10),
        ..OpenAiTtsSettings::default()
    })
    .expect("tts settings");
    VoiceServices {
        stt: Arc::new(stt),
        tts: Arc::new(tts),
        vad: VadPool::start(VadAggressiveness::Aggressive),
        vocabulary: vec!["Bella Vista".into(), "Tiramisu".into(), "Bruschetta".into()],
    }
}

/// A finished call: its report, the agent's audio, and where its orders went.
pub struct VoiceCall {
    pub report: CallReport,
    pub agent_audio: AudioFrame,
    pub db: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// Runs a whole call: `caller` audio in, fast-paced, the order taker on `llm`.
pub async fn call(
    server: &FakeOpenAi,
    llm: &ScriptedLlm,
    caller: &AudioFrame,
    config: PipelineConfig,
) -> VoiceCall {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("orders.db");
    let agent = order_taker(super::bella::restaurant(&db));
    let session = AgentSession::new(llm.clone())
        .options(SessionOptions::default())
        .start(agent);
    let input = FileInput::new(caller, Duration::from_millis(20), false);
    let (report, recording) = run_call(
        session,
        &services(server),
        config,
        input,
        Recording::new(24_000),
        Pace::Fast,
    )
    .await
    .expect("the call runs");
    VoiceCall {
        report,
        agent_audio: recording.into_frame(),
        db,
        _dir: dir,
    }
}

/// The level of `audio` between `from` and `to` seconds, in dBFS.
pub fn level_between(audio: &AudioFrame, from: f64, to: f64) -> f32 {
    let rate = f64::from(audio.sample_rate());
    let start = ((from * rate) as usize).min(audio.samples().len());
    let end = ((to * rate) as usize).min(audio.samples().len());
    AudioFrame::mono(audio.samples()[start..end].to_vec(), audio.sample_rate()).level_dbfs()
}
