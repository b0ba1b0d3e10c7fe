//! A run's configuration: what the CLI (or a library caller) fills in.
//!
//! Invariant: plain data with named defaults, no command-line types; every
//! check of its values happens in [`super::prepare`], before anything is
//! loaded or written.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::backend::llama::LlamaConfig;
use crate::backend::openai::OpenAiConfig;
use crate::backend::sampler::SamplingParams;
use crate::chat::Side;
use crate::output::OutputFormat;
use crate::scenario::system::SystemOverrides;
use crate::session::system::DEFAULT_CANDIDATES;

/// Default number of conversations.
pub const DEFAULT_SESSIONS: u64 = 16;
/// Default conversations decoding at once.
pub const DEFAULT_PARALLEL: usize = 8;
/// Default run seed.
pub const DEFAULT_SEED: u64 = 0;

/// Which model to run.
#[derive(Clone, Debug, Serialize)]
pub enum ModelChoice {
    /// A registry name (`models.toml`); `None` is the registry default.
    Registry(Option<String>),
    /// A local GGUF file.
    Path(PathBuf),
}

impl ModelChoice {
    /// `--model`: a path when it looks like one (ends in `.gguf`, has a
    /// `/`, or names an existing file), else a registry name; none is the
    /// registry default.
    pub fn from_arg(arg: Option<&str>) -> ModelChoice {
        match arg {
            None => ModelChoice::Registry(None),
            Some(m) => {
                let p = PathBuf::from(m);
                if m.ends_with(".gguf") || m.contains('/') || p.is_file() {
                    ModelChoice::Path(p)
                } else {
                    ModelChoice::Registry(Some(m.to_string()))
                }
            }
        }
    }
}

/// Which engine a run generates with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// In-process llama.cpp on a local GGUF (the default).
    #[default]
    Llama,
    /// An OpenAI-compatible server (`/v1/chat/completions`).
    Openai,
}

/// Sampling flags that override the scenario's, for both sides.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SamplingOverrides {
    /// Temperature.
    pub temperature: Option<f32>,
    /// Top-k.
    pub top_k: Option<u32>,
    /// Top-p.
    pub top_p: Option<f32>,
    /// Min-p.
    pub min_p: Option<f32>,
    /// Repetition penalty.
    pub repeat_penalty: Option<f32>,
    /// Max new tokens of a user turn.
    pub user_max_tokens: Option<u32>,
    /// Max new tokens of an assistant reply.
    pub assistant_max_tokens: Option<u32>,
}

impl std::str::FromStr for BackendKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "llama" => Ok(BackendKind::Llama),
            "openai" => Ok(BackendKind::Openai),
            other => Err(format!("expected llama or openai, found `{other}`")),
        }
    }
}

impl SamplingOverrides {
    pub(crate) fn apply(&self, p: &mut SamplingParams, side: Side) {
        if let Some(v) = self.temperature {
            p.temperature = v;
        }
        if let Some(v) = self.top_k {
            p.top_k = v;
        }
        if let Some(v) = self.top_p {
            p.top_p = v;
        }
        if let Some(v) = self.min_p {
            p.min_p = v;
        }
        if let Some(v) = self.repeat_penalty {
            p.repeat_penalty = v;
        }
        let max = match side {
            Side::User => self.user_max_tokens,
            Side::Assistant => self.assistant_max_tokens,
        };
        if let Some(v) = max {
            p.max_tokens = v;
        }
    }
}

/// Everything a simulate run needs; the CLI only fills this in.
#[derive(Clone, Debug, Serialize)]
pub struct SimulateConfig {
    /// Scenario directory.
    pub scenario_dir: PathBuf,
    /// Number of conversations.
    pub sessions: u64,
    /// Conversations decoding at once.
    pub parallel: usize,
    /// Run seed.
    pub seed: u64,
    /// Output path (`-` for stdout).
    pub output: PathBuf,
    /// Output format.
    pub format: OutputFormat,
    /// Overwrite an existing output.
    pub force: bool,
    /// `--set` pins as given.
    pub pins: Vec<String>,
    /// Catalog CSV replacing the scenario's.
    pub catalog: Option<PathBuf>,
    /// Model.
    pub model: ModelChoice,
    /// Model registry file (`None`: the built-in one).
    pub registry: Option<PathBuf>,
    /// Which engine generates.
    pub backend: BackendKind,
    /// Engine options (`BackendKind::Llama`).
    pub llama: LlamaConfig,
    /// Server options (`BackendKind::Openai`).
    pub openai: OpenAiConfig,
    /// Sampling overrides.
    pub sampling: SamplingOverrides,
    /// Overrides the scenario's `max_user_turns`.
    pub max_user_turns: Option<u32>,
    /// Catalog candidates per recommender turn.
    pub candidates: usize,
    /// Show a progress bar.
    pub progress: bool,
    /// Simulate only sessions whose index is ≡ i (mod n): `(i, n)`.
    pub shard: Option<(u64, u64)>,
    /// Continue an interrupted run: keep the output's finished sessions and
    /// simulate only the missing ones.
    pub resume: bool,
    /// Replay the real dialogues of this corpus file (IARD `.json` or
    /// INSPIRED `.tsv`), teacher-forced: session i follows dialogue i, the
    /// real recommender answers, and every user turn is written from the
    /// real history and recorded beside the real turn. `sessions` caps the
    /// dialogues replayed; `max_user_turns` does not apply.
    pub replay: Option<PathBuf>,
    /// Corpus files replacing the scenario's `[pool] corpora` (empty: the
    /// scenario's).
    pub pool: Vec<PathBuf>,
    /// Candidates per seeker turn, replacing the scenario's
    /// `[critic] best_of` (more than 1 needs a critic).
    pub best_of: Option<u32>,
    /// Realism critic file replacing the scenario's `[critic] file`.
    pub critic: Option<PathBuf>,
    /// `--system*` flags replacing the scenario's `[system]` fields.
    pub system: SystemOverrides,
}

impl Default for SimulateConfig {
    fn default() -> Self {
        SimulateConfig {
            scenario_dir: crate::scenario::default_prompts_dir()
                .join(crate::scenario::DEFAULT_SCENARIO),
            sessions: DEFAULT_SESSIONS,
            parallel: DEFAULT_PARALLEL,
            seed: DEFAULT_SEED,
            output: PathBuf::from("conversations.jsonl"),
            format: OutputFormat::Jsonl,
            force: false,
            pins: Vec::new(),
            catalog: None,
            model: ModelChoice::Registry(None),
            registry: None,
            backend: BackendKind::Llama,
            llama: LlamaConfig::default(),
            openai: OpenAiConfig::default(),
            sampling: SamplingOverrides::default(),
            max_user_turns: None,
            candidates: DEFAULT_CANDIDATES,
            progress: false,
            shard: None,
            resume: false,
            replay: None,
            pool: Vec::new(),
            best_of: None,
            critic: None,
            system: SystemOverrides::default(),
        }
    }
}
