//! The GPU path on the CPU: packed batching gives complete conversations,
//! the same file for the same configuration, and the latents of invariant
//! batching; best-of-N forks keep working in packed calls; KV options that
//! llama.cpp would refuse are one error line; engine options that change
//! output change the run's identity; the bench measures each choice.

use std::process::Command;

use serde_json::Value;
use usersim::backend::llama::{Batching, KvLayout, KvType};
use usersim::chat::Side;
use usersim::output::read_records;
use usersim::run::{open_backend, prepare, SimulateConfig};
use usersim::session::best_of::TurnScorer;

use crate::util::*;

/// A small real-model configuration: 4 conversations of 2 user turns.
fn tiny(dir: &std::path::Path, name: &str, batching: Batching) -> SimulateConfig {
    let mut cfg = small_config(dir, name);
    cfg.sessions = 4;
    cfg.parallel = 4;
    cfg.max_user_turns = Some(2);
    cfg.sampling.user_max_tokens = Some(16);
    cfg.sampling.assistant_max_tokens = Some(16);
    cfg.llama.batching = batching;
    cfg
}

#[test]
fn packed_batching_is_complete_repeatable_and_keeps_the_latents() {
    let _heavy = heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let invariant = tiny(dir.path(), "invariant.jsonl", Batching::Invariant);
    let packed = tiny(dir.path(), "packed.jsonl", Batching::Packed);
    let again = tiny(dir.path(), "again.jsonl", Batching::Packed);
    run(&invariant);
    let summary = run(&packed);
    run(&again);
    assert!(
        std::fs::read(&packed.output).unwrap() == std::fs::read(&again.output).unwrap(),
        "the same packed configuration twice gave different files"
    );
    // Packed calls mixed decode tokens with prompt chunks: fewer calls
    // than one per prefilling sequence would make.
    assert!(summary.backend.steps > 0 && summary.backend.decode_tokens > 0);
    let inv = read_records(&invariant.output).unwrap();
    let pk = read_records(&packed.output).unwrap();
    assert_eq!(pk.len(), 4);
    assert_eq!(summary.conversations, 4);
    for (i, (p, v)) in pk.iter().zip(&inv).enumerate() {
        assert_eq!(p.session_index, i as u64, "lines in session order");
        assert_eq!(
            p.latents, v.latents,
            "session {i}: latents differ by batching"
        );
        assert_eq!(p.session_seed, v.session_seed);
        assert!(p.turns.len() >= 2, "session {i}: {} turns", p.turns.len());
        assert_eq!(p.turns[0].role, Side::User);
        for w in p.turns.windows(2) {
            assert_ne!(w[0].role, w[1].role, "session {i}: roles alternate");
        }
        for t in &p.turns {
            assert!(!t.text.trim().is_empty(), "session {i}: an empty turn");
            if t.role == Side::User {
                assert!(t.latents.contains_key("intent"));
            }
        }
    }
    // Packed output is another run: resume and merge tell them apart.
    assert_ne!(pk[0].scenario.hash, inv[0].scenario.hash);
}

/// Scores every turn alike: the scenario's length weight, or else the
/// lowest index, decides.
struct Indifferent;

impl TurnScorer for Indifferent {
    fn score(&self, _context: &str, _turn: &str) -> f64 {
        0.5
    }
}

#[test]
fn best_of_two_forks_in_packed_calls() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let cfg = tiny(dir.path(), "best.jsonl", Batching::Packed);
    let mut prep = prepare(&cfg).expect("prepare");
    prep.critic = Some(Box::new(Indifferent));
    prep.best_of = 2;
    let mut backend = open_backend(&cfg, &prep, cfg.parallel).expect("engine");
    let s = run_prepared(&cfg, &prep, backend.as_mut()).expect("packed best-of run");
    assert_eq!(s.conversations, 4);
    assert!(s.critic.score.turns >= 4, "{:?}", s.critic);
    assert_eq!(s.critic.score.candidates, 2 * s.critic.score.turns);
    assert!(
        s.backend.tokens_generated > s.tokens_generated,
        "the second candidates were decoded too"
    );
    for r in read_records(&cfg.output).unwrap() {
        assert!(r.turns.iter().any(|t| t.role == Side::User));
    }
}

#[test]
fn quantised_v_without_flash_attention_is_one_error_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let args = |extra: &[&str]| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = ["simulate", "-n", "2", "-p", "2", "-o"]
            .iter()
            .map(Into::into)
            .collect();
        a.push(out.clone().into());
        a.extend(extra.iter().map(Into::into));
        a
    };
    let q8 = args(&["--kv-type", "q8_0"]);
    let q8: Vec<&std::ffi::OsStr> = q8.iter().map(|s| s.as_os_str()).collect();
    expect_input_error_line(
        &q8,
        &out,
        &["--kv-type q8_0", "flash attention", "--flash-attn"],
    );
    let unified = args(&["--kv-layout", "unified", "--batching", "invariant"]);
    let unified: Vec<&std::ffi::OsStr> = unified.iter().map(|s| s.as_os_str()).collect();
    expect_input_error_line(
        &unified,
        &out,
        &["--kv-layout unified", "--batching packed"],
    );
    let pool = args(&["--kv-pool", "4096"]);
    let pool: Vec<&std::ffi::OsStr> = pool.iter().map(|s| s.as_os_str()).collect();
    expect_input_error_line(&pool, &out, &["--kv-pool", "--kv-layout unified"]);
}

#[test]
fn engine_options_that_change_output_change_the_run_identity() {
    let dir = tempfile::tempdir().unwrap();
    let base = tiny(dir.path(), "x.jsonl", Batching::Invariant);
    let hash = |f: &dyn Fn(&mut SimulateConfig)| {
        let mut c = base.clone();
        f(&mut c);
        prepare(&c).expect("prepare").scenario.hash
    };
    let plain = hash(&|_| {});
    let packed = hash(&|c| c.llama.batching = Batching::Packed);
    let q8 = hash(&|c| {
        c.llama.kv_type = KvType::Q8_0;
        c.llama.flash_attention = true;
    });
    let unified = hash(&|c| {
        c.llama.batching = Batching::Packed;
        c.llama.kv_layout = KvLayout::Unified;
    });
    let hashes = [&plain, &packed, &q8, &unified];
    for (i, a) in hashes.iter().enumerate() {
        for b in &hashes[i + 1..] {
            assert_ne!(a, b);
        }
    }
    // Threads change nothing in the file, so nothing in the identity.
    assert_eq!(hash(&|c| c.llama.threads = 1), plain);
}

#[test]
fn bench_rows_per_batching_kv_type_and_layout() {
    let _heavy = heavy();
    let _ = model_path();
    let rows = crate::util::bench_json_rows(Command::new(bin()).args([
        "bench",
        "--parallel",
        "2",
        "--sessions-per-slot",
        "1",
        "--max-turns",
        "1",
        "--raw-steps",
        "4",
        "--raw-prompt-tokens",
        "16",
        "--threads",
        "2",
        "--batching",
        "invariant,packed",
        "--kv-type",
        "f16,q8_0",
        "--kv-layout",
        "split,unified",
        "--flash-attn",
        "--json",
        "-q",
    ]));
    // invariant × {f16, q8_0} × split, packed × {f16, q8_0} × {split,
    // unified}: unified runs packed only.
    assert_eq!(rows.len(), 6, "{rows:?}");
    let find = |b: &str, k: &str, l: &str| {
        rows.iter()
            .find(|r| r["batching"] == b && r["kv_type"] == k && r["kv_layout"] == l)
            .unwrap_or_else(|| panic!("no {b} {k} {l} row"))
    };
    let u = |r: &Value, k: &str| r[k].as_u64().unwrap_or_else(|| panic!("{k}: {r}"));
    for r in &rows {
        assert_eq!(u(r, "conversations"), 2, "{r}");
        assert!(r["conversations_per_minute"].as_f64() > Some(0.0), "{r}");
        let m = r["depth_matched_work_ratio"].as_f64().unwrap();
        assert!(m > 0.0 && m.is_finite(), "{r}");
        assert_eq!(
            u(r, "conversations_in_kv_memory"),
            24 * (1u64 << 30) / u(r, "kv_bytes_per_session")
        );
    }
    // q8_0 stores 34 bytes per 32 elements, f16 64.
    let (f16, q8) = (
        u(find("packed", "f16", "split"), "kv_bytes_per_session"),
        u(find("packed", "q8_0", "split"), "kv_bytes_per_session"),
    );
    assert_eq!(q8 * 64, f16 * 34, "{f16} vs {q8}");
    // A unified pool costs what the conversations held (one short turn
    // here), below a reserved 2,048-token stream per sequence.
    let unified = u(find("packed", "f16", "unified"), "kv_bytes_per_session");
    assert!(unified < f16, "unified {unified} vs split {f16}");
}
