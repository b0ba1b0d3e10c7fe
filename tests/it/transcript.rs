//! Transcript prompting, the pool and the copy guard: what the simulator is
//! shown (scripted backend, so every prompt can be read) and what real
//! models write from it.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use usersim::backend::scripted::{Script, ScriptedBackend};
use usersim::backend::{GenerationRequest, Prompt};
use usersim::chat::Side;
use usersim::corpus::load_dialogues;
use usersim::corpus::pool::Pool;
use usersim::output::read_records;
use usersim::run::{prepare, SimulateConfig};

use crate::util::*;

fn iard() -> PathBuf {
    shared_data().join("iard/iard.json")
}

/// `prompts/movies` switched to transcript prompting on the IARD pool,
/// seeker lines tagged with their intent, the copy guard on, and no drawn
/// first word (each turn is the model's text from its start).
pub fn transcript_scenario(dir: &Path) -> PathBuf {
    scenario_copy(dir, |name, t| {
        if name != "scenario.toml" {
            return t;
        }
        let mut t = strip_sections(
            &t,
            &[
                "[pool]",
                "[transcript]",
                "[transcript.tags]",
                "[first_word]",
            ],
        )
        .replace("\nuser_prompt = \"chat\"", "")
        .replace("\nuser_prompt = \"transcript\"", "");
        t = t.replacen(
            "catalog = \"catalog.csv\"\n",
            "catalog = \"catalog.csv\"\nuser_prompt = \"transcript\"\n",
            1,
        );
        if !t.contains("copy = true") {
            t = t.replacen("max_resamples = 2\n", "max_resamples = 2\ncopy = true\n", 1);
        }
        format!(
            "{t}\n[pool]\ncorpora = [{:?}]\n\n[transcript]\nheader = \"Chats between a Seeker and a Recommender.\"\ndialogues = 3\ntag = \"intent\"\n",
            iard().display().to_string()
        )
    })
}

/// `toml` without the named sections (each up to the next blank-line
/// separated `[` or `# ----` header).
fn strip_sections(toml: &str, names: &[&str]) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in toml.lines() {
        if line.starts_with('[') || line.starts_with("# ----") {
            skipping = names.iter().any(|n| line.trim() == *n);
        }
        if !skipping {
            out.push(line);
        }
    }
    out.join("\n") + "\n"
}

fn replay_config(dir: &Path, scenario: PathBuf, sessions: u64) -> SimulateConfig {
    SimulateConfig {
        output: dir.join("out.jsonl"),
        sessions,
        parallel: 3,
        seed: 5,
        scenario_dir: scenario,
        replay: Some(iard()),
        ..SimulateConfig::default()
    }
}

fn run_scripted(cfg: &SimulateConfig, script: Script) -> usersim::run::RunSummary {
    let prep = prepare(cfg).unwrap_or_else(|e| panic!("{e}"));
    let mut backend = ScriptedBackend::new(cfg.parallel).with_script(script);
    run_prepared(cfg, &prep, &mut backend).unwrap_or_else(|e| panic!("{e}"))
}

fn recording(
    seen: Rc<RefCell<Vec<GenerationRequest>>>,
    mut answer: impl FnMut(&GenerationRequest) -> String + 'static,
) -> Script {
    Box::new(move |req| {
        seen.borrow_mut().push(req.clone());
        answer(req)
    })
}

#[test]
fn transcript_prompts_show_real_dialogues_but_never_the_replayed_one() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = replay_config(dir.path(), transcript_scenario(dir.path()), 6);
    let seen = Rc::new(RefCell::new(Vec::new()));
    run_scripted(&cfg, recording(seen.clone(), |_| "ok sounds good".into()));
    let (_, real) = load_dialogues(&iard()).unwrap();
    let recs = read_records(&cfg.output).unwrap();
    assert_eq!(recs.len(), 6);
    let seen = seen.borrow();
    // Candidate 0 of each seeker turn (the movies default decodes several
    // from the same prompt, each its own request on the scripted backend).
    let best_of = prepare(&cfg).unwrap().best_of as usize;
    assert!(best_of > 1, "the movies default chooses among candidates");
    let user: Vec<&GenerationRequest> = seen
        .iter()
        .filter(|r| r.side == Side::User && r.candidate == 0)
        .collect();
    assert!(user.len() > 20, "{}", user.len());
    assert_eq!(
        seen.iter().filter(|r| r.side == Side::User).count(),
        best_of * user.len(),
        "best-of candidates of every seeker turn, all from its one prompt"
    );
    let mut prefixes = std::collections::BTreeSet::new();
    for r in &recs {
        let id = &r.replay.as_ref().expect("a replay").dialogue_id;
        let own: Vec<&GenerationRequest> = user
            .iter()
            .copied()
            .filter(|q| q.conversation == r.session_index)
            .collect();
        let texts: Vec<&str> = own
            .iter()
            .map(|q| match &q.prompt {
                Prompt::Text(t) => t.as_str(),
                Prompt::Chat(_) => panic!("a chat prompt in transcript mode"),
            })
            .collect();
        // Append-only: every prompt starts with the one before it.
        for w in texts.windows(2) {
            let stem = w[0].rsplit_once('\n').map_or(w[0], |(head, _)| head);
            assert!(w[1].starts_with(stem), "prompt changed in the middle");
        }
        let first = texts[0];
        assert!(first.starts_with("Chats between a Seeker and a Recommender.\n\n"));
        // The prefix's real dialogues: three, each of real lines, none of
        // them the dialogue being replayed.
        let prefix = first.split("\n(Next conversation").next().unwrap();
        prefixes.insert(prefix.to_string());
        let replayed = real
            .iter()
            .find(|d| &d.id == id)
            .expect("replayed dialogue");
        for t in replayed
            .turns()
            .iter()
            .filter(|t| t.text.split_whitespace().count() >= 6)
        {
            assert!(
                !prefix.contains(&t.text),
                "dialogue {id} is replayed and shown: {:?}",
                t.text
            );
        }
        let shown = real
            .iter()
            .filter(|d| {
                d.turns()
                    .iter()
                    .all(|t| prefix.contains(&format!(" {}\n", t.text)))
            })
            .count();
        assert_eq!(shown, 3, "dialogue {id}");
        // Each prompt ends on the open seeker line, tagged with the intent
        // the record holds for that turn.
        let turns: Vec<_> = r.turns.iter().filter(|t| t.role == Side::User).collect();
        assert_eq!(turns.len(), texts.len());
        for (t, p) in turns.iter().zip(&texts) {
            let want = format!("\nSeeker ({}):", t.latents["intent"]);
            assert!(
                p.ends_with(&want),
                "{:?} should end with {want:?}",
                &p[p.len() - 40..]
            );
        }
        // A turn is a line: the request stops at a newline.
        assert!(own
            .iter()
            .all(|q| q.sampling.stop.iter().any(|s| s == "\n")));
        assert!(own.iter().all(|q| q.note.is_empty()));
    }
    // Sessions share the run's prefix unless they replay one of its
    // dialogues.
    assert!(prefixes.len() <= 2, "{}", prefixes.len());
}

/// Whether the seeker left with a closing turn: the last word is theirs,
/// and the conversation ended on patience or the turn limit.
fn ends_on_a_closing_turn(r: &usersim::session::record::ConversationRecord) -> bool {
    r.turns.last().unwrap().role == Side::User
        && matches!(
            serde_json::to_value(r.end_reason).unwrap().as_str(),
            Some("user_left" | "turn_limit")
        )
}

#[test]
fn a_leaving_seekers_last_line_is_marked_as_real_seekers_last_lines_are() {
    // movies (`closing_tag = "says goodbye"`) with closing turns on.
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_copy(dir.path(), |n, t| match n {
        "scenario.toml" => t.replace("closing_turn = false\n", "closing_turn = true\n"),
        _ => t,
    });
    let cfg = SimulateConfig {
        output: dir.path().join("out.jsonl"),
        sessions: 24,
        parallel: 4,
        seed: 9,
        best_of: Some(1),
        scenario_dir: scenario,
        ..SimulateConfig::default()
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    run_scripted(&cfg, recording(seen.clone(), |_| "ok sounds good".into()));
    let seen = seen.borrow();
    let recs = read_records(&cfg.output).unwrap();
    let mut closed = 0;
    for r in &recs {
        let prompts: Vec<&str> = seen
            .iter()
            .filter(|q| q.side == Side::User && q.conversation == r.session_index)
            .map(|q| match &q.prompt {
                Prompt::Text(t) => t.as_str(),
                Prompt::Chat(_) => panic!("a chat prompt in transcript mode"),
            })
            .collect();
        // Every real dialogue shown marks its seeker's last line, and only
        // that one.
        let prefix = prompts[0].split("\n(Next conversation").next().unwrap();
        let dialogues: Vec<&str> = prefix.split("\n\n").skip(1).collect();
        assert_eq!(dialogues.len(), 3, "{prefix}");
        for d in &dialogues {
            let marked: Vec<&str> = d
                .lines()
                .filter(|l| l.contains(", says goodbye):"))
                .collect();
            let last_seeker = d.lines().rfind(|l| l.starts_with("Seeker"));
            assert_eq!(marked.len(), 1, "{d}");
            assert_eq!(Some(marked[0]), last_seeker, "{d}");
        }
        // The session's own lines: marked on its closing turn alone.
        let leaving = |p: &str| p.rsplit('\n').next().unwrap().contains(", says goodbye):");
        let user = r.turns.iter().filter(|t| t.role == Side::User).count();
        assert_eq!(prompts.len(), user);
        let closing = ends_on_a_closing_turn(r);
        assert_eq!(
            prompts.iter().filter(|p| leaving(p)).count(),
            usize::from(closing),
            "{}",
            r.id
        );
        if closing {
            closed += 1;
            assert!(leaving(prompts.last().unwrap()));
        }
    }
    assert!(closed >= 4, "{closed} of 24 closed");
    // Closing turns off (the movies default): no line is marked.
    let off = SimulateConfig {
        output: dir.path().join("off.jsonl"),
        sessions: 4,
        scenario_dir: root().join("prompts/movies"),
        ..cfg.clone()
    };
    let seen_off = Rc::new(RefCell::new(Vec::new()));
    run_scripted(
        &off,
        recording(seen_off.clone(), |_| "ok sounds good".into()),
    );
    for q in seen_off.borrow().iter() {
        if let Prompt::Text(t) = &q.prompt {
            assert!(!t.contains("says goodbye)"), "{t}");
        }
    }
}

#[test]
fn a_transcript_recommender_continues_real_dialogues_and_suggests_its_candidate() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_copy(dir.path(), |name, t| {
        if name != "scenario.toml" {
            return t;
        }
        t.replacen(
            "user_prompt = \"transcript\"\n",
            "user_prompt = \"transcript\"\nassistant_prompt = \"transcript\"\n",
            1,
        )
    });
    let cfg = SimulateConfig {
        output: dir.path().join("out.jsonl"),
        sessions: 6,
        parallel: 3,
        seed: 4,
        best_of: Some(1),
        scenario_dir: scenario.clone(),
        ..SimulateConfig::default()
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    let catalog =
        usersim::scenario::catalog::Catalog::load_csv(&scenario.join("catalog.csv")).unwrap();
    run_scripted(
        &cfg,
        recording(seen.clone(), |req| match req.side {
            Side::User => "i like comedies".into(),
            Side::Assistant => "Have you seen Toy Story?".into(),
        }),
    );
    let seen = seen.borrow();
    let recs = read_records(&cfg.output).unwrap();
    let mut suggested = 0;
    for r in &recs {
        let asked: Vec<&GenerationRequest> = seen
            .iter()
            .filter(|q| q.side == Side::Assistant && q.conversation == r.session_index)
            .collect();
        assert_eq!(
            asked.len(),
            r.turns.iter().filter(|t| t.role == Side::Assistant).count()
        );
        for (k, q) in asked.iter().enumerate() {
            let Prompt::Text(text) = &q.prompt else {
                panic!("a chat prompt for a transcript recommender");
            };
            assert!(q.sampling.stop.iter().any(|s| s == "\n"));
            // Real dialogues first, their recommender lines tagged with the
            // movies they name; nothing of the seeker's latents or intents.
            assert!(text.starts_with("Chats between"), "{text}");
            assert!(text.contains("\nRecommender (suggests "), "{text}");
            assert!(!text.contains("(Next conversation"));
            assert!(!text.contains("Seeker ("), "{text}");
            let open = text.rsplit('\n').next().unwrap();
            if k == 0 {
                assert_eq!(open, "Recommender:");
            } else {
                // The best candidate, a catalog title; earlier lines of the
                // session that named one show it.
                let title = open
                    .strip_prefix("Recommender (suggests ")
                    .and_then(|t| t.strip_suffix("):"))
                    .unwrap_or_else(|| panic!("{open}"));
                assert!(catalog.items().iter().any(|i| i.title == title), "{title}");
                assert!(
                    text.contains("\nRecommender (suggests Toy Story): Have you seen Toy Story?\n")
                );
                suggested += 1;
            }
        }
    }
    assert!(suggested > 5, "{suggested}");
}

#[test]
fn the_copy_guard_draws_again_a_turn_that_pastes_real_text() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = replay_config(dir.path(), transcript_scenario(dir.path()), 4);
    let pool = Pool::load(&[iard()]).unwrap();
    let (_, real) = load_dialogues(&iard()).unwrap();
    // A pool seeker turn of 9 words or more with no sentence end before
    // its last word, so the length cut keeps it whole (the replayed
    // dialogues are the first four in id order; take it from far after).
    let pasted = real[150..]
        .iter()
        .flat_map(|d| d.turns())
        .find(|t| {
            let w: Vec<&str> = t.text.split_whitespace().collect();
            w.len() >= 9
                && w[..w.len() - 1]
                    .iter()
                    .all(|x| !x.ends_with(['.', '!', '?']))
                && t.speaker == usersim::corpus::Speaker::Seeker
        })
        .expect("a long seeker turn")
        .text;
    assert!(pool.copies(&pasted));
    let seeds = Rc::new(RefCell::new(
        std::collections::HashMap::<(u64, String), u32>::new(),
    ));
    let paste = pasted.clone();
    let summary = run_scripted(
        &cfg,
        Box::new(move |req| {
            if req.side == Side::Assistant {
                return "unused".into();
            }
            let key = (req.conversation, format!("{:?}", prompt_end(&req.prompt)));
            let mut seen = seeds.borrow_mut();
            let n = seen.entry(key).or_default();
            *n += 1;
            // The first draw of every turn pastes a real turn; a resample
            // writes its own words.
            if *n == 1 {
                format!("well {paste}")
            } else {
                format!("my own words number {n}")
            }
        }),
    );
    let recs = read_records(&cfg.output).unwrap();
    let user_turns: usize = recs
        .iter()
        .map(|r| r.turns.iter().filter(|t| t.role == Side::User).count())
        .sum();
    assert!(user_turns > 5);
    assert_eq!(
        summary.guard_rejections.get("copy"),
        Some(&(user_turns as u64))
    );
    for r in &recs {
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            assert!(
                !pool.copies(&t.text),
                "a pasted turn was kept: {:?}",
                t.text
            );
            assert!(
                t.text.to_lowercase().starts_with("my own words"),
                "{:?}",
                t.text
            );
        }
    }
    // Off: the same run without `copy = true` keeps the pasted turns.
    let off = transcript_scenario(&dir.path().join("off"));
    let toml = std::fs::read_to_string(off.join("scenario.toml")).unwrap();
    assert!(toml.contains("copy = true\n"));
    std::fs::write(off.join("scenario.toml"), toml.replace("copy = true\n", "")).unwrap();
    let cfg_off = SimulateConfig {
        output: dir.path().join("off.jsonl"),
        ..replay_config(dir.path(), off, 4)
    };
    let paste = pasted.clone();
    let summary = run_scripted(&cfg_off, Box::new(move |_| format!("well {paste}")));
    assert_eq!(summary.guard_rejections.get("copy"), None);
    let kept = read_records(&cfg_off.output).unwrap();
    assert!(kept
        .iter()
        .flat_map(|r| r.turns.iter())
        .filter(|t| t.role == Side::User)
        .all(|t| pool.copies(&t.text)));
}

#[test]
fn the_unfinished_guard_draws_again_a_sentence_broken_off() {
    // Round one of every seeker turn (all `best_of` candidates of the
    // movies default) writes on past its token budget with no sentence or
    // clause end; a resample writes a short finished line.
    fn script(best_of: u32) -> Script {
        let rounds = Rc::new(RefCell::new(
            std::collections::HashMap::<(u64, String), u32>::new(),
        ));
        Box::new(move |req| {
            if req.side == Side::Assistant {
                return "unused".into();
            }
            let key = (req.conversation, prompt_end(&req.prompt));
            let mut seen = rounds.borrow_mut();
            let n = seen.entry(key).or_default();
            *n += 1;
            if *n <= best_of {
                const WORDS: [&str; 8] =
                    ["maybe", "old", "films", "and", "then", "we", "could", "try"];
                (0..60)
                    .map(|i| WORDS[((req.seed >> (i % 60)) as usize + i) % WORDS.len()])
                    .collect::<Vec<_>>()
                    .join(" ")
            } else {
                format!("thanks that helps {}", req.seed % 1000)
            }
        })
    }
    let dir = tempfile::tempdir().unwrap();
    let on = transcript_scenario(dir.path());
    let toml = std::fs::read_to_string(on.join("scenario.toml")).unwrap();
    assert!(toml.contains("unfinished = true\n"));
    let cfg = replay_config(dir.path(), on, 3);
    let prep = prepare(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let best_of = prep.best_of;
    assert!(best_of > 1, "the movies default chooses among candidates");
    let mut backend = ScriptedBackend::new(cfg.parallel)
        .with_script(script(best_of))
        .with_budget();
    let summary = run_prepared(&cfg, &prep, &mut backend).unwrap_or_else(|e| panic!("{e}"));
    let recs = read_records(&cfg.output).unwrap();
    let user: Vec<&str> = recs
        .iter()
        .flat_map(|r| r.turns.iter())
        .filter(|t| t.role == Side::User)
        .map(|t| t.text.as_str())
        .collect();
    assert!(user.len() > 5, "{}", user.len());
    assert_eq!(
        summary.guard_rejections.get("unfinished"),
        Some(&(u64::from(best_of) * user.len() as u64)),
        "every candidate of round one"
    );
    assert!(
        user.iter()
            .all(|t| t.to_lowercase().starts_with("thanks that helps")),
        "{user:?}"
    );
    // Off: without `unfinished = true` the broken-off turns are kept.
    let off = transcript_scenario(&dir.path().join("off"));
    std::fs::write(
        off.join("scenario.toml"),
        toml.replace("unfinished = true\n", ""),
    )
    .unwrap();
    let cfg_off = SimulateConfig {
        output: dir.path().join("off.jsonl"),
        ..replay_config(dir.path(), off, 3)
    };
    let prep = prepare(&cfg_off).unwrap_or_else(|e| panic!("{e}"));
    let mut backend = ScriptedBackend::new(cfg_off.parallel)
        .with_script(script(best_of))
        .with_budget();
    let summary = run_prepared(&cfg_off, &prep, &mut backend).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(summary.guard_rejections.get("unfinished"), None);
    let kept = read_records(&cfg_off.output).unwrap();
    assert!(kept
        .iter()
        .flat_map(|r| r.turns.iter())
        .filter(|t| t.role == Side::User)
        .all(|t| !t.text.to_lowercase().starts_with("thanks")));
}

/// The last line of a prompt (which turn it asks for).
fn prompt_end(p: &Prompt) -> String {
    match p {
        Prompt::Text(t) => t.len().to_string(),
        Prompt::Chat(m) => m.len().to_string(),
    }
}

#[test]
fn a_chat_seekers_closing_turn_is_told_it_is_the_last() {
    // movies in chat prompting, closing turns on: the `user_turn` template
    // sees `last_turn` (movies says "It is your last message").
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_copy(dir.path(), |name, t| match name {
        "scenario.toml" => without_first_word(&t)
            .replace("user_prompt = \"transcript\"\n", "")
            .replace("closing_turn = false\n", "closing_turn = true\n"),
        _ => t,
    });
    let cfg = SimulateConfig {
        output: dir.path().join("out.jsonl"),
        sessions: 16,
        parallel: 4,
        seed: 3,
        best_of: Some(1),
        scenario_dir: scenario,
        ..SimulateConfig::default()
    };
    let seen = Rc::new(RefCell::new(Vec::new()));
    run_scripted(&cfg, recording(seen.clone(), |_| "ok sounds good".into()));
    let seen = seen.borrow();
    let mut closed = 0;
    for r in &read_records(&cfg.output).unwrap() {
        let notes: Vec<&str> = seen
            .iter()
            .filter(|q| q.side == Side::User && q.conversation == r.session_index)
            .map(|q| {
                assert!(matches!(q.prompt, Prompt::Chat(_)));
                q.note.as_str()
            })
            .collect();
        let told: Vec<bool> = notes
            .iter()
            .map(|n| n.contains("It is your last message"))
            .collect();
        let closing = ends_on_a_closing_turn(r);
        // Told on the closing turn alone.
        assert_eq!(
            told.iter().filter(|t| **t).count(),
            usize::from(closing),
            "{}",
            r.id
        );
        if closing {
            closed += 1;
            assert_eq!(told.last(), Some(&true));
        }
    }
    assert!(closed >= 3, "{closed} of 16 closed");
}

#[test]
fn chat_prompts_show_exemplars_of_the_turns_intent() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = scenario_copy(dir.path(), |name, t| match name {
        "scenario.toml" => format!(
            "{}\n[pool]\ncorpora = [{:?}]\nexemplars = 2\n",
            strip_sections(
                &t,
                &[
                    "[pool]",
                    "[transcript]",
                    "[transcript.tags]",
                    "[first_word]"
                ]
            )
            .replace("user_prompt = \"transcript\"\n", ""),
            iard().display().to_string()
        ),
        "user_turn.j2" => format!(
            "{}\n{{% for e in exemplars %}}\nEXEMPLAR: {{{{ e }}}}\n{{% endfor %}}",
            t.trim_end()
        ),
        _ => t,
    });
    let cfg = replay_config(dir.path(), scenario, 3);
    let seen = Rc::new(RefCell::new(Vec::new()));
    run_scripted(&cfg, recording(seen.clone(), |_| "sure".into()));
    let pool_real = load_dialogues(&iard()).unwrap().1;
    let recs = read_records(&cfg.output).unwrap();
    let mut shown = 0;
    for q in seen.borrow().iter().filter(|q| q.side == Side::User) {
        let r = recs
            .iter()
            .find(|r| r.session_index == q.conversation)
            .unwrap();
        let id = &r.replay.as_ref().unwrap().dialogue_id;
        let lines: Vec<&str> = q
            .note
            .lines()
            .filter_map(|l| l.strip_prefix("EXEMPLAR: "))
            .collect();
        assert!(lines.len() <= 2);
        for e in lines {
            shown += 1;
            // A real seeker turn, never one of the replayed dialogue.
            let from: Vec<&str> = pool_real
                .iter()
                .filter(|d| d.turns().iter().any(|t| t.text == e))
                .map(|d| d.id.as_str())
                .collect();
            assert!(!from.is_empty(), "not a real turn: {e:?}");
            assert!(
                from.iter().any(|d| d != id),
                "{e:?} only in the replayed {id}"
            );
        }
    }
    assert!(shown > 10, "{shown}");
}

#[test]
fn transcript_mode_on_smollm2_instruct_writes_one_line_seeker_turns() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path(), "t.jsonl");
    cfg.model = usersim::run::ModelChoice::Registry(Some("smollm2-135m-instruct-q4_1".into()));
    cfg.scenario_dir = transcript_scenario(dir.path());
    cfg.replay = Some(iard());
    cfg.sessions = 3;
    cfg.parallel = 3;
    cfg.llama.context_per_sequence = 2048;
    let summary = run(&cfg);
    let recs = read_records(&cfg.output).unwrap();
    assert_eq!(recs.len(), 3);
    assert!(
        summary.shared_prefix_tokens[0] > 100,
        "{:?}",
        summary.shared_prefix_tokens
    );
    let mut words = 0;
    let mut turns = 0;
    for r in &recs {
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            turns += 1;
            words += t.text.split_whitespace().count();
            assert!(!t.text.contains('\n'), "{:?}", t.text);
            assert!(!t.text.contains("Recommender:"), "{:?}", t.text);
        }
    }
    assert!(turns >= 6);
    assert!(
        words > turns,
        "mostly empty turns: {words} words in {turns}"
    );
}

#[test]
fn style_rewrites_turns_at_the_sessions_drawn_real_seeker_rates() {
    let dir = tempfile::tempdir().unwrap();
    let said = "That sounds great. Thanks.";
    // No drawn first word: each turn is the model's text, restyled.
    let on_dir = scenario_copy(&dir.path().join("on"), |n, t| match n {
        "scenario.toml" => without_first_word(&t),
        _ => t,
    });
    let cfg = SimulateConfig {
        output: dir.path().join("styled.jsonl"),
        sessions: 30,
        parallel: 4,
        seed: 8,
        scenario_dir: on_dir,
        ..SimulateConfig::default()
    };
    let prep = prepare(&cfg).unwrap();
    let fitted = prep.scenario.style.clone();
    assert!(fitted.len() > 100, "movies types like the IARD seekers");
    run_scripted(&cfg, Box::new(move |_| said.to_string()));
    let recs = read_records(&cfg.output).unwrap();
    let mut styles = std::collections::BTreeSet::new();
    let mut lowered = 0;
    let mut ended = 0;
    let mut user_turns = 0;
    for r in &recs {
        let s: usersim::session::style::StyleRates =
            serde_json::from_value(r.latents["style"].clone()).expect("latents.style");
        assert!(fitted.contains(&s), "{s:?} is not a fitted seeker");
        styles.insert(format!("{s:?}"));
        for t in r.turns.iter().filter(|t| t.role == Side::User) {
            user_turns += 1;
            let text = t.text.as_str();
            // Only the first letter, the final punctuation and the first
            // sentence break change (a short length target cuts the turn
            // after its first sentence).
            let plain = text.to_lowercase().replace("...", ". ");
            assert!(
                ["that sounds great. thanks", "that sounds great"]
                    .contains(&plain.trim_end_matches('.')),
                "{text:?}"
            );
            if text.starts_with('t') {
                lowered += 1;
            }
            if s.lower_first == 0.0 {
                assert!(text.starts_with('T'), "{text:?} at {s:?}");
            }
            if s.ellipsis == 0.0 {
                assert!(!text.contains("..."), "{text:?} at {s:?}");
            }
            if s.ellipsis == 1.0 && text.to_lowercase().contains("thanks") {
                assert!(text.contains("great...Thanks"), "{text:?}");
            }
            if s.bare_end == 1.0 {
                assert!(!text.ends_with('.'), "{text:?} at {s:?}");
            }
            if s.bare_end == 0.0 {
                assert!(text.ends_with('.'), "{text:?} at {s:?}");
            }
            if text.ends_with('.') {
                ended += 1;
            }
        }
    }
    assert!(styles.len() > 10, "sessions draw different seekers");
    assert!(lowered > 0);
    // Real seekers end 44% of their turns without . ! or ?; the model
    // always ends with a period here.
    let bare = 1.0 - f64::from(ended) / f64::from(user_turns);
    assert!((0.25..0.65).contains(&bare), "{bare}");
    // Off: the text is the model's, and every other draw is unchanged.
    let off_dir = scenario_copy(&dir.path().join("off"), |n, t| match n {
        "scenario.toml" => without_first_word(&without_section(&t, "[style]")),
        _ => t,
    });
    let off = SimulateConfig {
        output: dir.path().join("plain.jsonl"),
        scenario_dir: off_dir,
        ..cfg.clone()
    };
    run_scripted(&off, Box::new(move |_| said.to_string()));
    let plain = read_records(&off.output).unwrap();
    assert_eq!(plain.len(), recs.len());
    for (a, b) in recs.iter().zip(&plain) {
        assert!(!b.latents.contains_key("style"));
        let intents = |r: &usersim::session::record::ConversationRecord| -> Vec<String> {
            r.turns
                .iter()
                .filter(|t| t.role == Side::User)
                .map(|t| t.latents["intent"].clone())
                .collect()
        };
        assert_eq!(intents(a), intents(b));
        for t in b.turns.iter().filter(|t| t.role == Side::User) {
            assert!([said, "That sounds great."].contains(&t.text.as_str()));
        }
    }
}

#[test]
fn transcript_mode_on_gemma_base_writes_one_line_seeker_turns() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = small_config(dir.path(), "g.jsonl");
    cfg.model = usersim::run::ModelChoice::Registry(Some("gemma-3-270m-q4_k_m".into()));
    cfg.scenario_dir = transcript_scenario(dir.path());
    cfg.replay = Some(iard());
    cfg.sessions = 2;
    cfg.parallel = 2;
    let summary = run(&cfg);
    let recs = read_records(&cfg.output).unwrap();
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].model.name, "gemma-3-270m-q4_k_m");
    assert!(summary.shared_prefix_tokens[0] > 100);
    let texts: Vec<&str> = recs
        .iter()
        .flat_map(|r| r.turns.iter())
        .filter(|t| t.role == Side::User)
        .map(|t| t.text.as_str())
        .collect();
    assert!(texts.len() >= 4);
    for t in &texts {
        assert!(!t.contains('\n') && !t.contains("Recommender:"), "{t:?}");
    }
    let words: usize = texts.iter().map(|t| t.split_whitespace().count()).sum();
    assert!(words > texts.len(), "mostly empty turns: {texts:?}");
}
