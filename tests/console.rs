//! The binary: `console` driven through a pipe against a local OpenAI-compatible server,
//! `orders list --json`, and the start-up error without a model server.

mod common;

use std::process::Stdio;

use common::openai_server::{Endpoint, FakeOpenAi, Response, text_chunks, tool_call_chunks};
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_bella-vista");

fn say(server: &FakeOpenAi, text: &str) {
    let words: Vec<String> = text.split_inclusive(' ').map(str::to_string).collect();
    let pieces: Vec<&str> = words.iter().map(String::as_str).collect();
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(text_chunks(&pieces)),
    );
}

fn call(server: &FakeOpenAi, name: &str, arguments: &str) {
    server.push(
        Endpoint::ChatCompletions,
        Response::Stream(tool_call_chunks(&[("call_1", name, arguments)], 7)),
    );
}

fn command(server: &FakeOpenAi, db: &std::path::Path) -> Command {
    let mut command = Command::new(BIN);
    command
        .env_remove("OPENAI_API_KEY")
        .env("OPENAI_BASE_URL", server.base_url())
        .env("RUST_LOG", "error")
        .arg("--orders-db")
        .arg(db);
    command
}

#[tokio::test]
async fn a_piped_console_call_places_an_order_that_orders_list_prints() {
    let server = FakeOpenAi::start().await;
    say(&server, "Welcome to Bella Vista! What would you like?");
    call(&server, "take_order", "{}");
    say(&server, "What would you like to order?");
    call(
        &server,
        "confirm_item",
        r#"{"name": "Tiramisu", "quantity": 2, "modifications": ["extra cocoa"], "more_items": false}"#,
    );
    say(&server, "That's $20.00. Card, cash or mobile?");
    call(
        &server,
        "confirm_payment",
        r#"{"method": "cash", "tip_percentage": 15}"#,
    );
    say(&server, "Two tiramisu, $23.00 in cash. Shall I place it?");
    call(&server, "confirm_order", "{}");
    say(&server, "Two tiramisu, cash, confirmed.");
    say(&server, "Your order number is 1. Grazie!");

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("orders.db");
    let mut child = command(&server, &db)
        .arg("console")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin
        .write_all(
            b"I'd like to order\ntwo tiramisu with extra cocoa\ncash, 15 percent\nyes please\n",
        )
        .await
        .unwrap();
    drop(stdin);
    let output = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "stdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with("[OrderTaker]\nagent> Welcome to Bella Vista!"),
        "{stdout}"
    );
    assert!(stdout.contains("[CollectOrderItem · item_1]"), "{stdout}");
    assert!(stdout.contains("  -> confirm_item("), "{stdout}");
    assert!(stdout.contains("[CollectPayment · payment]"), "{stdout}");
    assert!(
        stdout.contains("agent> Your order number is 1. Grazie!"),
        "{stdout}"
    );
    assert_eq!(server.chat_requests().len(), 10);

    let listed = command(&server, &db)
        .args(["orders", "list", "--json"])
        .output()
        .await
        .unwrap();
    assert!(listed.status.success());
    let orders: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let order = &orders[0];
    assert_eq!(orders.as_array().unwrap().len(), 1);
    assert_eq!(order["id"], 1);
    assert_eq!(order["items"][0]["name"], "Tiramisu");
    assert_eq!(order["items"][0]["quantity"], 2);
    assert_eq!(order["items"][0]["modifications"][0], "extra cocoa");
    assert_eq!(order["items"][0]["unit_price_cents"], 1000);
    assert_eq!(order["subtotal_cents"], 2000);
    assert_eq!(order["tip_percent"], 15);
    assert_eq!(order["tip_cents"], 300);
    assert_eq!(order["total_cents"], 2300);
    assert_eq!(order["payment_method"], "cash");
    assert!(order["created_at"].as_str().unwrap().ends_with('Z'));
}

#[tokio::test]
async fn the_openai_provider_without_key_or_base_url_is_a_one_line_error_with_exit_code_2() {
    let output = Command::new(BIN)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .args(["--provider", "openai", "console"])
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("OPENAI_API_KEY") && stderr.contains("OPENAI_BASE_URL"));
}

#[tokio::test]
async fn without_key_or_base_url_the_local_model_is_used_and_a_missing_file_says_where_from() {
    let home = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .env("HF_HOME", home.path())
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .arg("console")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("huggingface.co/Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF")
            && stderr.contains("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"),
        "{stderr}"
    );
}

#[tokio::test]
async fn orders_list_on_an_empty_store_is_an_empty_array() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .args(["orders", "list", "--json", "--orders-db"])
        .arg(dir.path().join("none.db"))
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let orders: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(orders, Value::Array(vec![]));
}
