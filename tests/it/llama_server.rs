//! The openai backend against a real llama.cpp `llama-server` serving the
//! default model on 127.0.0.1: a full run at `--concurrency 8`, and a server
//! killed mid-run (clear failure, nothing torn) that resumes when it is back.
//! `.ci/build-llama-server` builds the server once per machine.

use std::path::Path;
use std::process::Command;

use crate::util::*;
use usersim::tools::llama_server::{LlamaServer, LlamaServerConfig};

fn start(port: u16) -> LlamaServer {
    LlamaServer::start(&LlamaServerConfig {
        binary: llama_server_binary(),
        model: model_path(),
        slots: 8,
        context_per_slot: 1024,
        threads: 2,
        port,
        startup_timeout_secs: 120.0,
    })
    .expect("llama-server starts")
}

fn simulate(out: &Path, url: &str, extra: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.args(["simulate", "-q", "--backend", "openai", "--base-url", url])
        .args(["--seed", "9", "--max-turns", "1", "--max-tokens", "16"])
        .args(["--assistant-max-tokens", "24", "--context", "1024"])
        .args([
            "--retries",
            "2",
            "--backoff",
            "0.2",
            "--timeout",
            "60",
            "-o",
        ])
        .arg(out)
        .args(extra);
    c
}

#[test]
fn a_full_run_over_llama_server_at_concurrency_8() {
    let _heavy = crate::util::heavy();
    let server = start(0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.jsonl");
    let o = simulate(
        &out,
        &server.url(),
        &["-n", "32", "-p", "8", "--concurrency", "8", "--json"],
    )
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(summary["conversations"], 32);
    assert!(summary["tokens_generated"].as_u64().unwrap() > 32 * 4);
    assert!(
        summary["assistant_turns"].as_u64().unwrap() >= 16,
        "{summary}"
    );
    let recs = records(&out);
    let idx: Vec<u64> = recs
        .iter()
        .map(|r| r["session_index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, (0..32).collect::<Vec<_>>());
    let mut words = 0;
    for r in &recs {
        let turns = r["turns"].as_array().unwrap();
        assert!(!turns.is_empty(), "{r}");
        // The model really answered: text and token counts from the server.
        for t in turns.iter().filter(|t| t["tokens"].as_u64().unwrap() > 0) {
            words += t["text"].as_str().unwrap().split_whitespace().count();
        }
        assert!(r["latents"]["verbosity"].is_string());
        assert!(turns[0]["latents"]["intent"].is_string());
    }
    assert!(words > 32 * 8, "{words} words in 32 conversations");

    // The raw-prompt endpoint, the model's ChatML template rendered here.
    let template = dir.path().join("chatml.jinja");
    std::fs::write(
        &template,
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    )
    .unwrap();
    let raw = dir.path().join("raw.jsonl");
    let o = simulate(
        &raw,
        &server.url(),
        &["-n", "4", "--api-endpoint", "completions"],
    )
    .arg("--chat-template")
    .arg(&template)
    .output()
    .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = records(&raw);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        let first = r["turns"][0]["text"].as_str().unwrap();
        assert!(!first.is_empty() && !first.contains("<|im_"), "{first:?}");
    }
}

#[test]
fn a_killed_llama_server_fails_the_run_and_resume_completes_it() {
    let _heavy = crate::util::heavy();
    let mut server = start(0);
    let port = server.port();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("part.jsonl");
    let mut child = simulate(&out, &url, &["-n", "8", "-p", "4"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for_lines(&out, 3, &mut child);
    server.kill(); // SIGKILL, mid-run
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(&url) && err.contains("--resume"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let before = records(&out);
    let before_bytes = std::fs::read(&out).unwrap();
    assert!(before.len() >= 3 && before.len() < 8);
    drop(server);

    let _back = start(port);
    let o = simulate(&out, &url, &["-n", "8", "-p", "4", "--resume"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let after = records(&out);
    let idx: Vec<u64> = after
        .iter()
        .map(|r| r["session_index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, (0..8).collect::<Vec<_>>(), "0 lost, 0 duplicated");
    // What was written before the kill is kept byte for byte.
    let after_bytes = std::fs::read(&out).unwrap();
    assert!(
        after_bytes.starts_with(&before_bytes),
        "the lines written before the kill changed"
    );
}
