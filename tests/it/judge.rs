//! `usersim judge`: a study of real IARD turns and a real simulated run
//! judged by two people clicking through headless Chromium (WebDriver)
//! across a killed server; security of the web app (no source in a page,
//! no judge reaching another's answers, bad posts refused); the crowd CSV
//! round trip and its bad rows.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::util::*;
use crate::webdriver::{assert_not_blank, Driver};

/// A usersim JSONL run written by hand (ids `simconv-<i>`): for the
/// model-free tests; the browser test uses a real run.
fn fake_run(dir: &Path, conversations: usize) -> PathBuf {
    let path = dir.join("fake-sim-run.jsonl");
    let mut text = String::new();
    for i in 0..conversations {
        let rec = serde_json::json!({
            "id": format!("simconv-{i}"),
            "turns": [
                {"role": "user", "text": format!("hey, any thriller like heat? ({i})")},
                {"role": "assistant", "text": "Try Ronin (1998)."},
                {"role": "user", "text": format!("seen it, something newer please {i}")},
            ]
        });
        text.push_str(&rec.to_string());
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn iard() -> PathBuf {
    shared_data().join("iard/iard.json")
}

fn usersim(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .args(args)
        .output()
        .expect("run usersim")
}

fn new_study(dir: &Path, sims: &[&Path], n: usize, seed: u64) -> PathBuf {
    let out = dir.join("study.sqlite");
    let mut args = vec![
        "judge".to_string(),
        "new".into(),
        "--real".into(),
        iard().display().to_string(),
    ];
    for s in sims {
        args.push("--sim".into());
        args.push(s.display().to_string());
    }
    args.extend([
        "--unit".into(),
        "turn".into(),
        "-n".into(),
        n.to_string(),
        "--seed".into(),
        seed.to_string(),
        "-o".into(),
        out.display().to_string(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = usersim(&args);
    assert!(
        o.status.success(),
        "judge new: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    out
}

/// A running `usersim judge serve` on a free loopback port.
struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    fn start(study: &Path) -> Serve {
        let mut child = Command::new(bin())
            .args(["judge", "serve"])
            .arg(study)
            .args(["--addr", "127.0.0.1:0"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start judge serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let base = loop {
            let line = lines
                .next()
                .expect("judge serve ended before it listened")
                .unwrap();
            if let Some(at) = line.find("http://") {
                let url = line[at..].split_whitespace().next().unwrap();
                break url.trim_end_matches('/').to_string();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        std::thread::spawn(move || for _ in lines {});
        Serve { child, base }
    }

    /// SIGKILL: no chance to flush or clean up.
    fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// (kind, dialogue) of each item token, read straight from the study file.
fn sources(study: &Path) -> BTreeMap<String, (String, String)> {
    let c = rusqlite::Connection::open(study).unwrap();
    let mut st = c
        .prepare(
            "SELECT i.token, s.kind, i.dialogue FROM items i JOIN sources s ON s.id = i.source",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, (r.get(1)?, r.get(2)?))))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

type Answers = BTreeMap<(String, String), (String, i64, i64, String)>;

/// (judge, item token) → (verdict, confidence, realism, comment), straight
/// from the study file.
fn answers(study: &Path) -> Answers {
    let c = rusqlite::Connection::open(study).unwrap();
    let mut st = c
        .prepare(
            "SELECT j.name, i.token, a.verdict, a.confidence, a.realism, a.comment FROM answers a
             JOIN judges j ON j.id = a.judge JOIN items i ON i.id = a.item",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok((
            (r.get(0)?, r.get(1)?),
            (r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// The value of the form field `name` in `page`.
fn field(page: &str, name: &str) -> String {
    let key = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&key)
        .unwrap_or_else(|| panic!("no field {name} in page"))
        + key.len();
    page[at..at + page[at..].find('"').unwrap()].to_string()
}

fn progress(page: &str) -> String {
    let key = "id=\"progress\">";
    let at = page.find(key).expect("progress") + key.len();
    page[at..at + page[at..].find('<').unwrap()].to_string()
}

/// The page once it shows something other than item `previous` (the next
/// item or the end), polling the browser.
fn settle(d: &Driver, previous: &str) -> String {
    for _ in 0..2000 {
        let page = d.source();
        if page.contains("id=\"done\"")
            || (page.contains("name=\"item\"") && field(&page, "item") != previous)
        {
            return page;
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("the page never moved on from item {previous}");
}

fn report_json(study: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["judge", "report", study.to_str().unwrap(), "--json"];
    args.extend(extra);
    let o = usersim(&args);
    assert!(
        o.status.success(),
        "judge report: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).expect("report JSON")
}

/// Expected report figures recomputed from the answers and sources.
fn check_report(r: &Value, answers: &Answers, src: &BTreeMap<String, (String, String)>) {
    let right = |(judge, item): &(String, String)| {
        let real = src[item].0 == "real";
        (answers[&(judge.clone(), item.clone())].0 == "person") == real
    };
    assert_eq!(r["answers"], answers.len());
    let correct = answers.keys().filter(|k| right(k)).count();
    let close = |v: &Value, x: f64| {
        let v = v.as_f64().unwrap_or(f64::NAN);
        assert!((v - x).abs() < 1e-9, "{v} != {x}");
    };
    close(
        &r["overall_accuracy"]["value"],
        correct as f64 / answers.len() as f64,
    );
    // One simulated source: its accuracy counts every answer.
    assert_eq!(r["accuracy"][0]["answers"], answers.len());
    close(
        &r["accuracy"][0]["accuracy"]["value"],
        correct as f64 / answers.len() as f64,
    );
    for j in r["per_judge"].as_array().unwrap() {
        let name = j["name"].as_str().unwrap();
        let mine: Vec<_> = answers.keys().filter(|(n, _)| n == name).collect();
        assert_eq!(j["answers"], mine.len(), "{name}");
        assert_eq!(j["correct"], mine.iter().filter(|k| right(k)).count());
    }
    for s in r["sources"].as_array().unwrap() {
        let kind = s["kind"].as_str().unwrap();
        let on: Vec<_> = answers
            .iter()
            .filter(|((_, item), _)| src[item].0 == kind)
            .map(|(_, a)| a)
            .collect();
        assert_eq!(s["answers"], on.len(), "{kind}");
        close(
            &s["realism"]["value"],
            on.iter().map(|a| a.2 as f64).sum::<f64>() / on.len() as f64,
        );
        close(
            &s["judged_person"],
            on.iter().filter(|a| a.0 == "person").count() as f64 / on.len() as f64,
        );
        let e = &s["realism"];
        assert!(e["lo"].as_f64().unwrap() <= e["value"].as_f64().unwrap());
        assert!(e["value"].as_f64().unwrap() <= e["hi"].as_f64().unwrap());
    }
}

fn docs_shot(name: &str, png: &[u8]) {
    if std::env::var_os("USERSIM_WRITE_DOCS").is_some() {
        std::fs::write(root().join("docs").join(name), png).unwrap();
    }
}

/// The end-to-end test: a real run on the default model and real
/// IARD turns, two judges answering by clicking (and by keyboard), the
/// server SIGKILLed half-way and restarted, and the SQLite answers and the
/// report equal to what was clicked. Screenshots of an item page and of
/// the report are checked non-blank (`USERSIM_WRITE_DOCS=1` also writes
/// them to docs/).
#[test]
fn judge_two_judges_click_through_chromium_across_a_server_kill() {
    let dir = tempfile::tempdir().unwrap();
    let sim = {
        let _heavy = heavy();
        let _ = model_path();
        let mut cfg = small_config(dir.path(), "sim-run.jsonl");
        cfg.sessions = 4;
        cfg.parallel = 4;
        cfg.max_user_turns = Some(2);
        run(&cfg);
        cfg.output
    };
    let sim_ids: Vec<String> = records(&sim)
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    let study = new_study(dir.path(), &[&sim], 8, 3);
    let src = sources(&study);
    assert_eq!(src.values().filter(|(k, _)| k == "real").count(), 4);

    let mut server = Serve::start(&study);
    let d = Driver::start();
    let mut clicked: Answers = BTreeMap::new();
    let mut item_shot = None;
    for judge in ["alice", "bob"] {
        d.goto(&format!("{}/", server.base));
        d.type_into("#name", judge);
        d.click("#start");
        let mut page = settle(&d, "");
        let mut k = 0;
        while !page.contains("id=\"done\"") {
            k += 1;
            assert_eq!(progress(&page), format!("{k} of 8"), "{judge}");
            for leak in ["sim-run", "iard", "\"real\"", "\"sim\""]
                .into_iter()
                .map(String::from)
                .chain(sim_ids.iter().cloned())
            {
                assert!(!page.contains(&leak), "item page shows {leak:?}");
            }
            let item = field(&page, "item");
            let person = (k % 2 == 1) == (judge == "alice");
            let (confidence, realism) = (1 + k % 5, 5 - k % 5);
            let comment = if k == 2 {
                format!("{judge} says <b>hi</b> & bye")
            } else {
                String::new()
            };
            if judge == "alice" {
                d.click(if person { "#v-person" } else { "#v-simulator" });
                d.click(&format!("#c{confidence}"));
            } else {
                // Bob uses the keyboard shortcuts for verdict and confidence.
                d.press(&[if person { "p" } else { "s" }, &confidence.to_string()]);
                assert!(d.selected(if person { "#v-person" } else { "#v-simulator" }));
                assert!(d.selected(&format!("#c{confidence}")));
            }
            if !comment.is_empty() {
                d.type_into("#comment", &comment);
            }
            // Last, so the focus leaves the comment box (Enter submits).
            d.click(&format!("#r{realism}"));
            if item_shot.is_none() {
                let png = d.screenshot();
                assert_not_blank(&png, "item page");
                item_shot = Some(png);
            }
            if judge == "alice" {
                d.click("#submit");
            } else {
                d.press(&["\u{E007}"]); // Enter
            }
            clicked.insert(
                (judge.to_string(), item.clone()),
                (
                    if person { "person" } else { "simulator" }.to_string(),
                    confidence as i64,
                    realism as i64,
                    comment,
                ),
            );
            page = settle(&d, &item);
            if judge == "alice" && k == 3 {
                // The reply came after the commit: kill, restart, resume.
                server.kill();
                assert_eq!(answers(&study), clicked, "answers after the kill");
                server = Serve::start(&study);
                let url = d.url();
                let path = &url[url.find("/j/").expect("a judge link")..];
                d.goto(&format!("{}{path}", server.base));
                page = settle(&d, &item);
                assert_eq!(progress(&page), "4 of 8", "resumes where alice left off");
            }
        }
        assert_eq!(k, 8, "{judge} saw every item once");
    }
    assert_eq!(answers(&study), clicked);
    docs_shot("judge-item.png", item_shot.as_deref().unwrap());

    let html = dir.path().join("report.html");
    let r = report_json(&study, &["--html", html.to_str().unwrap()]);
    check_report(&r, &clicked, &src);
    assert_eq!(r["judges"], 2);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<svg class=\"plot\" id=\"judge-accuracy\""));
    assert!(!page.contains("<script"), "the report runs no script");
    d.goto(&format!("file://{}", html.display()));
    let png = d.screenshot();
    assert_not_blank(&png, "report");
    docs_shot("judge-report.png", &png);
}

/// A plain HTTP client that sees statuses and redirects as they are.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .build()
        .into()
}

fn get(a: &ureq::Agent, url: &str) -> (u16, String) {
    let mut r = a.get(url).call().unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

fn post(a: &ureq::Agent, url: &str, content_type: &str, body: &str) -> (u16, String) {
    let mut r = a
        .post(url)
        .header("Content-Type", content_type)
        .send(body.to_string())
        .unwrap();
    (r.status().as_u16(), r.body_mut().read_to_string().unwrap())
}

const FORM: &str = "application/x-www-form-urlencoded";

fn answer_body(page: &str, verdict: &str, comment: &str) -> String {
    format!(
        "item={}&nonce={}&verdict={verdict}&confidence=3&realism=4&comment={comment}",
        field(page, "item"),
        field(page, "nonce")
    )
}

/// The page with what may differ between items blanked: the turns, the
/// item token, the nonce and the progress.
fn template(page: &str) -> String {
    let start = page.find("<div class=\"turns\" id=\"turns\">").unwrap();
    let end = page.find("<form").unwrap();
    let mut t = format!("{}{}", &page[..start], &page[end..]);
    for f in ["item", "nonce"] {
        t = t.replace(&field(page, f), "X");
    }
    t.replace(&progress(page), "K of N")
}

#[test]
fn judge_pages_hide_sources_and_judges_cannot_reach_each_other_or_replay() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fake_run(dir.path(), 6);
    let study = new_study(dir.path(), &[&sim], 8, 11);
    let src = sources(&study);
    let o = usersim(&["judge", "invite", study.to_str().unwrap(), "alice", "bob"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let links: BTreeMap<String, String> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (n, p) = l.split_once('\t').unwrap();
            (n.to_string(), p.to_string())
        })
        .collect();
    let server = Serve::start(&study);
    let a = agent();
    let alice = format!("{}{}", server.base, links["alice"]);
    let bob = format!("{}{}", server.base, links["bob"]);

    // Alice answers everything; every item page is the same template and
    // names no source.
    let mut templates = std::collections::BTreeSet::new();
    let mut kinds = std::collections::BTreeSet::new();
    let mut first_body = None;
    for k in 0..8 {
        let (status, page) = get(&a, &alice);
        assert_eq!(status, 200);
        for leak in ["fake-sim-run", "iard", "simconv", "\"real\"", "\"sim\""] {
            assert!(!page.contains(leak), "item page shows {leak:?}");
        }
        kinds.insert(src[&field(&page, "item")].0.clone());
        templates.insert(template(&page));
        let body = answer_body(&page, "person", if k == 0 { "alice-secret" } else { "" });
        let (status, _) = post(&a, &alice, FORM, &body);
        assert_eq!(status, 303, "answer {k}");
        first_body.get_or_insert(body);
    }
    assert_eq!(kinds.len(), 2, "both real and simulated items were shown");
    assert_eq!(templates.len(), 1, "item pages differ beyond their turns");
    let before = answers(&study);
    assert_eq!(before.len(), 8);

    // Replays, foreign nonces and malformed posts: 4xx, nothing changes.
    let first = first_body.unwrap();
    let (_, bob_page) = get(&a, &bob);
    assert!(!bob_page.contains("alice-secret") && !bob_page.contains(&links["alice"]));
    let bob_item = field(&bob_page, "item");
    let bob_nonce = field(&bob_page, "nonce");
    let good = format!("item={bob_item}&nonce={bob_nonce}&verdict=person&confidence=3&realism=4");
    let random = format!("{}/j/{}", server.base, "0123456789abcdef0123456789abcdef");
    let cases: Vec<(&str, &str, String, u16)> = vec![
        ("replayed answer", alice.as_str(), first.clone(), 409),
        ("alice's form from bob", bob.as_str(), first.clone(), 403),
        ("unknown judge", random.as_str(), good.clone(), 404),
        (
            "no verdict",
            bob.as_str(),
            good.replace("verdict=person&", ""),
            400,
        ),
        (
            "confidence 9",
            bob.as_str(),
            good.replace("confidence=3", "confidence=9"),
            400,
        ),
        (
            "verdict maybe",
            bob.as_str(),
            good.replace("=person", "=maybe"),
            400,
        ),
        (
            "field twice",
            bob.as_str(),
            format!("{good}&realism=2"),
            400,
        ),
        (
            "unknown field",
            bob.as_str(),
            format!("{good}&source=real"),
            400,
        ),
        (
            "unknown item",
            bob.as_str(),
            good.replace(&bob_item, &"a".repeat(32)),
            400,
        ),
        (
            "wrong nonce",
            bob.as_str(),
            good.replace(&bob_nonce, &"b".repeat(32)),
            403,
        ),
        (
            "huge",
            bob.as_str(),
            format!("{good}&comment={}", "x".repeat(20_000)),
            413,
        ),
    ];
    for (what, url, body, status) in &cases {
        assert_eq!(post(&a, url, FORM, body).0, *status, "{what}");
    }
    assert_eq!(post(&a, &bob, "text/plain", &good).0, 415);
    assert_eq!(answers(&study), before, "a refused post changed the study");
    // Taking alice's name gives no access to her link.
    let (status, page) = post(&a, &format!("{}/start", server.base), FORM, "name=alice");
    assert_eq!(status, 409);
    assert!(!page.contains(&links["alice"][3..]));
    // Bob's own post works once.
    assert_eq!(post(&a, &bob, FORM, &good).0, 303);
    assert_eq!(post(&a, &bob, FORM, &good).0, 409);
    assert_eq!(answers(&study).len(), 9);
}

#[test]
fn judge_serve_refuses_a_public_address_without_public() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fake_run(dir.path(), 4);
    let study = new_study(dir.path(), &[&sim], 4, 1);
    let o = usersim(&[
        "judge",
        "serve",
        study.to_str().unwrap(),
        "--addr",
        "0.0.0.0:0",
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --addr 0.0.0.0:0") && stderr.contains("--public"));
    // With --public it serves and says who can reach it.
    let mut child = Command::new(bin())
        .args([
            "judge",
            "serve",
            study.to_str().unwrap(),
            "--addr",
            "0.0.0.0:0",
            "--public",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines: Vec<String> = BufReader::new(child.stderr.take().unwrap())
        .lines()
        .take(2)
        .map(Result::unwrap)
        .collect();
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        lines[1].contains("anyone who can reach this machine"),
        "{lines:?}"
    );
}

#[test]
fn judge_new_refuses_bad_input_with_one_line_and_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fake_run(dir.path(), 4);
    let out = dir.path().join("s.sqlite");
    let (iard, sim, outs) = (iard(), sim, out.as_os_str());
    let base = |n: &str, sim: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "judge".into(),
            "new".into(),
            "--real".into(),
            iard.clone().into(),
            "--sim".into(),
            sim.into(),
            "-n".into(),
            n.into(),
            "-o".into(),
            outs.into(),
        ]
    };
    let run = |args: Vec<std::ffi::OsString>, needles: &[&str]| {
        let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        expect_input_error_line(&args, &out, needles);
    };
    run(base("7", &sim), &["-n 7", "multiple of 2"]);
    // 4 conversations of 2 seeker turns: 8 turns, not 10.
    run(
        base("20", &sim),
        &["fake-sim-run.jsonl", "expected at least 10"],
    );
    run(
        base("4", &dir.path().join("missing.jsonl")),
        &["missing.jsonl"],
    );
    std::fs::write(dir.path().join("bad.jsonl"), "{\"id\":1,\"turns\":3}\n").unwrap();
    run(
        base("4", &dir.path().join("bad.jsonl")),
        &["bad.jsonl:1", "turns"],
    );
    // Not a study.
    std::fs::write(dir.path().join("x.sqlite"), "hello").unwrap();
    let o = usersim(&[
        "judge",
        "report",
        dir.path().join("x.sqlite").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a usersim study"));
}

#[test]
fn judge_crowd_export_import_round_trip_and_bad_rows_with_lines() {
    let dir = tempfile::tempdir().unwrap();
    let sim = fake_run(dir.path(), 6);
    let study = new_study(dir.path(), &[&sim], 8, 5);
    let src = sources(&study);
    let items = dir.path().join("items.csv");
    let o = usersim(&[
        "judge",
        "export",
        study.to_str().unwrap(),
        "--crowd",
        items.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = std::fs::read_to_string(&items).unwrap();
    for leak in ["fake-sim-run", "iard", "simconv", ",real,", ",sim,"] {
        assert!(!text.contains(leak), "export shows {leak:?}");
    }
    let mut r = csv::Reader::from_path(&items).unwrap();
    assert_eq!(
        r.headers().unwrap().iter().collect::<Vec<_>>(),
        ["item_id", "unit", "context", "context_html", "text"]
    );
    let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
    let ids: Vec<String> = rows.iter().map(|r| r[0].to_string()).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, src.keys().cloned().collect::<Vec<_>>());
    assert!(rows.iter().all(|r| &r[1] == "turn" && !r[4].is_empty()));

    // Worker w1 is always right, w2 always says "person".
    let mut results = String::from("Input.item_id,worker_id,verdict,confidence,realism,comment\n");
    let mut expected: Answers = BTreeMap::new();
    for (w, always_person) in [("w1", false), ("w2", true)] {
        for id in &ids {
            let real = src[id].0 == "real";
            let v = if always_person || real {
                "person"
            } else {
                "simulator"
            };
            results.push_str(&format!(
                "{id},{w},{v},4,{},\"a, b\"\n",
                if real { 5 } else { 2 }
            ));
            expected.insert(
                (format!("crowd:{w}"), id.clone()),
                (v.to_string(), 4, if real { 5 } else { 2 }, "a, b".into()),
            );
        }
    }
    let results_path = dir.path().join("results.csv");
    std::fs::write(&results_path, &results).unwrap();
    let import = |path: &Path, extra: &[&str]| {
        let mut args = vec![
            "judge",
            "import",
            study.to_str().unwrap(),
            path.to_str().unwrap(),
        ];
        args.extend(extra);
        usersim(&args)
    };
    let o = import(&results_path, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(answers(&study), expected);
    let r = report_json(&study, &[]);
    check_report(&r, &expected, &src);
    let acc: Vec<f64> = r["per_judge"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["accuracy"].as_f64().unwrap())
        .collect();
    assert_eq!(acc, [1.0, 0.5]);
    assert_eq!(r["mistaken_sim"].as_array().unwrap().len(), 4);
    assert!(r["mistaken_real"].as_array().unwrap().is_empty());

    // `usersim eval --study` carries the same figures into its report.
    let html = dir.path().join("eval.html");
    let o = usersim(&[
        "eval",
        "--real",
        iard().to_str().unwrap(),
        "--sim",
        sim.to_str().unwrap(),
        "--no-embed",
        "--json",
        "--html",
        html.to_str().unwrap(),
        "--study",
        study.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let e: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(e["human"], r, "eval's human figures are judge report's");
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(page.contains("<h2>Human judges") && page.contains("id=\"judge-accuracy\""));
    let o = usersim(&[
        "eval",
        "--real",
        iard().to_str().unwrap(),
        "--sim",
        sim.to_str().unwrap(),
        "--no-embed",
        "--study",
        dir.path().join("nope.sqlite").to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nope.sqlite: no such study file"));

    // The same file again: every row is already in the study.
    let o = import(&results_path, &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("results.csv:2: worker `w1`"));

    // Bad rows: each reported with its line; nothing merged.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "item_id,worker_id,verdict,confidence,realism\n\
             {a},w3,person,3,3\n\
             nosuchitem,w3,person,3,3\n\
             {a},w3,simulator,2,2\n\
             {b},w3,maybe,3,3\n\
             {c},w3,person,7,3\n\
             {d},w3,person\n",
            a = ids[0],
            b = ids[1],
            c = ids[2],
            d = ids[3]
        ),
    )
    .unwrap();
    let o = import(&bad, &[]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("bad.csv:3: item_id: unknown item id `nosuchitem`")
            && stderr.contains("lines 4, 5, 6, 7")
            && stderr.contains("nothing imported"),
        "{stderr}"
    );
    assert_eq!(answers(&study), expected);
    let o = import(&bad, &["--skip-bad"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    for line in 3..=7 {
        assert!(
            stderr.contains(&format!("skipped: {}:{line}:", bad.display())),
            "{stderr}"
        );
    }
    assert!(stderr.contains("bad.csv:4: duplicate: worker `w3` answered this item on line 2"));
    let now = answers(&study);
    assert_eq!(now.len(), expected.len() + 1);
    assert_eq!(now[&("crowd:w3".to_string(), ids[0].clone())].0, "person");
}
