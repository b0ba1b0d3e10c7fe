//! End-to-end runs of `simulate` on the real SmolLM2 model.

mod common;

use std::collections::BTreeSet;

use common::*;
use usersim::conversation::ConversationRecord;
use usersim::corpus::IARD_SEEKER_INTENTS;
use usersim::output::read_records;

fn records(path: &std::path::Path) -> Vec<ConversationRecord> {
    read_records(path).expect("output parses")
}

#[test]
fn batch_of_eight_is_labelled_with_declared_values() {
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path(), "out.jsonl");
    let summary = run(&cfg);
    let recs = records(&cfg.output);
    assert_eq!(recs.len(), 8);
    assert_eq!(summary.conversations, 8);
    let ages: BTreeSet<&str> = ["teen", "young_adult", "adult", "senior"].into();
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
        let age = r.latents["age_group"]
            .as_str()
            .expect("age_group is a string");
        assert!(ages.contains(age), "{age}");
        let liked = r.latents["liked_genres"].as_array().expect("a list");
        assert_eq!(liked.len(), 2);
        for g in liked {
            assert!(genres.contains(g.as_str().unwrap()), "{g}");
        }
        let patience = r.latents["patience"].as_i64().expect("integer");
        assert!((2..=6).contains(&patience));
        assert!(r.latents["target_item"]["title"].is_string());
        let user_turns: Vec<_> = r
            .turns
            .iter()
            .filter(|t| t.role == usersim::backend::Side::User)
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
    let stats = std::fs::read_to_string(usersim::simulate::stats_path(&cfg.output)).unwrap();
    assert!(stats.contains("tokens_per_second"));
    let text = std::fs::read_to_string(&cfg.output).unwrap();
    assert!(
        !text.contains("tokens_per_second"),
        "timings stay out of the conversation file"
    );
}

#[test]
fn same_seed_is_byte_identical_across_batch_sizes_and_threads() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = small_config(dir.path(), "a.jsonl");
    a.sessions = 6;
    a.max_user_turns = Some(2);
    let mut b = a.clone();
    b.output = dir.path().join("b.jsonl");
    b.parallel = 1;
    b.llama.threads = 1;
    let mut c = a.clone();
    c.output = dir.path().join("c.jsonl");
    c.seed = a.seed + 1;
    run(&a);
    run(&b);
    run(&c);
    let fa = std::fs::read(&a.output).unwrap();
    let fb = std::fs::read(&b.output).unwrap();
    let fc = std::fs::read(&c.output).unwrap();
    assert!(!fa.is_empty());
    assert!(
        fa == fb,
        "parallel 8 / 2 threads and parallel 1 / 1 thread differ"
    );
    assert!(fa != fc, "a different seed gives the same output");
}

#[test]
fn pins_hold_every_session_and_turn() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path(), "pinned.jsonl");
    cfg.sessions = 4;
    cfg.parallel = 4;
    cfg.max_user_turns = Some(2);
    cfg.pins = vec!["session.age_group=teen".into(), "turn.intent=REJ".into()];
    run(&cfg);
    let recs = records(&cfg.output);
    assert_eq!(recs.len(), 4);
    for r in &recs {
        assert_eq!(r.latents["age_group"], "teen");
        for t in r
            .turns
            .iter()
            .filter(|t| t.role == usersim::backend::Side::User)
        {
            assert_eq!(t.latents["intent"], "REJ");
        }
    }
}

#[test]
fn second_scenario_and_openai_format() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path(), "support.jsonl");
    cfg.scenario_dir = root().join("prompts/support");
    cfg.sessions = 3;
    cfg.parallel = 3;
    cfg.format = usersim::output::OutputFormat::Openai;
    run(&cfg);
    let text = std::fs::read_to_string(&cfg.output).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for l in &lines {
        let msgs = l["messages"].as_array().unwrap();
        // The support scenario opens with the assistant's greeting.
        assert_eq!(msgs[0]["role"], "assistant");
        assert_eq!(msgs[1]["role"], "user");
        assert_eq!(l["metadata"]["scenario"]["name"], "support");
        let problem = l["metadata"]["latents"]["problem"].as_str().unwrap();
        assert!([
            "change_dates",
            "cancel",
            "refund",
            "room_upgrade",
            "billing_error"
        ]
        .contains(&problem));
        let tl = l["metadata"]["turn_latents"].as_array().unwrap();
        assert_eq!(tl.len(), msgs.len());
        assert!(tl[1]["intent"].is_string());
    }
}

#[test]
fn real_catalog_from_movielens() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path(), "ml.jsonl");
    cfg.sessions = 2;
    cfg.parallel = 2;
    cfg.max_user_turns = Some(1);
    cfg.catalog = Some(shared_data().join("movielens/movies_w_keywords.csv"));
    cfg.pins = vec!["session.target_item=Toy Story".into()];
    run(&cfg);
    let recs = records(&cfg.output);
    assert_eq!(recs[0].latents["target_item"]["title"], "Toy Story");
    assert_eq!(recs[0].latents["target_item"]["id"], "1");
}

#[test]
fn ctrl_c_keeps_every_finished_conversation_whole() {
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("int.jsonl");
    let mut child = std::process::Command::new(bin())
        .args([
            "simulate",
            "-q",
            "-n",
            "200",
            "-p",
            "4",
            "--threads",
            "2",
            "--max-tokens",
            "16",
            "--assistant-max-tokens",
            "16",
            "--max-turns",
            "2",
            "-o",
        ])
        .arg(&out)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the first finished conversation, then interrupt.
    let t0 = std::time::Instant::now();
    while std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) == 0 {
        assert!(t0.elapsed().as_secs() < 300, "no conversation finished");
        assert!(
            child.try_wait().unwrap().is_none(),
            "exited before the interrupt"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
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
