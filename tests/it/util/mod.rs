//! Shared helpers of the integration tests: the real default model and the
//! real reference data beside the project, and the lock that keeps heavy
//! tests (llama.cpp, the embedding model) one at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use usersim::run::{resolve_model, ModelChoice, NoProgress, RunSummary, SimulateConfig};

/// Held by every test that runs llama.cpp or the embedding model, in this
/// process or in a child: two llama.cpp contexts on two cores slow each
/// other far more than twice, so these run one at a time while model-free
/// tests run beside them. A failed test does not poison it for the others.
pub fn heavy() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn shared_data() -> PathBuf {
    root().join("../shared/data")
}

/// The default registry model, fetched by `.ci/run` (`usersim models pull`).
pub fn model_path() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        resolve_model(&ModelChoice::Registry(None), None, false)
            .expect("default model not available: run `usersim models pull` (as .ci/run does)")
            .path
    })
    .clone()
}

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_usersim"))
}

/// A small, fast configuration on the real model.
pub fn small_config(dir: &Path, name: &str) -> SimulateConfig {
    let mut cfg = SimulateConfig {
        output: dir.join(name),
        progress: false,
        sessions: 8,
        parallel: 8,
        seed: 7,
        max_user_turns: Some(3),
        scenario_dir: root().join("prompts/movies"),
        ..SimulateConfig::default()
    };
    cfg.llama.threads = 2;
    // The transcript prefix (four real dialogues) needs room.
    cfg.llama.context_per_sequence = 2048;
    cfg.sampling.user_max_tokens = Some(24);
    cfg.sampling.assistant_max_tokens = Some(32);
    cfg
}

/// `prep`'s sessions of `cfg` on `backend`, uninterrupted and without a
/// progress bar: how in-process tests run a prepared config on a backend
/// of their own (scripted, or an engine they opened).
pub fn run_prepared(
    cfg: &SimulateConfig,
    prep: &usersim::run::Prepared,
    backend: &mut dyn usersim::backend::Backend,
) -> Result<RunSummary, usersim::Error> {
    let sessions = usersim::run::prepared_sessions(cfg, prep)?;
    usersim::run::simulate_with_backend(
        cfg,
        prep,
        backend,
        &sessions,
        &NoProgress,
        Arc::new(AtomicBool::new(false)),
    )
}

pub fn run(cfg: &SimulateConfig) -> RunSummary {
    usersim::run::simulate(cfg, &NoProgress, Arc::new(AtomicBool::new(false)))
        .unwrap_or_else(|e| panic!("simulate failed: {e}"))
}

/// The registry's embedding model directory, fetched on first use (as
/// `usersim models pull all-minilm-l6-v2` does).
pub fn embedding_model_dir() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let reg = usersim::models::Registry::builtin().expect("built-in registry");
        let entry = reg
            .default_embedding()
            .expect("registry has an embedding model");
        usersim::models::resolve(entry, &usersim::models::FetchOptions::default())
            .unwrap_or_else(|e| panic!("embedding model {} not available: {e}", entry.name))
    })
    .clone()
}
pub mod fake_server;

/// llama.cpp's llama-server: `$USERSIM_LLAMA_SERVER` (as `.ci/run` sets
/// it), else built once per machine by `.ci/build-llama-server`.
/// Run a `usersim bench … --json` command; its rows, after checking it
/// succeeded (stderr in the failure message).
pub fn bench_json_rows(cmd: &mut std::process::Command) -> Vec<serde_json::Value> {
    let out = cmd.output().expect("run usersim bench");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("JSON rows")
}

pub fn llama_server_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("USERSIM_LLAMA_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let o = std::process::Command::new(root().join(".ci/build-llama-server"))
        .output()
        .expect("run .ci/build-llama-server");
    assert!(
        o.status.success(),
        "building llama-server failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&o.stdout).trim())
}

/// The whole-line JSON records of an output file (none if it does not
/// exist); a torn last line fails the test.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "torn last line in {}",
        path.display()
    );
    text.lines()
        .map(|l| serde_json::from_str(l).expect("every line is a whole JSON record"))
        .collect()
}

/// Wait until `path` holds at least `lines` lines while `child` still runs
/// (so it can be killed half-way). No clock: a child that ends first fails
/// the test, and a child always ends.
pub fn wait_for_lines(path: &Path, lines: usize, child: &mut std::process::Child) {
    loop {
        let n = std::fs::read_to_string(path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        if n >= lines {
            return;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Runs usersim with `args`, expecting exit 2, one `error:` line holding
/// every needle, and nothing written to `out` (nor its stats sidecar).
pub fn expect_input_error_line(args: &[&std::ffi::OsStr], out: &Path, needles: &[&str]) {
    let o = std::process::Command::new(bin())
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "args {args:?}: stderr: {stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line in: {stderr}"));
    for n in needles {
        assert!(line.contains(n), "error line {line:?} should mention {n:?}");
    }
    assert!(!out.exists(), "output left behind for {args:?}");
    assert!(!usersim::run::stats_path(out).exists());
}

/// A scenario directory copied from `prompts/movies`, with `edit` applied
/// to its scenario.toml and templates.
pub fn scenario_copy(dir: &Path, edit: impl Fn(&str, String) -> String) -> PathBuf {
    let src = root().join("prompts/movies");
    let dst = dir.join("scenario");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(&src).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(e.path()).unwrap();
        // The pool's path is relative to prompts/movies.
        let text = text.replace(
            "\"../../../shared/data/",
            &format!("\"{}/", shared_data().display()),
        );
        std::fs::write(dst.join(&name), edit(&name, text)).unwrap();
    }
    dst
}

/// A scenario.toml without its `[length]` section (the length latent off,
/// and the best-of choice's weight on the drawn length with it).
pub fn without_length(toml: &str) -> String {
    without_section(toml, "[length]").replace("length_weight = 1.0", "length_weight = 0.0")
}

/// A scenario.toml with the `[first_word]` latent on (as it is, when the
/// scenario already declares it).
pub fn with_first_word(toml: &str) -> String {
    if toml.contains("\n[first_word]\n") {
        toml.to_string()
    } else {
        format!("{toml}\n# ----\n[first_word]\nfitted_file = \"intents_iard.toml\"\n")
    }
}

/// A scenario.toml without the `[first_word]` latent (as it is, when the
/// scenario has none): each turn's text is then the model's from its
/// first word.
pub fn without_first_word(toml: &str) -> String {
    if toml.contains("\n[first_word]\n") {
        without_section(toml, "[first_word]")
    } else {
        toml.to_string()
    }
}

/// A scenario.toml whose `[conversation]` lines setting `key` are replaced
/// by `lines` (each ending in a newline; empty: the key left unset).
pub fn with_conversation_lines(toml: &str, key: &str, lines: &str) -> String {
    let kept: String = toml
        .lines()
        .filter(|l| !l.starts_with(&format!("{key} ")) && !l.starts_with(&format!("{key}=")))
        .map(|l| format!("{l}\n"))
        .collect();
    kept.replace("[conversation]\n", &format!("[conversation]\n{lines}"))
}

/// A scenario.toml without `section` (up to the next `# ----` comment
/// line or the end), e.g. `[style]`.
pub fn without_section(toml: &str, section: &str) -> String {
    let start = toml
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("a {section} section"))
        + 1;
    let end = toml[start..]
        .find("\n# ----")
        .map_or(toml.len(), |i| start + i + 1);
    format!("{}{}", &toml[..start], &toml[end..])
}

/// Flags of a small real-model CLI run: two threads, short turns, two user
/// turns.
pub const SMALL_RUN: [&str; 8] = [
    "--threads",
    "2",
    "--max-tokens",
    "16",
    "--assistant-max-tokens",
    "16",
    "--max-turns",
    "2",
];
