//! `simulate`: the main job. Draws sessions, runs every live conversation
//! through one backend batch, hands finished records to a sink.
//!
//! Continuous batching: up to `parallel` conversations are live; when one
//! ends its slots go to the next session at once, and a conversation waiting
//! for the other side's reply never holds the batch back, because both
//! sides' requests decode in the same steps.
//!
//! The system under test ([`crate::session::system`]) either decodes in the
//! same batch (the built-in recommender) or answers later (an `http` or
//! `stdio` system, or the recommender on an engine of its own): then the
//! conversation waits ([`Next::Wait`]) while the others go on, and the loop
//! collects the system's answers between engine steps, blocking on the
//! system only when the engine has nothing in flight. A system's answers
//! are matched to conversations, not to arrival order, and records are
//! written in session order, so the file is the same whatever the timing.
//!
//! With `replay` set, sessions are the real dialogues of a corpus (see
//! [`crate::session::replay`]): the real recommender answers, each user turn
//! is written from the real history, and a session ends with its dialogue.
//!
//! The parts: [`config`] (what to run), [`prepare`] (checks and loading
//! before the first token), [`run_sessions`] (the scheduler loop, any
//! backend, any [`RecordSink`]), [`resume`] and [`summary`].

pub mod config;
pub mod prepare;
mod resume;
pub mod summary;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{Backend, Prompt};
use crate::chat::Side;
use crate::error::Error;
use crate::latent::{draw_session, TurnPlanner};
use crate::output::{OutputFormat, OutputWriter, RecordSink};
use crate::prompt::{assistant_messages, assistant_transcript, HistoryTurn};
use crate::rng::{session_seed, stream_rng, Stream};
use crate::scenario::catalog::CatalogItem;
use crate::scenario::system::SystemKind;
use crate::session::conversation::{Conversation, Next};
use crate::session::external::http::HttpSystem;
use crate::session::external::stdio::StdioSystem;
use crate::session::external::{BackendSystem, RequestContext};
use crate::session::record::{EndReason, ModelRef, RunIdentity, ScenarioRef};
use crate::session::replay::{session_pins, ReplaySystem};
use crate::session::system::{LlmRecommender, System};

pub use config::{
    BackendKind, ModelChoice, SamplingOverrides, SimulateConfig, DEFAULT_PARALLEL, DEFAULT_SEED,
    DEFAULT_SESSIONS,
};
pub use prepare::{
    open_backend, open_system_backend, planned_sessions, prepare, prepared_sessions, resolve_model,
    Prepared, ResolvedModel,
};
pub use summary::{stats_path, RunSummary};

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

/// Run a simulation: check and load everything, open the engine, resume if
/// asked, run the sessions into the output file, write the stats sidecar.
pub fn simulate(
    cfg: &SimulateConfig,
    progress: &dyn Progress,
    interrupt: Arc<AtomicBool>,
) -> Result<RunSummary, Error> {
    let prep = prepare(cfg)?;
    let sessions = prepared_sessions(cfg, &prep)?;
    let mut backend = open_backend(cfg, &prep, cfg.parallel.min(sessions.len()))?;
    simulate_with_backend(cfg, &prep, backend.as_mut(), &sessions, progress, interrupt)
}

/// [`simulate`] on a backend the caller opened (tests pass the scripted
/// one; bench passes its own engines).
pub fn simulate_with_backend(
    cfg: &SimulateConfig,
    prep: &Prepared,
    backend: &mut dyn Backend,
    sessions: &[u64],
    progress: &dyn Progress,
    interrupt: Arc<AtomicBool>,
) -> Result<RunSummary, Error> {
    let run = run_identity(cfg, prep, backend);
    let to_file = cfg.output != Path::new("-");
    let (sessions, mut writer) = if cfg.resume {
        let remaining = resume::remaining_sessions(
            &cfg.output,
            &run,
            prep.replay.as_ref(),
            sessions,
            prep.scenario.conversation.target.as_deref(),
        )?;
        let writer = OutputWriter::append(&cfg.output, cfg.format, remaining.clone())?;
        (remaining, writer)
    } else {
        let writer = OutputWriter::new(&cfg.output, cfg.force, cfg.format, sessions.to_vec())?;
        (sessions.to_vec(), writer)
    };
    let summary = run_sessions(
        cfg,
        prep,
        backend,
        &sessions,
        &mut writer,
        progress,
        interrupt,
    )?;
    if cfg.resume && !summary.interrupted && cfg.format == OutputFormat::Jsonl && to_file {
        resume::restore_order(&cfg.output)?;
    }
    if to_file && writer.written() > 0 {
        summary::write_stats(&cfg.output, cfg, &summary)?;
    }
    Ok(summary)
}

/// The run facts every record carries.
fn run_identity(cfg: &SimulateConfig, prep: &Prepared, backend: &dyn Backend) -> RunIdentity {
    RunIdentity {
        run_seed: cfg.seed,
        scenario: ScenarioRef {
            name: prep.scenario.name.clone(),
            hash: prep.scenario.hash.clone(),
        },
        model: ModelRef {
            name: backend.info().model.clone(),
            sha256: backend.info().model_sha256.clone(),
        },
        sampling: prep.sampling.clone(),
    }
}

/// Session `index`'s conversation, its latents drawn from its own stream,
/// and the first thing it needs: `system`'s opening when the session draws
/// one, else its user's first turn (always, without a system: the warm-up
/// only looks at the user's prompts).
fn start_session<'a>(
    cfg: &SimulateConfig,
    prep: &'a Prepared,
    index: u64,
    system: Option<&mut dyn System>,
) -> Result<(Conversation<'a>, Next), Error> {
    let scenario = &prep.scenario;
    let catalog = prep.catalog.as_ref();
    let seed = session_seed(cfg.seed, index);
    let mut rng = stream_rng(seed, Stream::SessionLatents);
    let script = match &prep.replay {
        Some(r) => Some(
            usize::try_from(index)
                .ok()
                .and_then(|i| r.scripts.get(i))
                .ok_or_else(|| {
                    Error::Internal(format!(
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
    let planner = TurnPlanner::new(scenario, &prep.pins).for_session(&latents);
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
    if let Some(pool) = &prep.pool {
        conv = conv.with_pool(pool, &prep.prefix_candidates)?;
    }
    if let Some(critic) = prep.critic.as_deref() {
        conv = conv.with_critic(critic, prep.best_of);
    }
    if let Some(reader) = prep.intent_reader.as_deref() {
        conv = conv.with_intent_reader(reader, prep.intent_weight);
    }
    if let Some(rates) = &prep.genre_rates {
        conv = conv.with_genre_rates(rates, prep.genre_weight);
    }
    let next = match system {
        Some(system) => conv.start(system)?,
        None => conv.user_turn()?,
    };
    Ok((conv, next))
}

/// Before the first token: check the context holds the requested turns and
/// compute each side's shared prompt prefix once, on the first sessions'
/// real prompts. Returns the shared prefix lengths (user, assistant).
fn warm_up(
    cfg: &SimulateConfig,
    prep: &Prepared,
    backend: &mut dyn Backend,
    sessions: &[u64],
) -> Result<[usize; 2], Error> {
    let scenario = &prep.scenario;
    let mut examples_user = Vec::new();
    let mut user_note = String::new();
    for &i in sessions.iter().take(2) {
        let (_, next) = start_session(cfg, prep, i, None)?;
        if let Next::Generate(req) = next {
            if user_note.is_empty() {
                user_note = req.note;
            }
            examples_user.push(req.prompt);
        }
    }
    let asst_example = |text: &str| -> Result<(Prompt, String), Error> {
        let mut h: Vec<HistoryTurn<'_>> = scenario
            .conversation
            .opening
            .iter()
            .map(|t| HistoryTurn {
                side: Side::Assistant,
                text: t,
                note: None,
                tag: None,
            })
            .collect();
        h.push(HistoryTurn {
            side: Side::User,
            text,
            note: None,
            tag: None,
        });
        if let Some(prefix) = &prep.assistant_prefix {
            let text = assistant_transcript(scenario, prefix, &h, &[], &|_| Vec::new());
            return Ok((Prompt::Text(text), String::new()));
        }
        let cands: Vec<&CatalogItem> = prep
            .catalog
            .as_ref()
            .map(|c| c.items().iter().take(cfg.candidates).collect())
            .unwrap_or_default();
        let (messages, note) = assistant_messages(scenario, &h, &cands, 0)?;
        Ok((Prompt::Chat(messages), note))
    };
    let (first_asst, asst_note) = asst_example("Hi there.")?;
    let asst_examples = vec![first_asst, asst_example("Hello!")?.0];
    // A replay's length is the real dialogue's, and its replies cost no
    // tokens: there is no turn budget to check. A dialogue that outgrows the
    // context ends as `context_full`, as any conversation does.
    if let Some(first) = examples_user.first().filter(|_| prep.replay.is_none()) {
        prepare::check_context(
            prep,
            backend,
            (first, &user_note),
            (&asst_examples[0], &asst_note),
        )?;
    }
    let user = backend.prepare_shared_prefix(&examples_user)?;
    // A replay never generates the assistant side, nor does a system
    // under test that answers on its own.
    let assistant = if prep.replay.is_none() && prep.system.kind == SystemKind::Builtin {
        backend.prepare_shared_prefix(&asst_examples)?
    } else {
        0
    };
    Ok([user, assistant])
}

/// Longest wait for a system's answer before the loop looks at Ctrl-C again.
const SYSTEM_WAIT: Duration = Duration::from_millis(200);

/// The system the run's users talk to: the real recommender of a replay,
/// else the scenario's `[system]` with the flags applied.
fn open_system<'a>(
    cfg: &SimulateConfig,
    prep: &'a Prepared,
) -> Result<Box<dyn System + 'a>, Error> {
    if let Some(r) = &prep.replay {
        return Ok(Box::new(ReplaySystem::new(r)));
    }
    let recommender = || {
        let r = LlmRecommender::new(
            &prep.scenario,
            prep.catalog.as_ref(),
            prep.sampling.assistant.clone(),
            cfg.candidates,
        );
        match &prep.assistant_prefix {
            Some(prefix) => r.with_transcript(prefix.clone()),
            None => r,
        }
    };
    let ctx = RequestContext {
        scenario: prep.scenario.name.clone(),
        run_seed: cfg.seed,
        catalog: prep.catalog_name.clone(),
        sees_latents: prep.system.sees_latents,
    };
    Ok(match prep.system.kind {
        SystemKind::Builtin => Box::new(recommender()),
        SystemKind::Http => Box::new(HttpSystem::new(&prep.system, ctx)?),
        SystemKind::Stdio => Box::new(StdioSystem::new(&prep.system, ctx)?),
        SystemKind::Llm => Box::new(BackendSystem::new(
            recommender(),
            open_system_backend(cfg, &prep.system)?,
        )),
    })
}

/// One live conversation: its state, when it started, whether its first
/// user token came back yet.
struct Live<'a> {
    conversation: Conversation<'a>,
    started: Instant,
    first_turn_seen: bool,
}

/// Run `sessions` through any backend into any sink: the scheduler loop.
/// Whatever stops the loop (the end, an error, an interrupt), every
/// conversation that finished reaches the sink.
pub fn run_sessions(
    cfg: &SimulateConfig,
    prep: &Prepared,
    backend: &mut dyn Backend,
    sessions: &[u64],
    sink: &mut dyn RecordSink,
    progress: &dyn Progress,
    interrupt: Arc<AtomicBool>,
) -> Result<RunSummary, Error> {
    let run = run_identity(cfg, prep, backend);
    let mut system = open_system(cfg, prep)?;
    let mut summary = RunSummary {
        parallel: cfg.parallel.min(sessions.len()),
        shared_prefix_tokens: warm_up(cfg, prep, backend, sessions)?,
        ..RunSummary::default()
    };
    progress.started(sessions.len() as u64);
    let t0 = Instant::now();
    let mut live: HashMap<u64, Live<'_>> = HashMap::new();
    let mut queue = sessions.iter().copied();
    let mut ttft_sum = 0.0;
    let mut ttft_n = 0u64;
    let mut finished: Vec<(u64, EndReason)> = Vec::new();
    let capacity = backend.max_conversations().min(cfg.parallel).max(1);

    let result: Result<(), Error> = (|| {
        loop {
            if interrupt.load(Ordering::SeqCst) {
                summary.interrupted = true;
                break;
            }
            // Finished conversations leave first, so their slots refill this step.
            loop {
                for (index, end) in finished.drain(..) {
                    if let Some(l) = live.remove(&index) {
                        backend.release(index);
                        system.release(index);
                        summary.account_guard(l.conversation.guard_counts());
                        summary.critic.add(l.conversation.critic_counts());
                        let record = l.conversation.into_record(&run, system.name(), end);
                        summary.account(&record);
                        sink.push(&record)?;
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
                    let (conversation, next) =
                        start_session(cfg, prep, index, Some(system.as_mut()))?;
                    let done = match next {
                        Next::Generate(req) => {
                            backend.submit(req)?;
                            false
                        }
                        Next::Done(end) => {
                            finished.push((index, end));
                            true
                        }
                        // The system opens on an engine of its own.
                        Next::Wait => false,
                    };
                    let started = Instant::now();
                    live.insert(
                        index,
                        Live {
                            conversation,
                            started,
                            first_turn_seen: done,
                        },
                    );
                }
                if finished.is_empty() {
                    break;
                }
            }
            if live.is_empty() {
                break;
            }
            // With only the system's answers outstanding, the engine has
            // nothing to step: wait on the system instead.
            if backend.in_flight() > 0 || system.pending() == 0 {
                for g in backend.step()? {
                    let index = g.conversation;
                    let Some(l) = live.get_mut(&index) else {
                        continue;
                    };
                    if g.side == Side::User && !l.first_turn_seen {
                        l.first_turn_seen = true;
                        ttft_sum += l.started.elapsed().as_secs_f64();
                        ttft_n += 1;
                    }
                    match l.conversation.on_generation(g, system.as_mut())? {
                        Next::Generate(req) => backend.submit(req)?,
                        Next::Done(end) => finished.push((index, end)),
                        Next::Wait => {}
                    }
                }
            }
            if system.pending() > 0 {
                let wait = if backend.in_flight() == 0 {
                    SYSTEM_WAIT
                } else {
                    Duration::ZERO
                };
                for (index, reply) in system.poll(wait)? {
                    let Some(l) = live.get_mut(&index) else {
                        continue;
                    };
                    match l.conversation.on_system_reply(reply)? {
                        Next::Generate(req) => backend.submit(req)?,
                        Next::Done(end) => finished.push((index, end)),
                        Next::Wait => {}
                    }
                }
            }
        }
        Ok(())
    })();

    // Whatever happened, finished conversations reach the disk.
    let flushed = sink.finish();
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
    Ok(summary)
}
