//! Best-of-N seeker turns chosen by a realism critic: the choice (the
//! highest score, from N distinct seeded streams), determinism across
//! `--parallel`, the KV fork on the real model, `critic train`, the
//! intent and length weights, and bad critic input.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::rc::Rc;

use usersim::backend::scripted::ScriptedBackend;
use usersim::chat::Side;
use usersim::critic::Critic;
use usersim::output::read_records;
use usersim::rng::{session_seed, stream_seed, Stream};
use usersim::run::{open_backend, prepare, Prepared, RunSummary, SimulateConfig};
use usersim::session::best_of::{length_fit, IntentReader, TurnScorer};

use crate::util::*;

/// Prefers turns with more of one word: a critic whose favourite string
/// feature is known.
struct PrefersWord(&'static str);

impl TurnScorer for PrefersWord {
    fn score(&self, _context: &str, turn: &str) -> f64 {
        turn.split_whitespace().filter(|w| *w == self.0).count() as f64
    }
}

/// Scores every turn alike: every choice is a tie, so candidate 0 is kept.
struct Indifferent;

impl TurnScorer for Indifferent {
    fn score(&self, _context: &str, _turn: &str) -> f64 {
        0.5
    }
}

/// The movies scenario without the levers that rewrite a turn's text
/// (length cut, style) or reject it (guard): a kept turn is a candidate's
/// text as the backend wrote it.
fn plain_scenario(dir: &Path) -> std::path::PathBuf {
    plain_scenario_with(dir, |t| t)
}

/// `plain_scenario` with `edit` applied to its `scenario.toml` last.
fn plain_scenario_with(dir: &Path, edit: impl Fn(String) -> String) -> std::path::PathBuf {
    scenario_copy(dir, |name, t| match name {
        "scenario.toml" => edit(without_length(
            &["[guard]", "[style]"]
                .iter()
                .fold(without_first_word(&t), |t, s| without_section(&t, s)),
        )),
        _ => t,
    })
}

/// The seeds of the `best_of` candidates of a session's user turn `n`, in
/// candidate order: the turn's own sampling stream, then its candidate
/// streams (the first draw of each).
fn candidate_seeds(session: u64, n: u32, best_of: u8) -> Vec<u64> {
    std::iter::once(stream_seed(session, Stream::UserSampling(n)))
        .chain((1..best_of).map(|k| stream_seed(session, Stream::UserCandidate(n, 0, k))))
        .collect()
}

/// A scripted candidate's text, a function of its seed alone: a tag and
/// 0 to 4 "zebra"s (`zebras(seed)`), so a test can say which it keeps.
fn zebra_text(seed: u64) -> String {
    format!("u{} {}", seed % 1000, "zebra ".repeat(zebras(seed)))
        .trim()
        .to_string()
}

/// How many "zebra"s the candidate drawn from `seed` says.
fn zebras(seed: u64) -> usize {
    (seed % 5) as usize
}

/// A scripted run with `scorer` choosing among `best_of` candidates; the
/// script writes each candidate's text from its seed (a few "zebra"s) and
/// logs (conversation, prompt, candidate, seed) of every request.
fn scripted_best_of(
    cfg: &SimulateConfig,
    scorer: Box<dyn TurnScorer + Send + Sync>,
    best_of: u32,
) -> (RunSummary, Vec<(u64, String, u32, u64)>) {
    let mut prep: Prepared = prepare(cfg).expect("prepare");
    prep.critic = Some(scorer);
    // The critic alone chooses (not the scenario's intent reading).
    prep.intent_reader = None;
    prep.best_of = best_of;
    let log = Rc::new(RefCell::new(Vec::new()));
    let seen = log.clone();
    let mut backend = ScriptedBackend::new(cfg.parallel).with_script(Box::new(move |req| {
        if req.side == Side::User {
            let prompt = req.prompt.contents().join("\u{1}");
            seen.borrow_mut()
                .push((req.conversation, prompt, req.candidate, req.seed));
        }
        zebra_text(req.seed)
    }));
    let s = run_prepared(cfg, &prep, &mut backend).expect("scripted run");
    let log = log.borrow().clone();
    (s, log)
}

#[test]
fn best_of_keeps_the_most_human_candidate_each_from_its_own_stream() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig {
        output: dir.path().join("a.jsonl"),
        sessions: 6,
        parallel: 3,
        seed: 5,
        scenario_dir: plain_scenario(dir.path()),
        ..SimulateConfig::default()
    };
    let (summary, log) = scripted_best_of(&cfg, Box::new(PrefersWord("zebra")), 4);

    // The requests of one turn share its prompt: group them.
    let mut turns: BTreeMap<(u64, String), Vec<(u32, u64)>> = BTreeMap::new();
    for (conv, prompt, k, seed) in &log {
        turns
            .entry((*conv, prompt.clone()))
            .or_default()
            .push((*k, *seed));
    }
    let records = read_records(&cfg.output).unwrap();
    let mut checked = 0;
    for r in &records {
        let s = session_seed(cfg.seed, r.session_index);
        let user: Vec<_> = r.turns.iter().filter(|t| t.role == Side::User).collect();
        for (n, turn) in user.iter().enumerate() {
            let n = n as u32;
            // N candidates, each from its own stream: the turn's own
            // sampling stream and the N-1 candidate streams.
            let want: Vec<(u32, u64)> = (0u32..).zip(candidate_seeds(s, n, 4)).collect();
            let own = want[0].1;
            let (_, cands) = turns
                .iter()
                .find(|((c, _), v)| *c == r.session_index && v.iter().any(|&(_, x)| x == own))
                .unwrap_or_else(|| panic!("no requests of session {} turn {n}", r.session_index));
            let mut got = cands.clone();
            got.sort_unstable();
            assert_eq!(got, want, "session {} turn {n}", r.session_index);
            // Kept: the most zebras, the lowest candidate among equals.
            let best = want
                .iter()
                .max_by(|a, b| zebras(a.1).cmp(&zebras(b.1)).then(b.0.cmp(&a.0)))
                .unwrap();
            assert_eq!(
                turn.text,
                zebra_text(best.1),
                "session {} turn {n}",
                r.session_index
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} user turns checked");
    assert_eq!(summary.critic.score.turns, checked as u64);
    assert_eq!(summary.critic.score.candidates, 4 * checked as u64);
    assert!(
        summary.critic.score.mean_chosen() > summary.critic.score.mean_candidate(),
        "{:?}",
        summary.critic
    );

    // The same at another parallel, byte for byte.
    let one = SimulateConfig {
        output: dir.path().join("b.jsonl"),
        parallel: 1,
        ..cfg.clone()
    };
    scripted_best_of(&one, Box::new(PrefersWord("zebra")), 4);
    assert!(
        std::fs::read(&cfg.output).unwrap() == std::fs::read(&one.output).unwrap(),
        "best-of output differs across --parallel"
    );
}

/// A real-model run of `cfg` with `scorer` choosing among `best_of`.
fn real_best_of(
    cfg: &SimulateConfig,
    scorer: Option<Box<dyn TurnScorer + Send + Sync>>,
    best_of: u32,
) -> RunSummary {
    let mut prep = prepare(cfg).expect("prepare");
    prep.critic = scorer;
    // The critic alone chooses (not the scenario's intent reading).
    prep.intent_reader = None;
    prep.best_of = best_of;
    let mut backend = open_backend(cfg, &prep, cfg.parallel).expect("engine");
    run_prepared(cfg, &prep, backend.as_mut()).expect("real run")
}

#[test]
fn kv_forks_leave_the_first_candidate_as_it_was_and_output_is_identical_across_parallel() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let mut base = small_config(dir.path(), "one.jsonl");
    // Without the guard: a rejected candidate 0 would make best-of-1 draw
    // again where best-of-3 keeps another candidate (and without the first
    // word, whose "I" + "'m" candidates give way to the others). Without
    // the length weight: the critic alone chooses.
    base.scenario_dir = scenario_copy(dir.path(), |name, t| match name {
        "scenario.toml" => without_section(&without_first_word(&t), "[guard]")
            .replace("length_weight = 1.0", "length_weight = 0.0"),
        _ => t,
    });
    base.sessions = 4;
    base.parallel = 4;
    base.max_user_turns = Some(2);
    base.sampling.user_max_tokens = Some(16);
    base.sampling.assistant_max_tokens = Some(16);
    // Three candidates per turn: more sequences, each with this context.
    base.llama.context_per_sequence = 1536;
    real_best_of(&base, None, 1);

    // Forked candidates decode beside candidate 0, which an indifferent
    // critic keeps: the file must be the one without forks.
    let tie = SimulateConfig {
        output: dir.path().join("tie.jsonl"),
        ..base.clone()
    };
    let s = real_best_of(&tie, Some(Box::new(Indifferent)), 3);
    assert!(s.critic.score.turns >= 8, "{:?}", s.critic);
    assert_eq!(s.critic.score.candidates, 3 * s.critic.score.turns);
    assert!(
        s.backend.tokens_generated > s.tokens_generated,
        "the discarded candidates were decoded too"
    );
    assert!(
        std::fs::read(&base.output).unwrap() == std::fs::read(&tie.output).unwrap(),
        "a KV fork changed the candidate it was forked from"
    );

    // A critic that prefers long turns: same file at --parallel 4 and 1,
    // and other turns than without it.
    struct Longest;
    impl TurnScorer for Longest {
        fn score(&self, _: &str, turn: &str) -> f64 {
            turn.len() as f64
        }
    }
    let four = SimulateConfig {
        output: dir.path().join("four.jsonl"),
        ..base.clone()
    };
    let one = SimulateConfig {
        output: dir.path().join("p1.jsonl"),
        parallel: 1,
        ..base.clone()
    };
    real_best_of(&four, Some(Box::new(Longest)), 3);
    real_best_of(&one, Some(Box::new(Longest)), 3);
    let (a, b) = (
        std::fs::read(&four.output).unwrap(),
        std::fs::read(&one.output).unwrap(),
    );
    assert!(a == b, "best-of output differs across --parallel");
    let words = |p: &Path| -> usize {
        read_records(p)
            .unwrap()
            .iter()
            .flat_map(|r| r.turns.iter().filter(|t| t.role == Side::User))
            .map(|t| t.text.len())
            .sum()
    };
    assert!(
        words(&four.output) > words(&base.output),
        "preferring long turns kept no longer text: {} vs {}",
        words(&four.output),
        words(&base.output)
    );
}

/// Trains a critic with `usersim critic train` on IARD against a scripted
/// run (no model): returns the critic's path and the command's output.
fn train_scripted_critic(dir: &Path) -> (std::path::PathBuf, std::process::Output) {
    // A simulated set: scripted turns (no model), whose words no person wrote.
    let cfg = SimulateConfig {
        output: dir.join("sim.jsonl"),
        sessions: 60,
        parallel: 8,
        seed: 3,
        scenario_dir: plain_scenario(dir),
        ..SimulateConfig::default()
    };
    let prep = prepare(&cfg).unwrap();
    let mut backend = ScriptedBackend::new(cfg.parallel);
    run_prepared(&cfg, &prep, &mut backend).unwrap();
    let iard = shared_data().join("iard/iard.json");
    let out = dir.join("critic.json");
    let o = std::process::Command::new(bin())
        .args(["critic", "train", "--bootstrap", "50", "--real"])
        .arg(&iard)
        .arg("--sim")
        .arg(&cfg.output)
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    (out, o)
}

#[test]
fn critic_train_learns_real_from_simulated_and_saves_a_loadable_file() {
    let dir = tempfile::tempdir().unwrap();
    let (out, o) = train_scripted_critic(dir.path());
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(stdout.contains("held-out AUC"), "{stdout}");
    let critic = Critic::load(&out).unwrap();
    assert!(critic.held_out().auc.value > 0.9, "{:?}", critic.held_out());
    let sim = &critic.trained_on().simulated[0];
    assert_eq!(sim.scenario.as_ref().unwrap().name, "movies");
    // A real seeker's turn reads more human than a scripted one.
    let real = critic.score("what kind of movies do you like?", "i love horror movies");
    let fake = critic.score(
        "what kind of movies do you like?",
        "u something scary tonight classic drama",
    );
    assert!(real > fake, "real {real} vs scripted {fake}");
}

#[test]
fn bad_critic_input_is_one_error_line_and_no_output() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    let run = |extra: &[&std::ffi::OsStr], needles: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = ["simulate", "-n", "2", "-o"]
            .iter()
            .map(std::ffi::OsStr::new)
            .collect();
        args.push(out.as_os_str());
        args.extend_from_slice(extra);
        expect_input_error_line(&args, &out, needles);
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    // A scenario without [critic] has nothing to choose with.
    let no_critic = scenario_copy(&dir.path().join("no_critic"), |n, t| match n {
        "scenario.toml" => without_section(&t, "[critic]"),
        _ => t,
    });
    run(
        &[
            os("--scenario"),
            no_critic.as_os_str(),
            os("--best-of"),
            os("4"),
        ],
        &["--best-of 4", "expected a critic"],
    );
    run(&[os("--best-of"), os("0")], &["--best-of", "from 1 to 16"]);
    let corrupt = dir.path().join("corrupt.json");
    std::fs::write(
        &corrupt,
        "{\"critic\": {\"format\": \"usersim-critic\", \"version\": 1}, \"sha256\": \"00\"}",
    )
    .unwrap();
    run(
        &[
            os("--best-of"),
            os("2"),
            os("--critic"),
            corrupt.as_os_str(),
        ],
        &["corrupt.json", "sha256"],
    );
    let old = dir.path().join("old.json");
    std::fs::write(
        &old,
        "{\"critic\": {\"format\": \"usersim-critic\", \"version\": 0}}",
    )
    .unwrap();
    run(
        &[os("--critic"), old.as_os_str()],
        &["old.json", "critic.version: expected 1"],
    );
    let missing = dir.path().join("missing.json");
    run(
        &[
            os("--best-of"),
            os("2"),
            os("--critic"),
            missing.as_os_str(),
        ],
        &["missing.json", "cannot read"],
    );
    // The scenario's [critic] is checked as it loads.
    let scen = scenario_copy(dir.path(), |n, t| match n {
        "scenario.toml" => format!(
            "{}\n[critic]\nbest_of = 17\n",
            without_section(&t, "[critic]")
        ),
        _ => t,
    });
    run(
        &[os("--scenario"), scen.as_os_str()],
        &["scenario.toml", "critic.best_of", "from 1 to 16"],
    );
    // Reading the intent needs labelled real turns to learn it from; a
    // copy in chat mode with no [pool], choosing by `weight`.
    let no_pool_with = |name: &str, weight: &str| {
        scenario_copy(&dir.path().join(name), |n, t| match n {
            "scenario.toml" => format!(
                "{}\n[critic]\nfile = \"critic.json\"\nbest_of = 4\n{weight}\n",
                ["[critic]", "[pool]", "[guard]"]
                    .iter()
                    .fold(without_first_word(&t), |t, s| without_section(&t, s))
                    .replace("user_prompt = \"transcript\"", "user_prompt = \"chat\"")
            ),
            _ => t,
        })
    };
    let no_pool = no_pool_with("no_pool", "intent_weight = 1.0");
    run(
        &[os("--scenario"), no_pool.as_os_str()],
        &["scenario.toml", "critic.intent_weight", "[pool]"],
    );
    // Naming genres is counted on the pool's real turns, read with the
    // catalog's genres.
    let no_pool_genre = no_pool_with("no_pool_genre", "genre_weight = 1.0");
    run(
        &[os("--scenario"), no_pool_genre.as_os_str()],
        &["scenario.toml", "critic.genre_weight", "[pool]", "catalog"],
    );
    // Each weight is 0 to 4; the length weight needs a [length].
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(&str, Edit, Vec<&str>)> = vec![
        (
            "heavy",
            Box::new(|t| t.replace("intent_weight = 1.0", "intent_weight = -1")),
            vec!["critic.intent_weight", "from 0 to 4", "-1"],
        ),
        (
            "long",
            Box::new(|t| t.replace("length_weight = 1.0", "length_weight = 5")),
            vec!["critic.length_weight", "from 0 to 4", "5"],
        ),
        (
            "genre_heavy",
            Box::new(|t| with_genre_weight(&t, "4.5")),
            vec!["critic.genre_weight", "from 0 to 4", "4.5"],
        ),
        (
            "no_length",
            Box::new(|t| without_section(&t, "[length]")),
            vec!["critic.length_weight", "[length]"],
        ),
    ];
    for (name, edit, needles) in cases {
        let scen = scenario_copy(&dir.path().join(name), |n, t| match n {
            "scenario.toml" => edit(t),
            _ => t,
        });
        let mut want = vec!["scenario.toml"];
        want.extend(needles);
        run(&[os("--scenario"), scen.as_os_str()], &want);
    }
}

/// Reads zebras as small talk (OTH) and their absence as anything else:
/// an intent reader whose preference depends on the turn's drawn intent.
struct ZebrasAreSmallTalk;

impl IntentReader for ZebrasAreSmallTalk {
    fn read(&self, intent: &str, turn: &str) -> Option<f64> {
        let zebras = turn.split_whitespace().filter(|w| *w == "zebra").count() as f64;
        Some(if intent == "OTH" {
            (zebras + 1.0) / 5.0
        } else {
            1.0 / (zebras + 1.0)
        })
    }
}

#[test]
fn the_intent_reader_weighs_the_choice_by_each_turns_drawn_intent() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SimulateConfig {
        output: dir.path().join("a.jsonl"),
        sessions: 8,
        parallel: 4,
        seed: 9,
        scenario_dir: plain_scenario(dir.path()),
        ..SimulateConfig::default()
    };
    let run = |cfg: &SimulateConfig| {
        let mut prep: Prepared = prepare(cfg).expect("prepare");
        // The critic cannot tell the candidates apart: the reader decides.
        prep.critic = Some(Box::new(Indifferent));
        prep.intent_reader = Some(Box::new(ZebrasAreSmallTalk));
        prep.intent_weight = 1.0;
        prep.best_of = 4;
        let mut backend =
            ScriptedBackend::new(cfg.parallel).with_script(Box::new(|req| zebra_text(req.seed)));
        run_prepared(cfg, &prep, &mut backend).expect("scripted run")
    };
    let summary = run(&cfg);
    let records = read_records(&cfg.output).unwrap();
    let (mut small_talk, mut other) = (Vec::new(), Vec::new());
    for r in &records {
        let s = session_seed(cfg.seed, r.session_index);
        for (n, turn) in r.turns.iter().filter(|t| t.role == Side::User).enumerate() {
            let n = n as u32;
            let seeds = candidate_seeds(s, n, 4);
            let said: Vec<usize> = seeds.iter().map(|&x| zebras(x)).collect();
            let kept = turn
                .text
                .split_whitespace()
                .filter(|w| *w == "zebra")
                .count();
            let intent = turn.latents.get("intent").cloned().unwrap_or_default();
            if intent == "OTH" {
                assert_eq!(kept, *said.iter().max().unwrap(), "{turn:?}");
                small_talk.push(kept);
            } else {
                assert_eq!(kept, *said.iter().min().unwrap(), "{turn:?}");
                other.push(kept);
            }
        }
    }
    assert!(
        !small_talk.is_empty() && !other.is_empty(),
        "both kinds of turn drawn"
    );
    let checked = (small_talk.len() + other.len()) as u64;
    assert_eq!(summary.critic.intent.turns, checked);
    assert_eq!(summary.critic.intent.candidates, 4 * checked);
    assert!(summary.critic.intent.mean_chosen() > summary.critic.intent.mean_candidate());
}

#[test]
fn the_length_weight_keeps_the_candidate_nearest_each_turns_drawn_length() {
    let dir = tempfile::tempdir().unwrap();
    // The length target is drawn but not enforced (no cut, no budget), so
    // a kept turn is a candidate as written; only the weight moves it.
    let scenario = scenario_copy(dir.path(), |name, t| match name {
        "scenario.toml" => ["[guard]", "[style]"]
            .iter()
            .fold(without_first_word(&t), |t, s| without_section(&t, s))
            .replace("enforce = true", "enforce = false")
            .replace("intent_weight = 1.0", "intent_weight = 0.0")
            .replace("length_weight = 1.0", "length_weight = 4.0"),
        _ => t,
    });
    let cfg = SimulateConfig {
        output: dir.path().join("a.jsonl"),
        sessions: 8,
        parallel: 4,
        seed: 11,
        scenario_dir: scenario,
        ..SimulateConfig::default()
    };
    // 0 to 24 words after the tag, from the candidate's seed.
    let words = |seed: u64| (seed / 7 % 25) as usize;
    let mut prep: Prepared = prepare(&cfg).expect("prepare");
    prep.critic = Some(Box::new(Indifferent));
    prep.best_of = 4;
    let mut backend = ScriptedBackend::new(cfg.parallel).with_script(Box::new(move |req| {
        format!("u{} {}", req.seed % 1000, "word ".repeat(words(req.seed)))
            .trim()
            .to_string()
    }));
    let summary = run_prepared(&cfg, &prep, &mut backend).expect("scripted run");
    let records = read_records(&cfg.output).unwrap();
    let (mut checked, mut not_first) = (0u64, 0);
    for r in &records {
        let s = session_seed(cfg.seed, r.session_index);
        for (n, turn) in r.turns.iter().filter(|t| t.role == Side::User).enumerate() {
            let n = n as u32;
            let target: u32 = turn.latents["length"].parse().expect("a drawn length");
            let seeds = candidate_seeds(s, n, 4);
            // The tag is a word too: a candidate says words(seed) + 1.
            let fits: Vec<f64> = seeds
                .iter()
                .map(|&x| length_fit(words(x) + 1, target))
                .collect();
            let best = (0..4)
                .max_by(|&a, &b| fits[a].total_cmp(&fits[b]).then(b.cmp(&a)))
                .unwrap();
            let want = format!(
                "u{} {}",
                seeds[best] % 1000,
                "word ".repeat(words(seeds[best]))
            );
            assert_eq!(turn.text, want.trim(), "target {target}, fits {fits:?}");
            checked += 1;
            not_first += usize::from(best != 0);
        }
    }
    assert!(
        not_first > 5,
        "the weight moved {not_first} of {checked} turns"
    );
    assert_eq!(summary.critic.length.turns, checked);
    assert_eq!(summary.critic.length.candidates, 4 * checked);
    assert!(summary.critic.length.mean_chosen() > summary.critic.length.mean_candidate());
    assert_eq!(
        summary.critic.intent.turns, 0,
        "intent_weight 0 reads nothing"
    );
}

/// The scenario's `[critic]` with `genre_weight` set to `weight`,
/// whether or not it had one.
fn with_genre_weight(scenario_toml: &str, weight: &str) -> String {
    let kept: Vec<&str> = scenario_toml
        .lines()
        .filter(|l| !l.starts_with("genre_weight"))
        .collect();
    kept.join("\n").replace(
        "intent_weight = 1.0",
        &format!("intent_weight = 1.0\ngenre_weight = {weight}"),
    )
}

#[test]
fn the_genre_weight_names_genres_where_real_seekers_of_the_intent_do() {
    let dir = tempfile::tempdir().unwrap();
    let scenario = plain_scenario_with(dir.path(), |t| with_genre_weight(&t, "1.0"));
    let cfg = SimulateConfig {
        output: dir.path().join("a.jsonl"),
        sessions: 8,
        parallel: 4,
        seed: 13,
        scenario_dir: scenario,
        ..SimulateConfig::default()
    };
    // Even seeds name a genre the catalog knows, odd ones none.
    let names = |seed: u64| seed.is_multiple_of(2);
    let mut prep: Prepared = prepare(&cfg).expect("prepare");
    let rates = prep.genre_rates.clone().expect("rates counted on the pool");
    // Counted on IARD's real seekers: most initial queries name a genre,
    // few acceptances do.
    assert!(rates.turns() > 1000, "{}", rates.turns());
    assert!(rates.rate(Some("IQU")) > 0.5, "{}", rates.rate(Some("IQU")));
    assert!(rates.rate(Some("ACC")) < 0.2, "{}", rates.rate(Some("ACC")));
    prep.critic = Some(Box::new(Indifferent));
    prep.intent_reader = None;
    prep.best_of = 4;
    let mut backend = ScriptedBackend::new(cfg.parallel).with_script(Box::new(move |req| {
        let said = if names(req.seed) { "comedy" } else { "zebra" };
        format!("u{} {said}", req.seed % 1000)
    }));
    let summary = run_prepared(&cfg, &prep, &mut backend).expect("scripted run");
    let records = read_records(&cfg.output).unwrap();
    let (mut checked, mut named, mut unnamed) = (0u64, 0, 0);
    for r in &records {
        let s = session_seed(cfg.seed, r.session_index);
        for (n, turn) in r.turns.iter().filter(|t| t.role == Side::User).enumerate() {
            let n = n as u32;
            let seeds = candidate_seeds(s, n, 4);
            let intent = turn.latents.get("intent").map(String::as_str);
            let wanted = rates.rate(intent) > 0.5;
            // The first candidate of the kind real seekers of this intent
            // write more often, or the first of all when all are alike.
            let best = seeds.iter().position(|&x| names(x) == wanted).unwrap_or(0);
            let said = if names(seeds[best]) {
                "comedy"
            } else {
                "zebra"
            };
            assert_eq!(
                turn.text,
                format!("u{} {said}", seeds[best] % 1000),
                "{intent:?} at rate {}",
                rates.rate(intent)
            );
            if seeds.iter().any(|&x| names(x)) && seeds.iter().any(|&x| !names(x)) {
                if wanted {
                    named += 1;
                } else {
                    unnamed += 1;
                }
            }
            checked += 1;
        }
    }
    assert!(
        named > 0 && unnamed > 0,
        "turns with both kinds of candidate kept the namer {named} times, the other {unnamed}"
    );
    assert_eq!(summary.critic.genre.turns, checked);
    assert_eq!(summary.critic.genre.candidates, 4 * checked);
    assert!(summary.critic.genre.mean_chosen() > summary.critic.genre.mean_candidate());
}

#[test]
fn bench_reports_each_best_of_in_one_run_counting_discarded_candidates() {
    let _heavy = crate::util::heavy();
    crate::util::model_path();
    let dir = tempfile::tempdir().unwrap();
    let (critic, o) = train_scripted_critic(dir.path());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = crate::util::bench_json_rows(
        std::process::Command::new(bin())
            .args([
                "bench",
                "--parallel",
                "1",
                "--best-of",
                "2,1",
                "--sessions-per-slot",
                "1",
                "--max-turns",
                "1",
                "--raw-steps",
                "8",
                "--raw-prompt-tokens",
                "32",
                "--threads",
                "2",
                "--json",
                "-q",
                "--critic",
            ])
            .arg(&critic),
    );
    let best_of: Vec<u64> = rows.iter().filter_map(|r| r["best_of"].as_u64()).collect();
    assert_eq!(best_of, [2, 1], "one row per best-of, in the order asked");
    let f = |row: &serde_json::Value, k: &str| {
        row[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing: {row}"))
    };
    for row in &rows {
        assert_eq!(row["conversations"].as_u64(), Some(1), "{row}");
        for k in [
            "conversations_per_minute",
            "work_ratio",
            "depth_matched_work_ratio",
        ] {
            assert!(f(row, k) > 0.0 && f(row, k).is_finite(), "{k}: {row}");
        }
    }
    // Best-of 2 decodes a second candidate for each seeker turn and keeps
    // one: a smaller share of what it generates is kept than at best-of 1,
    // which discards only what the role guard rejects.
    let (two, one) = (&rows[0], &rows[1]);
    let kept_share =
        |row| f(row, "decode_tokens_per_second") / f(row, "candidate_tokens_per_second");
    assert!(kept_share(one) <= 1.0 + 1e-9, "{one}");
    assert!(kept_share(two) < kept_share(one), "{two} vs {one}");
}
