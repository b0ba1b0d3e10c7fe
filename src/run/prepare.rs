//! Everything a run checks and loads before its first token: scenario,
//! pins, catalog, sampling, the replayed corpus, the model and the engine.
//!
//! Invariant: every error of the user's input surfaces here (or in the
//! context check right after the engine is up), before an output file
//! exists.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::backend::llama::LlamaEngine;
use crate::backend::openai::{OpenAiBackend, OpenAiConfig};
use crate::backend::{Backend, Prompt};
use crate::chat::{ChatMessage, ChatRole, Side};
use crate::corpus::pool::Pool;
use crate::corpus::{load_dialogues, CorpusKind};
use crate::critic::{Critic, PoolIntentReader};
use crate::error::Error;
use crate::latent::{find_item, LatentError};
use crate::models;
use crate::prompt::assistant_transcript_prefix;
use crate::rng::{stream_rng, Stream};
use crate::scenario::catalog::Catalog;
use crate::scenario::system::{SystemKind, SystemSpec};
use crate::scenario::PromptMode;
use crate::scenario::{Pins, Scenario, SessionVar, MAX_BEST_OF};
use crate::session::best_of::{GenreRates, IntentReader, TurnScorer};
use crate::session::replay::{load_replay, Replay};

use super::{BackendKind, ModelChoice, SimulateConfig};

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
) -> Result<ResolvedModel, Error> {
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
    /// The scenario's real dialogues (`[pool]`, or `--pool`).
    pub pool: Option<Pool>,
    /// Pool dialogues a transcript prefix shows, in order of preference
    /// (drawn once per run, so sessions share the prefix; one spare for a
    /// session replaying one of them).
    pub prefix_candidates: Vec<usize>,
    /// The built-in recommender's transcript prefix (`assistant_prompt =
    /// "transcript"`): the real dialogues every session's seeker sees.
    pub assistant_prefix: Option<String>,
    /// The realism critic that scores seeker turns (`--critic`,
    /// `[critic]`): a [`Critic`] file, or any scorer a library user (or a
    /// test) puts here after [`prepare`].
    pub critic: Option<Box<dyn TurnScorer + Send + Sync>>,
    /// Reads each candidate's drawn intent, weighing the critic's choice
    /// (`[critic] intent_weight`): a [`PoolIntentReader`] fitted on the
    /// pool, or any reader a library user puts here after [`prepare`].
    pub intent_reader: Option<Box<dyn IntentReader + Send + Sync>>,
    /// The power of the reader's probability in the choice.
    pub intent_weight: f64,
    /// How often the pool's real seekers name a genre, by intent
    /// (`[critic] genre_weight`), when the run chooses among candidates.
    pub genre_rates: Option<GenreRates>,
    /// The power of a candidate's genre factor in the choice.
    pub genre_weight: f64,
    /// Candidates per seeker turn (1: no best-of-N).
    pub best_of: u32,
    /// The system under test: the scenario's `[system]` with the flags
    /// applied, checked.
    pub system: SystemSpec,
    /// File name of the catalog (what an external system is told).
    pub catalog_name: Option<String>,
}

/// Load and validate the run's inputs (no model involved).
pub fn prepare(cfg: &SimulateConfig) -> Result<Prepared, Error> {
    if cfg.sessions == 0 {
        return Err(Error::Config("--sessions: expected at least 1".into()));
    }
    if cfg.parallel == 0 {
        return Err(Error::Config("--parallel: expected at least 1".into()));
    }
    let mut scenario = Scenario::load(&cfg.scenario_dir)?;
    if let Some(t) = cfg.max_user_turns {
        if t == 0 {
            return Err(Error::Config("--max-turns: expected at least 1".into()));
        }
        scenario.conversation.max_user_turns = t;
    }
    let pins = Pins::parse(&cfg.pins, &scenario)?;
    let catalog_path = cfg.catalog.clone().or_else(|| scenario.catalog.clone());
    let catalog = match &catalog_path {
        Some(p) => Some(Catalog::load_csv(p)?),
        None => None,
    };
    let catalog_name = catalog_path
        .as_ref()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned());
    let system = cfg.system.apply(&scenario.system);
    system.check().map_err(Error::Config)?;
    if system.kind != SystemKind::Builtin && cfg.replay.is_some() {
        return Err(Error::Config(
            "--system: a replay's system is the real recommender; drop --system or --replay".into(),
        ));
    }
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
        .map_err(|e| Error::Config(format!("user sampling: {e}")))?;
    sampling
        .assistant
        .validate()
        .map_err(|e| Error::Config(format!("assistant sampling: {e}")))?;
    let replay = cfg.replay.as_deref().map(load_replay).transpose()?;
    let pool = load_pool(cfg, &scenario)?;
    if pool.is_some() {
        // The pool's text is part of every transcript prompt: a resume or a
        // merge must not mix runs on different corpora.
        scenario.hash = pool_hash(&scenario.hash, pool_paths(cfg, &scenario))?;
    }
    let (critic, best_of) = load_critic(cfg, &scenario)?;
    let intent_weight = scenario.critic.as_ref().map_or(0.0, |c| c.intent_weight);
    let intent_reader = load_intent_reader(
        cfg,
        &scenario,
        critic.as_ref(),
        best_of,
        pool.as_ref(),
        replay.as_ref(),
    )?;
    let genre_weight = scenario.critic.as_ref().map_or(0.0, |c| c.genre_weight);
    let genre_rates = match (&pool, &catalog, &critic) {
        (Some(pool), Some(catalog), Some(_)) if genre_weight > 0.0 && best_of > 1 => Some(
            pool_genre_rates(cfg, &scenario, pool, catalog, replay.as_ref()),
        ),
        _ => None,
    };
    if let Some(c) = &critic {
        // The critic chooses every seeker turn: a resume or a merge must
        // not mix runs chosen by different critics or at another N.
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(scenario.hash.as_bytes());
        h.update(format!("\0critic {} best_of {best_of}", c.sha256()).as_bytes());
        if intent_reader.is_some() {
            h.update(format!("\0intent_weight {}", intent_weight).as_bytes());
        }
        if genre_rates.is_some() {
            h.update(format!("\0genre_weight {}", genre_weight).as_bytes());
        }
        scenario.hash = hex::encode(h.finalize());
    }
    if cfg.backend == BackendKind::Llama {
        cfg.llama.check()?;
        if let Some(key) = cfg.llama.output_key() {
            // Packed batching, a quantised or unified cache and flash
            // attention each change the tokens: a resume or a merge must
            // not mix runs made with different ones.
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            h.update(scenario.hash.as_bytes());
            h.update(format!("\0engine {key}").as_bytes());
            scenario.hash = hex::encode(h.finalize());
        }
    }
    let prefix_candidates = match (&pool, scenario.user_prompt) {
        (Some(pool), PromptMode::Transcript) => {
            let spec = &scenario.transcript;
            let mut rng = stream_rng(cfg.seed, Stream::TranscriptPrefix);
            let drawn =
                pool.draw_dialogues(spec.dialogues + 1, spec.max_dialogue_words, None, &mut rng);
            if drawn.len() < spec.dialogues {
                return Err(Error::Config(format!(
                    "{}: transcript.dialogues: expected at most the {} pool dialogues of at most {} words and 4 turns",
                    scenario.dir.join("scenario.toml").display(),
                    drawn.len(),
                    spec.max_dialogue_words
                )));
            }
            drawn
        }
        _ => Vec::new(),
    };
    let assistant_prefix = match (&pool, scenario.assistant_prompt) {
        (Some(pool), PromptMode::Transcript) => {
            let shown: Vec<_> = prefix_candidates
                .iter()
                .take(scenario.transcript.dialogues)
                .map(|&i| pool.dialogue(i))
                .collect();
            Some(assistant_transcript_prefix(&scenario, &shown))
        }
        _ => None,
    };
    Ok(Prepared {
        assistant_prefix,
        scenario,
        pins,
        catalog,
        sampling,
        replay,
        pool,
        prefix_candidates,
        critic: critic.map(|c| Box::new(c) as Box<dyn TurnScorer + Send + Sync>),
        intent_reader: intent_reader.map(|r| Box::new(r) as Box<dyn IntentReader + Send + Sync>),
        intent_weight,
        genre_rates,
        genre_weight,
        best_of,
        system,
        catalog_name,
    })
}

/// The run's critic and candidates per seeker turn: flags over the
/// scenario's `[critic]`; more than one candidate needs a critic.
fn load_critic(cfg: &SimulateConfig, scenario: &Scenario) -> Result<(Option<Critic>, u32), Error> {
    let spec = scenario.critic.as_ref();
    let best_of = cfg
        .best_of
        .or(spec.map(|s| s.best_of))
        .unwrap_or(crate::scenario::DEFAULT_BEST_OF);
    if !(1..=MAX_BEST_OF).contains(&best_of) {
        return Err(Error::Config(format!(
            "--best-of: expected a number from 1 to {MAX_BEST_OF} (got {best_of})"
        )));
    }
    // The scenario's critic chooses only when there is a choice: at
    // best-of 1 (`--best-of 1` over a scenario that ships one) the run is
    // the plain one, same hash, same file. A `--critic` flag always loads
    // (its scores of the kept turns still go to the summary).
    let path = cfg
        .critic
        .clone()
        .or_else(|| spec.filter(|_| best_of > 1).and_then(|s| s.file.clone()));
    let Some(path) = path else {
        if best_of > 1 {
            return Err(Error::Config(format!(
                "--best-of {best_of}: expected a critic to choose with (--critic FILE, or `file` in {}'s [critic])",
                scenario.dir.join("scenario.toml").display()
            )));
        }
        return Ok((None, best_of));
    };
    Ok((Some(Critic::load(&path)?), best_of))
}

/// The intent reader of `[critic] intent_weight`, when the run chooses
/// among candidates: fitted on the pool's labelled seeker turns, without
/// the dialogues this run replays (every session's, whatever the shard, so
/// the shards of one run read alike).
fn load_intent_reader(
    cfg: &SimulateConfig,
    scenario: &Scenario,
    critic: Option<&Critic>,
    best_of: u32,
    pool: Option<&Pool>,
    replay: Option<&Replay>,
) -> Result<Option<PoolIntentReader>, Error> {
    let wanted = scenario
        .critic
        .as_ref()
        .is_some_and(|c| c.intent_weight > 0.0);
    let (true, Some(_), true, Some(pool)) = (wanted, critic, best_of > 1, pool) else {
        return Ok(None);
    };
    let Some(intent) = scenario.turn.iter().find(|t| t.name == "intent") else {
        return Ok(None);
    };
    let excluded = replayed(cfg, replay);
    let reader = PoolIntentReader::fit(pool, &intent.values, &excluded).map_err(|e| {
        Error::Config(format!(
            "{}: critic.intent_weight: cannot fit the intent reader on the pool: {e}",
            scenario.dir.join("scenario.toml").display()
        ))
    })?;
    if reader.is_none() {
        return Err(Error::Config(format!(
            "{}: critic.intent_weight: expected pool seeker turns labelled with the intent's values (IARD's)",
            scenario.dir.join("scenario.toml").display()
        )));
    }
    Ok(reader)
}

/// The dialogues this run replays (every session's, whatever the shard, so
/// the shards of one run read the pool alike): what a pool-fitted choice
/// factor must not learn from.
fn replayed<'a>(
    cfg: &SimulateConfig,
    replay: Option<&'a Replay>,
) -> HashSet<(CorpusKind, &'a str)> {
    replay
        .map(|r| {
            let n = usize::try_from(cfg.sessions).unwrap_or(usize::MAX);
            r.scripts
                .iter()
                .take(n)
                .map(|s| (s.source.corpus, s.source.dialogue_id.as_str()))
                .collect()
        })
        .unwrap_or_default()
}

/// `[critic] genre_weight`'s rates: every pool seeker turn not replayed by
/// this run, by its labels among the `intent` variable's values (a turn
/// with none counts only in the pooled rate), naming a genre when the
/// catalog finds one of its genres in it.
fn pool_genre_rates(
    cfg: &SimulateConfig,
    scenario: &Scenario,
    pool: &Pool,
    catalog: &Catalog,
    replay: Option<&Replay>,
) -> GenreRates {
    let excluded = replayed(cfg, replay);
    let intents: &[String] = scenario
        .turn
        .iter()
        .find(|t| t.name == "intent")
        .map_or(&[], |t| t.values.as_slice());
    let mut rates = GenreRates::default();
    for (t, labels) in pool.labelled_seeker_turns(intents, &excluded) {
        rates.count(&labels, !catalog.genres_in(&t.text).is_empty());
    }
    rates
}

fn pool_paths<'a>(cfg: &'a SimulateConfig, scenario: &'a Scenario) -> &'a [PathBuf] {
    match &scenario.pool {
        Some(spec) if cfg.pool.is_empty() => &spec.corpora,
        _ => &cfg.pool,
    }
}

/// sha256 over the scenario's hash and every pool corpus file.
fn pool_hash(scenario_hash: &str, paths: &[PathBuf]) -> Result<String, Error> {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(scenario_hash.as_bytes());
    for p in paths {
        let bytes = std::fs::read(p).map_err(|e| {
            Error::Config(format!("{}: cannot read the pool corpus: {e}", p.display()))
        })?;
        h.update(b"\0");
        h.update(&bytes);
    }
    Ok(hex::encode(h.finalize()))
}

/// The scenario's pool, from `--pool` when given: a corpus that cannot be
/// read is named with the field (or flag) that gave it.
fn load_pool(cfg: &SimulateConfig, scenario: &Scenario) -> Result<Option<Pool>, Error> {
    let Some(spec) = &scenario.pool else {
        if cfg.pool.is_empty() {
            return Ok(None);
        }
        return Err(Error::Config(format!(
            "--pool: the scenario {} has no [pool] to replace",
            scenario.name
        )));
    };
    let (paths, field) = if cfg.pool.is_empty() {
        (&spec.corpora, "pool.corpora")
    } else {
        (&cfg.pool, "--pool")
    };
    let mut pool = Pool::default();
    for (i, path) in paths.iter().enumerate() {
        let (kind, dialogues) = load_dialogues(path).map_err(|e| {
            let origin = if cfg.pool.is_empty() {
                format!(
                    "{}: {field}[{i}]",
                    scenario.dir.join("scenario.toml").display()
                )
            } else {
                field.to_string()
            };
            Error::Config(format!(
                "{origin}: expected a readable IARD .json or INSPIRED .tsv corpus ({e}); give one with --pool PATH"
            ))
        })?;
        pool.extend(kind, dialogues);
    }
    Ok(Some(pool))
}

/// The sessions this run (or shard) is responsible for, in order.
pub fn planned_sessions(cfg: &SimulateConfig) -> Result<Vec<u64>, Error> {
    shard_of(cfg.sessions, cfg.shard)
}

/// [`planned_sessions`] once the inputs are loaded: a replay has no more
/// sessions than its corpus has dialogues.
pub fn prepared_sessions(cfg: &SimulateConfig, prep: &Prepared) -> Result<Vec<u64>, Error> {
    let total = match &prep.replay {
        Some(r) => cfg.sessions.min(r.scripts.len() as u64),
        None => cfg.sessions,
    };
    shard_of(total, cfg.shard)
}

pub(crate) fn shard_of(total: u64, shard: Option<(u64, u64)>) -> Result<Vec<u64>, Error> {
    match shard {
        None => Ok((0..total).collect()),
        Some((i, n)) => {
            if n == 0 || i >= n {
                return Err(Error::Config(format!(
                    "--shard {i}/{n}: expected i/n with 0 <= i < n"
                )));
            }
            Ok((0..total).filter(|s| s % n == i).collect())
        }
    }
}

/// Rough upper bound of the tokens one side's sequence needs, checked
/// against the context before anything is generated. Each side's per-turn
/// note stays in its history (append-only prompts), so it counts every turn.
pub(crate) fn check_context(
    prep: &Prepared,
    backend: &dyn Backend,
    (first_user, user_note): (&Prompt, &str),
    (first_assistant, assistant_note): (&Prompt, &str),
) -> Result<(), Error> {
    let turns = prep.scenario.conversation.max_user_turns as usize;
    let empty =
        backend.count_prompt_tokens(&Prompt::Chat(vec![ChatMessage::new(ChatRole::User, "")]))?;
    let note_tokens = |note: &str| -> Result<usize, Error> {
        if note.is_empty() {
            return Ok(0);
        }
        let n = backend
            .count_prompt_tokens(&Prompt::Chat(vec![ChatMessage::new(ChatRole::User, note)]))?;
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
        return Err(Error::Config(format!(
            "context too small for the requested turns: {turns} user turns of up to {} + {} tokens (with each turn's instructions) need about {need} tokens per sequence, the context holds {have} (raise --context, or lower --max-turns or --max-tokens)",
            prep.sampling.user.max_tokens, prep.sampling.assistant.max_tokens
        )));
    }
    Ok(())
}

/// The engine of `--system llm`: an OpenAI-compatible server
/// (`base_url`) or a second local model (`model`, a llama.cpp context of
/// its own with the run's engine options).
pub fn open_system_backend(
    cfg: &SimulateConfig,
    spec: &SystemSpec,
) -> Result<Box<dyn Backend>, Error> {
    if let Some(url) = &spec.base_url {
        let oa = OpenAiConfig {
            base_urls: vec![url.clone()],
            model: spec.api_model.clone(),
            concurrency: spec.concurrency,
            timeout_secs: spec.timeout_secs,
            max_retries: spec.max_retries,
            backoff_secs: spec.backoff_secs,
            ..OpenAiConfig::default()
        };
        return Ok(Box::new(OpenAiBackend::new(&oa)?));
    }
    let choice = ModelChoice::from_arg(spec.model.as_deref());
    let model = resolve_model(&choice, cfg.registry.as_deref(), cfg.progress)?;
    let mut llama = cfg.llama.clone();
    llama.chat_template = model.chat_template.clone();
    Ok(Box::new(LlamaEngine::new(
        &model.path,
        &model.name,
        &model.sha256,
        cfg.parallel.max(1),
        &llama,
    )?))
}

/// The engine a run generates with: an OpenAI-compatible server, or
/// llama.cpp on the resolved model with room for `parallel` conversations
/// (and the extra sequences of best-of-N candidates).
pub fn open_backend(
    cfg: &SimulateConfig,
    prep: &Prepared,
    parallel: usize,
) -> Result<Box<dyn Backend>, Error> {
    if cfg.backend == BackendKind::Openai {
        return Ok(Box::new(OpenAiBackend::new(&cfg.openai)?));
    }
    let model = resolve_model(&cfg.model, cfg.registry.as_deref(), cfg.progress)?;
    let mut llama = cfg.llama.clone();
    if llama.chat_template.is_none() {
        llama.chat_template = model.chat_template.clone();
    }
    llama.forks_per_conversation = prep.best_of - 1;
    Ok(Box::new(LlamaEngine::new(
        &model.path,
        &model.name,
        &model.sha256,
        parallel.max(1),
        &llama,
    )?))
}
