//! The container image as a restaurant runs it: built from this checkout by
//! `scripts/image/build.sh` (named in `BELLA_VISTA_IMAGE`; `scripts/test` builds it and
//! starts a Docker daemon of its own, see `scripts/image/dockerd.sh`), then:
//! - at most 40 MB, running as a non-root user;
//! - `--help`; `orders list --json` on a fresh named volume prints `[]`; a host directory
//!   given to uid 10001 (as the README says) holds the database, and one that is not gives
//!   an error that says what to do;
//! - `start` on the host network registers with a real livekit-server, answers `/health`,
//!   takes a call dispatched by the official Python SDK caller (greets it), and
//!   `docker stop` drains it and it exits 0.
//!
//! Without `BELLA_VISTA_IMAGE` (no Docker here) the tests say so and pass.

mod common;

use std::process::{Command, Output};
use std::time::Duration;

use bella_vista::io::wav::write_wav;
use bella_vista::voice::audio::AudioFrame;
use common::livekit::{Caller, CallerPlan, LiveKit};
use common::openai_server::{Endpoint, FakeOpenAi, Response, text_chunks};
use common::worker::{test_dir, wait_until};
use serde_json::Value;

const GREETING: &str = "Hello, this is Bella Vista!";
const MAX_IMAGE_BYTES: u64 = 40_000_000;

/// The image and the docker binary to run it with, or `None` (the test is skipped).
fn image() -> Option<(String, String)> {
    let image = std::env::var("BELLA_VISTA_IMAGE").ok()?;
    let docker = std::env::var("BELLA_VISTA_DOCKER").unwrap_or_else(|_| "docker".into());
    Some((docker, image))
}

fn docker(docker: &str, args: &[&str]) -> Output {
    Command::new(docker)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{docker} {args:?}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_string()
}

/// Removes a container or volume when dropped, also when the test fails.
struct Cleanup(String, Vec<&'static str>, String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let mut args = self.1.clone();
        args.push(&self.2);
        let _ = Command::new(&self.0).args(&args).output();
    }
}

#[test]
fn the_image_is_small_runs_as_bella_and_keeps_orders_in_data() {
    let Some((bin, image)) = image() else {
        eprintln!("BELLA_VISTA_IMAGE not set: no image to test (scripts/test builds one)");
        return;
    };
    let size: u64 = stdout(&docker(
        &bin,
        &["image", "inspect", "--format", "{{.Size}}", &image],
    ))
    .parse()
    .expect("image size");
    eprintln!("image {image}: {:.1} MB", size as f64 / 1e6);
    assert!(size <= MAX_IMAGE_BYTES, "image is {size} bytes");
    let user = stdout(&docker(
        &bin,
        &["image", "inspect", "--format", "{{.Config.User}}", &image],
    ));
    assert_eq!(user, "10001:10001");

    let help = docker(&bin, &["run", "--rm", &image, "--help"]);
    assert!(help.status.success(), "{}", stderr(&help));
    assert!(stdout(&help).contains("start"), "{}", stdout(&help));

    // A named volume: created from the image's /data, owned by bella.
    let volume = format!("bv-test-{}", std::process::id());
    let _volume = Cleanup(bin.clone(), vec!["volume", "rm", "-f"], volume.clone());
    let listed = docker(
        &bin,
        &[
            "run",
            "--rm",
            "-v",
            &format!("{volume}:/data"),
            &image,
            "orders",
            "list",
            "--json",
        ],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed), "[]");

    // A host directory, given to uid 10001 as the README says.
    let dir = test_dir("image", "bind");
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mount = format!("{}:/data", data.display());
    let chown = Command::new("chown")
        .args(["10001:10001", &data.display().to_string()])
        .status()
        .expect("chown");
    assert!(chown.success());
    let listed = docker(
        &bin,
        &[
            "run", "--rm", "-v", &mount, &image, "orders", "list", "--json",
        ],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert_eq!(stdout(&listed), "[]");
    assert!(data.join("orders.db").exists());

    // One left to root: an error that says what to do.
    let root_owned = dir.join("root-owned");
    std::fs::create_dir_all(&root_owned).unwrap();
    let mount = format!("{}:/data", root_owned.display());
    let refused = docker(
        &bin,
        &[
            "run", "--rm", "-v", &mount, &image, "orders", "list", "--json",
        ],
    );
    assert!(!refused.status.success());
    let message = stderr(&refused);
    assert!(
        message.contains("10001") && message.contains("/data"),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_takes_a_dispatched_call_and_drains_on_docker_stop() {
    let Some((bin, image)) = image() else {
        eprintln!("BELLA_VISTA_IMAGE not set: no image to test (scripts/test builds one)");
        return;
    };
    let server = LiveKit::start();
    let fake = FakeOpenAi::start().await;
    for _ in 0..16 {
        fake.push(
            Endpoint::ChatCompletions,
            Response::Stream(text_chunks(&[GREETING])),
        );
    }
    let name = format!("bv-test-worker-{}", std::process::id());
    let _container = Cleanup(bin.clone(), vec!["rm", "-f"], name.clone());
    let volume = format!("bv-test-start-{}", std::process::id());
    let _volume = Cleanup(bin.clone(), vec!["volume", "rm", "-f"], volume.clone());
    let started = docker(
        &bin,
        &[
            "run",
            "-d",
            "--name",
            &name,
            "--network",
            "host",
            "-v",
            &format!("{volume}:/data"),
            "-e",
            &format!("LIVEKIT_URL={}", server.url()),
            "-e",
            "LIVEKIT_API_KEY=devkey",
            "-e",
            "LIVEKIT_API_SECRET=secret",
            "-e",
            &format!("OPENAI_BASE_URL={}", fake.base_url()),
            "-e",
            "BELLA_VISTA_HTTP_LISTEN=127.0.0.1:0",
            &image,
            "start",
        ],
    );
    assert!(started.status.success(), "{}", stderr(&started));
    let logs = || {
        let output = docker(&bin, &["logs", &name]);
        format!("{}{}", stdout(&output), stderr(&output))
    };
    let messages = |text: &str| -> Vec<Value> {
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .collect()
    };
    let registered = wait_until(Duration::from_secs(30), || {
        messages(&logs())
            .iter()
            .any(|m| m["fields"]["message"] == "worker registered")
    })
    .await;
    assert!(registered, "the container did not register:\n{}", logs());
    let text = logs();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            serde_json::from_str::<Value>(line).is_ok(),
            "not a JSON log line: {line}"
        );
    }
    let address = messages(&text)
        .iter()
        .find_map(|m| m["fields"]["address"].as_str().map(str::to_string))
        .unwrap_or_else(|| panic!("no health address:\n{text}"));
    let health = reqwest::get(format!("http://{address}/health"))
        .await
        .expect("health");
    assert_eq!(health.status().as_u16(), 200);

    let wav = server.path("silence.wav");
    write_wav(
        &wav,
        &AudioFrame::silence(48_000, 1, Duration::from_millis(500)),
    )
    .unwrap();
    let caller = Caller::start(
        &server,
        CallerPlan {
            room: "image-room",
            identity: "caller-image",
            wav_in: Some(&wav),
            speak_after: 0.5,
            duration: 8.0,
            agent_name: Some("bella-vista"),
        },
    );
    let heard = caller.finish(Duration::from_secs(60)).await;
    let agent_said: Vec<&str> = heard["transcriptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["identity"] != "caller-image")
        .filter_map(|t| t["text"].as_str())
        .collect();
    assert!(
        agent_said.contains(&GREETING),
        "not greeted: {agent_said:?}\n{heard:#}\n{}",
        logs()
    );

    let stop = docker(&bin, &["stop", "--time", "30", &name]);
    assert!(stop.status.success(), "{}", stderr(&stop));
    let exit = stdout(&docker(
        &bin,
        &["inspect", "--format", "{{.State.ExitCode}}", &name],
    ));
    let text = logs();
    assert_eq!(exit, "0", "{text}");
    assert!(text.contains("worker stopped"), "{text}");
}
