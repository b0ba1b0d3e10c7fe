//! `simulate`: the main job. Draws sessions, runs every live conversation
//! through one backend batch, writes labelled records as they finish.
//!
//! Continuous batching: up to `parallel` conversations are live; when one
//! ends its slots go to the next session at once, and a conversation waiting
//! for the other side's reply never holds the batch back, because both
//! sides' requests decode in the same steps.
//!
//! With `replay` set, sessions are the real dialogues of a corpus (see
//! [`crate::replay`]): the real recommender answers, each user turn is
//! written from the real history, and a session ends with its dialogue.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::backend::llama::{LlamaConfig, LlamaEngine};
use crate::backend::openai::{OpenAiBackend, OpenAiConfig};
use crate::backend::{Backend, BackendError, BackendStats, Side};
use crate::catalog::{Catalog, CatalogError};
use crate::conversation::{
    Conversation, ConversationRecord, EndReason, ModelRef, Next, RunIdentity, ScenarioRef,
};
use crate::corpus::CorpusError;
use crate::latent::{draw_session, find_item, LatentError, TurnPlanner};
use crate::models::{self, ModelError};
use crate::output::{OutputError, OutputFormat, OutputWriter};
use crate::prompt::{assistant_messages, HistoryTurn};
use crate::replay::{load_replay, session_pins, Replay, ReplaySystem};
use crate::rng::{session_seed, stream_rng, Stream};
use crate::sampler::SamplingParams;
use crate::scenario::{Pins, Scenario, ScenarioError, SessionVar};
use crate::system::{LlmRecommender, System, SystemError, DEFAULT_CANDIDATES};

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

/// Which engine a run generates with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
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

impl SamplingOverrides {
    fn apply(&self, p: &mut SamplingParams, side: Side) {
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
        }
    }
}

/// Errors of a simulate run.
#[derive(Debug, thiserror::Error)]
pub enum SimulateError {
    /// Scenario or pin problem.
    #[error(transparent)]
    Scenario(#[from] ScenarioError),
    /// Catalog problem.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// Latent draw problem.
    #[error(transparent)]
    Latent(#[from] LatentError),
    /// Model problem.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// Engine problem.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Output problem.
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The replay corpus cannot be read.
    #[error(transparent)]
    Replay(#[from] CorpusError),
    /// A flag or combination of flags is invalid.
    #[error("{0}")]
    Config(String),
    /// A bug: the run reached a state its inputs should rule out.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<SystemError> for SimulateError {
    fn from(e: SystemError) -> Self {
        match e {
            SystemError::Prompt(p) => SimulateError::Scenario(p),
            e @ SystemError::NoReplay { .. } => SimulateError::Internal(e.to_string()),
        }
    }
}

impl SimulateError {
    /// Whether the user's input was at fault (exit code 2) rather than the run.
    pub fn is_input_error(&self) -> bool {
        match self {
            SimulateError::Backend(BackendError::Load { .. } | BackendError::Config(_)) => true,
            SimulateError::Backend(_) => false,
            SimulateError::Output(OutputError::Io { .. }) => false,
            SimulateError::Output(OutputError::BrokenPipe) => false,
            SimulateError::Internal(_) => false,
            _ => true,
        }
    }
}

/// Counts and timings of a run (the sidecar stats file and the summary).
#[derive(Clone, Debug, Default, Serialize)]
pub struct RunSummary {
    /// Conversations written.
    pub conversations: u64,
    /// Whether the run stopped early (Ctrl-C).
    pub interrupted: bool,
    /// User turns.
    pub user_turns: u64,
    /// Assistant turns (generated).
    pub assistant_turns: u64,
    /// Tokens generated by both sides.
    pub tokens_generated: u64,
    /// Tokens generated by the simulated users.
    pub user_tokens: u64,
    /// Wall-clock seconds of the generation loop.
    pub seconds: f64,
    /// Generated tokens per second, all conversations together.
    pub tokens_per_second: f64,
    /// Generated tokens per second of one conversation (aggregate / parallel).
    pub tokens_per_second_per_conversation: f64,
    /// Conversations per minute.
    pub conversations_per_minute: f64,
    /// Mean seconds from a conversation's start to its first user token.
    pub mean_time_to_first_turn: f64,
    /// User-turn intents.
    pub intents: BTreeMap<String, u64>,
    /// End reasons.
    pub end_reasons: BTreeMap<String, u64>,
    /// Conversations decoding at once.
    pub parallel: usize,
    /// Shared prefix tokens (user side, assistant side).
    pub shared_prefix_tokens: [usize; 2],
    /// Engine counters.
    pub backend: BackendStats,
}

/// What the run's model resolved to.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// Name recorded in the output.
    pub name: String,
    /// File.
    pub path: PathBuf,
    /// sha256 of the file.
    pub sha256: String,
    /// Registry chat template override.
    pub chat_template: Option<String>,
}

/// Resolve `choice`, fetching a registry model on first use.
pub fn resolve_model(
    choice: &ModelChoice,
    registry: Option<&Path>,
    progress: bool,
) -> Result<ResolvedModel, SimulateError> {
    match choice {
        ModelChoice::Path(p) => {
            models::local_file_check(p)?;
            Ok(ResolvedModel {
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "model".into()),
                path: p.clone(),
                sha256: models::file_sha256(p)?,
                chat_template: None,
            })
        }
        ModelChoice::Registry(name) => {
            let reg = match registry {
                Some(path) => models::Registry::load(path)?,
                None => models::Registry::builtin()?,
            };
            let name = name.clone().unwrap_or_else(|| reg.default.clone());
            let entry = reg.get(&name)?;
            let opts = models::FetchOptions {
                progress,
                ..models::FetchOptions::default()
            };
            let path = models::resolve(entry, &opts)?;
            models::local_file_check(&path)?;
            let sha256 = match &entry.sha256 {
                Some(s) => s.clone(),
                None => models::file_sha256(&path)?,
            };
            Ok(ResolvedModel {
                name,
                path,
                sha256,
                chat_template: entry.chat_template.clone(),
            })
        }
    }
}

/// Everything checked and loaded before the first token: scenario, pins,
/// catalog and the per-side sampling options.
pub struct Prepared {
    /// Scenario.
    pub scenario: Scenario,
    /// Pins.
    pub pins: Pins,
    /// Catalog, if the scenario or flags give one.
    pub catalog: Option<Catalog>,
    /// Final sampling options per side.
    pub sampling: crate::scenario::SidesSampling,
    /// The dialogues to replay (`--replay`).
    pub replay: Option<Replay>,
}

/// Load and validate the run's inputs (no model involved).
pub fn prepare(cfg: &SimulateConfig) -> Result<Prepared, SimulateError> {
    if cfg.sessions == 0 {
        return Err(SimulateError::Config(
            "--sessions: expected at least 1".into(),
        ));
    }
    if cfg.parallel == 0 {
        return Err(SimulateError::Config(
            "--parallel: expected at least 1".into(),
        ));
    }
    let mut scenario = Scenario::load(&cfg.scenario_dir)?;
    if let Some(t) = cfg.max_user_turns {
        if t == 0 {
            return Err(SimulateError::Config(
                "--max-turns: expected at least 1".into(),
            ));
        }
        scenario.conversation.max_user_turns = t;
    }
    let pins = Pins::parse(&cfg.pins, &scenario)?;
    let catalog_path = cfg.catalog.clone().or_else(|| scenario.catalog.clone());
    let catalog = match catalog_path {
        Some(p) => Some(Catalog::load_csv(&p)?),
        None => None,
    };
    if let Some(cat) = &catalog {
        for var in &scenario.session {
            if let SessionVar::CatalogItem { name, .. } = var {
                if let Some(v) = pins.session.get(name) {
                    if find_item(cat, v).is_none() {
                        return Err(LatentError::UnknownItem {
                            name: name.clone(),
                            value: v.clone(),
                        }
                        .into());
                    }
                }
            }
        }
    }
    let mut sampling = scenario.sampling.clone();
    cfg.sampling.apply(&mut sampling.user, Side::User);
    cfg.sampling.apply(&mut sampling.assistant, Side::Assistant);
    sampling
        .user
        .validate()
        .map_err(|e| SimulateError::Config(format!("user sampling: {e}")))?;
    sampling
        .assistant
        .validate()
        .map_err(|e| SimulateError::Config(format!("assistant sampling: {e}")))?;
    let replay = cfg.replay.as_deref().map(load_replay).transpose()?;
    Ok(Prepared {
        scenario,
        pins,
        catalog,
        sampling,
        replay,
    })
}

/// Progress callbacks (the CLI draws a bar; tests pass nothing).
pub trait Progress {
    /// The run will write `sessions` conversations (after `--shard`,
    /// `--resume` and a replay's corpus size are applied).
    fn started(&self, _sessions: u64) {}
    /// A conversation was written; `tokens` generated so far in the run.
    fn conversation_done(&self, done: u64, tokens: u64, elapsed: f64);
}

/// No progress reporting.
pub struct NoProgress;
impl Progress for NoProgress {
    fn conversation_done(&self, _: u64, _: u64, _: f64) {}
}

/// Run a simulation with the configured backend.
pub fn simulate(
    cfg: &SimulateConfig,
    progress: &dyn Progress,
    interrupt: Arc<AtomicBool>,
) -> Result<RunSummary, SimulateError> {
    let prep = prepare(cfg)?;
    if cfg.backend == BackendKind::Openai {
        let sessions = prepared_sessions(cfg, &prep)?;
        let mut backend = OpenAiBackend::new(&cfg.openai)?;
        return run_with_backend(cfg, &prep, &mut backend, &sessions, progress, interrupt);
    }
    let model = resolve_model(&cfg.model, cfg.registry.as_deref(), cfg.progress)?;
    let mut llama = cfg.llama.clone();
    if llama.chat_template.is_none() {
        llama.chat_template = model.chat_template.clone();
    }
    let sessions = prepared_sessions(cfg, &prep)?;
    let parallel = cfg.parallel.min(sessions.len()).max(1);
    let mut backend = LlamaEngine::new(&model.path, &model.name, &model.sha256, parallel, &llama)?;
    run_with_backend(cfg, &prep, &mut backend, &sessions, progress, interrupt)
}

/// The sessions this run (or shard) is responsible for, in order.
pub fn planned_sessions(cfg: &SimulateConfig) -> Result<Vec<u64>, SimulateError> {
    shard_of(cfg.sessions, cfg.shard)
}

/// [`planned_sessions`] once the inputs are loaded: a replay has no more
/// sessions than its corpus has dialogues.
pub fn prepared_sessions(cfg: &SimulateConfig, prep: &Prepared) -> Result<Vec<u64>, SimulateError> {
    let total = match &prep.replay {
        Some(r) => cfg.sessions.min(r.scripts.len() as u64),
        None => cfg.sessions,
    };
    shard_of(total, cfg.shard)
}

fn shard_of(total: u64, shard: Option<(u64, u64)>) -> Result<Vec<u64>, SimulateError> {
    match shard {
        None => Ok((0..total).collect()),
        Some((i, n)) => {
            if n == 0 || i >= n {
                return Err(SimulateError::Config(format!(
                    "--shard {i}/{n}: expected i/n with 0 <= i < n"
                )));
            }
            Ok((0..total).filter(|s| s % n == i).collect())
        }
    }
}

/// `--resume` of a replay continues the same dialogues, and a plain run
/// does not continue a replay (or the reverse).
fn check_same_replay(
    path: &Path,
    rec: &ConversationRecord,
    replay: Option<&Replay>,
) -> Result<(), OutputError> {
    let expected = replay.and_then(|r| {
        usize::try_from(rec.session_index)
            .ok()
            .and_then(|i| r.scripts.get(i))
            .map(|s| &s.source)
    });
    let show = |s: Option<&crate::conversation::ReplaySource>| match s {
        Some(s) => format!(
            "{} dialogue {}",
            serde_json::to_string(&s.corpus).unwrap_or_default(),
            s.dialogue_id
        ),
        None => "none".to_string(),
    };
    if rec.replay.as_ref() != expected || (replay.is_some() && expected.is_none()) {
        return Err(OutputError::Mismatch {
            path: path.to_path_buf(),
            field: format!("replay (session {})", rec.session_index),
            found: show(rec.replay.as_ref()),
            expected: show(expected),
        });
    }
    Ok(())
}

/// `--resume` may only continue a file of the same run.
fn check_same_run(
    path: &Path,
    rec: &ConversationRecord,
    run: &RunIdentity,
) -> Result<(), OutputError> {
    let mismatch = |field: &str, found: String, expected: String| OutputError::Mismatch {
        path: path.to_path_buf(),
        field: field.into(),
        found,
        expected,
    };
    if rec.run_seed != run.run_seed {
        return Err(mismatch(
            "seed",
            rec.run_seed.to_string(),
            run.run_seed.to_string(),
        ));
    }
    if rec.scenario != run.scenario {
        return Err(mismatch(
            "scenario",
            format!("{} {}", rec.scenario.name, rec.scenario.hash),
            format!("{} {}", run.scenario.name, run.scenario.hash),
        ));
    }
    if rec.model != run.model {
        return Err(mismatch(
            "model",
            format!("{} {}", rec.model.name, rec.model.sha256),
            format!("{} {}", run.model.name, run.model.sha256),
        ));
    }
    if rec.sampling != run.sampling {
        return Err(mismatch(
            "sampling",
            serde_json::to_string(&rec.sampling).unwrap_or_default(),
            serde_json::to_string(&run.sampling).unwrap_or_default(),
        ));
    }
    Ok(())
}

/// Rough upper bound of the tokens one side's sequence needs, checked
/// against the context before anything is generated. Each side's per-turn
/// note stays in its history (append-only prompts), so it counts every turn.
fn check_context(
    prep: &Prepared,
    backend: &dyn Backend,
    (first_user, user_note): (&[crate::prompt::ChatMessage], &str),
    (first_assistant, assistant_note): (&[crate::prompt::ChatMessage], &str),
) -> Result<(), SimulateError> {
    use crate::prompt::{ChatMessage, ChatRole};
    let turns = prep.scenario.conversation.max_user_turns as usize;
    let empty = backend.count_prompt_tokens(&[ChatMessage::new(ChatRole::User, "")])?;
    let note_tokens = |note: &str| -> Result<usize, SimulateError> {
        if note.is_empty() {
            return Ok(0);
        }
        let n = backend.count_prompt_tokens(&[ChatMessage::new(ChatRole::User, note)])?;
        Ok(n.saturating_sub(empty))
    };
    // Per exchange: both messages plus the chat template's framing.
    let per_exchange =
        (prep.sampling.user.max_tokens + prep.sampling.assistant.max_tokens) as usize + 12;
    let user_need =
        backend.count_prompt_tokens(first_user)? + turns * (per_exchange + note_tokens(user_note)?);
    let asst_need = backend.count_prompt_tokens(first_assistant)?
        + turns * (per_exchange + note_tokens(assistant_note)?);
    let need = user_need.max(asst_need);
    let have = backend.info().context_per_sequence as usize;
    tracing::debug!(user_need, asst_need, have, "context per sequence");
    if need > have {
        return Err(SimulateError::Config(format!(
            "context too small for the requested turns: {turns} user turns of up to {} + {} tokens (with each turn's instructions) need about {need} tokens per sequence, the context holds {have} (raise --context, or lower --max-turns or --max-tokens)",
            prep.sampling.user.max_tokens, prep.sampling.assistant.max_tokens
        )));
    }
    Ok(())
}

/// Run `sessions` through any backend. The output file is created only
/// once the first conversation is complete.
pub fn run_with_backend(
    cfg: &SimulateConfig,
    prep: &Prepared,
    backend: &mut dyn Backend,
    sessions: &[u64],
    progress: &dyn Progress,
    interrupt: Arc<AtomicBool>,
) -> Result<RunSummary, SimulateError> {
    let scenario = &prep.scenario;
    let catalog = prep.catalog.as_ref();
    let mut system: Box<dyn System + '_> = match &prep.replay {
        Some(r) => Box::new(ReplaySystem::new(r)),
        None => Box::new(LlmRecommender::new(
            scenario,
            catalog,
            prep.sampling.assistant.clone(),
            cfg.candidates,
        )),
    };
    let run = RunIdentity {
        run_seed: cfg.seed,
        scenario: ScenarioRef {
            name: scenario.name.clone(),
            hash: scenario.hash.clone(),
        },
        model: ModelRef {
            name: backend.info().model.clone(),
            sha256: backend.info().model_sha256.clone(),
        },
        sampling: prep.sampling.clone(),
    };

    let remaining: Vec<u64>;
    let mut sessions = sessions;
    if cfg.resume {
        let state = crate::output::scan_for_resume(&cfg.output)?;
        if let Some(rec) = &state.sample {
            check_same_run(&cfg.output, rec, &run)?;
            check_same_replay(&cfg.output, rec, prep.replay.as_ref())?;
        }
        if state.truncated_bytes > 0 {
            tracing::warn!(
                bytes = state.truncated_bytes,
                "cut a torn last line from {}",
                cfg.output.display()
            );
        }
        remaining = sessions
            .iter()
            .copied()
            .filter(|s| !state.done.contains(s))
            .collect();
        tracing::info!(
            done = state.done.len(),
            remaining = remaining.len(),
            "resuming"
        );
        sessions = &remaining;
    }

    let start_conversation = |index: u64| -> Result<(Conversation<'_>, Next), SimulateError> {
        let seed = session_seed(cfg.seed, index);
        let mut rng = stream_rng(seed, Stream::SessionLatents);
        let script = match &prep.replay {
            Some(r) => Some(
                usize::try_from(index)
                    .ok()
                    .and_then(|i| r.scripts.get(i))
                    .ok_or_else(|| {
                        SimulateError::Internal(format!(
                            "session {index} beyond the {} replayed dialogues",
                            r.scripts.len()
                        ))
                    })?,
            ),
            None => None,
        };
        let latents = match script {
            // Pinning still draws, so the session's stream is unchanged.
            Some(s) => draw_session(
                scenario,
                catalog,
                &session_pins(scenario, s, &prep.pins),
                &mut rng,
            )?,
            None => draw_session(scenario, catalog, &prep.pins, &mut rng)?,
        };
        let planner = TurnPlanner::new(scenario, &prep.pins);
        let mut conv = Conversation::new(
            scenario,
            catalog,
            planner,
            index,
            seed,
            latents,
            prep.sampling.user.clone(),
        )?;
        if let Some(script) = script {
            conv = conv.with_replay(script);
        }
        let next = conv.user_turn()?;
        Ok((conv, next))
    };

    // Validate sizes and warm the shared prefixes on the first sessions'
    // real prompts, before any output exists.
    let mut examples_user = Vec::new();
    let mut user_note = String::new();
    for &i in sessions.iter().take(2) {
        let (_, next) = start_conversation(i)?;
        if let Next::Generate(req) = next {
            if user_note.is_empty() {
                user_note = req.note;
            }
            examples_user.push(req.messages);
        }
    }
    let opening: Vec<HistoryTurn<'_>> = scenario
        .conversation
        .opening
        .iter()
        .map(|t| HistoryTurn {
            side: Side::Assistant,
            text: t,
            note: None,
        })
        .collect();
    let asst_example =
        |text: &'static str| -> Result<(Vec<crate::prompt::ChatMessage>, String), SimulateError> {
            let mut h: Vec<HistoryTurn<'_>> = opening
                .iter()
                .map(|t| HistoryTurn {
                    side: t.side,
                    text: t.text,
                    note: None,
                })
                .collect();
            h.push(HistoryTurn {
                side: Side::User,
                text,
                note: None,
            });
            let cands: Vec<&crate::catalog::CatalogItem> = catalog
                .map(|c| c.items().iter().take(cfg.candidates).collect())
                .unwrap_or_default();
            Ok(assistant_messages(scenario, &h, &cands, 0)?)
        };
    let (first_asst, asst_note) = asst_example("Hi there.")?;
    let asst_examples = vec![first_asst, asst_example("Hello!")?.0];
    // A replay's length is the real dialogue's, and its replies cost no
    // tokens: there is no turn budget to check. A dialogue that outgrows the
    // context ends as `context_full`, as any conversation does.
    if let Some(first) = examples_user.first().filter(|_| prep.replay.is_none()) {
        check_context(
            prep,
            backend,
            (first, &user_note),
            (&asst_examples[0], &asst_note),
        )?;
    }
    let mut summary = RunSummary {
        parallel: cfg.parallel.min(sessions.len()),
        ..RunSummary::default()
    };
    summary.shared_prefix_tokens[0] = backend.prepare_shared_prefix(&examples_user)?;
    if prep.replay.is_none() {
        // A replay never generates the assistant side.
        summary.shared_prefix_tokens[1] = backend.prepare_shared_prefix(&asst_examples)?;
    }

    let mut writer = if cfg.resume {
        OutputWriter::append(&cfg.output, cfg.format, sessions.to_vec())?
    } else {
        OutputWriter::new(&cfg.output, cfg.force, cfg.format, sessions.to_vec())?
    };
    progress.started(sessions.len() as u64);
    let t0 = Instant::now();
    let mut live: HashMap<u64, (Conversation<'_>, Instant, bool)> = HashMap::new();
    let mut queue = sessions.iter().copied();
    let mut ttft_sum = 0.0;
    let mut ttft_n = 0u64;
    let mut finished: Vec<(u64, EndReason)> = Vec::new();
    let capacity = backend.max_conversations().min(cfg.parallel).max(1);

    let result: Result<(), SimulateError> = (|| {
        loop {
            if interrupt.load(Ordering::SeqCst) {
                summary.interrupted = true;
                break;
            }
            // Finished conversations leave first, so their slots refill this step.
            loop {
                for (index, end) in finished.drain(..) {
                    if let Some((conv, _, _)) = live.remove(&index) {
                        backend.release(index);
                        let record = conv.into_record(&run, system.name(), end);
                        account(&mut summary, &record);
                        writer.push(&record)?;
                        progress.conversation_done(
                            summary.conversations,
                            summary.tokens_generated,
                            t0.elapsed().as_secs_f64(),
                        );
                    }
                }
                // Fill free slots with new sessions.
                while live.len() < capacity {
                    let Some(index) = queue.next() else { break };
                    let (conv, next) = start_conversation(index)?;
                    match next {
                        Next::Generate(req) => {
                            backend.submit(req)?;
                            live.insert(index, (conv, Instant::now(), false));
                        }
                        Next::Done(end) => {
                            live.insert(index, (conv, Instant::now(), true));
                            finished.push((index, end));
                        }
                    }
                }
                if finished.is_empty() {
                    break;
                }
            }
            if live.is_empty() {
                break;
            }
            let gens = backend.step()?;
            for g in gens {
                let index = g.conversation;
                let Some((conv, started, first_seen)) = live.get_mut(&index) else {
                    continue;
                };
                if g.side == Side::User && !*first_seen {
                    *first_seen = true;
                    ttft_sum += started.elapsed().as_secs_f64();
                    ttft_n += 1;
                }
                match conv.on_generation(g, system.as_mut())? {
                    Next::Generate(req) => backend.submit(req)?,
                    Next::Done(end) => finished.push((index, end)),
                }
            }
        }
        Ok(())
    })();

    // Whatever happened, finished conversations reach the disk.
    let flushed = writer.finish();
    summary.seconds = t0.elapsed().as_secs_f64();
    summary.backend = backend.stats();
    if summary.seconds > 0.0 {
        summary.tokens_per_second = summary.tokens_generated as f64 / summary.seconds;
        summary.conversations_per_minute = summary.conversations as f64 * 60.0 / summary.seconds;
    }
    summary.tokens_per_second_per_conversation =
        summary.tokens_per_second / summary.parallel.max(1) as f64;
    summary.mean_time_to_first_turn = if ttft_n > 0 {
        ttft_sum / ttft_n as f64
    } else {
        0.0
    };
    result?;
    flushed?;
    if cfg.resume
        && !summary.interrupted
        && cfg.format == OutputFormat::Jsonl
        && cfg.output != Path::new("-")
        && crate::output::restore_session_order(&cfg.output)?
    {
        tracing::info!("put {} back in session order", cfg.output.display());
    }
    if cfg.output != Path::new("-") && writer.written() > 0 {
        write_stats(&cfg.output, cfg, &summary)?;
    }
    Ok(summary)
}

fn account(summary: &mut RunSummary, record: &ConversationRecord) {
    summary.conversations += 1;
    *summary
        .end_reasons
        .entry(
            serde_json::to_value(record.end_reason)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default(),
        )
        .or_default() += 1;
    for t in &record.turns {
        summary.tokens_generated += u64::from(t.tokens);
        match t.role {
            Side::User => {
                summary.user_turns += 1;
                summary.user_tokens += u64::from(t.tokens);
                if let Some(intent) = t.latents.get("intent") {
                    *summary.intents.entry(intent.clone()).or_default() += 1;
                }
            }
            Side::Assistant => {
                if t.tokens > 0 {
                    summary.assistant_turns += 1;
                }
            }
        }
    }
}

/// The sidecar: run configuration and timings, beside the conversations so
/// the conversation file stays a pure function of configuration and seed.
pub fn stats_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".stats.json");
    PathBuf::from(s)
}

fn write_stats(
    output: &Path,
    cfg: &SimulateConfig,
    summary: &RunSummary,
) -> Result<(), SimulateError> {
    let path = stats_path(output);
    let body = serde_json::json!({
        "usersim_version": env!("CARGO_PKG_VERSION"),
        "config": cfg,
        "summary": summary,
    });
    let text = serde_json::to_string_pretty(&body).unwrap_or_default();
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &path))
        .map_err(|source| SimulateError::Output(OutputError::Io { path, source }))
}
