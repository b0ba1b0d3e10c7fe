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
            t.replace(
                "weights = [0.15, 0.35, 0.35, 0.15]",
                "weights = [0.15, -0.35, 0.35, 0.15]",
            )
        } else {
            t
        }
    });
    expect_input_error(
        dir.path(),
        &["-s", negative.to_str().unwrap()],
        &["scenario.toml", "age_group", "weights", "non-negative"],
    );

    let zero = d(&|n, t| {
        if n == "scenario.toml" {
            t.replace("weights = [0.4, 0.45, 0.15]", "weights = [0, 0, 0]")
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
}

#[test]
fn bad_pins() {
    let dir = tempfile::tempdir().unwrap();
    expect_input_error(
        dir.path(),
        &["--set", "session.shoe_size=42"],
        &["session.shoe_size", "age_group"],
    );
    expect_input_error(
        dir.path(),
        &["--set", "session.age_group=toddler"],
        &["toddler", "teen"],
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
        &["--set", "age_group"],
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
fn malformed_length_sections() {
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
                &|t| t.replace("enforce = true", "enforce = true\ntokens_per_word = 0.2"),
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
    ];
    for (i, (scenario, needles)) in cases.into_iter().enumerate() {
        eprintln!("case {i}: {needles:?}");
        expect_input_error(dir.path(), &["-s", scenario.to_str().unwrap()], &needles);
    }
}
