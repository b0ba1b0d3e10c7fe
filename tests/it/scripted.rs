//! The run loop on the scripted backend (deterministic fake text, no
//! model): ordering, determinism across `parallel`, shards and merge,
//! interrupt and resume, pins, formats and records. Milliseconds each, so
//! they run in parallel with everything else; what only a real model shows
//! is tested in `simulate`, `shard_resume` and `replay`.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use usersim::backend::scripted::ScriptedBackend;
use usersim::chat::Side;
use usersim::output::merge::{merge, MergeConfig};
use usersim::output::read_records;
use usersim::run::{
    prepare, prepared_sessions, simulate_with_backend, NoProgress, Progress, RunSummary,
    SimulateConfig,
};
use usersim::session::record::ConversationRecord;

use crate::util::*;

fn config(dir: &Path, name: &str) -> SimulateConfig {
    SimulateConfig {
        output: dir.join(name),
        sessions: 12,
        parallel: 4,
        seed: 21,
        scenario_dir: root().join("prompts/movies"),
        ..SimulateConfig::default()
    }
}

fn run_with(
    cfg: &SimulateConfig,
    progress: &dyn Progress,
    interrupt: Arc<AtomicBool>,
) -> Result<RunSummary, usersim::Error> {
    let prep = prepare(cfg)?;
    let sessions = prepared_sessions(cfg, &prep)?;
    let mut backend = ScriptedBackend::new(cfg.parallel);
    simulate_with_backend(cfg, &prep, &mut backend, &sessions, progress, interrupt)
}

fn scripted(cfg: &SimulateConfig) -> RunSummary {
    run_with(cfg, &NoProgress, Arc::new(AtomicBool::new(false)))
        .unwrap_or_else(|e| panic!("scripted run failed: {e}"))
}

fn bytes(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn same_seed_same_file_at_any_parallel_and_another_seed_differs() {
    let dir = tempfile::tempdir().unwrap();
    let a = config(dir.path(), "a.jsonl");
    let b = SimulateConfig {
        output: dir.path().join("b.jsonl"),
        parallel: 1,
        ..a.clone()
    };
    let c = SimulateConfig {
        output: dir.path().join("c.jsonl"),
        seed: a.seed + 1,
        ..a.clone()
    };
    let s = scripted(&a);
    scripted(&b);
    scripted(&c);
    assert_eq!(s.conversations, 12);
    assert!(
        bytes(&a.output) == bytes(&b.output),
        "parallel 4 and 1 differ"
    );
    assert!(bytes(&a.output) != bytes(&c.output), "seed changes nothing");
    let recs = read_records(&a.output).unwrap();
    let order: Vec<u64> = recs.iter().map(|r| r.session_index).collect();
    assert_eq!(order, (0..12).collect::<Vec<_>>(), "lines in session order");
    for r in &recs {
        assert!(r.turns.iter().any(|t| t.role == Side::User));
        for w in r.turns.windows(2) {
            assert_ne!(w[0].role, w[1].role, "sides alternate");
        }
    }
}

#[test]
fn seeds_are_strings_that_survive_a_float64_reader() {
    let dir = tempfile::tempdir().unwrap();
    for (name, format) in [
        ("jsonl.jsonl", usersim::output::OutputFormat::Jsonl),
        ("chat.jsonl", usersim::output::OutputFormat::Chat),
    ] {
        let cfg = SimulateConfig {
            sessions: 6,
            format,
            ..config(dir.path(), name)
        };
        scripted(&cfg);
        let text = std::fs::read_to_string(&cfg.output).unwrap();
        let mut above_2_53 = 0;
        for (i, line) in text.lines().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let meta = if v.get("metadata").is_some() {
                &v["metadata"]
            } else {
                &v
            };
            let expected = usersim::rng::session_seed(cfg.seed, i as u64);
            // A float-64 reader keeps a string whole; it would round a
            // number above 2^53.
            let seed = meta["session_seed"].as_str().expect("a string");
            assert_eq!(seed.parse::<u64>().unwrap(), expected);
            assert_eq!(meta["run_seed"].as_str(), Some("21"));
            above_2_53 += usize::from(expected > 1 << 53);
        }
        assert!(above_2_53 > 0, "the check saw a seed a float would change");
    }
}

#[test]
fn shards_merge_into_the_single_run_and_bad_sets_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let single = config(dir.path(), "single.jsonl");
    scripted(&single);
    let shards: Vec<PathBuf> = (0..4)
        .map(|i| {
            let cfg = SimulateConfig {
                output: dir.path().join(format!("shard{i}.jsonl")),
                parallel: 2,
                shard: Some((i, 4)),
                ..single.clone()
            };
            scripted(&cfg);
            cfg.output
        })
        .collect();
    let merged = dir.path().join("merged.jsonl");
    let cfg = |inputs: &[PathBuf], out: &str| MergeConfig {
        inputs: inputs.to_vec(),
        output: dir.path().join(out),
        sessions: Some(12),
        force: false,
    };
    let report = merge(&cfg(&shards, "merged.jsonl")).unwrap();
    assert_eq!(report.conversations, 12);
    assert!(bytes(&merged) == bytes(&single.output));

    let gap = usersim::Error::from(merge(&cfg(&shards[..3], "g.jsonl")).unwrap_err());
    assert!(gap.to_string().contains("3 sessions missing"), "{gap}");
    assert_eq!(gap.exit_code(), 2);
    let mut twice = shards.clone();
    twice.push(shards[0].clone());
    let dup = usersim::Error::from(merge(&cfg(&twice, "d.jsonl")).unwrap_err());
    assert!(dup.to_string().contains("appears twice"), "{dup}");
    let other = SimulateConfig {
        output: dir.path().join("other.jsonl"),
        seed: 22,
        shard: Some((0, 4)),
        ..single.clone()
    };
    scripted(&other);
    let mut mixed = shards[1..].to_vec();
    mixed.push(other.output);
    let mism = usersim::Error::from(merge(&cfg(&mixed, "m.jsonl")).unwrap_err());
    assert!(mism.to_string().contains("has seed 22"), "{mism}");
    assert_eq!(mism.exit_code(), 2);
    for f in ["g.jsonl", "d.jsonl", "m.jsonl"] {
        assert!(
            !dir.path().join(f).exists(),
            "{f}: a refused merge writes nothing"
        );
    }
    let again = usersim::Error::from(merge(&cfg(&shards, "merged.jsonl")).unwrap_err());
    assert!(again.to_string().contains("exists"), "{again}");
    assert_eq!(again.exit_code(), 2);

    // The command line says the same in one line, exit 2.
    let o = std::process::Command::new(bin())
        .arg("merge")
        .args(&shards[..3])
        .args(["-n", "12", "-o"])
        .arg(dir.path().join("cli.jsonl"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: 3 sessions missing"), "{err}");
}

/// Interrupts the run once `after` conversations are written, as Ctrl-C
/// does.
struct InterruptAfter {
    after: u64,
    flag: Arc<AtomicBool>,
}

impl Progress for InterruptAfter {
    fn conversation_done(&self, done: u64, _: u64, _: f64) {
        if done >= self.after {
            self.flag.store(true, Ordering::SeqCst);
        }
    }
}

#[test]
fn an_interrupted_run_resumes_to_the_uninterrupted_file() {
    let dir = tempfile::tempdir().unwrap();
    let full = config(dir.path(), "full.jsonl");
    scripted(&full);
    let part = SimulateConfig {
        output: dir.path().join("part.jsonl"),
        ..full.clone()
    };
    let flag = Arc::new(AtomicBool::new(false));
    let stop = InterruptAfter {
        after: 5,
        flag: flag.clone(),
    };
    let s = run_with(&part, &stop, flag).unwrap();
    assert!(s.interrupted);
    let before = std::fs::read_to_string(&part.output).unwrap();
    let n = before.lines().count();
    assert!((5..12).contains(&n), "{n} lines after the interrupt");
    assert!(before.ends_with('\n'));
    // A crash in the middle of a write: a torn last line.
    std::fs::write(&part.output, format!("{before}{{\"id\":\"movies-21-0000")).unwrap();

    let resume = SimulateConfig {
        resume: true,
        parallel: 3,
        ..part.clone()
    };
    let wrong = run_with(
        &SimulateConfig {
            seed: 99,
            ..resume.clone()
        },
        &NoProgress,
        Arc::new(AtomicBool::new(false)),
    )
    .unwrap_err();
    assert!(wrong.to_string().contains("cannot resume"), "{wrong}");
    assert_eq!(wrong.exit_code(), 2);
    let s = scripted(&resume);
    assert_eq!(s.conversations as usize, 12 - n);
    assert!(bytes(&resume.output) == bytes(&full.output));
    // Resuming a complete file does nothing.
    assert_eq!(scripted(&resume).conversations, 0);
    assert!(bytes(&resume.output) == bytes(&full.output));
}

#[test]
fn pins_hold_every_session_and_turn() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig {
        pins: vec!["session.verbosity=terse".into(), "turn.intent=REJ".into()],
        ..config(dir.path(), "pinned.jsonl")
    };
    scripted(&cfg);
    let recs = read_records(&cfg.output).unwrap();
    assert_eq!(recs.len(), 12);
    let mut user_turns = 0;
    for r in &recs {
        assert_eq!(r.latents["verbosity"], "terse");
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            assert_eq!(t.latents["intent"], "REJ");
            user_turns += 1;
        }
    }
    assert!(user_turns > 12);
}

#[test]
fn max_turns_ends_conversations_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig {
        max_user_turns: Some(2),
        ..config(dir.path(), "short.jsonl")
    };
    let s = scripted(&cfg);
    let recs = read_records(&cfg.output).unwrap();
    for r in &recs {
        let users = r.turns.iter().filter(|t| t.role == Side::User).count();
        assert!((1..=2).contains(&users), "{users} user turns");
    }
    assert!(
        s.end_reasons.contains_key("turn_limit"),
        "{:?}",
        s.end_reasons
    );
}

#[test]
fn support_scenario_in_the_chat_format() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig {
        scenario_dir: root().join("prompts/support"),
        sessions: 3,
        format: usersim::output::OutputFormat::Chat,
        ..config(dir.path(), "support.jsonl")
    };
    scripted(&cfg);
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
    let cfg = SimulateConfig {
        sessions: 2,
        catalog: Some(shared_data().join("movielens/movies_w_keywords.csv")),
        pins: vec!["session.target_item=Toy Story".into()],
        ..config(dir.path(), "ml.jsonl")
    };
    scripted(&cfg);
    let recs = read_records(&cfg.output).unwrap();
    let toy_story = std::fs::read_to_string(cfg.catalog.as_ref().unwrap())
        .unwrap()
        .lines()
        .find(|l| l.contains(",Toy Story (1995),"))
        .and_then(|l| l.split(',').next().map(str::to_string))
        .expect("Toy Story in the catalog");
    for r in &recs {
        assert_eq!(r.latents["target_item"]["title"], "Toy Story");
        assert_eq!(r.latents["target_item"]["id"], toy_story.as_str());
    }
}

#[test]
fn a_context_too_small_for_the_turns_is_an_input_error_before_any_output() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "ctx.jsonl");
    let prep = prepare(&cfg).unwrap();
    let mut backend = ScriptedBackend::new(4).with_context(200);
    let e = run_prepared(&cfg, &prep, &mut backend).unwrap_err();
    assert!(e.to_string().contains("context too small"), "{e}");
    assert_eq!(e.exit_code(), 2);
    assert!(!cfg.output.exists());
}

/// A script that writes sentences of three words ("w1 w2 w3.") up to the
/// request's token budget (one word a token), and keeps every budget.
fn three_word_sentences(budgets: Rc<RefCell<Vec<u32>>>) -> usersim::backend::scripted::Script {
    Box::new(move |req| {
        budgets.borrow_mut().push(req.sampling.max_tokens);
        (1..=req.sampling.max_tokens)
            .map(|i| {
                if i % 3 == 0 {
                    format!("w{i}.")
                } else {
                    format!("w{i}")
                }
            })
            .collect::<Vec<_>>()
            .join(" ")
    })
}

#[test]
fn the_length_latent_is_drawn_rendered_budgeted_and_enforced() {
    let dir = tempfile::tempdir().unwrap();
    // Style off: its "..." joins would change the word counts checked here
    // (and no drawn first word before the model's).
    let plain = scenario_copy(&dir.path().join("plain"), |n, t| match n {
        "scenario.toml" => without_first_word(&without_section(&t, "[style]")),
        _ => t,
    });
    let cfg = SimulateConfig {
        scenario_dir: plain,
        ..config(dir.path(), "len.jsonl")
    };
    let run_scripted = |cfg: &SimulateConfig, budgets: Rc<RefCell<Vec<u32>>>| {
        let prep = prepare(cfg).unwrap();
        let mut backend =
            ScriptedBackend::new(cfg.parallel).with_script(three_word_sentences(budgets));
        run_prepared(cfg, &prep, &mut backend).unwrap();
        prep
    };
    let budgets = Rc::new(RefCell::new(Vec::new()));
    let prep = run_scripted(&cfg, budgets.clone());
    let length = prep
        .scenario
        .length
        .clone()
        .expect("movies declares [length]");
    let max = prep.sampling.user.max_tokens;
    let recs = read_records(&cfg.output).unwrap();
    let mut user_turns = 0;
    for r in &recs {
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            user_turns += 1;
            let target: u32 = t.latents["length"].parse().expect("a word count");
            assert!(target >= 1);
            let budget = length.budget(target, max);
            // Cut at the first sentence end at or past the target: the
            // next multiple of three, unless the budget ran out first.
            let want = (target.div_ceil(3) * 3).min(budget) as usize;
            let words = t.text.split_whitespace().count();
            assert_eq!(
                words, want,
                "target {target}, budget {budget}: {:?}",
                t.text
            );
        }
    }
    assert!(user_turns > 12);
    // Every user request asked for the budget of its target (assistant
    // requests keep their own max_tokens).
    let budgets = budgets.borrow();
    let asked_user: Vec<u32> = budgets.iter().copied().filter(|b| *b < max).collect();
    assert!(!asked_user.is_empty(), "short targets got short budgets");

    // Off: the same run without [length] draws the same intents, and no
    // length.
    let off_dir = scenario_copy(dir.path(), |n, t| match n {
        "scenario.toml" => without_length(&without_first_word(&without_section(&t, "[style]"))),
        _ => t,
    });
    let off = SimulateConfig {
        scenario_dir: off_dir,
        output: dir.path().join("off.jsonl"),
        ..cfg.clone()
    };
    run_scripted(&off, Rc::new(RefCell::new(Vec::new())));
    let intents = |p: &Path| -> Vec<Vec<String>> {
        read_records(p)
            .unwrap()
            .iter()
            .map(|r| {
                r.turns
                    .iter()
                    .filter(|t| t.role == Side::User)
                    .map(|t| {
                        assert_eq!(t.latents.contains_key("length"), p == cfg.output);
                        t.latents["intent"].clone()
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(intents(&cfg.output), intents(&off.output));
}

#[test]
fn a_seeker_leaves_when_their_patience_is_spent() {
    let dir = tempfile::tempdir().unwrap();
    // movies with closing turns on.
    let closing_dir = scenario_copy(dir.path(), |n, t| match n {
        "scenario.toml" => t.replace("closing_turn = false\n", "closing_turn = true\n"),
        _ => t,
    });
    let cfg = SimulateConfig {
        sessions: 40,
        scenario_dir: closing_dir,
        ..config(dir.path(), "patience.jsonl")
    };
    scripted(&cfg);
    let scenario = usersim::scenario::Scenario::load(&cfg.scenario_dir).unwrap();
    assert!(scenario.conversation.closing_turn);
    let Some(usersim::scenario::TurnPolicy::Markov(chain)) =
        scenario.turn_var("intent").map(|v| &v.policy)
    else {
        panic!("movies' intent is a markov chain");
    };
    // Values a real seeker ever stopped after.
    let can_end = |v: &str| {
        chain
            .transitions
            .get(v)
            .and_then(|r| r.get(usersim::scenario::END_STATE))
            .is_some_and(|p| *p > 0.0)
    };
    let recs = read_records(&cfg.output).unwrap();
    let mut at_patience = 0;
    for r in &recs {
        let patience = r.latents["patience"].as_u64().expect("an integer");
        assert!((3..=8).contains(&patience));
        let user: Vec<_> = r.turns.iter().filter(|t| t.role == Side::User).collect();
        let turns = user.len() as u64;
        // Patience turns, then one to leave with (max_user_turns is 8).
        assert!(
            turns <= (patience + 1).min(8),
            "{turns} turns, patience {patience}"
        );
        if turns == patience + 1 {
            at_patience += 1;
            assert_eq!(
                serde_json::to_value(r.end_reason).unwrap(),
                serde_json::json!("user_left")
            );
            // The seeker has the last word, and it is one real seekers
            // leave on.
            assert_eq!(r.turns.last().unwrap().role, Side::User);
            let last = &user.last().unwrap().latents["intent"];
            assert!(can_end(last), "{} leaves on {last}", r.id);
        }
    }
    assert!(at_patience > 3, "{at_patience}");
    // Without the closing turn (the movies default) the seeker falls
    // silent after `patience` turns, on the system's reply.
    let silent = SimulateConfig {
        scenario_dir: root().join("prompts/movies"),
        output: dir.path().join("silent.jsonl"),
        ..cfg.clone()
    };
    scripted(&silent);
    let mut left_silently = 0;
    for r in &read_records(&silent.output).unwrap() {
        let patience = r.latents["patience"].as_u64().unwrap();
        let turns = r.turns.iter().filter(|t| t.role == Side::User).count() as u64;
        assert!(turns <= patience, "{turns} turns, patience {patience}");
        if turns == patience && patience < 8 {
            left_silently += 1;
            assert_eq!(r.turns.last().unwrap().role, Side::Assistant);
            assert_eq!(
                serde_json::to_value(r.end_reason).unwrap(),
                serde_json::json!("user_left")
            );
        }
    }
    assert!(left_silently > 3, "{left_silently}");
    // Off: the same sessions run on to the turn policy's end.
    let off_dir = scenario_copy(dir.path(), |n, t| match n {
        "scenario.toml" => with_conversation_lines(
            &t.replace("patience = \"patience\"\n", ""),
            "stay_for_patience",
            "",
        ),
        _ => t,
    });
    let recs = read_records(&silent.output).unwrap();
    let off = SimulateConfig {
        scenario_dir: off_dir,
        output: dir.path().join("off.jsonl"),
        ..cfg.clone()
    };
    scripted(&off);
    let longer = read_records(&off.output)
        .unwrap()
        .iter()
        .zip(&recs)
        .filter(|(a, b)| a.turns.len() > b.turns.len())
        .count();
    assert!(longer > 3, "{longer}");
}

#[test]
fn a_seeker_who_stays_for_patience_takes_all_of_it_unless_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let run = |stay: bool, name: &str| {
        let scenario = scenario_copy(&dir.path().join(name), |n, t| match n {
            "scenario.toml" => with_conversation_lines(
                &t,
                "stay_for_patience",
                &format!("stay_for_patience = {stay}\n"),
            ),
            _ => t,
        });
        let cfg = SimulateConfig {
            sessions: 40,
            scenario_dir: scenario,
            ..config(dir.path(), &format!("{name}.jsonl"))
        };
        scripted(&cfg);
        read_records(&cfg.output).unwrap()
    };
    // Conversations that end before the seeker's patience (or the turn
    // limit) without accepting the target.
    let early = |recs: &[ConversationRecord]| {
        recs.iter()
            .filter(|r| {
                let patience = r.latents["patience"].as_u64().expect("an integer");
                let turns = r.turns.iter().filter(|t| t.role == Side::User).count() as u64;
                assert!(turns <= patience, "{turns} turns, patience {patience}");
                let accepted = serde_json::to_value(r.end_reason).unwrap() == "target_accepted";
                turns < patience.min(8) && !accepted
            })
            .count()
    };
    let (stays, chain_ends) = (run(true, "stays"), run(false, "chain"));
    assert_eq!(early(&stays), 0);
    // Off, the intent chain's END ends some conversations first.
    assert!(early(&chain_ends) > 5, "{}", early(&chain_ends));
}

/// A copy of movies in `dir` whose `conversation.system_opens` is `share`
/// (`None`: not set at all).
fn movies_with_system_opens(dir: &Path, share: Option<&str>) -> PathBuf {
    scenario_copy(dir, |n, t| match n {
        "scenario.toml" => with_conversation_lines(
            &t,
            "system_opens",
            &share.map_or(String::new(), |p| format!("system_opens = {p}\n")),
        ),
        _ => t,
    })
}

#[test]
fn a_drawn_share_of_sessions_opens_with_the_systems_own_words() {
    let dir = tempfile::tempdir().unwrap();
    // movies with the system opening half the sessions.
    let opens_dir = movies_with_system_opens(dir.path(), Some("0.5"));
    let cfg = SimulateConfig {
        sessions: 40,
        scenario_dir: opens_dir.clone(),
        ..config(dir.path(), "opens.jsonl")
    };
    let summary = scripted(&cfg);
    // The draw is the session's: the same file at any parallel.
    let serial = SimulateConfig {
        parallel: 1,
        output: dir.path().join("opens_serial.jsonl"),
        ..cfg.clone()
    };
    scripted(&serial);
    assert!(bytes(&cfg.output) == bytes(&serial.output));
    // Never opening: the same sessions as a scenario without the share.
    let never_dir = movies_with_system_opens(&dir.path().join("never"), None);
    let never = SimulateConfig {
        scenario_dir: never_dir,
        output: dir.path().join("never.jsonl"),
        ..cfg.clone()
    };
    scripted(&never);
    let recs = read_records(&cfg.output).unwrap();
    let without = read_records(&never.output).unwrap();
    let mut opened = 0;
    for (r, w) in recs.iter().zip(&without) {
        assert_eq!(w.turns[0].role, Side::User, "{}", w.id);
        if r.turns[0].role == Side::Assistant {
            opened += 1;
            // Written by the system (generated tokens), before any user
            // turn, and the user answers it.
            assert!(r.turns[0].tokens > 0, "{}", r.id);
            assert_eq!(r.turns[1].role, Side::User);
        } else {
            // A session that opens with its user is drawn as without the
            // share: its other streams are untouched.
            assert_eq!(
                serde_json::to_value(&r.turns).unwrap(),
                serde_json::to_value(&w.turns).unwrap(),
                "{}",
                r.id
            );
        }
    }
    // 40 sessions at a share of 0.5.
    assert!((10..=30).contains(&opened), "{opened} of 40 opened");
    // An opening is one of the system's answers in the summary.
    let assistant: usize = recs
        .iter()
        .map(|r| r.turns.iter().filter(|t| t.role == Side::Assistant).count())
        .sum();
    assert_eq!(summary.assistant_turns, assistant as u64);
}

#[test]
fn a_chat_recommender_opens_on_its_cue_and_keeps_it_first() {
    use usersim::chat::ChatRole;
    use usersim::prompt::{assistant_messages, HistoryTurn};
    let dir = tempfile::tempdir().unwrap();
    let opens_dir = movies_with_system_opens(dir.path(), Some("0.5"));
    let scenario = usersim::scenario::Scenario::load(&opens_dir).unwrap();
    let cue = scenario.conversation.system_opening_cue.clone();
    let turn = |side, text| HistoryTurn {
        side,
        text,
        note: None,
        tag: None,
    };
    // The opening: the system prompt, then the cue as the user's message.
    let (open, _) = assistant_messages(&scenario, &[], &[], 0).unwrap();
    let roles: Vec<ChatRole> = open.iter().map(|m| m.role).collect();
    assert_eq!(roles, vec![ChatRole::System, ChatRole::User]);
    assert_eq!(open[1].content, cue);
    // Later prompts begin as the opening's did, so the engine reuses its KV.
    let history = [
        turn(Side::Assistant, "Hi! What are you in the mood for?"),
        turn(Side::User, "something funny"),
    ];
    let (later, _) = assistant_messages(&scenario, &history, &[], 1).unwrap();
    assert_eq!(later[..2], open[..]);
    assert_eq!(later[2].role, ChatRole::Assistant);
    // A session that opens with its user has no cue.
    let (user_first, _) = assistant_messages(&scenario, &history[1..], &[], 0).unwrap();
    assert!(user_first.iter().all(|m| m.content != cue));
}

#[test]
fn the_first_word_latent_opens_each_turn_with_a_word_real_seekers_opened_such_turns_with() {
    let dir = tempfile::tempdir().unwrap();
    // Style off: it may lower-case the first letter.
    let on = scenario_copy(&dir.path().join("on"), |n, t| match n {
        "scenario.toml" => with_first_word(&without_section(&t, "[style]")),
        _ => t,
    });
    let cfg = SimulateConfig {
        scenario_dir: on,
        sessions: 40,
        ..config(dir.path(), "fw.jsonl")
    };
    // Keeps each seeker prompt's last line (what the model continues) and
    // writes a sentence, or a mark and a sentence, after it.
    let script = |endings: Rc<RefCell<Vec<String>>>| -> usersim::backend::scripted::Script {
        Box::new(move |req| match &req.prompt {
            usersim::backend::Prompt::Text(t) if req.side == Side::User => {
                let last = t.lines().last().unwrap_or("").to_string();
                endings.borrow_mut().push(last);
                if t.len() % 2 == 0 {
                    format!(", so it goes {}.", t.len())
                } else {
                    format!("so it goes {}.", t.len())
                }
            }
            _ => "Try Heat.".into(),
        })
    };
    let endings = Rc::new(RefCell::new(Vec::<String>::new()));
    let prep = prepare(&cfg).unwrap();
    let mut backend = ScriptedBackend::new(cfg.parallel).with_script(script(endings.clone()));
    run_prepared(&cfg, &prep, &mut backend).unwrap();
    let fitted = usersim::tools::fit::fit_iard(
        &shared_data().join("iard/iard.json"),
        &usersim::tools::fit::FitIntentsConfig::default(),
    )
    .unwrap();
    let endings = endings.borrow();
    let (mut drawn, mut first_turns, mut greeted, mut later, mut later_i) = (0, 0, 0, 0, 0);
    for r in read_records(&cfg.output).unwrap() {
        for (i, t) in r.turns.iter().filter(|t| t.role == Side::User).enumerate() {
            let Some(word) = t.latents.get("first_word") else {
                continue;
            };
            drawn += 1;
            // The turn is the drawn word, then what the model wrote.
            assert!(
                t.text.starts_with(&format!("{word} so it goes "))
                    || t.text.starts_with(&format!("{word}, so it goes ")),
                "{word:?}: {:?}",
                t.text
            );
            // The prompt ended on it: the model continued the seeker's line
            // from the word.
            assert!(
                endings
                    .iter()
                    .any(|l| l.starts_with("Seeker") && l.ends_with(&format!("): {word}"))),
                "no prompt ends with {word:?}"
            );
            // It is a word real seekers opened a turn of this intent with,
            // at this place (or any intent's, for a rare intent).
            let place = if i == 0 { "first_turn" } else { "later_turns" };
            let cells = &fitted.first_words[place];
            let lower = word.to_lowercase();
            let in_cell = cells
                .get(&t.latents["intent"])
                .is_some_and(|c| c.contains_key(&lower));
            let rare = cells
                .get(&t.latents["intent"])
                .is_none_or(|c| c.values().sum::<u64>() < 10);
            assert!(
                in_cell || (rare && cells.values().any(|c| c.contains_key(&lower))),
                "{place} {}: {word:?}",
                t.latents["intent"]
            );
            if i == 0 {
                first_turns += 1;
                greeted += usize::from(["Hi", "Hello", "Hey"].contains(&word.as_str()));
            } else {
                later += 1;
                later_i += usize::from(word == "I");
            }
        }
    }
    // Real seekers greet in most first turns and open a quarter of later
    // ones with "I".
    assert!(drawn > 100, "{drawn} turns with a first word");
    assert!(
        greeted * 2 > first_turns,
        "{greeted} of {first_turns} first turns greet"
    );
    assert!(
        later_i * 5 > later,
        "{later_i} of {later} later turns open with I"
    );

    // Off: the same sessions draw the same intents, and no first word.
    let off = SimulateConfig {
        scenario_dir: scenario_copy(&dir.path().join("off"), |n, t| match n {
            "scenario.toml" => without_section(&with_first_word(&t), "[first_word]"),
            _ => t,
        }),
        output: dir.path().join("off.jsonl"),
        ..cfg.clone()
    };
    let prep = prepare(&off).unwrap();
    let mut backend = ScriptedBackend::new(off.parallel).with_script(script(Rc::default()));
    run_prepared(&off, &prep, &mut backend).unwrap();
    let intents = |p: &Path, on: bool| -> Vec<Vec<String>> {
        read_records(p)
            .unwrap()
            .iter()
            .map(|r| {
                r.turns
                    .iter()
                    .filter(|t| t.role == Side::User)
                    .map(|t| {
                        if !on {
                            assert!(!t.latents.contains_key("first_word"));
                        }
                        t.latents["intent"].clone()
                    })
                    .collect()
            })
            .collect()
    };
    assert_eq!(intents(&cfg.output, true), intents(&off.output, false));
}
