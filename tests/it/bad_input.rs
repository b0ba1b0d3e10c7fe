//! Bad input: one clear error line naming the file or field, exit code 2,
//! and no output file left behind.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::*;

/// Run `usersim simulate` with `args`; expect exit 2, a message containing
/// every `needles`, and no output file.
fn expect_input_error(dir: &Path, args: &[&str], needles: &[&str]) {
    let out = dir.join("out.jsonl");
    let mut all: Vec<&std::ffi::OsStr> = ["simulate", "-n", "2", "-p", "2", "--threads", "2", "-o"]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
    all.push(out.as_os_str());
    all.extend(args.iter().map(std::ffi::OsStr::new));
    expect_input_error_line(&all, &out, needles);
}

#[test]
fn missing_and_corrupt_model_files() {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().unwrap();
    expect_input_error(
        dir.path(),
        &["-m", "/nonexistent/model.gguf"],
        &["/nonexistent/model.gguf"],
    );
    let bad = dir.path().join("notgguf.gguf");
    std::fs::write(&bad, vec![b'x'; 4096]).unwrap();
    expect_input_error(
        dir.path(),
        &["-m", bad.to_str().unwrap()],
        &["notgguf.gguf", "GGUF"],
    );
    // A real model cut short: the header is fine, the tensors are missing.
    let real = std::fs::read(model_path()).unwrap();
    let cut = dir.path().join("truncated.gguf");
    std::fs::write(&cut, &real[..real.len() / 3]).unwrap();
    expect_input_error(
        dir.path(),
        &["-m", cut.to_str().unwrap()],
        &["truncated.gguf"],
    );
}

#[test]
fn unknown_model_name() {
    let dir = tempfile::tempdir().unwrap();
    expect_input_error(dir.path(), &["-m", "no-such-model"], &["no-such-model"]);
}

/// The movies scenario with two `[turn.by]` tables on its intent variable
/// (terse seekers accept x0.5, chatty ones x2.1), placed right after the
/// intent's `[turn.text]` so TOML reads them as the intent's.
fn tilted(scenario_toml: String) -> String {
    let end = "OTH = \"Make small talk: greet, thank, or say goodbye.\"\n";
    assert!(scenario_toml.contains(end), "the intent's last text line");
    scenario_toml.replace(
        end,
        &format!(
            "{end}[turn.by.verbosity.terse]\nACC = 0.5\n[turn.by.verbosity.chatty]\nACC = 2.1\n"
        ),
    )
}

#[test]
fn malformed_scenarios() {
    let dir = tempfile::tempdir().unwrap();
    let d = |f: &dyn Fn(&str, String) -> String| {
        let sub = tempfile::tempdir_in(dir.path()).unwrap().keep();
        scenario_copy(&sub, f)
    };
    let toml_broken = d(&|n, t| {
        if n == "scenario.toml" {
            t.replace("[templates]", "[templates")
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", toml_broken.to_str().unwrap()],
        &["scenario.toml"],
    );

    let unknown_var = d(&|n, t| {
        if n == "user_system.j2" {
            t + "{{ session.shoe_size }}"
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", unknown_var.to_str().unwrap()],
        &["user_system.j2", "session.shoe_size"],
    );

    let negative = d(&|n, t| {
        if n == "scenario.toml" {
            t.replace("weights = [34, 32, 25", "weights = [34, -32, 25")
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", negative.to_str().unwrap()],
        &["scenario.toml", "liked_genres", "weights", "non-negative"],
    );

    let zero = d(&|n, t| {
        if n == "scenario.toml" {
            t.replace("weights = [1, 1, 1]", "weights = [0, 0, 0]")
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", zero.to_str().unwrap()],
        &["scenario.toml", "verbosity", "positive sum"],
    );

    let unknown_field = d(&|n, t| {
        if n == "scenario.toml" {
            t.replace("[conversation]", "[conversation]\nmax_turnz = 3")
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", unknown_field.to_str().unwrap()],
        &["scenario.toml", "max_turnz"],
    );

    let not_a_bool = d(&|n, t| {
        if n == "scenario.toml" {
            t.replace("closing_turn = false", "closing_turn = \"yes\"")
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", not_a_bool.to_str().unwrap()],
        &["scenario.toml", "closing_turn", "a boolean"],
    );

    // `conversation.system_opens` is a share, and a fixed opening excludes
    // it (whatever movies sets it to).
    let opens = |extra: &'static str| {
        d(&move |n, t| {
            if n == "scenario.toml" {
                with_conversation_lines(&t, "system_opens", extra)
            } else {
                t
            }
        })
    };
    // Staying for one's patience needs a patience.
    let stays_without_patience = d(&|n, t| {
        if n == "scenario.toml" {
            with_conversation_lines(&t, "stay_for_patience", "stay_for_patience = true\n")
                .replace("patience = \"patience\"\n", "")
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", stays_without_patience.to_str().unwrap()],
        &[
            "scenario.toml",
            "conversation.stay_for_patience",
            "conversation.patience is not set",
        ],
    );
    for (extra, want) in [
        ("system_opens = 1.5\n", "a share from 0 to 1"),
        ("system_opens = -0.1\n", "a share from 0 to 1"),
        (
            "system_opens = 0.5\nopening = \"Hi!\"\n",
            "0 when conversation.opening is set",
        ),
    ] {
        expect_input_error(
            dir.path(),
            &["-s", opens(extra).to_str().unwrap()],
            &["scenario.toml", "conversation.system_opens", want],
        );
    }
}

#[test]
fn bad_pins() {
    let dir = tempfile::tempdir().unwrap();
    expect_input_error(
        dir.path(),
        &["--set", "session.shoe_size=42"],
        &["session.shoe_size", "verbosity"],
    );
    expect_input_error(
        dir.path(),
        &["--set", "session.verbosity=loud"],
        &["loud", "terse"],
    );
    expect_input_error(
        dir.path(),
        &["--set", "turn.intent=DANCE"],
        &["DANCE", "REJ"],
    );
    expect_input_error(
        dir.path(),
        &["--set", "session.target_item=No Such Film Ever"],
        &["target_item"],
    );
    expect_input_error(
        dir.path(),
        &["--set", "verbosity"],
        &["session.<name>=<value>"],
    );
}

#[test]
fn catalog_missing_column() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("movies.csv");
    std::fs::write(&csv, "movieId,name,genres\n1,Toy Story (1995),Comedy\n").unwrap();
    expect_input_error(
        dir.path(),
        &["--catalog", csv.to_str().unwrap()],
        &["movies.csv", "`title`"],
    );
}

#[test]
fn context_too_small_for_turns() {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().unwrap();
    expect_input_error(
        dir.path(),
        &["--context", "256", "--max-turns", "8"],
        &["context too small", "--context"],
    );
}

#[test]
fn existing_output_is_not_overwritten() {
    let _heavy = crate::util::heavy();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.jsonl");
    std::fs::write(&out, "keep me\n").unwrap();
    let o = Command::new(bin())
        .args(["simulate", "-n", "1", "-o"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me\n");
}

#[test]
fn malformed_length_and_intent_tilt_sections() {
    let dir = tempfile::tempdir().unwrap();
    let with = |toml_edit: &dyn Fn(String) -> String, fitted_edit: &dyn Fn(String) -> String| {
        let sub = tempfile::tempdir_in(dir.path()).unwrap().keep();
        scenario_copy(&sub, |n, t| match n {
            "scenario.toml" => toml_edit(t),
            "intents_iard.toml" => fitted_edit(t),
            _ => t,
        })
    };
    let keep = |t: String| t;
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            with(&|t| t.replace("of = \"intent\"", "of = \"mood\""), &keep),
            vec![
                "scenario.toml",
                "length.of",
                "a declared turn variable: intent",
            ],
        ),
        (
            with(
                &|t| t.replace("tokens_per_word = 2.0", "tokens_per_word = 0.2"),
                &keep,
            ),
            vec!["length.tokens_per_word", "from 1 to 10"],
        ),
        (
            with(
                &|t| {
                    t.replace(
                        "fitted_file = \"intents_iard.toml\"",
                        "fitted_file = \"nope.toml\"",
                    )
                },
                &keep,
            ),
            vec!["nope.toml", "cannot read"],
        ),
        (
            with(&keep, &|t| t.replacen("\n[lengths.", "\n[lengths_x.", 1)),
            vec!["intents_iard.toml", "lengths_x"],
        ),
        (
            with(&keep, &|t| t.replace("[lengths.IQU]", "[lengths.NOPE]")),
            vec![
                "intents_iard.toml",
                "lengths.NOPE",
                "a value of turn variable `intent`",
            ],
        ),
        (
            with(&keep, &|t| t.replacen("\n1 = ", "\nzero = ", 1)),
            vec![
                "intents_iard.toml",
                "lengths.",
                ".zero",
                "a word count of at least 1",
            ],
        ),
        (
            with(&|t| t.replace("enforce = true", "enforce = \"yes\""), &keep),
            vec!["scenario.toml", "enforce"],
        ),
        (
            with(&keep, &|t| t.replace("\nANS = 2.5909", "\nANS = -1.0")),
            vec!["markov.after_question.ANS", "a positive factor"],
        ),
        (
            with(&keep, &|t| {
                t.replace("[after_statement]\n", "[after_statement]\nNOPE = 1.0\n")
            }),
            vec!["markov.after_statement.NOPE", "declared values"],
        ),
        // [turn.by]: a session variable drawing one categorical value, its
        // declared values, the turn variable's values (or END), factors > 0
        // (movies has no tilt: `tilted` adds two to the intent variable).
        (
            with(
                &|t| tilted(t).replace("[turn.by.verbosity.terse]", "[turn.by.liked_genres.terse]"),
                &keep,
            ),
            vec![
                "scenario.toml",
                "turn \"intent\": by.liked_genres",
                "drawing one value",
            ],
        ),
        (
            with(
                &|t| tilted(t).replace("[turn.by.verbosity.terse]", "[turn.by.verbosity.grumpy]"),
                &keep,
            ),
            vec![
                "by.verbosity.grumpy",
                "a value of session variable `verbosity`",
            ],
        ),
        (
            with(
                &|t| tilted(t).replace("ACC = 0.5\n", "ACC = 0.5\nNOPE = 2.0\n"),
                &keep,
            ),
            vec!["by.verbosity.terse.NOPE", "declared values or END"],
        ),
        (
            with(&|t| tilted(t).replace("ACC = 2.1", "ACC = 0.0"), &keep),
            vec!["by.verbosity.chatty.ACC", "a positive factor"],
        ),
    ];
    for (i, (scenario, needles)) in cases.into_iter().enumerate() {
        eprintln!("case {i}: {needles:?}");
        expect_input_error(dir.path(), &["-s", scenario.to_str().unwrap()], &needles);
    }
}

#[test]
fn malformed_first_word_sections() {
    let dir = tempfile::tempdir().unwrap();
    let with = |toml_edit: &dyn Fn(String) -> String, fitted_edit: &dyn Fn(String) -> String| {
        let sub = tempfile::tempdir_in(dir.path()).unwrap().keep();
        scenario_copy(&sub, |n, t| match n {
            "scenario.toml" => toml_edit(with_first_word(&t)),
            "intents_iard.toml" => fitted_edit(t),
            _ => t,
        })
    };
    let keep = |t: String| t;
    let section = |extra: &'static str| {
        move |t: String| {
            t.replace(
                "[first_word]\nfitted_file = \"intents_iard.toml\"\n",
                &format!("[first_word]\nfitted_file = \"intents_iard.toml\"\n{extra}\n"),
            )
        }
    };
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            with(
                &|t| t.replace("user_prompt = \"transcript\"", "user_prompt = \"chat\""),
                &keep,
            ),
            vec![
                "scenario.toml",
                "first_word",
                "user_prompt = \"transcript\"",
            ],
        ),
        (
            with(&section("of = \"mood\""), &keep),
            vec!["first_word.of", "a declared turn variable: intent"],
        ),
        (
            with(&section("min_count = 0"), &keep),
            vec!["first_word.min_count", "at least 1"],
        ),
        (
            with(&section("min_cuont = 2"), &keep),
            vec!["scenario.toml", "min_cuont"],
        ),
        (
            with(&keep, &|t| {
                t.replace("[first_words.first_turn.", "[first_words.opening.")
            }),
            vec![
                "intents_iard.toml",
                "first_words.first_turn",
                "written by `usersim fit`",
            ],
        ),
        (
            with(&keep, &|t| {
                t.replace(
                    "[first_words.later_turns.SEE]",
                    "[first_words.later_turns.NOPE]",
                )
            }),
            vec![
                "intents_iard.toml",
                "first_words.later_turns.NOPE",
                "a value of turn variable `intent`",
            ],
        ),
        (
            with(&keep, &|t| {
                t.replace(
                    "[first_words.later_turns.SEE]\n",
                    "[first_words.later_turns.SEE]\nYes = 3\n",
                )
            }),
            vec!["first_words.later_turns.SEE.\"Yes\"", "a lower-case word"],
        ),
    ];
    for (i, (scenario, needles)) in cases.into_iter().enumerate() {
        eprintln!("case {i}: {needles:?}");
        expect_input_error(dir.path(), &["-s", scenario.to_str().unwrap()], &needles);
    }
}

#[test]
fn malformed_transcript_pool_and_style_sections() {
    let dir = tempfile::tempdir().unwrap();
    let iard = shared_data().join("iard/iard.json");
    let pool = format!("[pool]\ncorpora = [{:?}]\n", iard.display().to_string());
    // The movies scenario with `top` among its top-level keys and `tail`
    // (where `{POOL}` is a valid pool) at its end; `style` replaces the
    // fitted file's text.
    let variant = |top: &str, tail: &str, style: Option<&str>| {
        let sub = tempfile::tempdir_in(dir.path()).unwrap().keep();
        let (top, tail) = (top.to_string(), tail.replace("{POOL}", &pool));
        let dir = scenario_copy(&sub, move |n, t| match n {
            "scenario.toml" => {
                let t = strip_pool_sections(&t).replacen(
                    "catalog = \"catalog.csv\"\n",
                    &format!("catalog = \"catalog.csv\"\n{top}\n"),
                    1,
                );
                format!("{t}\n{tail}\n")
            }
            _ => t,
        });
        if let Some(body) = style {
            std::fs::write(dir.join("style.toml"), body).unwrap();
        }
        dir
    };
    let transcript = |tail: &str| variant("user_prompt = \"transcript\"", tail, None);
    let style = |body: &str| variant("", "[style]\nfitted_file = \"style.toml\"\n", Some(body));
    // Valid: the pool alone (chat prompting), and transcript prompting on it.
    for ok in [variant("", "{POOL}", None), transcript("{POOL}")] {
        usersim::scenario::Scenario::load(&ok).unwrap_or_else(|e| panic!("{e}"));
    }
    let cases: Vec<(PathBuf, Vec<&str>)> = vec![
        (
            transcript(""),
            vec!["scenario.toml", "user_prompt", "[pool]"],
        ),
        (
            variant("user_prompt = \"prose\"", "{POOL}", None),
            vec!["scenario.toml", "user_prompt"],
        ),
        (
            variant("assistant_prompt = \"transcript\"", "{POOL}", None),
            vec!["scenario.toml", "assistant_prompt", "user_prompt = \"transcript\""],
        ),
        (
            transcript("[pool]\ncorpora = [\"dialogs.csv\"]\n"),
            vec![
                "scenario.toml",
                "pool.corpora[0]",
                "IARD .json or INSPIRED .tsv",
            ],
        ),
        (
            transcript("[pool]\ncorpora = []\n"),
            vec!["scenario.toml", "pool.corpora", "at least one corpus"],
        ),
        (
            transcript("{POOL}exemplars = 40\n"),
            vec!["scenario.toml", "pool.exemplars", "0 to 16"],
        ),
        (
            transcript("{POOL}\n[transcript]\ndialogues = 0\n"),
            vec!["scenario.toml", "transcript.dialogues", "1 to 16"],
        ),
        (
            transcript("{POOL}\n[transcript]\ntag = \"mood\"\n"),
            vec![
                "scenario.toml",
                "transcript.tag",
                "a declared turn variable: intent",
            ],
        ),
        (
            transcript("{POOL}\n[transcript]\nseeker_label = \"A: B\"\n"),
            vec![
                "scenario.toml",
                "transcript.seeker_label",
                "without a colon",
            ],
        ),
        (
            transcript("{POOL}\n[transcript]\nsystem_label = \"Seeker\"\n"),
            vec![
                "scenario.toml",
                "transcript.system_label",
                "other than the seeker",
            ],
        ),
        (
            transcript("{POOL}\n[transcript]\nmax_dialogue_words = 20\ndialogues = 16\n"),
            vec!["scenario.toml", "transcript.dialogues", "at most the"],
        ),
        (
            transcript("[pool]\ncorpora = [\"/nonexistent/iard.json\"]\n"),
            vec![
                "scenario.toml",
                "pool.corpora[0]",
                "/nonexistent/iard.json",
                "--pool",
            ],
        ),
        (
            transcript("{POOL}\n[transcript]\ntag = \"intent\"\n[transcript.tags]\nNOPE = \"x\"\n"),
            vec!["scenario.toml", "transcript.tags.NOPE", "a value of turn variable `intent`"],
        ),
        (
            transcript("{POOL}\n[transcript]\ntag = \"intent\"\n[transcript.tags]\nREJ = \"no (really)\"\n"),
            vec!["scenario.toml", "transcript.tags.REJ", "without parentheses"],
        ),
        (
            transcript("{POOL}\n[transcript]\nclosing_tag = \"leaves: now\"\n"),
            vec!["scenario.toml", "transcript.closing_tag", "without parentheses or colons"],
        ),
        (
            transcript("{POOL}\n[transcript]\nsuggest_tag = \"\"\n"),
            vec!["scenario.toml", "transcript.suggest_tag", "non-empty"],
        ),
        (
            transcript("{POOL}\n[transcript]\nnope = 1\n"),
            vec!["scenario.toml", "nope"],
        ),
        (
            variant("", "[guard]\ncopy = true\n", None),
            vec!["scenario.toml", "guard.copy", "[pool]"],
        ),
        (
            variant("", "[guard]\nunfinished = \"yes\"\n", None),
            vec!["scenario.toml", "unfinished", "a boolean"],
        ),
        (
            style("first = {}\ntransitions = {}\n"),
            vec!["style.toml", "seeker_style", "usersim fit"],
        ),
        (
            style("first = {}\ntransitions = {}\nseeker_style = [[0.1, 1.5, 0.0]]\n"),
            vec!["style.toml", "seeker_style[0]", "from 0 to 1"],
        ),
    ];
    for (i, (scenario, needles)) in cases.into_iter().enumerate() {
        eprintln!("case {i}: {needles:?}");
        expect_input_error(dir.path(), &["-s", scenario.to_str().unwrap()], &needles);
    }
    // A --pool that cannot be read is named by the flag.
    let ok = transcript("{POOL}");
    expect_input_error(
        dir.path(),
        &["-s", ok.to_str().unwrap(), "--pool", "/nonexistent/d.tsv"],
        &["--pool", "/nonexistent/d.tsv"],
    );
}

/// `toml` without the movies scenario's `user_prompt`, `[pool]`,
/// `[transcript]`, `[style]`, `[guard]` (whichever of them it has), so a
/// case adds exactly its own.
fn strip_pool_sections(toml: &str) -> String {
    let mut out = Vec::new();
    let mut skipping = false;
    for line in toml.lines() {
        if line.starts_with('[') || line.starts_with("# ----") {
            skipping = [
                "[pool]",
                "[transcript]",
                "[transcript.tags]",
                "[style]",
                "[guard]",
                "[first_word]",
            ]
            .contains(&line.trim());
        }
        if skipping || line.starts_with("user_prompt") || line.starts_with("assistant_prompt") {
            continue;
        }
        out.push(line);
    }
    out.join("\n") + "\n"
}
