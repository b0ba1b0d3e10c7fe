//! Systems under test (`--system http|stdio`) and `report-system`. The
//! model-free tests drive the scripted backend against real child processes
//! (Python) and a scripted HTTP server; the real-model tests run the
//! example CRS (`examples/crs.py`) against the default simulator.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use usersim::backend::scripted::ScriptedBackend;
use usersim::chat::Side;
use usersim::eval::system::{report_system, SystemReportConfig};
use usersim::output::read_records;
use usersim::run::{prepare, NoProgress, SimulateConfig};
use usersim::scenario::system::{SystemKind, SystemOverrides};
use usersim::session::record::EndReason;

use crate::util::*;

fn crs() -> PathBuf {
    root().join("examples/crs.py")
}

fn catalog() -> PathBuf {
    root().join("prompts/movies/catalog.csv")
}

fn config(dir: &Path, name: &str, system: SystemOverrides) -> SimulateConfig {
    SimulateConfig {
        output: dir.join(name),
        sessions: 8,
        parallel: 3,
        seed: 5,
        scenario_dir: root().join("prompts/movies"),
        system,
        ..SimulateConfig::default()
    }
}

fn stdio(cmd: String) -> SystemOverrides {
    SystemOverrides {
        kind: Some(SystemKind::Stdio),
        cmd: Some(cmd),
        timeout_secs: Some(60.0),
        ..SystemOverrides::default()
    }
}

fn http(url: String) -> SystemOverrides {
    SystemOverrides {
        kind: Some(SystemKind::Http),
        url: Some(url),
        timeout_secs: Some(30.0),
        backoff_secs: Some(0.01),
        max_retries: Some(2),
        ..SystemOverrides::default()
    }
}

fn scripted(cfg: &SimulateConfig) -> Result<usersim::run::RunSummary, usersim::Error> {
    let prep = prepare(cfg)?;
    let mut backend = ScriptedBackend::new(cfg.parallel);
    run_prepared(cfg, &prep, &mut backend)
}

fn crs_cmd(extra: &str) -> String {
    format!(
        "python3 {} {} {extra}",
        crs().display(),
        catalog().display()
    )
}

/// A Python system written to `dir`: `out` starts as the example CRS's
/// answer to `req`, then `body` may change it (`n`: the requests seen so
/// far, counting this one), so a faulty system answers like the example
/// until it fails.
fn python_system(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    let indented: String = body.lines().map(|l| format!("    {l}\n")).collect();
    std::fs::write(
        &path,
        format!(
            "import json, sys, time\nsys.path.insert(0, {examples:?})\nimport crs\nrec = crs.Recommender(crs.load({catalog:?}))\nn = 0\nfor line in sys.stdin:\n    n += 1\n    req = json.loads(line)\n    out = rec.answer(req)\n{indented}    sys.stdout.write(json.dumps(out) + '\\n')\n    sys.stdout.flush()\n",
            examples = root().join("examples").display().to_string(),
            catalog = catalog().display().to_string(),
        ),
    )
    .unwrap();
    format!("python3 {}", path.display())
}

/// A stdio system that sees the latents and recommends the target on its
/// second answer, a decoy (`m001`) on its first.
fn target_oracle(dir: &Path) -> SystemOverrides {
    let oracle = python_system(
        dir,
        "oracle.py",
        "t = req['latents']['target_item']['id']\nout['items'] = ['m001'] if req['turn'] == 0 and t != 'm001' else [t]\nout['text'] = 'how about these'\nout['end'] = False",
    );
    let mut sys = stdio(oracle);
    sys.sees_latents = Some(true);
    sys
}

#[test]
fn system_outcome_fields_on_scripted_conversations() {
    let dir = tempfile::tempdir().unwrap();
    // An oracle (it sees the latents): the target first, on its second
    // answer; a decoy on the first.
    let sys = target_oracle(dir.path());
    let accept = SimulateConfig {
        pins: vec!["turn.intent=ACC".into()],
        ..config(dir.path(), "accept.jsonl", sys.clone())
    };
    scripted(&accept).unwrap();
    let recs = read_records(&accept.output).unwrap();
    assert_eq!(recs.len(), 8);
    let mut successes = 0;
    for r in &recs {
        assert_eq!(r.system, "stdio");
        let target = r.latents["target_item"]["id"].as_str().unwrap();
        let o = r.outcome.as_ref().expect("an outcome");
        assert_eq!(o.target, target);
        // user(ACC) sys(decoy) user(ACC: not the target) sys(target) user(ACC).
        let want_rec = if target == "m001" { 1 } else { 3 };
        assert!(o.rejected.is_empty());
        // The turn policy may still draw END (the user leaves) first.
        if r.turns.len() <= want_rec + 1 {
            assert_eq!((o.accepted, o.turns_to_success), (None, None), "{}", r.id);
            assert_ne!(r.end_reason, EndReason::TargetAccepted);
            continue;
        }
        successes += 1;
        assert_eq!(o.target_recommended, Some(want_rec), "{}", r.id);
        assert_eq!(o.accepted, Some(want_rec + 1));
        assert_eq!(o.turns_to_success, Some((want_rec as u32).div_ceil(2) + 1));
        assert_eq!(r.end_reason, EndReason::TargetAccepted);
        assert_eq!(
            r.turns[1].items,
            if target == "m001" {
                vec![target.to_string()]
            } else {
                vec!["m001".to_string()]
            }
        );
    }

    assert!(successes >= 4, "{successes} of 8 accepted");

    // Rejections: every answer offers two new items and names a third in
    // its text only (items given explicitly win over the text), the user
    // rejects each, and the system ends after its third answer.
    let rejecter = python_system(
        dir.path(),
        "rejecter.py",
        "k = req['turn']\nout['items'] = ['x%d' % (2 * k), 'x%d' % (2 * k + 1)]\nout['text'] = 'Try Toy Story (1995)'\nout['end'] = k == 2",
    );
    let reject = SimulateConfig {
        pins: vec!["turn.intent=REJ".into(), "session.patience=8".into()],
        ..config(dir.path(), "reject.jsonl", stdio(rejecter))
    };
    scripted(&reject).unwrap();
    let mut ended = 0;
    for r in read_records(&reject.output).unwrap() {
        let o = r.outcome.as_ref().unwrap();
        assert_eq!(
            (o.accepted, o.turns_to_success, o.target_recommended),
            (None, None, None)
        );
        // Every answer the user went on to reject.
        let answered = r
            .turns
            .windows(2)
            .filter(|w| w[0].role == Side::Assistant)
            .count();
        let want: Vec<String> = (0..2 * answered).map(|k| format!("x{k}")).collect();
        assert_eq!(o.rejected, want, "{}", r.id);
        if r.end_reason == EndReason::SystemEnded {
            // The last answer ended the conversation: nobody rejected it.
            ended += 1;
            assert_eq!(answered, 2);
            assert_eq!(r.turns.last().unwrap().items, ["x4", "x5"]);
        }
    }
    assert!(ended >= 4, "{ended} of 8 ended by the system");

    // Without `items`, the catalog titles in the text are the items.
    let texter = python_system(
        dir.path(),
        "texter.py",
        "out['text'] = 'Maybe Toy Story (1995), or Spirited Away? Toy Story again.'\nout.pop('items', None)\nout.pop('end', None)",
    );
    let spotted = SimulateConfig {
        max_user_turns: Some(2),
        ..config(dir.path(), "spotted.jsonl", stdio(texter))
    };
    scripted(&spotted).unwrap();
    for r in read_records(&spotted.output).unwrap() {
        for t in r.turns.iter().filter(|t| t.role == Side::Assistant) {
            assert_eq!(t.items, ["m001", "m002"]);
        }
    }
}

/// A scripted HTTP system: `answer(n, body)` gives (status, body) for the
/// n-th request (0-based), or `None` to never answer. Records every body.
struct FakeSystem {
    url: String,
    bodies: Arc<Mutex<Vec<Value>>>,
}

type Answer = dyn Fn(usize, &Value) -> Option<(u16, String)> + Send + Sync;

fn fake_system(answer: Arc<Answer>) -> FakeSystem {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/crs", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::new(AtomicUsize::new(0));
    let b = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let (answer, b, seen) = (answer.clone(), b.clone(), seen.clone());
            std::thread::spawn(move || serve(stream, &*answer, &b, &seen));
        }
    });
    FakeSystem { url, bodies }
}

fn serve(stream: TcpStream, answer: &Answer, bodies: &Mutex<Vec<Value>>, seen: &AtomicUsize) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut stream = stream;
    loop {
        let mut len = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if first {
                assert!(line.starts_with("POST /crs "), "{line}");
                first = false;
            }
            let l = line.to_ascii_lowercase();
            if let Some(v) = l.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        bodies.lock().unwrap().push(v.clone());
        let n = seen.fetch_add(1, Ordering::SeqCst);
        let Some((status, text)) = answer(n, &v) else {
            std::thread::sleep(Duration::from_secs(30));
            return;
        };
        let resp = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        );
        if stream.write_all(resp.as_bytes()).is_err() {
            return;
        }
    }
}

/// The example CRS's rule, in Rust, for the fake server: answer with the
/// conversation's id and a fixed recommendation.
fn good(v: &Value) -> Option<(u16, String)> {
    Some((
        200,
        json!({"id": v["id"], "text": "You might like Heat (1995).", "items": ["m012"]})
            .to_string(),
    ))
}

#[test]
fn system_latents_are_never_sent_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let fake = fake_system(Arc::new(|_, v| good(v)));
    let blind = config(dir.path(), "blind.jsonl", http(fake.url.clone()));
    scripted(&blind).unwrap();
    let recs = read_records(&blind.output).unwrap();
    let bodies = fake.bodies.lock().unwrap().clone();
    assert!(bodies.len() >= 8);
    for b in &bodies {
        assert!(b.get("latents").is_none(), "{b}");
        let r = &recs[b["session_index"].as_u64().unwrap() as usize];
        assert_eq!(b["id"], r.id.as_str());
        assert_eq!(b["catalog"], "catalog.csv");
        // Nothing of the profile leaks by another key either.
        let s = b.to_string();
        assert!(
            !s.contains("target_item") && !s.contains("verbosity"),
            "{s}"
        );
        let turn = b["turn"].as_u64().unwrap() as usize;
        // The messages are the record's turns up to this answer.
        let sent = b["messages"].as_array().unwrap();
        let upto: Vec<_> = r.turns.iter().take(sent.len()).collect();
        for (m, t) in sent.iter().zip(&upto) {
            assert_eq!(m["content"], t.text.as_str());
            assert_eq!(
                m["role"],
                if t.role == Side::User {
                    "user"
                } else {
                    "assistant"
                }
            );
        }
        assert_eq!(
            upto.iter().filter(|t| t.role == Side::Assistant).count(),
            turn
        );
    }
    let fake = fake_system(Arc::new(|_, v| good(v)));
    let mut sys = http(fake.url.clone());
    sys.sees_latents = Some(true);
    let oracle = config(dir.path(), "oracle.jsonl", sys);
    scripted(&oracle).unwrap();
    let recs = read_records(&oracle.output).unwrap();
    for b in fake.bodies.lock().unwrap().iter() {
        let r = &recs[b["session_index"].as_u64().unwrap() as usize];
        assert_eq!(b["latents"], json!(r.latents));
    }
    // The system sees latents or not: the user side is the same.
    assert_eq!(
        read_records(&blind.output).unwrap()[0].turns[0].text,
        recs[0].turns[0].text
    );
}

#[test]
fn system_http_faults_retry_or_fail_in_one_line_and_resume_completes() {
    let dir = tempfile::tempdir().unwrap();
    // Uninterrupted reference.
    let fake = fake_system(Arc::new(|_, v| good(v)));
    let full = config(dir.path(), "full.jsonl", http(fake.url.clone()));
    scripted(&full).unwrap();
    let want = std::fs::read(&full.output).unwrap();

    // A 503 now and then is retried: same file. Each request's first
    // attempt fails (by its body, not by the server's global count: with
    // requests in flight together, one request could draw the failing
    // count on every attempt and exhaust its retries).
    let failed_once = Mutex::new(std::collections::HashSet::new());
    let flaky = fake_system(Arc::new(move |_, v| {
        if failed_once.lock().unwrap().insert(v.to_string()) {
            Some((503, "busy".into()))
        } else {
            good(v)
        }
    }));
    let retried = config(dir.path(), "retried.jsonl", http(flaky.url.clone()));
    let s = scripted(&retried).unwrap();
    assert_eq!(std::fs::read(&retried.output).unwrap(), want);
    assert_eq!(s.conversations, 8);

    // Garbage after 10 answers: not retried, one line naming the URL.
    let garbage = fake_system(Arc::new(|n, v| {
        if n >= 10 {
            Some((200, "<html>oops</html>".into()))
        } else {
            good(v)
        }
    }));
    let part = config(dir.path(), "part.jsonl", http(garbage.url.clone()));
    let err = scripted(&part).unwrap_err();
    let msg = err.to_string();
    assert!(
        !msg.contains('\n') && msg.contains(&garbage.url) && msg.contains("expected a JSON answer"),
        "{msg}"
    );
    assert_eq!(err.exit_code(), 1);
    let text = std::fs::read_to_string(&part.output).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
    assert!(text.lines().count() < 8);

    // A well-formed answer without "text", and a 404: also fatal, also named.
    for (name, status, body) in [("notext", 200, r#"{"txt":"hi"}"#), ("404", 404, "no")] {
        let bad = fake_system(Arc::new(move |_, _| Some((status, body.to_string()))));
        let e = scripted(&config(
            dir.path(),
            &format!("{name}.jsonl"),
            http(bad.url.clone()),
        ))
        .unwrap_err()
        .to_string();
        assert!(e.contains(&bad.url) && !e.contains('\n'), "{e}");
    }

    // A system that never answers: timeout, retries, then one line.
    let silent = fake_system(Arc::new(|_, _| None));
    let mut sys = http(silent.url.clone());
    sys.timeout_secs = Some(0.5);
    sys.max_retries = Some(1);
    let e = scripted(&config(dir.path(), "silent.jsonl", sys))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--timeout") || e.contains("within"), "{e}");
    assert!(
        e.contains("gave up after 2 attempts") && e.contains("--resume"),
        "{e}"
    );

    // Resume the garbage run against a good system: the uninterrupted file.
    let resume = SimulateConfig {
        resume: true,
        parallel: 2,
        ..config(dir.path(), "part.jsonl", http(fake.url.clone()))
    };
    scripted(&resume).unwrap();
    assert_eq!(std::fs::read(&part.output).unwrap(), want);
}

#[test]
fn system_stdio_crash_garbage_and_silence_name_the_command_and_resume_completes() {
    let dir = tempfile::tempdir().unwrap();
    let full = config(dir.path(), "full.jsonl", stdio(crs_cmd("")));
    scripted(&full).unwrap();
    let want = std::fs::read(&full.output).unwrap();
    // The example is deterministic: any parallel gives the same file.
    let p1 = SimulateConfig {
        parallel: 1,
        ..config(dir.path(), "p1.jsonl", stdio(crs_cmd("")))
    };
    scripted(&p1).unwrap();
    assert_eq!(std::fs::read(&p1.output).unwrap(), want);

    let crash = python_system(dir.path(), "crash.py", "if n > 9: sys.exit(3)");
    let garbage = python_system(
        dir.path(),
        "garbage.py",
        "if n > 9: print('Traceback: oops'); sys.stdout.flush()",
    );
    let stranger = python_system(
        dir.path(),
        "stranger.py",
        "if n > 9: out['id'] = 'someone-else'",
    );
    let silent = python_system(dir.path(), "silent.py", "if n > 9: time.sleep(60)");
    for (cmd, want_msg, timeout) in [
        (&crash, "exited with exit status: 3", 60.0),
        (&garbage, "is not a JSON answer", 60.0),
        (&stranger, "not waiting for an answer", 60.0),
        (&silent, "within 3 s (--system-timeout)", 3.0),
    ] {
        let mut sys = stdio(cmd.clone());
        sys.timeout_secs = Some(timeout);
        let part = config(dir.path(), "part.jsonl", sys);
        let _ = std::fs::remove_file(&part.output);
        let err = scripted(&part).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(cmd.as_str()) && msg.contains(want_msg) && !msg.contains('\n'),
            "{msg}"
        );
        assert_eq!(err.exit_code(), 1);
        let text = std::fs::read_to_string(&part.output).unwrap_or_default();
        assert!(text.is_empty() || text.ends_with('\n'), "whole lines only");
        let resume = SimulateConfig {
            resume: true,
            ..config(dir.path(), "part.jsonl", stdio(crs_cmd("")))
        };
        scripted(&resume).unwrap();
        assert_eq!(std::fs::read(&part.output).unwrap(), want, "{cmd}");
    }
    // A command that does not exist: the shell says so, the run names it.
    let e = scripted(&config(
        dir.path(),
        "none.jsonl",
        stdio("/nonexistent/crs --x".into()),
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/crs --x"), "{e}");
}

/// Writes records with hand-set outcomes, items and latents.
fn hand_run(dir: &Path) -> PathBuf {
    // A real record as the template, so every other field is valid.
    let cfg = SimulateConfig {
        sessions: 1,
        ..config(dir, "template.jsonl", stdio(crs_cmd("")))
    };
    scripted(&cfg).unwrap();
    let template: Value = serde_json::from_str(
        std::fs::read_to_string(&cfg.output)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    // (age_group, items per system turn, last user text, accepted at user
    // turn, rejected count)
    type Row<'a> = (&'a str, &'a [&'a [&'a str]], &'a str, Option<u32>, usize);
    let rows: [Row; 4] = [
        (
            "teen",
            &[&["a", "b"], &["T"]],
            "great, I love it",
            Some(2),
            1,
        ),
        (
            "teen",
            &[&["a"], &["b"], &["c"]],
            "this is terrible",
            None,
            3,
        ),
        ("adult", &[&["T", "a"]], "ok", Some(1), 0),
        ("adult", &[&["a", "b", "c"], &["d", "T"]], "meh", None, 2),
    ];
    let mut out = String::new();
    for (i, (age, items, last, accepted, rejected)) in rows.iter().enumerate() {
        let mut r = template.clone();
        r["session_index"] = json!(i);
        r["latents"]["age_group"] = json!(age);
        let mut turns = Vec::new();
        for it in items.iter() {
            turns.push(json!({"role":"user","text":"hm","latents":{"intent":"REJ"},"tokens":1}));
            turns.push(json!({"role":"assistant","text":"x","tokens":0,"items":it}));
        }
        turns.push(json!({"role":"user","text":last,"latents":{"intent":"ACC"},"tokens":1}));
        r["turns"] = json!(turns);
        r["outcome"] = json!({
            "target": "T",
            "target_recommended": items.iter().position(|x| x.contains(&"T")).map(|p| 2 * p + 1),
            "accepted": accepted.map(|t| 2 * t - 2),
            "rejected": (0..*rejected).map(|k| format!("r{k}")).collect::<Vec<_>>(),
            "turns_to_success": accepted,
        });
        out.push_str(&r.to_string());
        out.push('\n');
    }
    let path = dir.join("hand.jsonl");
    std::fs::write(&path, out).unwrap();
    path
}

#[test]
fn system_report_figures_match_a_hand_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = hand_run(dir.path());
    let report = report_system(&SystemReportConfig {
        input: path.clone(),
        by: vec!["age_group".into()],
        k: 2,
        ..SystemReportConfig::default()
    })
    .unwrap();
    let o = &report.overall;
    assert_eq!(o.conversations, 4);
    // Accepted: rows 0 and 2.
    assert_eq!(o.success_rate.as_ref().unwrap().value, 0.5);
    // Target among the first 2 distinct items: row 2 only (row 0 has it
    // third: a, b, T; row 3 fifth).
    assert_eq!(o.recall_at_k.as_ref().unwrap().value, 0.25);
    // Turns to success: 2 and 1.
    assert_eq!(o.turns_to_success.as_ref().unwrap().value, 1.5);
    // Rejections: 1 + 3 + 0 + 2.
    assert_eq!(o.rejections.as_ref().unwrap().value, 1.5);
    let sent = |t: &str| usersim::eval::lexicon::sentiment_score(t);
    let mean =
        (sent("great, I love it") + sent("this is terrible") + sent("ok") + sent("meh")) / 4.0;
    assert!((o.end_sentiment.as_ref().unwrap().value - mean).abs() < 1e-12);
    let e = o.success_rate.as_ref().unwrap();
    assert!(e.lo <= 0.5 && 0.5 <= e.hi && e.lo >= 0.0 && e.hi <= 1.0);
    // Groups, sorted by value: adult then teen.
    let names: Vec<_> = report
        .groups
        .iter()
        .map(|g| (g.field.as_str(), g.value.as_str()))
        .collect();
    assert_eq!(names, [("age_group", "adult"), ("age_group", "teen")]);
    let adult = &report.groups[0].metrics;
    assert_eq!(adult.conversations, 2);
    assert_eq!(adult.success_rate.as_ref().unwrap().value, 0.5);
    assert_eq!(adult.recall_at_k.as_ref().unwrap().value, 0.5);
    assert_eq!(adult.turns_to_success.as_ref().unwrap().value, 1.0);
    let teen = &report.groups[1].metrics;
    assert_eq!(teen.rejections.as_ref().unwrap().value, 2.0);
    assert_eq!(teen.recall_at_k.as_ref().unwrap().value, 0.0);
    // recall@10 finds row 0's and row 3's targets too.
    let k10 = report_system(&SystemReportConfig {
        input: path.clone(),
        ..SystemReportConfig::default()
    })
    .unwrap();
    assert_eq!(k10.overall.recall_at_k.as_ref().unwrap().value, 0.75);
    // The same run gives the same report.
    assert_eq!(
        k10,
        report_system(&SystemReportConfig {
            input: path.clone(),
            ..SystemReportConfig::default()
        })
        .unwrap()
    );
    // The CLI prints the table, the JSON and the page.
    let html = dir.path().join("r.html");
    let out = Command::new(bin())
        .args([
            "report-system",
            path.to_str().unwrap(),
            "--by",
            "age_group",
            "--k",
            "2",
            "--html",
        ])
        .arg(&html)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("| overall | 4 | 0.50 ["), "{table}");
    assert!(table.contains("| age_group=teen | 2 |"), "{table}");
    assert!(std::fs::read_to_string(&html).unwrap().contains("<table>"));
    // A --by nobody has, and a file that is not a run: exit 2, one line.
    for args in [
        vec!["report-system", path.to_str().unwrap(), "--by", "shoe_size"],
        vec!["report-system", catalog().to_str().unwrap()],
    ] {
        let out = Command::new(bin()).args(&args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(
            err.starts_with("error:") && err.trim_end().lines().count() == 1,
            "{err}"
        );
    }
}

/// The example CRS over HTTP on a free port; killed on drop.
struct CrsServer {
    child: Child,
    url: String,
}

impl Drop for CrsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn crs_server(log: &Path) -> CrsServer {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new("python3")
        .arg(crs())
        .arg(catalog())
        .args(["--http", &port.to_string(), "--log"])
        .arg(log)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // It says where it listens once it does.
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("listening"), "{line}");
    CrsServer {
        child,
        url: format!("http://127.0.0.1:{port}/"),
    }
}

fn simulate_cli(dir: &Path, out: &str, n: u32, p: u32, system: &[&str]) -> std::process::Output {
    Command::new(bin())
        .current_dir(dir)
        .args([
            "-q",
            "simulate",
            "-n",
            &n.to_string(),
            "-p",
            &p.to_string(),
            "--seed",
            "3",
        ])
        .args([
            "--max-turns",
            "2",
            "--max-tokens",
            "12",
            "--threads",
            "2",
            "-o",
            out,
        ])
        .args(system)
        .output()
        .unwrap()
}

#[test]
fn system_example_crs_over_stdio_and_http_on_the_real_model() {
    let _heavy = heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stdio.log");
    let cmd = format!("{} --log {}", crs_cmd(""), log.display());
    let out = simulate_cli(
        dir.path(),
        "stdio.jsonl",
        32,
        16,
        &["--system", "stdio", "--system-cmd", &cmd],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let recs = read_records(&dir.path().join("stdio.jsonl")).unwrap();
    assert_eq!(recs.len(), 32);
    let mut recommended = 0;
    for r in &recs {
        assert_eq!(r.system, "stdio");
        assert!(r.outcome.is_some());
        for t in r.turns.iter().filter(|t| t.role == Side::Assistant) {
            recommended += t.items.len();
        }
    }
    assert!(recommended > 32, "the CRS recommended {recommended} items");
    // On the wire: no latents.
    let sent = std::fs::read_to_string(&log).unwrap();
    assert!(sent.lines().count() >= 32);
    for l in sent.lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v.get("latents").is_none(), "{l}");
    }
    // Deterministic: the first 8 sessions at another --parallel are the
    // first 8 lines.
    let out = simulate_cli(
        dir.path(),
        "p2.jsonl",
        8,
        3,
        &["--system", "stdio", "--system-cmd", &crs_cmd("")],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all = std::fs::read_to_string(dir.path().join("stdio.jsonl")).unwrap();
    let first8: String = all.lines().take(8).map(|l| format!("{l}\n")).collect();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("p2.jsonl")).unwrap(),
        first8
    );

    // The same over HTTP: the same conversations (the CRS answers alike).
    let server = crs_server(&dir.path().join("http.log"));
    let out = simulate_cli(
        dir.path(),
        "http.jsonl",
        32,
        16,
        &["--system", "http", "--system-url", &server.url],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let http_recs = read_records(&dir.path().join("http.jsonl")).unwrap();
    assert_eq!(http_recs.len(), 32);
    for (a, b) in recs.iter().zip(&http_recs) {
        assert_eq!(b.system, "http");
        assert_eq!(a.turns, b.turns, "{}", a.id);
        assert_eq!(a.outcome, b.outcome);
    }

    // A CRS that dies mid-run: one error line, exit 1, whole lines, and
    // --resume with the good one completes the file.
    let crash = python_system(dir.path(), "crash.py", "if n > 5: sys.exit(1)");
    let out = simulate_cli(
        dir.path(),
        "crash.jsonl",
        8,
        4,
        &["--system", "stdio", "--system-cmd", &crash],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("error:")
            && err.contains("crash.py")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    let text = std::fs::read_to_string(dir.path().join("crash.jsonl")).unwrap_or_default();
    assert!(text.is_empty() || text.ends_with('\n'));
    let out = Command::new(bin())
        .current_dir(dir.path())
        .args([
            "-q",
            "simulate",
            "-n",
            "8",
            "-p",
            "4",
            "--seed",
            "3",
            "--max-turns",
            "2",
            "--max-tokens",
            "12",
            "--threads",
            "2",
        ])
        .args([
            "-o",
            "crash.jsonl",
            "--resume",
            "--system",
            "stdio",
            "--system-cmd",
            &crs_cmd(""),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("crash.jsonl")).unwrap(),
        first8
    );
}

#[test]
fn system_llm_on_its_own_server_answers_in_place_of_the_builtin() {
    use crate::util::fake_server::{FakeServer, Mode};
    let dir = tempfile::tempdir().unwrap();
    let users = FakeServer::start(Mode::Ok);
    let recommender = FakeServer::start(Mode::Ok);
    let mut cfg = config(
        dir.path(),
        "llm.jsonl",
        SystemOverrides {
            kind: Some(SystemKind::Llm),
            base_url: Some(recommender.url()),
            api_model: Some("the-recommender".into()),
            ..SystemOverrides::default()
        },
    );
    cfg.backend = usersim::run::BackendKind::Openai;
    cfg.openai.base_urls = vec![users.url()];
    cfg.openai.model = Some("the-users".into());
    cfg.max_user_turns = Some(2);
    usersim::run::simulate(&cfg, &NoProgress, Arc::new(AtomicBool::new(false))).unwrap();
    let recs = read_records(&cfg.output).unwrap();
    assert_eq!(recs.len(), 8);
    let replies: usize = recs
        .iter()
        .map(|r| r.turns.iter().filter(|t| t.role == Side::Assistant).count())
        .sum();
    assert!(replies > 0);
    for r in &recs {
        assert_eq!(r.system, "llm-recommender@the-recommender");
        assert_eq!(r.model.name, "the-users");
    }
    // Every reply came from the recommender's server, every user turn
    // from the users' one.
    assert_eq!(recommender.served() as usize, replies);
    let user_turns: usize = recs
        .iter()
        .map(|r| r.turns.iter().filter(|t| t.role == Side::User).count())
        .sum();
    assert!(users.served() as usize >= user_turns);
    // Both at once is refused before anything runs.
    let both = SimulateConfig {
        system: SystemOverrides {
            kind: Some(SystemKind::Llm),
            base_url: Some(recommender.url()),
            model: Some("x.gguf".into()),
            ..SystemOverrides::default()
        },
        output: dir.path().join("both.jsonl"),
        ..cfg.clone()
    };
    let e =
        usersim::run::simulate(&both, &NoProgress, Arc::new(AtomicBool::new(false))).unwrap_err();
    assert_eq!(e.exit_code(), 2, "{e}");
    assert!(!both.output.exists());
}

/// The chat format carries what the jsonl records do: each message's
/// `items` (as `metadata.turn_items`, one list per message) and the
/// conversation's `outcome`; the messages keep their shape.
#[test]
fn system_chat_format_has_items_and_outcome() {
    let dir = tempfile::tempdir().unwrap();
    let sys = target_oracle(dir.path());
    let jsonl = SimulateConfig {
        pins: vec!["turn.intent=ACC".into()],
        ..config(dir.path(), "run.jsonl", sys.clone())
    };
    scripted(&jsonl).unwrap();
    let chat = SimulateConfig {
        format: usersim::output::OutputFormat::Chat,
        ..config(dir.path(), "chat.jsonl", sys)
    };
    let chat = SimulateConfig {
        pins: jsonl.pins.clone(),
        ..chat
    };
    scripted(&chat).unwrap();
    let recs = read_records(&jsonl.output).unwrap();
    let lines: Vec<Value> = std::fs::read_to_string(&chat.output)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), recs.len());
    let mut with_items = 0;
    for (l, r) in lines.iter().zip(&recs) {
        let meta = &l["metadata"];
        assert_eq!(meta["id"], r.id.as_str());
        let msgs = l["messages"].as_array().unwrap();
        for (m, t) in msgs.iter().zip(&r.turns) {
            let keys: Vec<&String> = m.as_object().unwrap().keys().collect();
            assert_eq!(keys, ["content", "role"], "{m}");
            assert_eq!(m["content"], t.text.as_str());
        }
        let items = meta["turn_items"].as_array().expect("turn_items");
        assert_eq!(items.len(), msgs.len());
        for (i, t) in items.iter().zip(&r.turns) {
            assert_eq!(i, &json!(t.items));
        }
        with_items += r.turns.iter().filter(|t| !t.items.is_empty()).count();
        let outcome = r.outcome.as_ref().expect("an outcome");
        assert_eq!(meta["outcome"], json!(outcome));
        assert_eq!(meta["outcome"]["target"], r.latents["target_item"]["id"]);
    }
    assert!(with_items >= 8, "{with_items} system turns with items");
    // A run without a catalog target has neither (the support scenario).
    let support = SimulateConfig {
        scenario_dir: root().join("prompts/support"),
        format: usersim::output::OutputFormat::Chat,
        sessions: 2,
        ..config(dir.path(), "support.jsonl", SystemOverrides::default())
    };
    scripted(&support).unwrap();
    for l in std::fs::read_to_string(&support.output).unwrap().lines() {
        let v: Value = serde_json::from_str(l).unwrap();
        assert!(v["metadata"].get("outcome").is_none(), "{l}");
        assert!(v["metadata"].get("turn_items").is_none(), "{l}");
    }
}

/// An external system's answers cost no tokens of ours, and the summary
/// still counts them as assistant turns.
#[test]
fn system_summary_counts_external_answers() {
    let dir = tempfile::tempdir().unwrap();
    let count = |recs: &[usersim::session::record::ConversationRecord]| -> u64 {
        recs.iter()
            .map(|r| {
                let first_user = r.turns.iter().position(|t| t.role == Side::User).unwrap();
                r.turns[first_user..]
                    .iter()
                    .filter(|t| t.role == Side::Assistant)
                    .count() as u64
            })
            .sum()
    };
    let cfg = config(dir.path(), "stdio.jsonl", stdio(crs_cmd("")));
    let s = scripted(&cfg).unwrap();
    let recs = read_records(&cfg.output).unwrap();
    assert!(recs
        .iter()
        .flat_map(|r| &r.turns)
        .all(|t| t.role == Side::User || t.tokens == 0));
    let answers = count(&recs);
    assert!(answers >= 8, "{answers}");
    assert_eq!(s.assistant_turns, answers);
    assert_eq!(
        s.user_turns,
        recs.iter()
            .flat_map(|r| &r.turns)
            .filter(|t| t.role == Side::User)
            .count() as u64
    );
    // Over HTTP too.
    let fake = fake_system(Arc::new(|_, v| good(v)));
    let cfg = config(dir.path(), "http.jsonl", http(fake.url.clone()));
    let s = scripted(&cfg).unwrap();
    let recs = read_records(&cfg.output).unwrap();
    assert_eq!(s.assistant_turns, count(&recs));
    assert_eq!(
        s.assistant_turns as usize,
        fake.bodies.lock().unwrap().len()
    );
}

/// A file written before records had `items` and `outcome` is not
/// continued into a file of two formats: one error line naming it and what
/// to do, exit code 2, the file untouched.
#[test]
fn system_resume_refuses_an_older_format_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let full = config(dir.path(), "full.jsonl", stdio(crs_cmd("")));
    scripted(&full).unwrap();
    let text = std::fs::read_to_string(&full.output).unwrap();
    // The older format: the same lines without `outcome` and `items`.
    let mut old = String::new();
    for l in text.lines().take(4) {
        let mut v: Value = serde_json::from_str(l).unwrap();
        assert!(v.as_object_mut().unwrap().remove("outcome").is_some());
        for t in v["turns"].as_array_mut().unwrap() {
            t.as_object_mut().unwrap().remove("items");
        }
        old.push_str(&v.to_string());
        old.push('\n');
    }
    let path = dir.path().join("old.jsonl");
    std::fs::write(&path, &old).unwrap();
    let resume = SimulateConfig {
        resume: true,
        ..config(dir.path(), "old.jsonl", stdio(crs_cmd("")))
    };
    let err = scripted(&resume).unwrap_err();
    assert_eq!(err.exit_code(), 2, "{err}");
    let msg = err.to_string();
    assert!(
        !msg.contains('\n')
            && msg.contains("old.jsonl")
            && msg.contains("older usersim")
            && msg.contains("--force"),
        "{msg}"
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), old);
    // The current format's first half resumes to the whole file.
    let half: String = text.lines().take(4).map(|l| format!("{l}\n")).collect();
    std::fs::write(&path, half).unwrap();
    scripted(&resume).unwrap();
    assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
}

/// `--system llm --system-model`: the built-in recommender on gemma-3-270m
/// in the same process as the SmolLM2 users. Its answers are gemma's (the
/// records name it, and they differ from the built-in run's while the
/// users' first turns agree), every conversation is whole, and the file is
/// the same at `-p 1` and `-p 4` (gemma's Q4_K weights are repacked by
/// llama.cpp, so the engine decodes its rows apart).
#[test]
fn system_llm_on_a_second_model_is_the_same_file_at_any_parallel() {
    let _heavy = heavy();
    let _ = model_path();
    let dir = tempfile::tempdir().unwrap();
    let gemma = ["--system", "llm", "--system-model", "gemma-3-270m-q4_k_m"];
    // Before the engine decoded gemma's rows apart, these settings gave
    // files that differ at -p 1 and -p 4 (session 0's first answer, near its
    // 45th token).
    let run = |out: &str, p: u32, system: &[&str]| {
        let o = Command::new(bin())
            .current_dir(dir.path())
            .args(["-q", "simulate", "-n", "4", "-p", &p.to_string()])
            .args(["--seed", "3", "--max-turns", "3", "--max-tokens", "16"])
            .args(["--threads", "2", "-o", out])
            .args(system)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        read_records(&dir.path().join(out)).unwrap()
    };
    let p4 = run("p4.jsonl", 4, &gemma);
    assert_eq!(p4.len(), 4);
    for r in &p4 {
        assert_eq!(r.system, "llm-recommender@gemma-3-270m-q4_k_m");
        assert_eq!(r.model.name, "smollm2-135m-instruct-q4_1");
        assert_eq!(r.turns[0].role, Side::User, "{}", r.id);
        for w in r.turns.windows(2) {
            assert_ne!(w[0].role, w[1].role, "{}: sides alternate", r.id);
        }
        for t in &r.turns {
            assert!(t.tokens > 0 && !t.text.trim().is_empty(), "{}: {t:?}", r.id);
        }
        assert!(r.outcome.is_some());
    }
    let answers = p4
        .iter()
        .flat_map(|r| &r.turns)
        .filter(|t| t.role == Side::Assistant)
        .count();
    assert!(answers >= 4, "{answers} answers");
    let p1 = run("p1.jsonl", 1, &gemma);
    assert_eq!(
        std::fs::read(dir.path().join("p1.jsonl")).unwrap(),
        std::fs::read(dir.path().join("p4.jsonl")).unwrap(),
        "-p 1 and -p 4 differ"
    );
    // The built-in recommender (SmolLM2 itself) answers otherwise; the
    // users' first turns, written before any answer, are the same.
    let builtin = run("builtin.jsonl", 4, &[]);
    let mut differ = 0;
    for (a, b) in p1.iter().zip(&builtin) {
        assert_eq!(a.turns[0], b.turns[0], "{}", a.id);
        assert_ne!(a.system, b.system);
        if a.turns.get(1).map(|t| &t.text) != b.turns.get(1).map(|t| &t.text) {
            differ += 1;
        }
    }
    assert!(differ >= 3, "only {differ} of 4 first answers differ");
}
