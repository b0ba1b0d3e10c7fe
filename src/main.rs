//! The `usersim` command line: parses arguments into the library's config
//! structs and calls the library. Nothing else lives here.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;
use tracing_indicatif::IndicatifLayer;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use usersim::backend::llama::{
    LlamaConfig, DEFAULT_CONTEXT_PER_SEQUENCE, DEFAULT_STEP_TOKEN_BUDGET,
};
use usersim::backend::openai::{ApiEndpoint, OpenAiConfig};
use usersim::fit_intents::{self, FitIntentsConfig};
use usersim::models;
use usersim::output::OutputFormat;
use usersim::scenario::{default_prompts_dir, resolve_scenario_dir, DEFAULT_SCENARIO};
use usersim::simulate::{
    self, BackendKind, ModelChoice, Progress, RunSummary, SamplingOverrides, SimulateConfig,
    SimulateError, DEFAULT_PARALLEL, DEFAULT_SEED, DEFAULT_SESSIONS,
};
use usersim::system::DEFAULT_CANDIDATES;

/// Controllable LLM user simulators on local models.
#[derive(Parser)]
#[command(name = "usersim", version, about)]
struct Cli {
    /// More logging (-v info from every crate, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors on stderr, no progress bar.
    #[arg(short, long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate conversations and write them, labelled, as JSONL.
    Simulate(Box<SimulateArgs>),
    /// Fit a scenario's intent markov chain on real IARD dialogues.
    FitIntents(FitIntentsArgs),
    /// Measure throughput: the real loop against llama.cpp's own ceiling.
    Bench(BenchArgs),
    /// Measure realism, diversity and label fidelity against real
    /// conversations.
    Eval(EvalArgs),
    /// Join shard outputs into one file ordered by session, refusing gaps,
    /// duplicates and mismatched runs.
    Merge(MergeArgs),
    /// List, fetch or locate registry models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
        /// Registry file (default: the built-in models.toml).
        #[arg(long, global = true)]
        registry: Option<PathBuf>,
    },
}

#[derive(Args)]
struct SimulateArgs {
    /// Scenario name (a directory under prompts/) or a scenario directory.
    #[arg(short, long, default_value = DEFAULT_SCENARIO)]
    scenario: String,
    /// Number of conversations [default: 16; with --replay: every dialogue].
    #[arg(short = 'n', long)]
    sessions: Option<u64>,
    /// Conversations decoding together.
    #[arg(short, long, default_value_t = DEFAULT_PARALLEL)]
    parallel: usize,
    /// Run seed: same seed, model and options give the same file.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Output file, `-` for stdout.
    #[arg(short, long, default_value = "conversations.jsonl")]
    output: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Jsonl)]
    format: OutputFormat,
    /// Overwrite the output if it exists.
    #[arg(long)]
    force: bool,
    /// Pin a latent value: session.<name>=<value> or turn.<name>=<value>.
    #[arg(long = "set", value_name = "VAR=VALUE")]
    set: Vec<String>,
    /// Item catalog CSV (movieId,title,genres,keywords) replacing the scenario's.
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// Registry model name, or a local .gguf file.
    #[arg(short, long)]
    model: Option<String>,
    /// Model registry file (default: the built-in models.toml).
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Decode threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Context tokens per sequence (each conversation uses two).
    #[arg(long, default_value_t = DEFAULT_CONTEXT_PER_SEQUENCE)]
    context: u32,
    /// Most tokens per engine step (decode plus prefill chunks).
    #[arg(long, default_value_t = DEFAULT_STEP_TOKEN_BUDGET)]
    step_tokens: u32,
    /// Layers to offload to the GPU (builds with --features cuda).
    #[arg(long, default_value_t = 0)]
    gpu_layers: u32,
    /// Use flash attention (faster on GPU; on CPU it makes output depend on
    /// batch composition, so the same seed may no longer give the same file).
    #[arg(long)]
    flash_attn: bool,
    /// Most user turns per conversation (overrides the scenario).
    #[arg(long, conflicts_with = "replay")]
    max_turns: Option<u32>,
    /// Replay real dialogues (IARD .json or INSPIRED dialogs .tsv), teacher-
    /// forced: the real recommender answers, each user turn is written from
    /// the real history and recorded beside the real turn; -n takes the
    /// first N dialogues.
    #[arg(long, value_name = "PATH")]
    replay: Option<PathBuf>,
    /// Sampling temperature (both sides).
    #[arg(long)]
    temperature: Option<f32>,
    /// Top-k (0 = off).
    #[arg(long)]
    top_k: Option<u32>,
    /// Top-p (1 = off).
    #[arg(long)]
    top_p: Option<f32>,
    /// Min-p (0 = off).
    #[arg(long)]
    min_p: Option<f32>,
    /// Repetition penalty (1 = off).
    #[arg(long)]
    repeat_penalty: Option<f32>,
    /// Most new tokens of a user turn.
    #[arg(long)]
    max_tokens: Option<u32>,
    /// Most new tokens of an assistant reply.
    #[arg(long)]
    assistant_max_tokens: Option<u32>,
    /// Catalog candidates shown to the recommender per turn.
    #[arg(long, default_value_t = DEFAULT_CANDIDATES)]
    candidates: usize,
    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Simulate only sessions with index ≡ i (mod n), e.g. `--shard 2/8`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    shard: Option<(u64, u64)>,
    /// Continue an interrupted run into the same output: finished sessions
    /// are kept, a torn last line is cut, only missing sessions run.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    #[command(flatten)]
    server: ServerArgs,
}

/// The OpenAI-compatible backend's flags.
#[derive(Args)]
#[command(next_help_heading = "OpenAI-compatible server (--backend openai)")]
struct ServerArgs {
    /// Generation engine: in-process llama.cpp, or an OpenAI-compatible
    /// server (vLLM, SGLang, llama-server, TGI).
    #[arg(long, value_enum, default_value_t = BackendKind::Llama)]
    backend: BackendKind,
    /// Server base URL, e.g. http://127.0.0.1:8080 (repeat to spread
    /// requests over several servers).
    #[arg(long = "base-url", value_name = "URL")]
    base_urls: Vec<String>,
    /// Model id to request [default: the first one the server lists].
    #[arg(long, value_name = "ID")]
    api_model: Option<String>,
    /// Most requests in flight [default: --parallel].
    #[arg(long)]
    concurrency: Option<usize>,
    /// Seconds one request may take before it is retried.
    #[arg(long, default_value_t = usersim::backend::openai::DEFAULT_TIMEOUT_SECS)]
    timeout: f64,
    /// Retries of a request after a connect error, timeout, 429 or 5xx.
    #[arg(long, default_value_t = usersim::backend::openai::DEFAULT_MAX_RETRIES)]
    retries: u32,
    /// First retry delay in seconds (doubles per retry, with jitter).
    #[arg(long, default_value_t = usersim::backend::openai::DEFAULT_BACKOFF_SECS)]
    backoff: f64,
    /// Environment variable holding the API key (sent as a bearer token).
    #[arg(long, value_name = "VAR", default_value = usersim::backend::openai::DEFAULT_API_KEY_ENV)]
    api_key_env: String,
    /// Endpoint: chat (the server applies the chat template) or completions
    /// (raw prompts rendered with --chat-template).
    #[arg(long, value_enum, default_value_t = ApiEndpoint::Chat)]
    api_endpoint: ApiEndpoint,
    /// Jinja chat template file (Hugging Face style) for --api-endpoint completions.
    #[arg(long, value_name = "PATH")]
    chat_template: Option<PathBuf>,
}

impl ServerArgs {
    fn config(&self, parallel: usize, context: u32) -> OpenAiConfig {
        OpenAiConfig {
            base_urls: self.base_urls.clone(),
            model: self.api_model.clone(),
            concurrency: self.concurrency.unwrap_or(parallel),
            timeout_secs: self.timeout,
            max_retries: self.retries,
            backoff_secs: self.backoff,
            api_key_env: self.api_key_env.clone(),
            context_per_sequence: context,
            endpoint: self.api_endpoint,
            chat_template: self.chat_template.clone(),
            ..OpenAiConfig::default()
        }
    }
}

fn parse_shard(s: &str) -> Result<(u64, u64), String> {
    let err = || format!("expected I/N with 0 <= I < N, got {s:?}");
    let (i, n) = s.split_once('/').ok_or_else(err)?;
    let (i, n) = (
        i.trim().parse::<u64>().map_err(|_| err())?,
        n.trim().parse::<u64>().map_err(|_| err())?,
    );
    if n == 0 || i >= n {
        return Err(err());
    }
    Ok((i, n))
}

#[derive(Args)]
struct BenchArgs {
    /// Parallel-session counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = usersim::bench::DEFAULT_BENCH_PARALLEL)]
    parallel: Vec<usize>,
    /// Conversations per slot in the real loop (sessions = this × parallel).
    #[arg(long, default_value_t = 3)]
    sessions_per_slot: u64,
    /// Decode steps of the raw llama.cpp ceiling.
    #[arg(long, default_value_t = 64)]
    raw_steps: usize,
    /// Prompt tokens per sequence before the raw ceiling decodes (the
    /// context depth its decode steps attend over).
    #[arg(long, default_value_t = 128)]
    raw_prompt_tokens: usize,
    /// Scenario name or directory.
    #[arg(short, long, default_value = DEFAULT_SCENARIO)]
    scenario: String,
    /// Registry model name, or a local .gguf file.
    #[arg(short, long)]
    model: Option<String>,
    /// Model registry file.
    #[arg(long)]
    registry: Option<PathBuf>,
    /// Decode threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    threads: u32,
    /// Context tokens per sequence.
    #[arg(long, default_value_t = DEFAULT_CONTEXT_PER_SEQUENCE)]
    context: u32,
    /// Most tokens per engine step.
    #[arg(long, default_value_t = DEFAULT_STEP_TOKEN_BUDGET)]
    step_tokens: u32,
    /// Most user turns per conversation.
    #[arg(long)]
    max_turns: Option<u32>,
    /// Run seed.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
    /// Use flash attention in both the raw ceiling and the loop (see
    /// `simulate --flash-attn`: on CPU it makes output depend on batching).
    #[arg(long)]
    flash_attn: bool,
    /// Print the rows as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also run each row's sessions through this llama-server binary (started
    /// per row with -np = parallel, same model, context and threads) with the
    /// openai backend; `.ci/build-llama-server` builds one.
    #[arg(long, value_name = "PATH")]
    llama_server: Option<PathBuf>,
}

#[derive(Args)]
struct MergeArgs {
    /// Shard files to merge.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Merged output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Sessions the run should hold (checks for gaps up to it).
    #[arg(short = 'n', long)]
    sessions: Option<u64>,
    /// Overwrite the output.
    #[arg(long)]
    force: bool,
}

#[derive(Args)]
struct FitIntentsArgs {
    /// IARD file (iard.json).
    #[arg(long)]
    iard: PathBuf,
    /// Write the table here (default: stdout).
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Decimals kept in probabilities.
    #[arg(long, default_value_t = fit_intents::DEFAULT_DECIMALS)]
    decimals: u32,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("other").required(true).args(["sim", "real_vs"])))]
struct EvalArgs {
    /// Real conversations: IARD .json, INSPIRED dialogs .tsv, or JSONL
    /// (usersim's own or chat-messages).
    #[arg(long)]
    real: PathBuf,
    /// Simulated conversations (`usersim simulate` output).
    #[arg(long)]
    sim: Option<PathBuf>,
    /// A second real set measured as if simulated (sanity checks, baselines).
    #[arg(long)]
    real_vs: Option<PathBuf>,
    /// Another run (e.g. uncontrolled, policy = none) measured beside --sim.
    #[arg(long)]
    baseline: Option<PathBuf>,
    /// Labelled set that trains the intent classifier (default: --real when
    /// it carries intent labels).
    #[arg(long)]
    intents: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a self-contained HTML report here.
    #[arg(long)]
    html: Option<PathBuf>,
    /// Skip sentence embeddings (no Fréchet distance or embedding spread).
    #[arg(long)]
    no_embed: bool,
    /// Embedding model directory (default: the registry's embedding model,
    /// fetched on first use).
    #[arg(long)]
    embed_model: Option<PathBuf>,
    /// Cross-validation folds of the discriminators.
    #[arg(long, default_value_t = 5)]
    folds: usize,
    /// Bootstrap resamples behind every 95% interval.
    #[arg(long, default_value_t = 1000)]
    bootstrap: usize,
    /// Scenario the simulated set was generated from (name or directory):
    /// reports how much of its declared latent space (values and value
    /// pairs of categorical session variables) the set covers.
    #[arg(long)]
    scenario: Option<String>,
    /// Conditional realism: compare each group of this field (e.g.
    /// age_group, gender, Extrovert) with the real conversations of the same
    /// group. Repeatable.
    #[arg(long, value_name = "FIELD")]
    by: Vec<String>,
    /// Fewest user turns a --by group needs on each side for its AUCs.
    #[arg(long, default_value_t = usersim::eval::conditional::DEFAULT_MIN_GROUP_TURNS)]
    min_group_turns: usize,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// List the registry's models and whether they are cached.
    List {
        /// As JSON.
        #[arg(long)]
        json: bool,
    },
    /// Fetch a model into the cache (default: the registry default).
    Pull {
        /// Model name.
        name: Option<String>,
    },
    /// Print the cached file of a model, fetching it if needed.
    Path {
        /// Model name.
        name: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                _ => ExitCode::from(2),
            };
        }
    };
    init_logging(cli.verbose, cli.quiet);
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            if is_broken_pipe(&e) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {}", error_line(&e));
            if e.chain().any(|c| {
                c.downcast_ref::<SimulateError>()
                    .is_some_and(SimulateError::is_input_error)
                    || c.downcast_ref::<models::ModelError>().is_some()
                    || c.downcast_ref::<usersim::corpus::CorpusError>().is_some()
                    || c.downcast_ref::<usersim::merge::MergeError>().is_some()
                    || c.downcast_ref::<usersim::eval::EvalRunError>()
                        .is_some_and(usersim::eval::EvalRunError::is_input_error)
            }) {
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The error and its causes on one line, skipping a cause whose text the
/// line already holds (library errors name their source in their message).
fn error_line(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(
                c.downcast_ref::<SimulateError>(),
                Some(SimulateError::Output(
                    usersim::output::OutputError::BrokenPipe
                ))
            )
    })
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,usersim=info",
        (false, 1) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let color = std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal();
    let indicatif = IndicatifLayer::new();
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(indicatif.get_stderr_writer())
        .with_ansi(color)
        .with_target(false)
        .without_time();
    let registry = tracing_subscriber::registry().with(filter).with(fmt);
    if quiet {
        let _ = registry.try_init();
    } else {
        let _ = registry.with(indicatif).try_init();
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Simulate(args) => run_simulate(*args, cli.quiet),
        Command::FitIntents(args) => run_fit_intents(args),
        Command::Bench(a) => {
            let cfg = usersim::bench::BenchConfig {
                parallel: a.parallel,
                sessions_per_slot: a.sessions_per_slot,
                raw_steps: a.raw_steps,
                raw_prompt_tokens: a.raw_prompt_tokens,
                llama_server: a.llama_server,
                simulate: SimulateConfig {
                    scenario_dir: resolve_scenario_dir(&a.scenario, &default_prompts_dir()),
                    seed: a.seed,
                    model: model_choice(a.model),
                    registry: a.registry,
                    llama: LlamaConfig {
                        threads: a.threads,
                        context_per_sequence: a.context,
                        step_token_budget: a.step_tokens,
                        flash_attention: a.flash_attn,
                        ..LlamaConfig::default()
                    },
                    max_user_turns: a.max_turns,
                    progress: !cli.quiet,
                    ..SimulateConfig::default()
                },
            };
            let rows = usersim::bench::bench(&cfg, |r| {
                tracing::info!(
                    parallel = r.parallel,
                    raw = format!("{:.1}", r.raw_decode_tokens_per_second),
                    sim = format!("{:.1}", r.decode_tokens_per_second),
                    ratio = format!("{:.2}", r.ratio),
                    "bench row"
                )
            })?;
            let mut out = std::io::stdout().lock();
            if a.json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                write!(out, "{}", usersim::bench::table(&rows))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval(a) => run_eval(a, cli.quiet),
        Command::Merge(a) => {
            let report = usersim::merge::merge(&usersim::merge::MergeConfig {
                inputs: a.inputs,
                output: a.output.clone(),
                sessions: a.sessions,
                force: a.force,
            })?;
            eprintln!(
                "{} conversations -> {}",
                report.conversations,
                a.output.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Models { command, registry } => run_models(command, registry, cli.quiet),
    }
}

fn model_choice(arg: Option<String>) -> ModelChoice {
    match arg {
        None => ModelChoice::Registry(None),
        Some(m) => {
            let p = PathBuf::from(&m);
            if m.ends_with(".gguf") || m.contains('/') || p.is_file() {
                ModelChoice::Path(p)
            } else {
                ModelChoice::Registry(Some(m))
            }
        }
    }
}

struct BarProgress {
    span: Span,
}

impl Progress for BarProgress {
    fn started(&self, sessions: u64) {
        self.span.pb_set_length(sessions);
    }
    fn conversation_done(&self, done: u64, tokens: u64, elapsed: f64) {
        self.span.pb_set_position(done);
        if elapsed > 0.0 {
            self.span
                .pb_set_message(&format!("{:.0} tok/s", tokens as f64 / elapsed));
        }
    }
}

fn run_simulate(a: SimulateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let cfg = SimulateConfig {
        scenario_dir: resolve_scenario_dir(&a.scenario, &default_prompts_dir()),
        // A replay runs every dialogue unless told otherwise; the library
        // caps sessions at the corpus size.
        sessions: a.sessions.unwrap_or(if a.replay.is_some() {
            u64::MAX
        } else {
            DEFAULT_SESSIONS
        }),
        parallel: a.parallel,
        seed: a.seed,
        output: a.output.clone(),
        format: a.format,
        force: a.force,
        pins: a.set,
        catalog: a.catalog,
        model: model_choice(a.model),
        registry: a.registry,
        backend: a.server.backend,
        openai: a.server.config(a.parallel, a.context),
        llama: LlamaConfig {
            threads: a.threads,
            context_per_sequence: a.context,
            step_token_budget: a.step_tokens,
            gpu_layers: a.gpu_layers,
            chat_template: None,
            flash_attention: a.flash_attn,
        },
        sampling: SamplingOverrides {
            temperature: a.temperature,
            top_k: a.top_k,
            top_p: a.top_p,
            min_p: a.min_p,
            repeat_penalty: a.repeat_penalty,
            user_max_tokens: a.max_tokens,
            assistant_max_tokens: a.assistant_max_tokens,
        },
        max_user_turns: a.max_turns,
        candidates: a.candidates,
        progress: !quiet,
        shard: a.shard,
        resume: a.resume,
        replay: a.replay,
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C while the first is being honoured exits at once;
        // every finished conversation is already on disk by then.
        ctrlc::set_handler(move || {
            if flag.swap(true, Ordering::SeqCst) {
                std::process::exit(130);
            }
        })
        .context("cannot install the Ctrl-C handler")?;
    }
    let span = tracing::info_span!("simulate");
    span.pb_set_style(
        &indicatif::ProgressStyle::with_template(
            "{spinner} {pos}/{len} conversations [{elapsed_precise}] {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = BarProgress { span: span.clone() };
    let summary = {
        let _enter = if quiet { None } else { Some(span.enter()) };
        simulate::simulate(&cfg, &progress, interrupt.clone())?
    };
    drop(span);
    print_summary(&summary, &a.output, a.json)?;
    if summary.interrupted {
        eprintln!(
            "interrupted: {} conversations written",
            summary.conversations
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_summary(s: &RunSummary, output: &std::path::Path, json: bool) -> anyhow::Result<()> {
    if json {
        let text = serde_json::to_string_pretty(s)?;
        if output == std::path::Path::new("-") {
            eprintln!("{text}");
        } else {
            writeln!(std::io::stdout(), "{text}")?;
        }
        return Ok(());
    }
    let intents: Vec<String> = s.intents.iter().map(|(k, v)| format!("{k} {v}")).collect();
    let ends: Vec<String> = s
        .end_reasons
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    eprintln!(
        "{} conversations -> {}\n  turns: {} user, {} assistant\n  tokens: {} generated ({} by users) in {:.1}s\n  throughput: {:.1} tok/s aggregate, {:.1} tok/s per conversation ({} in parallel), {:.1} conversations/min\n  prompt tokens: {} computed, {} reused ({} from shared prefixes)\n  intents: {}\n  ended: {}",
        s.conversations,
        output.display(),
        s.user_turns,
        s.assistant_turns,
        s.tokens_generated,
        s.user_tokens,
        s.seconds,
        s.tokens_per_second,
        s.tokens_per_second_per_conversation,
        s.parallel,
        s.conversations_per_minute,
        s.backend.prompt_tokens_evaluated,
        s.backend.prompt_tokens_reused,
        s.backend.prompt_tokens_from_shared_prefix,
        intents.join(", "),
        ends.join(", "),
    );
    Ok(())
}

fn run_eval(a: EvalArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    use usersim::eval::{run::EvalRunConfig, EvalConfig};
    let embed = if a.no_embed {
        None
    } else {
        let model_dir = match a.embed_model {
            Some(d) => d,
            None => {
                let reg = models::Registry::builtin()?;
                let entry = reg
                    .default_embedding()
                    .context("the model registry has no embedding model")?;
                let opts = models::FetchOptions {
                    progress: !quiet,
                    ..models::FetchOptions::default()
                };
                models::resolve(entry, &opts)?
            }
        };
        Some(usersim::embed::EmbedConfig {
            model_dir,
            ..usersim::embed::EmbedConfig::default()
        })
    };
    let mut eval = EvalConfig::default();
    if let Some(name) = &a.scenario {
        let dir = resolve_scenario_dir(name, &default_prompts_dir());
        let scenario = usersim::scenario::Scenario::load(&dir)
            .map_err(SimulateError::Scenario)
            .with_context(|| format!("--scenario {name}"))?;
        eval.declared_latents = Some(scenario.declared_session_values());
    }
    eval.discriminator.folds = a.folds;
    eval.discriminator.n_bootstrap = a.bootstrap;
    let sim = a
        .sim
        .or(a.real_vs)
        .context("--sim or --real-vs is required")?;
    let cfg = EvalRunConfig {
        real: a.real,
        sim,
        baseline: a.baseline,
        intent_corpus: a.intents,
        embed,
        embed_cache: models::cache_dir().join("embeddings"),
        eval,
        conditional: usersim::eval::conditional::ConditionalConfig {
            fields: a.by,
            min_turns: a.min_group_turns,
            discriminator: usersim::eval::discriminator::DiscriminatorConfig {
                folds: a.folds,
                ..usersim::eval::conditional::ConditionalConfig::default().discriminator
            },
        },
    };
    let run = usersim::eval::run_eval(&cfg)?;
    if let Some(p) = &a.html {
        let tmp = p.with_extension("html.tmp");
        std::fs::write(&tmp, run.render_html())
            .and_then(|_| std::fs::rename(&tmp, p))
            .with_context(|| format!("{}: cannot write", p.display()))?;
        eprintln!("report -> {}", p.display());
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&run)?)?;
    } else {
        write!(out, "{}", run.render_text())?;
    }
    eprintln!("evaluated in {:.1}s", run.seconds);
    Ok(ExitCode::SUCCESS)
}

fn run_fit_intents(a: FitIntentsArgs) -> anyhow::Result<ExitCode> {
    let fitted = fit_intents::fit_iard(
        &a.iard,
        &FitIntentsConfig {
            decimals: a.decimals,
        },
    )?;
    let text = fit_intents::to_toml(&fitted, &a.iard.display().to_string());
    match a.output {
        Some(p) => {
            let tmp = p.with_extension("toml.tmp");
            std::fs::write(&tmp, &text)
                .and_then(|_| std::fs::rename(&tmp, &p))
                .with_context(|| format!("{}: cannot write", p.display()))?;
            eprintln!(
                "fitted on {} dialogues -> {}",
                fitted.turns.dialogues,
                p.display()
            );
        }
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn run_models(
    cmd: ModelsCommand,
    registry: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<ExitCode> {
    let reg = match &registry {
        Some(p) => models::Registry::load(p)?,
        None => models::Registry::builtin()?,
    };
    let opts = models::FetchOptions {
        progress: !quiet,
        ..models::FetchOptions::default()
    };
    match cmd {
        ModelsCommand::List { json } => {
            let rows: Vec<serde_json::Value> = reg
                .models
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "name": m.name,
                        "default": m.name == reg.default,
                        "kind": m.kind,
                        "description": m.description,
                        "cached": models::cached_path(m).map(|p| p.display().to_string()),
                    })
                })
                .collect();
            let mut out = std::io::stdout().lock();
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
            } else {
                for r in rows {
                    writeln!(
                        out,
                        "{}{}\t{}\t{}",
                        r["name"].as_str().unwrap_or_default(),
                        if r["default"].as_bool() == Some(true) {
                            " (default)"
                        } else {
                            ""
                        },
                        if r["cached"].is_null() {
                            "not cached"
                        } else {
                            "cached"
                        },
                        r["description"].as_str().unwrap_or_default()
                    )?;
                }
            }
        }
        ModelsCommand::Pull { name } | ModelsCommand::Path { name } => {
            let name = name.unwrap_or_else(|| reg.default.clone());
            let entry = reg.get(&name)?;
            let path = models::resolve(entry, &opts)?;
            writeln!(std::io::stdout(), "{}", path.display())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
