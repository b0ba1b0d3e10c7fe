//! Nothing lost, nothing repeated: shards merge into the single run, and a
//! run killed half-way resumes into the uninterrupted file, line for line.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;

const ARGS: [&str; 10] = [
    "--threads",
    "2",
    "--max-tokens",
    "16",
    "--assistant-max-tokens",
    "16",
    "--max-turns",
    "2",
    "--context",
    "768",
];

fn simulate(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(["simulate", "-q"])
        .args(ARGS)
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
fn four_shards_merge_into_the_single_run() {
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let single = dir.path().join("single.jsonl");
    let o = simulate(&single, &["-n", "8", "-p", "4"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mut shards = Vec::new();
    for i in 0..4 {
        let p = dir.path().join(format!("shard{i}.jsonl"));
        let o = simulate(&p, &["-n", "8", "-p", "2", "--shard", &format!("{i}/4")]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        shards.push(p);
    }
    let merged = dir.path().join("merged.jsonl");
    let o = Command::new(bin())
        .arg("merge")
        .args(&shards)
        .arg("-o")
        .arg(&merged)
        .args(["-n", "8"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&merged).unwrap(),
        std::fs::read_to_string(&single).unwrap()
    );

    // A missing shard is a gap; a shard given twice is a duplicate.
    let gap = Command::new(bin())
        .arg("merge")
        .args(&shards[..3])
        .arg("-o")
        .arg(dir.path().join("g.jsonl"))
        .args(["-n", "8"])
        .output()
        .unwrap();
    assert_eq!(gap.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&gap.stderr).contains("missing"));
    let dup = Command::new(bin())
        .arg("merge")
        .args(&shards)
        .arg(&shards[0])
        .arg("-o")
        .arg(dir.path().join("d.jsonl"))
        .output()
        .unwrap();
    assert_eq!(dup.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&dup.stderr).contains("twice"));
    assert!(!dir.path().join("g.jsonl").exists() && !dir.path().join("d.jsonl").exists());
    // A shard of another seed does not belong.
    let other = dir.path().join("other.jsonl");
    let o = simulate(
        &other,
        &["-n", "8", "-p", "2", "--shard", "0/4", "--seed", "12"],
    );
    assert!(o.status.success());
    let mism = Command::new(bin())
        .arg("merge")
        .args(&shards[1..])
        .arg(&other)
        .arg("-o")
        .arg(dir.path().join("m.jsonl"))
        .output()
        .unwrap();
    assert_eq!(mism.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&mism.stderr).contains("seed"));
}

#[test]
fn killed_run_resumes_to_the_uninterrupted_file() {
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let full = dir.path().join("full.jsonl");
    let o = simulate(&full, &["-n", "12", "-p", "3"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let part = dir.path().join("part.jsonl");
    let mut child = Command::new(bin())
        .args(["simulate", "-q"])
        .args(ARGS)
        .args(["--seed", "11", "-n", "12", "-p", "3", "-o"])
        .arg(&part)
        .spawn()
        .unwrap();
    wait_for_lines(&part, 3, &mut child, 300);
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = std::fs::read_to_string(&part).unwrap();
    assert!(before.lines().count() < 12);
    // Simulate a crash in the middle of a write: a torn last line.
    std::fs::write(&part, format!("{before}{{\"id\":\"movies-11-0000")).unwrap();

    // A different seed must not resume this file.
    let wrong = simulate(&part, &["-n", "12", "-p", "3", "--resume", "--seed", "99"]);
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&wrong.stderr)
    );
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("cannot resume"));

    let o = simulate(&part, &["-n", "12", "-p", "2", "--resume"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        std::fs::read_to_string(&part).unwrap(),
        std::fs::read_to_string(&full).unwrap()
    );
    // Resuming a complete file does nothing.
    let again = simulate(&part, &["-n", "12", "-p", "2", "--resume"]);
    assert!(again.status.success());
    assert_eq!(
        std::fs::read_to_string(&part).unwrap(),
        std::fs::read_to_string(&full).unwrap()
    );
}
