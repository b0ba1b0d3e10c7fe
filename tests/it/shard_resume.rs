//! Nothing lost, nothing repeated, on the real model and the real binary:
//! a run killed with SIGKILL half-way resumes into the uninterrupted file,
//! line for line. (Shards and merge, and the resume logic itself, are
//! tested model-free in `scripted`.)

use std::path::Path;
use std::process::Command;

use crate::util::*;

fn simulate(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["simulate", "-q"])
        .args(SMALL_RUN)
        .args(["--context", "1536"])
        .args(if extra.contains(&"--seed") {
            &[][..]
        } else {
            &["--seed", "11"][..]
        })
        .arg("-o")
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn killed_run_resumes_to_the_uninterrupted_file() {
    let _heavy = heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    let o = simulate(&full, &["-n", "6", "-p", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let part = dir.path().join("part.jsonl");
    let mut child = Command::new(bin())
        .args(["simulate", "-q"])
        .args(SMALL_RUN)
        .args(["--context", "1536"])
        .args(["--seed", "11", "-n", "6", "-p", "3", "-o"])
        .arg(&part)
        .spawn()
        .unwrap();
    wait_for_lines(&part, 2, &mut child);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = std::fs::read_to_string(&part).unwrap();
    assert!(before.lines().count() < 6);
    // Simulate a crash in the middle of a write: a torn last line.
    std::fs::write(&part, format!("{before}{{\"id\":\"movies-11-0000")).unwrap();

    // A different seed must not resume this file.
    let wrong = simulate(&part, &["-n", "6", "-p", "3", "--resume", "--seed", "99"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("cannot resume"));

    let o = simulate(&part, &["-n", "6", "-p", "2", "--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&part).unwrap(),
        std::fs::read_to_string(&full).unwrap()
    );
    // Resuming a complete file does nothing.
    let again = simulate(&part, &["-n", "6", "-p", "2", "--resume"]);
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(&part).unwrap(),
        std::fs::read_to_string(&full).unwrap()
    );
}
