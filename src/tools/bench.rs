//! `bench`: throughput of the real simulate loop held against llama.cpp's
//! own decode ceiling on the same model, context shape and threads,
//! measured in the same run so machine noise hits both alike.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use std::path::PathBuf;

use serde::Serialize;

use crate::backend::llama::{
    raw_decode_bench, Batching, KvLayout, KvType, MAX_SEQUENCES, PREFIX_SEQUENCES,
};
use crate::backend::openai::OpenAiConfig;
use crate::error::Error;
use crate::output::MemorySink;
use crate::run::{
    open_backend, prepare, resolve_model, run_sessions, NoProgress, Prepared, RunSummary,
    SimulateConfig,
};
use crate::tools::llama_server::{LlamaServer, LlamaServerConfig};

/// Options of `bench`.
#[derive(Clone, Debug, Serialize)]
pub struct BenchConfig {
    /// Parallel-session counts to measure (run in ascending order).
    pub parallel: Vec<usize>,
    /// Conversations per slot in the real loop (sessions = this × parallel),
    /// so slots are refilled many times, as in a long run.
    pub sessions_per_slot: u64,
    /// Decode steps of the raw ceiling.
    pub raw_steps: usize,
    /// Prompt tokens per sequence of the raw ceiling.
    pub raw_prompt_tokens: usize,
    /// The simulate configuration to run (model, scenario, threads, …);
    /// `sessions`, `parallel` and `output` are set per row.
    pub simulate: SimulateConfig,
    /// Candidates per seeker turn: every parallel count runs at each (more
    /// than 1 needs `simulate.critic`, or a scenario `[critic] file`);
    /// empty: the scenario's `[critic] best_of`, as `simulate` runs it.
    pub best_of: Vec<u32>,
    /// A `llama-server` binary: each row also runs the same sessions through
    /// the openai backend against it (started with `-np` = the row's
    /// sessions, same model, context and threads), what users run today.
    pub llama_server: Option<PathBuf>,
    /// Batching modes: every row runs at each (empty: the build's default).
    pub batching: Vec<Batching>,
    /// KV cache element types: every row runs at each (empty: f16). `q8_0`
    /// needs `simulate.llama.flash_attention`.
    pub kv_types: Vec<KvType>,
    /// KV layouts: every row runs at each (empty: split). Unified rows run
    /// packed batching only (the engine refuses unified with invariant).
    pub kv_layouts: Vec<KvLayout>,
    /// KV cache memory the `conversations_in_kv_memory` column divides by
    /// each row's KV bytes per conversation (model weights not counted).
    pub kv_memory_bytes: u64,
}

/// Default memory of the "fit" column, GiB: a 24 GB GPU.
pub const DEFAULT_KV_MEMORY_GIB: f64 = 24.0;

/// Default parallel-session counts (28 is the most that fits at the
/// `movies` default of best-of 8).
pub const DEFAULT_BENCH_PARALLEL: [usize; 4] = [1, 4, 16, 28];

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            parallel: DEFAULT_BENCH_PARALLEL.to_vec(),
            sessions_per_slot: 3,
            raw_steps: 64,
            raw_prompt_tokens: 128,
            simulate: SimulateConfig::default(),
            best_of: Vec::new(),
            llama_server: None,
            batching: Vec::new(),
            kv_types: Vec::new(),
            kv_layouts: Vec::new(),
            kv_memory_bytes: (DEFAULT_KV_MEMORY_GIB * (1u64 << 30) as f64) as u64,
        }
    }
}

/// One row of the bench table.
#[derive(Clone, Debug, Serialize)]
pub struct BenchRow {
    /// Sessions in flight.
    pub parallel: usize,
    /// Candidates decoded per seeker turn (best-of-N).
    pub best_of: u32,
    /// How steps reached llama.cpp.
    pub batching: Batching,
    /// KV cache element type.
    pub kv_type: KvType,
    /// KV layout.
    pub kv_layout: KvLayout,
    /// Real loop: every generated token per second, the candidates a
    /// best-of-N turn discards included (`decode_tokens_per_second` counts
    /// the kept text only).
    pub candidate_tokens_per_second: f64,
    /// Raw llama.cpp: prompt tokens per second.
    pub raw_prompt_tokens_per_second: f64,
    /// Raw llama.cpp: decode tokens per second (aggregate).
    pub raw_decode_tokens_per_second: f64,
    /// Real loop: conversations simulated.
    pub conversations: u64,
    /// Real loop: generated tokens per second over the whole run.
    pub decode_tokens_per_second: f64,
    /// Real loop: per session.
    pub decode_tokens_per_second_per_session: f64,
    /// Real loop: prompt tokens computed per second of engine time.
    pub prompt_tokens_per_second: f64,
    /// Real loop: mean seconds from a conversation's start to its first user turn.
    pub time_to_first_turn: f64,
    /// Real loop: conversations per minute.
    pub conversations_per_minute: f64,
    /// Prompt tokens not computed thanks to cache reuse (own history and
    /// shared prefixes).
    pub prompt_tokens_reused: u64,
    /// Of those, copied from the shared prefixes.
    pub prompt_tokens_from_shared_prefix: u64,
    /// KV cache bytes a conversation needs: with the split layout its
    /// sequences' reserved streams (`--context` each); with the unified
    /// pool the most the conversations held at once ÷ parallel (an upper
    /// bound: shared prefixes count in every sequence).
    pub kv_bytes_per_session: u64,
    /// Conversations whose KV cache fits in the configured memory
    /// (`kv_memory_bytes` ÷ `kv_bytes_per_session`; weights and compute
    /// buffers not counted). A unified row assumes `--kv-pool` sized to
    /// that use.
    pub conversations_in_kv_memory: u64,
    /// Peak resident memory of the process so far (bytes).
    pub peak_rss_bytes: u64,
    /// Real decode tokens/s ÷ raw decode tokens/s.
    pub ratio: f64,
    /// Real loop: prompt tokens computed per generated token. Each turn
    /// makes the other side read a message, so this is well above 1, and
    /// `ratio` cannot approach 1 while prefill costs as much as decode.
    pub prompt_tokens_per_generated_token: f64,
    /// Real loop: generated tokens per second inside its decode-only calls
    /// (the batch's occupancy and context length, without prefill).
    pub generation_call_tokens_per_second: f64,
    /// The time raw llama.cpp needs for the same work (the run's computed
    /// prompt tokens at the raw prompt rate plus its generated tokens at the
    /// raw decode rate) ÷ the run's time: the loop's efficiency, 1 = no
    /// overhead beyond llama.cpp's own speed.
    pub work_ratio: f64,
    /// Real loop: mean context depth its decode calls attended over (the
    /// deepest sequence of each call, token-weighted).
    pub loop_decode_depth: f64,
    /// Raw llama.cpp: decode tokens/s with every sequence at the loop's mean
    /// depth (the raw ceiling above holds `raw_prompt_tokens`).
    pub raw_decode_tokens_per_second_at_loop_depth: f64,
    /// Real loop tokens/s inside decode calls ÷ the depth-matched raw decode
    /// rate: what its decode calls lose against raw ones (fewer sequences
    /// than slots, depths spread within a call).
    pub generation_call_ratio_at_loop_depth: f64,
    /// `work_ratio` with the decode half priced at the depth-matched raw
    /// rate: the loop's own overhead (scheduling, sampling, idle slots),
    /// 1 = none.
    pub depth_matched_work_ratio: f64,
    /// Raw decode tokens/s ÷ the first row's (the smallest parallel count
    /// measured): what batching gains llama.cpp itself on this machine.
    pub raw_decode_speedup: f64,
    /// Real loop tokens/s ÷ the first row's: what batching gains the loop.
    pub decode_speedup: f64,
    /// The same sessions through llama-server (`--llama-server`).
    pub server: Option<ServerRow>,
}

/// The openai backend against a local llama-server, same sessions.
#[derive(Clone, Debug, Serialize)]
pub struct ServerRow {
    /// Conversations simulated.
    pub conversations: u64,
    /// Generated tokens per second over the whole run.
    pub decode_tokens_per_second: f64,
    /// Conversations per minute.
    pub conversations_per_minute: f64,
    /// In-process generated tokens/s ÷ this.
    pub in_process_over_server: f64,
}

/// Peak resident set size of this process (Linux), 0 elsewhere.
pub fn peak_rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Run the bench; `on_row` sees each row as it is measured.
pub fn bench(cfg: &BenchConfig, mut on_row: impl FnMut(&BenchRow)) -> Result<Vec<BenchRow>, Error> {
    // One preparation per best-of: the critic and the engine's forks
    // differ, all else is the same.
    // None: the scenario's own (its `[critic]`), as `simulate` would run.
    let best_of: Vec<Option<u32>> = if cfg.best_of.is_empty() {
        vec![cfg.simulate.best_of]
    } else {
        cfg.best_of.iter().map(|&b| Some(b)).collect()
    };
    let preps = best_of
        .iter()
        .map(|&b| {
            let mut sim = cfg.simulate.clone();
            sim.best_of = b;
            prepare(&sim).map(|p| (p.best_of, sim, p))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let model = resolve_model(
        &cfg.simulate.model,
        cfg.simulate.registry.as_deref(),
        cfg.simulate.progress,
    )?;
    let mut rows: Vec<BenchRow> = Vec::new();
    // Ascending, so the first row is the baseline the speedups divide by.
    let mut parallel = cfg.parallel.clone();
    parallel.sort_unstable();
    parallel.dedup();
    let batchings = if cfg.batching.is_empty() {
        vec![Batching::default()]
    } else {
        cfg.batching.clone()
    };
    let kv_types = if cfg.kv_types.is_empty() {
        vec![KvType::default()]
    } else {
        cfg.kv_types.clone()
    };
    let kv_layouts = if cfg.kv_layouts.is_empty() {
        vec![KvLayout::default()]
    } else {
        cfg.kv_layouts.clone()
    };
    // Every combination a row will run, checked before the first is
    // measured (q8_0 without flash attention fails here, not mid-bench).
    let mut engines = Vec::new();
    for &batching in &batchings {
        for &kv_type in &kv_types {
            for &kv_layout in &kv_layouts {
                if kv_layout == KvLayout::Unified && batching == Batching::Invariant {
                    continue;
                }
                let mut llama = cfg.simulate.llama.clone();
                llama.batching = batching;
                llama.kv_type = kv_type;
                llama.kv_layout = kv_layout;
                llama.check()?;
                engines.push(llama);
            }
        }
    }
    if engines.is_empty() {
        return Err(Error::Config(
            "--kv-layout unified: expected --batching packed among the modes (unified rows run packed only)".into(),
        ));
    }
    // Every row's KV sequences fit in one context, checked before the first
    // is measured (best-of 8 holds 9 sequences a conversation: 28 at most).
    for (b, _, _) in &preps {
        let per_conversation = 2 + (*b as usize).saturating_sub(1);
        let most = (MAX_SEQUENCES - PREFIX_SEQUENCES) / per_conversation;
        if let Some(p) = parallel.iter().find(|&&p| p > most) {
            return Err(Error::Config(format!(
                "--parallel {p}: expected at most {most} conversations at best-of {b} ({per_conversation} KV sequences each; llama.cpp allows {MAX_SEQUENCES}); pass smaller --parallel counts or --best-of 1"
            )));
        }
    }
    for &p in &parallel {
        for llama in &engines {
            let raw =
                raw_decode_bench(&model.path, p, cfg.raw_prompt_tokens, cfg.raw_steps, llama)?;
            for (b, sim, prep) in &preps {
                let mut sim = sim.clone();
                sim.llama = llama.clone();
                sim.parallel = p;
                sim.sessions = cfg.sessions_per_slot * p as u64;
                let sessions: Vec<u64> = (0..sim.sessions).collect();
                let s = measured_run(&sim, prep, &sessions)?;
                let row = measured_row(cfg, &model.path, &sim, prep, &sessions, *b, &raw, &s)?;
                let mut row = row;
                if let Some(first) = rows.first() {
                    row.raw_decode_speedup = row.raw_decode_tokens_per_second
                        / first.raw_decode_tokens_per_second.max(1e-9);
                    row.decode_speedup =
                        row.decode_tokens_per_second / first.decode_tokens_per_second.max(1e-9);
                }
                on_row(&row);
                rows.push(row);
            }
        }
    }
    Ok(rows)
}

/// One row from a measured run `s` of `sim` and the raw ceiling `raw` of
/// its engine options: the depth-matched ceiling and the llama-server run
/// (`--llama-server`) are measured here.
#[allow(clippy::too_many_arguments)]
fn measured_row(
    cfg: &BenchConfig,
    model: &std::path::Path,
    sim: &SimulateConfig,
    prep: &Prepared,
    sessions: &[u64],
    best_of: u32,
    raw: &crate::backend::llama::RawDecodeBench,
    s: &RunSummary,
) -> Result<BenchRow, Error> {
    let p = sim.parallel;
    // Every decode token's depth, packed calls (mixed with prompt chunks)
    // included.
    let depth = s.backend.decode_depth_token_sum as f64 / (s.backend.decode_tokens as f64).max(1.0);
    let raw_deep = raw_decode_bench(model, p, depth.round() as usize, cfg.raw_steps, &sim.llama)?;
    let server = match &cfg.llama_server {
        Some(binary) => {
            let st = server_run(binary, model, sim, prep, sessions)?;
            Some(ServerRow {
                conversations: st.conversations,
                decode_tokens_per_second: st.tokens_per_second,
                conversations_per_minute: st.conversations_per_minute,
                in_process_over_server: s.tokens_per_second / st.tokens_per_second.max(1e-9),
            })
        }
        None => None,
    };
    let b = &s.backend;
    let kv_bytes_per_session = match sim.llama.kv_layout {
        KvLayout::Split => b.kv_bytes_per_sequence * b.kv_sequences_per_conversation,
        KvLayout::Unified => b.peak_kv_tokens * b.kv_bytes_per_token / p.max(1) as u64,
    };
    Ok(BenchRow {
        parallel: p,
        best_of,
        batching: sim.llama.batching,
        kv_type: sim.llama.kv_type,
        kv_layout: sim.llama.kv_layout,
        candidate_tokens_per_second: b.tokens_generated as f64 / s.seconds.max(1e-9),
        raw_prompt_tokens_per_second: raw.prompt_tokens_per_second,
        raw_decode_tokens_per_second: raw.decode_tokens_per_second,
        conversations: s.conversations,
        decode_tokens_per_second: s.tokens_per_second,
        decode_tokens_per_second_per_session: s.tokens_per_second / p as f64,
        prompt_tokens_per_second: b.prompt_tokens_evaluated as f64 / s.seconds.max(1e-9),
        time_to_first_turn: s.mean_time_to_first_turn,
        conversations_per_minute: s.conversations_per_minute,
        prompt_tokens_reused: b.prompt_tokens_reused,
        prompt_tokens_from_shared_prefix: b.prompt_tokens_from_shared_prefix,
        kv_bytes_per_session,
        conversations_in_kv_memory: cfg.kv_memory_bytes / kv_bytes_per_session.max(1),
        peak_rss_bytes: peak_rss_bytes(),
        ratio: s.tokens_per_second / raw.decode_tokens_per_second.max(1e-9),
        prompt_tokens_per_generated_token: b.prompt_tokens_evaluated as f64
            / (s.tokens_generated as f64).max(1.0),
        generation_call_tokens_per_second: s.tokens_generated as f64
            / b.generation_call_seconds.max(1e-9),
        work_ratio: work_ratio(
            s,
            raw.prompt_tokens_per_second,
            raw.decode_tokens_per_second,
        ),
        loop_decode_depth: depth,
        raw_decode_tokens_per_second_at_loop_depth: raw_deep.decode_tokens_per_second,
        generation_call_ratio_at_loop_depth: b.generation_call_tokens as f64
            / b.generation_call_seconds.max(1e-9)
            / raw_deep.decode_tokens_per_second.max(1e-9),
        depth_matched_work_ratio: work_ratio(
            s,
            raw.prompt_tokens_per_second,
            raw_deep.decode_tokens_per_second,
        ),
        raw_decode_speedup: 1.0,
        decode_speedup: 1.0,
        server,
    })
}

/// The time raw llama.cpp needs for the run's computed prompt tokens and
/// generated tokens at the given rates ÷ the run's time.
fn work_ratio(s: &RunSummary, raw_prompt_rate: f64, raw_decode_rate: f64) -> f64 {
    // Every generated token is work, a discarded candidate's too.
    (s.backend.prompt_tokens_evaluated as f64 / raw_prompt_rate.max(1e-9)
        + s.backend.tokens_generated as f64 / raw_decode_rate.max(1e-9))
        / s.seconds.max(1e-9)
}

/// The row's sessions through the openai backend against a llama-server
/// started for it with one slot per session in flight.
fn server_run(
    binary: &std::path::Path,
    model: &std::path::Path,
    sim: &SimulateConfig,
    prep: &Prepared,
    sessions: &[u64],
) -> Result<RunSummary, Error> {
    let threads = match sim.llama.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get() as u32),
        t => t,
    };
    let server = LlamaServer::start(&LlamaServerConfig {
        binary: binary.to_path_buf(),
        model: model.to_path_buf(),
        slots: sim.parallel,
        context_per_slot: sim.llama.context_per_sequence,
        threads,
        port: 0,
        startup_timeout_secs: 120.0,
    })?;
    let mut cfg = sim.clone();
    cfg.backend = crate::run::BackendKind::Openai;
    cfg.openai = OpenAiConfig {
        base_urls: vec![server.url()],
        model: Some("bench".into()),
        concurrency: sim.parallel,
        context_per_sequence: sim.llama.context_per_sequence,
        ..OpenAiConfig::default()
    };
    let s = measured_run(&cfg, prep, sessions)?;
    drop(server);
    Ok(s)
}

/// The sessions through the configured backend, their records kept in
/// memory and dropped: a bench measures, it writes no conversations.
fn measured_run(
    sim: &SimulateConfig,
    prep: &Prepared,
    sessions: &[u64],
) -> Result<RunSummary, Error> {
    let mut backend = open_backend(sim, prep, sim.parallel)?;
    run_sessions(
        sim,
        prep,
        backend.as_mut(),
        sessions,
        &mut MemorySink::default(),
        &NoProgress,
        Arc::new(AtomicBool::new(false)),
    )
}

/// The table as text.
pub fn table(rows: &[BenchRow]) -> String {
    let mut s = String::from(
        "parallel  best-of  batching   kv    layout   candidate tok/s  raw prompt tok/s  raw decode tok/s  sim decode tok/s  per session  ratio  in decode calls  prompt/gen  work ratio  depth  raw@depth  calls/raw@depth  matched work  raw ×first  sim ×first  TTFT s  conv/min  reused prompt  KV MiB/session  fit in KV memory  peak RSS MiB\n",
    );
    for r in rows {
        s.push_str(&format!(
            "{:>8}  {:>7}  {:<9}  {:<4}  {:<7}  {:>15.1}  {:>16.1}  {:>16.1}  {:>16.1}  {:>11.1}  {:>5.2}  {:>15.1}  {:>10.2}  {:>10.2}  {:>5.0}  {:>9.1}  {:>15.2}  {:>12.2}  {:>10.2}  {:>10.2}  {:>6.2}  {:>8.1}  {:>13}  {:>14.1}  {:>16}  {:>12.0}\n",
            r.parallel,
            r.best_of,
            r.batching.to_string(),
            r.kv_type.to_string(),
            r.kv_layout.to_string(),
            r.candidate_tokens_per_second,
            r.raw_prompt_tokens_per_second,
            r.raw_decode_tokens_per_second,
            r.decode_tokens_per_second,
            r.decode_tokens_per_second_per_session,
            r.ratio,
            r.generation_call_tokens_per_second,
            r.prompt_tokens_per_generated_token,
            r.work_ratio,
            r.loop_decode_depth,
            r.raw_decode_tokens_per_second_at_loop_depth,
            r.generation_call_ratio_at_loop_depth,
            r.depth_matched_work_ratio,
            r.raw_decode_speedup,
            r.decode_speedup,
            r.time_to_first_turn,
            r.conversations_per_minute,
            r.prompt_tokens_reused,
            r.kv_bytes_per_session as f64 / (1024.0 * 1024.0),
            r.conversations_in_kv_memory,
            r.peak_rss_bytes as f64 / (1024.0 * 1024.0),
        ));
    }
    if rows.iter().any(|r| r.server.is_some()) {
        s.push_str("\nsame sessions through llama-server (openai backend, -np = parallel)\n");
        s.push_str("parallel  server decode tok/s  server conv/min  in-process decode tok/s  in-process conv/min  in-process / server\n");
        for r in rows {
            if let Some(v) = &r.server {
                s.push_str(&format!(
                    "{:>8}  {:>19.1}  {:>15.1}  {:>22.1}  {:>19.1}  {:>19.2}\n",
                    r.parallel,
                    v.decode_tokens_per_second,
                    v.conversations_per_minute,
                    r.decode_tokens_per_second,
                    r.conversations_per_minute,
                    v.in_process_over_server,
                ));
            }
        }
    }
    s
}
