//! With a slow model, the first sentence is synthesized while the model is still writing:
//! the first speech request leaves long before the model finishes.

mod common;

use std::time::Duration;

use bella_vista::llm::scripted::{ScriptedLlm, Step};
use bella_vista::voice::pipeline::PipelineConfig;
use common::openai_server::FakeOpenAi;
use common::speech::silence;
use common::voice::call;

#[tokio::test]
async fn the_first_sentence_is_spoken_before_the_model_finishes() {
    let server = FakeOpenAi::start().await;
    let text = "Welcome to Bella Vista, thanks for calling. Tonight we have grilled salmon, \
                ribeye steak and a very good tiramisu. What can I get for you?";
    let words = text.split_whitespace().count();
    let delay = Duration::from_millis(40);
    let llm = ScriptedLlm::new([Step::reply().chunk_delay(delay).text(text)]);
    let caller = silence(Duration::from_secs(3), 16_000);
    call(&server, &llm, &caller, PipelineConfig::default()).await;
    llm.verify().unwrap();

    let arrivals = server.speech_arrivals();
    let texts: Vec<&str> = arrivals.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        texts,
        vec![
            "Welcome to Bella Vista, thanks for calling.",
            "Tonight we have grilled salmon, ribeye steak and a very good tiramisu.",
            "What can I get for you?"
        ]
    );
    let first = arrivals[0].1;
    let last = arrivals[2].1;
    // the model needs words x delay to finish; the first sentence is 7 words in
    let rest_of_stream = delay * (words as u32 - 7);
    assert!(
        last.duration_since(first) >= rest_of_stream.mul_f32(0.8),
        "first speech request {:?} before the last; the model streamed for {:?} more",
        last.duration_since(first),
        rest_of_stream
    );
}
