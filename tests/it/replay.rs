//! `simulate --replay`: teacher-forced replay of real IARD and INSPIRED
//! dialogues on the real model. The expected turns are computed here from
//! the corpus files themselves, not through the loaders under test.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;
use serde_json::Value;
use usersim::chat::Side;
use usersim::corpus::{CorpusKind, Dialogue, Speaker, Utterance};
use usersim::output::read_records;
use usersim::run::SimulateConfig;
use usersim::session::record::{ConversationRecord, EndReason};

fn iard_path() -> PathBuf {
    shared_data().join("iard/iard.json")
}

fn inspired_path() -> PathBuf {
    shared_data().join("inspired/dialogs.tsv")
}

/// One real utterance or turn: (seeker?, text, labels).
type Real = (bool, String, Vec<String>);
/// A real dialogue as turns, a speaker's consecutive utterances merged.
type RealTurns = Vec<Real>;

/// Utterances parsed here from the file, merged into turns by the crate's
/// one merge ([`usersim::corpus::Dialogue::turns`], unit-tested on its own).
fn merge(utts: impl IntoIterator<Item = Real>) -> RealTurns {
    let d = Dialogue {
        utterances: utts
            .into_iter()
            .map(|(seeker, text, labels)| Utterance {
                speaker: if seeker {
                    Speaker::Seeker
                } else {
                    Speaker::Recommender
                },
                text,
                labels,
            })
            .collect(),
        ..Dialogue::default()
    };
    d.turns()
        .into_iter()
        .map(|t| (t.speaker == Speaker::Seeker, t.text, t.labels))
        .collect()
}

/// The first `n` IARD dialogues (by numeric id) as (id, turns).
fn iard_dialogues(n: usize) -> Vec<(String, RealTurns)> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(iard_path()).unwrap()).unwrap();
    let mut ids: Vec<&String> = v.as_object().unwrap().keys().collect();
    ids.sort_by_key(|id| id.parse::<u64>().unwrap());
    ids.into_iter()
        .take(n)
        .map(|id| {
            let mut utts: Vec<&Value> = v[id]["dialogue_info"]
                .as_object()
                .unwrap()
                .values()
                .collect();
            utts.sort_by_key(|u| u["utterance_pos"].as_u64().unwrap());
            let turns = merge(utts.into_iter().map(|u| {
                (
                    u["role"] == "seeker",
                    u["utterance_text"].as_str().unwrap().to_string(),
                    u["sub-intent/action"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|l| l.as_str().unwrap().to_string())
                        .collect(),
                )
            }));
            (id.clone(), turns)
        })
        .collect()
}

/// The first `n` INSPIRED dialogues (file order) as (id, turns).
fn inspired_dialogues(n: usize) -> Vec<(String, RealTurns)> {
    let text = std::fs::read_to_string(inspired_path()).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (c_id, c_spk, c_text) = (col("dialog_id"), col("speaker"), col("text"));
    let mut rows: Vec<(String, Vec<Real>)> = Vec::new();
    for l in lines {
        let cells: Vec<&str> = l.split('\t').collect();
        if rows.last().is_none_or(|d| d.0 != cells[c_id]) {
            rows.push((cells[c_id].to_string(), Vec::new()));
        }
        let seeker = cells[c_spk] == "SEEKER";
        rows.last_mut()
            .unwrap()
            .1
            .push((seeker, cells[c_text].trim().to_string(), Vec::new()));
    }
    rows.into_iter()
        .take(n)
        .map(|(id, utts)| (id, merge(utts)))
        .collect()
}

/// The age group INSPIRED's post-task survey gives for the seeker of
/// `dialog_id` (dialogue → seeker survey id → demographic row).
fn inspired_age_group(dialog_id: &str) -> String {
    let rows = |file: &str| -> Vec<Vec<String>> {
        std::fs::read_to_string(shared_data().join("inspired").join(file))
            .unwrap()
            .lines()
            .map(|l| l.split('\t').map(str::to_string).collect())
            .collect()
    };
    let ids = rows("list_of_dialog_ids_with_movie_id_all.tsv");
    let col = |h: &[String], name: &str| h.iter().position(|c| c == name).unwrap();
    let survey = ids
        .iter()
        .find(|r| r[col(&ids[0], "dialog_id")] == dialog_id)
        .map(|r| r[col(&ids[0], "seek_survey_id")].clone())
        .unwrap();
    let demo = rows("seeker_demographic.tsv");
    let row = demo
        .iter()
        .find(|r| r[col(&demo[0], "seeker_survey_id")] == survey)
        .unwrap();
    row[col(&demo[0], "age_group")].clone()
}

/// Every record follows its real dialogue: the real seeker turns in
/// `real`, the real recommender turns as the assistant's, one simulated
/// user turn per real seeker turn.
fn check_follows(recs: &[ConversationRecord], real: &[(String, RealTurns)], corpus: CorpusKind) {
    assert_eq!(recs.len(), real.len());
    for (i, (r, (id, turns))) in recs.iter().zip(real).enumerate() {
        assert_eq!(r.session_index, i as u64);
        let src = r.replay.as_ref().expect("replay source recorded");
        assert_eq!(src.corpus, corpus);
        assert_eq!(&src.dialogue_id, id);
        assert_eq!(r.end_reason, EndReason::ReplayEnd, "dialogue {id}");
        // The record keeps the real order of speakers.
        assert_eq!(r.turns.len(), turns.len(), "dialogue {id}");
        for (t, (seeker, text, labels)) in r.turns.iter().zip(turns) {
            if *seeker {
                assert_eq!(t.role, Side::User);
                let real = t.real.as_ref().expect("user turn carries its real turn");
                assert_eq!(&real.text, text, "dialogue {id}");
                assert_eq!(&real.intents, labels, "dialogue {id}");
            } else {
                assert_eq!(t.role, Side::Assistant);
                assert_eq!(&t.text, text, "dialogue {id}");
                assert_eq!(t.tokens, 0);
                assert!(t.real.is_none());
            }
        }
        assert!(
            r.turns.iter().map(|t| t.tokens).sum::<u32>() > 0,
            "the simulator wrote the user turns"
        );
    }
}

fn replay_config(dir: &Path, name: &str, corpus: PathBuf, sessions: u64) -> SimulateConfig {
    let mut cfg = small_config(dir, name);
    cfg.replay = Some(corpus);
    cfg.sessions = sessions;
    cfg.parallel = 3;
    cfg.max_user_turns = None;
    cfg.llama.context_per_sequence = 2048;
    cfg.sampling.user_max_tokens = Some(4);
    cfg
}

#[test]
fn iard_replay_follows_real_turns_and_is_deterministic() {
    let _heavy = crate::util::heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let a = replay_config(dir.path(), "a.jsonl", iard_path(), 3);
    let mut b = a.clone();
    b.output = dir.path().join("b.jsonl");
    b.parallel = 1;
    b.llama.threads = 1;
    let summary = run(&a);
    run(&b);
    let fa = std::fs::read(&a.output).unwrap();
    assert!(
        fa == std::fs::read(&b.output).unwrap(),
        "parallel 3 / 2 threads and parallel 1 / 1 thread differ"
    );

    let real = iard_dialogues(3);
    let recs = read_records(&a.output).unwrap();
    check_follows(&recs, &real, CorpusKind::Iard);
    let seeker_turns: usize = real
        .iter()
        .map(|(_, t)| t.iter().filter(|x| x.0).count())
        .sum();
    assert_eq!(summary.user_turns, seeker_turns as u64);
    assert_eq!(summary.assistant_turns, 0, "no reply is generated");
    for r in &recs {
        assert_eq!(r.system, "replay-iard");
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            // Control is on: the turn is steered by its real intent, the
            // first real label other than small talk.
            let labels = &t.real.as_ref().unwrap().intents;
            let primary = labels
                .iter()
                .find(|l| *l != "OTH")
                .or(labels.first())
                .unwrap();
            assert_eq!(t.latents.get("intent"), Some(primary), "{labels:?}");
        }
    }

    // --resume continues a cut replay into the same file.
    let mut c = a.clone();
    c.output = dir.path().join("c.jsonl");
    let two_lines = fa
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'\n')
        .nth(1)
        .unwrap()
        .0
        + 1;
    std::fs::write(&c.output, &fa[..two_lines]).unwrap();
    c.resume = true;
    let resumed = run(&c);
    assert_eq!(resumed.conversations, 1);
    assert!(
        std::fs::read(&c.output).unwrap() == fa,
        "resumed replay differs"
    );
    // ... but a plain run does not continue a replay file.
    let o = Command::new(bin())
        .args(["simulate", "-q", "--resume", "-n", "4", "--threads", "1"])
        .args([
            "--seed",
            "7",
            "--max-tokens",
            "4",
            "--assistant-max-tokens",
            "32",
            "-o",
        ])
        .arg(&c.output)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("replay"), "{stderr}");
}

#[test]
fn uncontrolled_replay_records_real_intents_without_steering() {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().unwrap();
    // The uncontrolled baseline: no intent, no length or first-word latent.
    let scen = scenario_copy(dir.path(), |n, t| match n {
        "scenario.toml" => without_first_word(&without_length(&t))
            .replace("policy = \"markov\"", "policy = \"none\""),
        _ => t,
    });
    let mut cfg = replay_config(dir.path(), "none.jsonl", iard_path(), 1);
    cfg.scenario_dir = scen;
    cfg.parallel = 1;
    cfg.sampling.user_max_tokens = Some(3);
    run(&cfg);
    let recs = read_records(&cfg.output).unwrap();
    check_follows(&recs, &iard_dialogues(1), CorpusKind::Iard);
    for t in recs[0].turns.iter().filter(|t| t.role == Side::User) {
        assert!(t.latents.is_empty(), "policy none steers nothing");
        assert!(!t.real.as_ref().unwrap().intents.is_empty());
    }
}

#[test]
fn inspired_replay_from_the_command_line() {
    let _heavy = crate::util::heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("inspired.jsonl");
    let o = Command::new(bin())
        .args(["simulate", "-q", "--threads", "2", "-n", "1"])
        .args(["--max-tokens", "4", "--replay"])
        .arg(inspired_path())
        .arg("-s")
        .arg(root().join("prompts/inspired"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let recs = read_records(&out).unwrap();
    check_follows(&recs, &inspired_dialogues(1), CorpusKind::Inspired);
    for r in &recs {
        assert_eq!(r.system, "replay-inspired");
        // Conditional realism: the session's age group is the real seeker's,
        // through the inspired scenario's `[[replay.inspired]]` map.
        let src = r.replay.as_ref().unwrap();
        let age = inspired_age_group(&src.dialogue_id);
        assert_eq!(src.seeker["age_group"], age.as_str());
        assert!(src.seeker["Open"].is_number(), "Big-Five recorded");
        let expected = match age.as_str() {
            "12 or younger" | "12 - 17" | "18 - 24" => "18-24",
            "25 - 34" => "25-34",
            "35 - 44" => "35-44",
            "45 - 54" => "45-54",
            _ => "55+",
        };
        assert_eq!(r.latents["age_group"], expected);
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            assert!(t.real.as_ref().unwrap().intents.is_empty());
            assert!(
                !t.latents.contains_key("intent"),
                "no real intent to steer by"
            );
        }
    }
}

/// Run `usersim simulate --replay <corpus>`; expect exit 2, one error line
/// holding every needle, and no output.
fn expect_replay_error(dir: &Path, corpus: &Path, extra: &[&str], needles: &[&str]) {
    let out = dir.join("out.jsonl");
    let mut all: Vec<&std::ffi::OsStr> = ["simulate", "-n", "1", "--threads", "1", "--replay"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    all.extend([corpus.as_os_str(), "-o".as_ref(), out.as_os_str()]);
    all.extend(extra.iter().map(std::ffi::OsStr::new));
    expect_input_error_line(&all, &out, needles);
}

#[test]
fn bad_replay_input() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    expect_replay_error(
        d,
        &d.join("missing.json"),
        &[],
        &["missing.json", "cannot read"],
    );
    let bad_json = d.join("bad.json");
    std::fs::write(
        &bad_json,
        "{\"1\": {\"dialogue_info\": {\"S1\": {\"role\": \"seeker\"}}}}",
    )
    .unwrap();
    expect_replay_error(
        d,
        &bad_json,
        &[],
        &["bad.json", "dialogue 1", "utterance_pos"],
    );
    let bad_tsv = d.join("dialogs.tsv");
    std::fs::write(
        &bad_tsv,
        "dialog_id\tspeaker\ttext\na\tSEEKER\thi\na\tROBOT\tbeep\n",
    )
    .unwrap();
    expect_replay_error(d, &bad_tsv, &[], &["dialogs.tsv:3: speaker", "ROBOT"]);
    let csv = d.join("dialogs.csv");
    std::fs::write(&csv, "x").unwrap();
    expect_replay_error(d, &csv, &[], &["dialogs.csv", "unknown corpus"]);
    // A survey map onto an undeclared value.
    let scen = scenario_copy(d, |n, t| {
        match n {
        "scenario.toml" => format!(
            "{t}\n[[replay.inspired]]\nsession = \"verbosity\"\nsurvey = \"age_group\"\n[replay.inspired.map]\n\"75 or older\" = \"ancient\"\n"
        ),
        _ => t,
    }
    });
    expect_replay_error(
        d,
        &inspired_path(),
        &["-s", scen.to_str().unwrap()],
        &[
            "scenario.toml",
            "replay.inspired[0].map.\"75 or older\"",
            "ancient",
        ],
    );
    // Score fields take `ranges`, which must not overlap.
    let toml = scen.join("scenario.toml");
    let text = std::fs::read_to_string(root().join("prompts/movies/scenario.toml")).unwrap();
    for (extra, needles) in [
        (
            "[[replay.inspired]]\nsession = \"verbosity\"\nsurvey = \"Open\"\n[replay.inspired.ranges]\nterse = [1.0, 3.5]\nchatty = [3.0, 5.0]\n",
            &["replay.inspired[0].ranges.chatty", "overlap"][..],
        ),
        (
            "[[replay.inspired]]\nsession = \"verbosity\"\nsurvey = \"Open\"\n[replay.inspired.map]\n\"5\" = \"terse\"\n",
            &["replay.inspired[0].ranges", "Open is a score"][..],
        ),
        (
            "[[replay.inspired]]\nsession = \"verbosity\"\nsurvey = \"shoe_size\"\n[replay.inspired.map]\n\"5\" = \"terse\"\n",
            &["replay.inspired[0].survey", "Extrovert"][..],
        ),
    ] {
        std::fs::write(&toml, format!("{text}\n{extra}")).unwrap();
        let mut want = vec!["scenario.toml"];
        want.extend_from_slice(needles);
        expect_replay_error(d, &inspired_path(), &["-s", scen.to_str().unwrap()], &want);
    }
    // The turn count is the real dialogue's.
    let o = Command::new(bin())
        .args(["simulate", "--max-turns", "3", "--replay"])
        .arg(iard_path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--max-turns"));
}
