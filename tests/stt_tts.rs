//! The OpenAI-compatible speech-to-text and text-to-speech adapters against the fake
//! OpenAI server: what goes on the wire, lenient transcripts, retries, time-outs and
//! streamed audio.

mod common;

use std::io::Cursor;
use std::time::{Duration, Instant};

use bella_vista::voice::audio::AudioFrame;
use bella_vista::voice::stt::{OpenAiStt, OpenAiSttSettings, Stt, SttError};
use bella_vista::voice::tts::{OpenAiTts, OpenAiTtsSettings, Tts, TtsError};
use common::openai_server::{
    Endpoint, FakeOpenAi, Response, SPEECH_SAMPLE_RATE, SpeechPacing, error_body, speech_pcm,
    speech_samples,
};
use futures_util::StreamExt;

fn stt(server: &FakeOpenAi, timeout: Duration, max_retries: u32) -> OpenAiStt {
    OpenAiStt::new(OpenAiSttSettings {
        base_url: Some(server.base_url()),
        api_key: Some("sk-test".into()),
        model: "whisper-1".into(),
        language: Some("en".into()),
        timeout,
        max_retries,
        initial_backoff: Duration::from_millis(10),
    })
    .expect("valid settings")
}

fn tts(server: &FakeOpenAi, timeout: Duration, max_retries: u32) -> OpenAiTts {
    OpenAiTts::new(OpenAiTtsSettings {
        base_url: Some(server.base_url()),
        api_key: Some("sk-test".into()),
        model: "tts-1".into(),
        voice: "alloy".into(),
        sample_rate: SPEECH_SAMPLE_RATE,
        first_byte_timeout: timeout,
        idle_timeout: timeout,
        max_retries,
        initial_backoff: Duration::from_millis(10),
    })
    .expect("valid settings")
}

/// Half a second of a 440 Hz tone at 16 kHz.
fn utterance() -> AudioFrame {
    let samples = (0..8000)
        .map(|i| ((f64::from(i) * 440.0 * std::f64::consts::TAU / 16_000.0).sin() * 8000.0) as i16)
        .collect();
    AudioFrame::mono(samples, 16_000)
}

fn vocabulary() -> Vec<String> {
    vec!["Bruschetta".into(), "Tiramisu".into(), "Panna Cotta".into()]
}

/// Every item of a speech stream, frames and errors.
async fn drain(tts: &OpenAiTts, text: &str) -> (Vec<AudioFrame>, Option<TtsError>) {
    let mut stream = tts.synthesize(text);
    let mut frames = Vec::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(frame) => frames.push(frame),
            Err(error) => return (frames, Some(error)),
        }
    }
    (frames, None)
}

#[tokio::test]
async fn a_transcription_uploads_a_wav_with_the_model_and_the_vocabulary_hint() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript(" Two Bruschetta, please. ".into()),
    );
    let stt = stt(&server, Duration::from_secs(5), 0);
    let audio = utterance();

    let transcript = stt
        .transcribe(audio.clone(), &vocabulary())
        .await
        .expect("a transcript");

    assert_eq!(transcript.text, "Two Bruschetta, please.");
    let requests = server.transcription_requests();
    assert_eq!(requests.len(), 1);
    let request = &requests[0];
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.form_text("model").as_deref(), Some("whisper-1"));
    assert_eq!(request.form_text("language").as_deref(), Some("en"));
    assert_eq!(
        request.form_text("response_format").as_deref(),
        Some("json")
    );
    let prompt = request.form_text("prompt").expect("a vocabulary prompt");
    for term in vocabulary() {
        assert!(prompt.contains(&term), "{term} missing from {prompt:?}");
    }
    let file = request.form_part("file").expect("a file part");
    assert!(
        file.filename
            .as_deref()
            .is_some_and(|name| name.ends_with(".wav"))
    );
    let mut wav = hound::WavReader::new(Cursor::new(file.data)).expect("a valid WAV file");
    let spec = wav.spec();
    assert_eq!((spec.sample_rate, spec.channels), (16_000, 1));
    assert_eq!(spec.bits_per_sample, 16);
    let samples: Vec<i16> = wav.samples::<i16>().map(|s| s.expect("sample")).collect();
    assert_eq!(samples, audio.samples());
}

#[tokio::test]
async fn transcripts_without_usage_or_as_plain_text_are_accepted() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::Transcriptions,
        Response::TranscriptWithoutUsage("One Tiramisu.".into()),
    );
    server.push(
        Endpoint::Transcriptions,
        Response::PlainText("And a Panna Cotta.\n".into()),
    );
    let stt = stt(&server, Duration::from_secs(5), 0);

    let first = stt.transcribe(utterance(), &[]).await.expect("no usage");
    let second = stt.transcribe(utterance(), &[]).await.expect("plain text");

    assert_eq!(first.text, "One Tiramisu.");
    assert_eq!(second.text, "And a Panna Cotta.");
    assert_eq!(
        server.transcription_requests()[0].form_text("prompt"),
        None,
        "no vocabulary, no prompt"
    );
}

#[tokio::test]
async fn a_server_error_is_retried_and_a_client_error_is_not() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::Transcriptions,
        Response::Status(500, error_body("overloaded")),
    );
    server.push(
        Endpoint::Transcriptions,
        Response::Transcript("Hello.".into()),
    );
    server.push(
        Endpoint::Transcriptions,
        Response::Status(400, error_body("unsupported file")),
    );
    let stt = stt(&server, Duration::from_secs(5), 2);

    let retried = stt.transcribe(utterance(), &vocabulary()).await;
    assert_eq!(retried.expect("the retry succeeds").text, "Hello.");
    assert_eq!(server.transcription_requests().len(), 2);

    let refused = stt.transcribe(utterance(), &vocabulary()).await;
    assert_eq!(
        refused,
        Err(SttError::Http {
            status: 400,
            message: "unsupported file".into()
        })
    );
    assert_eq!(server.transcription_requests().len(), 3);
}

#[tokio::test]
async fn a_hung_transcription_times_out_within_the_configured_time() {
    let server = FakeOpenAi::start().await;
    server.push(Endpoint::Transcriptions, Response::Hang);
    server.push(Endpoint::Transcriptions, Response::Hang);
    let limit = Duration::from_millis(300);
    let stt = stt(&server, limit, 1);

    let started = Instant::now();
    let result = stt.transcribe(utterance(), &vocabulary()).await;

    assert_eq!(result, Err(SttError::Timeout(limit)));
    let elapsed = started.elapsed();
    assert!(elapsed >= limit * 2, "two attempts, took {elapsed:?}");
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
    assert_eq!(server.transcription_requests().len(), 2);
}

#[tokio::test]
async fn speech_streams_the_servers_audio_at_its_rate_across_odd_chunks() {
    let server = FakeOpenAi::start().await;
    server.set_speech_pacing(SpeechPacing {
        chunk_bytes: 999,
        chunk_interval: Duration::from_millis(1),
        ..SpeechPacing::default()
    });
    let tts = tts(&server, Duration::from_secs(5), 0);
    let text = "Your Tiramisu is on its way.";

    let before = Instant::now();
    let (frames, error) = drain(&tts, text).await;

    assert_eq!(error, None);
    assert!(frames.len() > 1, "streamed in pieces, got {}", frames.len());
    assert!(frames.iter().all(|frame| frame.channels() == 1
        && frame.sample_rate() == tts.sample_rate()
        && !frame.is_empty()));
    let samples: Vec<i16> = frames.iter().flat_map(|f| f.samples().to_vec()).collect();
    assert_eq!(samples.len(), speech_samples(text));
    let expected: Vec<i16> = speech_pcm(text)
        .chunks_exact(2)
        .map(|pair| i16::from_le_bytes([pair[0], pair[1]]))
        .collect();
    assert_eq!(
        samples, expected,
        "no sample lost or garbled at chunk edges"
    );
    let total: Duration = frames.iter().map(AudioFrame::duration).sum();
    let expected_duration = Duration::from_millis(60) * text.chars().count() as u32;
    assert!(total.abs_diff(expected_duration) < Duration::from_millis(1));

    let requests = server.requests_to(Endpoint::Speech);
    let body = requests[0].json();
    assert_eq!(body["model"], "tts-1");
    assert_eq!(body["voice"], "alloy");
    assert_eq!(body["input"], text);
    assert_eq!(body["response_format"], "pcm");
    let arrivals = server.speech_arrivals();
    assert_eq!(arrivals.len(), 1);
    assert_eq!(arrivals[0].0, text);
    assert!(arrivals[0].1 >= before);
}

#[tokio::test]
async fn audio_arrives_before_the_body_ends_and_a_stall_after_it_is_not_retried() {
    let server = FakeOpenAi::start().await;
    let audio = speech_pcm("Ciao!");
    server.push(Endpoint::Speech, Response::AudioThenHang(audio.clone()));
    let limit = Duration::from_millis(300);
    let tts = tts(&server, limit, 2);

    let (frames, error) = drain(&tts, "Ciao!").await;

    let samples: usize = frames.iter().map(AudioFrame::samples_per_channel).sum();
    assert_eq!(
        samples,
        audio.len() / 2,
        "every byte sent came out as audio"
    );
    assert_eq!(error, Some(TtsError::Timeout(limit)));
    assert_eq!(
        server.speech_texts(),
        ["Ciao!"],
        "no retry once audio went out"
    );
}

#[tokio::test]
async fn an_error_status_gives_a_tts_error_and_a_5xx_before_audio_is_retried() {
    let server = FakeOpenAi::start().await;
    server.push(
        Endpoint::Speech,
        Response::Status(400, error_body("unknown voice")),
    );
    server.push(Endpoint::Speech, Response::Status(503, error_body("busy")));
    let tts = tts(&server, Duration::from_secs(5), 1);

    let (frames, error) = drain(&tts, "Hello there.").await;
    assert!(frames.is_empty());
    assert_eq!(
        error,
        Some(TtsError::Http {
            status: 400,
            message: "unknown voice".into()
        })
    );
    assert_eq!(server.speech_texts().len(), 1);

    let (frames, error) = drain(&tts, "Hello there.").await;
    assert_eq!(error, None, "the retry after 503 gets the default audio");
    let samples: usize = frames.iter().map(AudioFrame::samples_per_channel).sum();
    assert_eq!(samples, speech_samples("Hello there."));
    assert_eq!(server.speech_texts().len(), 3);
}

#[tokio::test]
async fn a_hang_before_the_first_byte_times_out_and_empty_text_asks_nothing() {
    let server = FakeOpenAi::start().await;
    server.push(Endpoint::Speech, Response::Hang);
    let limit = Duration::from_millis(200);
    let tts = tts(&server, limit, 0);

    let started = Instant::now();
    let (frames, error) = drain(&tts, "Anyone there?").await;
    assert!(frames.is_empty());
    assert_eq!(error, Some(TtsError::Timeout(limit)));
    assert!(started.elapsed() < Duration::from_secs(2));

    let (frames, error) = drain(&tts, "  \n").await;
    assert!(frames.is_empty() && error.is_none());
    assert_eq!(server.speech_texts().len(), 1);
}
