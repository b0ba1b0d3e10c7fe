//! End-to-end runs of `simulate` on the real SmolLM2 model.

use std::collections::BTreeSet;

use crate::util::*;
use usersim::corpus::IARD_SEEKER_INTENTS;
use usersim::output::read_records;
use usersim::session::record::ConversationRecord;

fn records(path: &std::path::Path) -> Vec<ConversationRecord> {
    read_records(path).expect("output parses")
}

/// One batch on the real model: every record labelled with declared
/// values, and the same file at parallel 8 / 2 threads and parallel 1 /
/// 1 thread (llama.cpp on CPU is batch-invariant as the engine calls it).
#[test]
fn a_batch_is_labelled_with_declared_values_and_the_same_at_any_parallel() {
    let _heavy = heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), "out.jsonl");
    let summary = run(&cfg);
    let mut one = cfg.clone();
    one.output = dir.path().join("one.jsonl");
    one.parallel = 1;
    one.llama.threads = 1;
    run(&one);
    assert!(
        std::fs::read(&cfg.output).unwrap() == std::fs::read(&one.output).unwrap(),
        "parallel 8 / 2 threads and parallel 1 / 1 thread differ"
    );
    let recs = records(&cfg.output);
    assert_eq!(recs.len(), 8);
    assert_eq!(summary.conversations, 8);
    let verbosities: BTreeSet<&str> = ["terse", "normal", "chatty"].into();
    let genres: BTreeSet<&str> = [
        "Animation",
        "Comedy",
        "Action",
        "Horror",
        "Sci-Fi",
        "Fantasy",
        "Romance",
        "Thriller",
        "Drama",
        "Crime",
        "Documentary",
        "Western",
        "War",
        "Musical",
        "Mystery",
    ]
    .into();
    for (i, r) in recs.iter().enumerate() {
        assert_eq!(r.session_index, i as u64, "lines are in session order");
        assert_eq!(r.scenario.name, "movies");
        assert_eq!(r.model.sha256.len(), 64);
        let verbosity = r.latents["verbosity"]
            .as_str()
            .expect("verbosity is a string");
        assert!(verbosities.contains(verbosity), "{verbosity}");
        let liked = r.latents["liked_genres"].as_array().expect("a list");
        assert_eq!(liked.len(), 2);
        for g in liked {
            assert!(genres.contains(g.as_str().unwrap()), "{g}");
        }
        let patience = r.latents["patience"].as_i64().expect("integer");
        assert!((3..=8).contains(&patience));
        assert!(r.latents["target_item"]["title"].is_string());
        let user_turns: Vec<_> = r
            .turns
            .iter()
            .filter(|t| t.role == usersim::chat::Side::User)
            .collect();
        assert!(!user_turns.is_empty());
        assert!(user_turns.len() <= 3);
        for t in &user_turns {
            let intent = t
                .latents
                .get("intent")
                .expect("every user turn carries its intent");
            assert!(IARD_SEEKER_INTENTS.contains(&intent.as_str()), "{intent}");
            assert!(t.tokens > 0);
        }
        // A conversation alternates user and assistant messages.
        for w in r.turns.windows(2) {
            assert_ne!(w[0].role, w[1].role);
        }
    }
    // Several turns happened across the batch, and the assistant spoke.
    assert!(summary.user_turns >= 12, "{summary:?}");
    assert!(summary.assistant_turns >= 4);
    let stats = std::fs::read_to_string(usersim::run::stats_path(&cfg.output)).unwrap();
    assert!(stats.contains("tokens_per_second"));
    let text = std::fs::read_to_string(&cfg.output).unwrap();
    assert!(
        !text.contains("tokens_per_second"),
        "timings stay out of the conversation file"
    );
}

#[test]
fn ctrl_c_keeps_every_finished_conversation_whole() {
    let _heavy = heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int.jsonl");
    let mut child = std::process::Command::new(bin())
        .args(["simulate", "-q", "-n", "200", "-p", "4"])
        .args(SMALL_RUN)
        .arg("-o")
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first finished conversation, then interrupt.
    wait_for_lines(&out, 1, &mut child);
    let pid = child.id().to_string();
    let st = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap();
    assert!(st.success());
    let o = child.wait_with_output().unwrap();
    assert_eq!(
        o.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "file ends with a whole line");
    let recs = records(&out);
    assert!(
        !recs.is_empty() && recs.len() < 200,
        "{} conversations",
        recs.len()
    );
    // No duplicates; every record is complete.
    let ids: BTreeSet<u64> = recs.iter().map(|r| r.session_index).collect();
    assert_eq!(ids.len(), recs.len());
    assert!(String::from_utf8_lossy(&o.stderr).contains("interrupted"));
}
