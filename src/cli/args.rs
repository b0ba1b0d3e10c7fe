//! The command line as clap sees it: flags only, no behaviour ("low-level
//! arguments"). [`super`] turns them into the library's config structs.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use usersim::backend::llama::{
    Batching, KvLayout, KvType, DEFAULT_CONTEXT_PER_SEQUENCE, DEFAULT_STEP_TOKEN_BUDGET,
};
use usersim::backend::openai::{self, ApiEndpoint};
use usersim::output::OutputFormat;
use usersim::run::{BackendKind, DEFAULT_PARALLEL, DEFAULT_SEED};
use usersim::scenario::system::SystemKind;
use usersim::scenario::DEFAULT_SCENARIO;
use usersim::session::system::DEFAULT_CANDIDATES;

/// Controllable LLM user simulators on local models.
#[derive(Parser)]
#[command(name = "usersim", version, about)]
pub struct Cli {
    /// More logging (-v info from every crate, -vv debug).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr, no progress bar.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Simulate conversations and write them, labelled, as JSONL.
    Simulate(Box<SimulateArgs>),
    /// Fit a scenario's intent markov chain, per-intent turn lengths and
    /// real seekers' typing rates on real IARD dialogues (alias:
    /// fit-intents).
    #[command(alias = "fit-intents")]
    Fit(FitArgs),
    /// Measure throughput: the real loop against llama.cpp's own ceiling.
    Bench(BenchArgs),
    /// Measure realism, diversity and label fidelity against real
    /// conversations.
    Eval(EvalArgs),
    /// How a system under test served each kind of user: success rate,
    /// recall@k, turns to success, rejections and end sentiment with 95%
    /// intervals, overall and per latent group, from one simulate run.
    ReportSystem(ReportSystemArgs),
    /// Join shard outputs into one file ordered by session, refusing gaps,
    /// duplicates and mismatched runs.
    Merge(MergeArgs),
    /// Train a realism critic (real vs simulated seeker turns) for
    /// `simulate --best-of N --critic FILE`.
    Critic {
        #[command(subcommand)]
        command: CriticCommand,
    },
    /// Blind human judging: build a study of real and simulated items,
    /// serve it to judges, exchange it with crowd platforms, report.
    Judge {
        #[command(subcommand)]
        command: JudgeCommand,
    },
    /// List, fetch or locate registry models.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
        /// Registry file (default: the built-in models.toml).
        #[arg(long, global = true)]
        registry: Option<PathBuf>,
    },
}

/// Which model runs (simulate and bench).
#[derive(Args)]
pub struct ModelArgs {
    /// Scenario name (a directory under prompts/) or a scenario directory.
    #[arg(short, long, default_value = DEFAULT_SCENARIO)]
    pub scenario: String,
    /// Registry model name, or a local .gguf file.
    #[arg(short, long)]
    pub model: Option<String>,
    /// Model registry file (default: the built-in models.toml).
    #[arg(long)]
    pub registry: Option<PathBuf>,
    /// Run seed: same seed, model and options give the same file.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,
}

/// llama.cpp engine flags (simulate and bench).
#[derive(Args)]
pub struct EngineArgs {
    /// Decode threads (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: u32,
    /// Context tokens per sequence (each conversation uses two).
    #[arg(long, default_value_t = DEFAULT_CONTEXT_PER_SEQUENCE)]
    pub context: u32,
    /// Most tokens per engine step (decode plus prefill chunks).
    #[arg(long, default_value_t = DEFAULT_STEP_TOKEN_BUDGET)]
    pub step_tokens: u32,
    /// Layers to offload to the GPU (builds with --features cuda).
    #[arg(long, default_value_t = 0)]
    pub gpu_layers: u32,
    /// Use flash attention (faster on GPU; on CPU it makes output depend on
    /// batch composition, so the same seed may no longer give the same file).
    /// Needed by --kv-type q8_0.
    #[arg(long)]
    pub flash_attn: bool,
    /// Cells of the unified KV pool (--kv-layout unified) [default:
    /// --context for every sequence].
    #[arg(long, value_name = "TOKENS")]
    pub kv_pool: Option<u32>,
}

/// How the engine batches and caches (simulate; bench takes lists).
#[derive(Args)]
pub struct EngineModeArgs {
    /// `invariant`: decode tokens in one llama.cpp call, each prompt chunk
    /// in its own, byte-identical at any --parallel on CPU; `packed`: the
    /// whole step in one call (llama-server's way, for GPUs) [default:
    /// invariant; packed with --features cuda].
    #[arg(long)]
    pub batching: Option<Batching>,
    /// KV cache element type: f16 or q8_0 (q8_0 needs --flash-attn).
    #[arg(long, default_value = "f16")]
    pub kv_type: KvType,
    /// KV layout: `split` (a --context stream per sequence) or `unified`
    /// (one pool the sequences share; needs --batching packed).
    #[arg(long, default_value = "split")]
    pub kv_layout: KvLayout,
}

#[derive(Args)]
pub struct SimulateArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    #[command(flatten)]
    pub mode: EngineModeArgs,
    /// Number of conversations [default: 16; with --replay: every dialogue].
    #[arg(short = 'n', long)]
    pub sessions: Option<u64>,
    /// Conversations decoding together.
    #[arg(short, long, default_value_t = DEFAULT_PARALLEL)]
    pub parallel: usize,
    /// Output file, `-` for stdout.
    #[arg(short, long, default_value = "conversations.jsonl")]
    pub output: PathBuf,
    /// Output format: jsonl (usersim records) or chat (messages + metadata;
    /// `openai` is an alias).
    #[arg(long, default_value = "jsonl", value_parser = parse_from_str::<OutputFormat>)]
    pub format: OutputFormat,
    /// Overwrite the output if it exists.
    #[arg(long)]
    pub force: bool,
    /// Pin a latent value: session.<name>=<value> or turn.<name>=<value>.
    #[arg(long = "set", value_name = "VAR=VALUE")]
    pub set: Vec<String>,
    /// Item catalog CSV (movieId,title,genres,keywords) replacing the scenario's.
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Most user turns per conversation (overrides the scenario).
    #[arg(long, conflicts_with = "replay")]
    pub max_turns: Option<u32>,
    /// Replay real dialogues (IARD .json or INSPIRED dialogs .tsv), teacher-
    /// forced: the real recommender answers, each user turn is written from
    /// the real history and recorded beside the real turn; -n takes the
    /// first N dialogues.
    #[arg(long, value_name = "PATH")]
    pub replay: Option<PathBuf>,
    /// Real corpus (IARD .json, INSPIRED dialogs.tsv) replacing the
    /// scenario's [pool] corpora; repeat for several.
    #[arg(long, value_name = "PATH")]
    pub pool: Vec<PathBuf>,
    /// Candidates decoded per seeker turn; the one --critic scores most
    /// human is kept (1 to 16; overrides the scenario's [critic] best_of).
    #[arg(long, value_name = "N")]
    pub best_of: Option<u32>,
    /// Realism critic file (`usersim critic train`; overrides the
    /// scenario's [critic] file).
    #[arg(long, value_name = "FILE")]
    pub critic: Option<PathBuf>,
    /// Sampling temperature (both sides).
    #[arg(long)]
    pub temperature: Option<f32>,
    /// Top-k (0 = off).
    #[arg(long)]
    pub top_k: Option<u32>,
    /// Top-p (1 = off).
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Min-p (0 = off).
    #[arg(long)]
    pub min_p: Option<f32>,
    /// Repetition penalty (1 = off).
    #[arg(long)]
    pub repeat_penalty: Option<f32>,
    /// Most new tokens of a user turn.
    #[arg(long)]
    pub max_tokens: Option<u32>,
    /// Most new tokens of an assistant reply.
    #[arg(long)]
    pub assistant_max_tokens: Option<u32>,
    /// Catalog candidates shown to the recommender per turn.
    #[arg(long, default_value_t = DEFAULT_CANDIDATES)]
    pub candidates: usize,
    /// Print the run summary as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Simulate only sessions with index ≡ i (mod n), e.g. `--shard 2/8`.
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<(u64, u64)>,
    /// Continue an interrupted run into the same output: finished sessions
    /// are kept, a torn last line is cut, only missing sessions run.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub system: SystemArgs,
}

/// The system under test's flags (override the scenario's `[system]`).
#[derive(Args)]
#[command(next_help_heading = "System under test (--system)")]
pub struct SystemArgs {
    /// Who answers the users: builtin (the recommender on the simulator's
    /// model, in the same batch), http (POST to --system-url), stdio (a
    /// child process, --system-cmd) or llm (the recommender on
    /// --system-model or --system-base-url) [default: the scenario's, else
    /// builtin].
    #[arg(long = "system", value_name = "KIND", value_parser = parse_from_str::<SystemKind>)]
    pub kind: Option<SystemKind>,
    /// http: the URL each system turn is POSTed to.
    #[arg(long, value_name = "URL")]
    pub system_url: Option<String>,
    /// stdio: the command line of the system (run with sh -c), e.g.
    /// "python3 examples/crs.py prompts/movies/catalog.csv".
    #[arg(long, value_name = "COMMAND")]
    pub system_cmd: Option<String>,
    /// Send the session's latents to the system (oracle experiments).
    #[arg(long)]
    pub system_sees_latents: bool,
    /// Seconds one system answer may take [default: 60].
    #[arg(long, value_name = "SECONDS")]
    pub system_timeout: Option<f64>,
    /// http: retries after a connect error, timeout, 429 or 5xx [default: 3].
    #[arg(long, value_name = "N")]
    pub system_retries: Option<u32>,
    /// http: first retry delay in seconds, doubling, with jitter [default: 0.5].
    #[arg(long, value_name = "SECONDS")]
    pub system_backoff: Option<f64>,
    /// http: most requests in flight [default: 8].
    #[arg(long, value_name = "N")]
    pub system_concurrency: Option<usize>,
    /// llm: the recommender's registry model name or GGUF path.
    #[arg(long, value_name = "NAME|PATH")]
    pub system_model: Option<String>,
    /// llm: an OpenAI-compatible server for the recommender.
    #[arg(long, value_name = "URL")]
    pub system_base_url: Option<String>,
    /// llm with --system-base-url: the model id [default: the server's first].
    #[arg(long, value_name = "ID")]
    pub system_api_model: Option<String>,
}

/// The OpenAI-compatible backend's flags.
#[derive(Args)]
#[command(next_help_heading = "OpenAI-compatible server (--backend openai)")]
pub struct ServerArgs {
    /// Generation engine: llama (in-process llama.cpp) or openai (an
    /// OpenAI-compatible server: vLLM, SGLang, llama-server, TGI).
    #[arg(long, default_value = "llama", value_parser = parse_from_str::<BackendKind>)]
    pub backend: BackendKind,
    /// Server base URL, e.g. http://127.0.0.1:8080 (repeat to spread
    /// requests over several servers).
    #[arg(long = "base-url", value_name = "URL")]
    pub base_urls: Vec<String>,
    /// Model id to request [default: the first one the server lists].
    #[arg(long, value_name = "ID")]
    pub api_model: Option<String>,
    /// Most requests in flight [default: --parallel].
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds one request may take before it is retried.
    #[arg(long, default_value_t = openai::DEFAULT_TIMEOUT_SECS)]
    pub timeout: f64,
    /// Retries of a request after a connect error, timeout, 429 or 5xx.
    #[arg(long, default_value_t = openai::DEFAULT_MAX_RETRIES)]
    pub retries: u32,
    /// First retry delay in seconds (doubles per retry, with jitter).
    #[arg(long, default_value_t = openai::DEFAULT_BACKOFF_SECS)]
    pub backoff: f64,
    /// Environment variable holding the API key (sent as a bearer token).
    #[arg(long, value_name = "VAR", default_value = openai::DEFAULT_API_KEY_ENV)]
    pub api_key_env: String,
    /// Endpoint: chat (the server applies the chat template) or completions
    /// (raw prompts rendered with --chat-template).
    #[arg(long, default_value = "chat", value_parser = parse_from_str::<ApiEndpoint>)]
    pub api_endpoint: ApiEndpoint,
    /// Jinja chat template file (Hugging Face style) for --api-endpoint completions.
    #[arg(long, value_name = "PATH")]
    pub chat_template: Option<PathBuf>,
}

#[derive(Args)]
pub struct BenchArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Parallel-session counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = usersim::tools::bench::DEFAULT_BENCH_PARALLEL)]
    pub parallel: Vec<usize>,
    /// Conversations per slot in the real loop (sessions = this × parallel).
    #[arg(long, default_value_t = 3)]
    pub sessions_per_slot: u64,
    /// Decode steps of the raw llama.cpp ceiling.
    #[arg(long, default_value_t = 64)]
    pub raw_steps: usize,
    /// Prompt tokens per sequence before the raw ceiling decodes (the
    /// context depth its decode steps attend over).
    #[arg(long, default_value_t = 128)]
    pub raw_prompt_tokens: usize,
    /// Most user turns per conversation.
    #[arg(long)]
    pub max_turns: Option<u32>,
    /// Print the rows as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Candidates per seeker turn to measure, comma-separated: every
    /// parallel count runs at each (more than 1 needs a critic: --critic or
    /// the scenario's [critic]) [default: the scenario's best_of].
    #[arg(long, value_delimiter = ',')]
    pub best_of: Vec<u32>,
    /// Realism critic file for --best-of above 1.
    #[arg(long, value_name = "FILE")]
    pub critic: Option<PathBuf>,
    /// Batching modes to measure, comma-separated (invariant, packed)
    /// [default: the build's default].
    #[arg(long, value_delimiter = ',')]
    pub batching: Vec<Batching>,
    /// KV cache types to measure, comma-separated (f16, q8_0; q8_0 needs
    /// --flash-attn).
    #[arg(long, value_delimiter = ',', default_value = "f16")]
    pub kv_type: Vec<KvType>,
    /// KV layouts to measure, comma-separated (split, unified; unified
    /// rows run packed batching only).
    #[arg(long, value_delimiter = ',', default_value = "split")]
    pub kv_layout: Vec<KvLayout>,
    /// Memory for KV cache, in GiB, that the "fit" column divides by each
    /// row's KV bytes per conversation (24: a 24 GB GPU).
    #[arg(long, default_value_t = usersim::tools::bench::DEFAULT_KV_MEMORY_GIB)]
    pub kv_memory_gib: f64,
    /// Also run each row's sessions through this llama-server binary (started
    /// per row with -np = parallel, same model, context and threads) with the
    /// openai backend; `.ci/build-llama-server` builds one.
    #[arg(long, value_name = "PATH")]
    pub llama_server: Option<PathBuf>,
}

#[derive(Args)]
pub struct ReportSystemArgs {
    /// A simulate run's JSONL (usersim records).
    pub input: PathBuf,
    /// Latent to group by (repeat; `top_intent` is a conversation's most
    /// frequent user intent) [default: every latent with 2-12 values].
    #[arg(long)]
    pub by: Vec<String>,
    /// k of recall@k: the target among the first k items recommended.
    #[arg(long, default_value_t = usersim::eval::system::DEFAULT_RECALL_K)]
    pub k: usize,
    /// Bootstrap resamples per interval.
    #[arg(long, default_value_t = usersim::eval::system::DEFAULT_BOOTSTRAP)]
    pub bootstrap: usize,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Also write the table as a self-contained HTML page.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

#[derive(Args)]
pub struct MergeArgs {
    /// Shard files to merge.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Merged output file.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Sessions the run should hold (checks for gaps up to it).
    #[arg(short = 'n', long)]
    pub sessions: Option<u64>,
    /// Overwrite the output.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args)]
pub struct FitArgs {
    /// IARD file (iard.json).
    #[arg(long)]
    pub iard: PathBuf,
    /// Write the table here (default: stdout).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// Decimals kept in probabilities.
    #[arg(long, default_value_t = usersim::tools::fit::DEFAULT_DECIMALS)]
    pub decimals: u32,
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("other").required(true).args(["sim", "real_vs"])))]
pub struct EvalArgs {
    /// Real conversations: IARD .json, INSPIRED dialogs .tsv, or JSONL
    /// (usersim's own or chat).
    #[arg(long)]
    pub real: PathBuf,
    /// Simulated conversations (`usersim simulate` output).
    #[arg(long)]
    pub sim: Option<PathBuf>,
    /// A second real set measured as if simulated (sanity checks, baselines).
    #[arg(long)]
    pub real_vs: Option<PathBuf>,
    /// Another run (e.g. uncontrolled, policy = none) measured beside --sim.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Labelled set that trains the intent classifier (default: --real when
    /// it carries intent labels).
    #[arg(long)]
    pub intents: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write a self-contained HTML report here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Skip sentence embeddings (no Fréchet distance or embedding spread).
    #[arg(long)]
    pub no_embed: bool,
    /// Embedding model directory (default: the registry's embedding model,
    /// fetched on first use).
    #[arg(long)]
    pub embed_model: Option<PathBuf>,
    /// Cross-validation folds of the discriminators.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Bootstrap resamples behind every 95% interval.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Most texts per class in each discriminator (turns, turn pairs,
    /// conversations; a seeded draw from the balanced classes). A learnt
    /// discriminator's AUC grows with its training data, so runs of
    /// different sizes compare at one N [default: the smaller class, at
    /// most 3000].
    #[arg(long, value_name = "N")]
    pub per_class: Option<usize>,
    /// What the discriminators' folds keep whole: `turn` (each text on its
    /// own, the protocol of the README's figures) or `dialogue` (a
    /// conversation's turns all in one fold, so each is judged by a model
    /// that never saw any of its conversation).
    #[arg(long, value_name = "UNIT", default_value = "turn", value_parser = parse_from_str::<usersim::eval::discriminator::FoldUnit>)]
    pub folds_by: usersim::eval::discriminator::FoldUnit,
    /// Scenario the simulated set was generated from (name or directory):
    /// reports how much of its declared latent space (values and value
    /// pairs of categorical session variables) the set covers.
    #[arg(long)]
    pub scenario: Option<String>,
    /// Conditional realism: compare each group of this field (e.g.
    /// age_group, gender, Extrovert) with the real conversations of the same
    /// group. Repeatable.
    #[arg(long, value_name = "FIELD")]
    pub by: Vec<String>,
    /// Fewest user turns a --by group needs on each side for its AUCs.
    #[arg(long, default_value_t = usersim::eval::conditional::DEFAULT_MIN_GROUP_TURNS)]
    pub min_group_turns: usize,
    /// Include a human-judging study's figures (`usersim judge new`).
    #[arg(long)]
    pub study: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum JudgeCommand {
    /// Draw a balanced, seeded sample of real and simulated items into a
    /// new study file.
    New(JudgeNewArgs),
    /// Serve the study to judges as a local web app.
    Serve {
        /// The study file.
        study: PathBuf,
        /// Address to listen on (IP:PORT; port 0 picks a free one).
        #[arg(long, default_value = usersim::judge::serve::DEFAULT_ADDR)]
        addr: String,
        /// Allow a non-loopback --addr (other machines can open the study).
        #[arg(long)]
        public: bool,
    },
    /// Add judges by name and print each one's link path (tab-separated).
    Invite {
        /// The study file.
        study: PathBuf,
        /// Judge names.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Write the items (no sources) as a crowd-platform CSV.
    Export {
        /// The study file.
        study: PathBuf,
        /// The CSV to write.
        #[arg(long)]
        crowd: PathBuf,
    },
    /// Read a crowd platform's results CSV into the study.
    Import {
        /// The study file.
        study: PathBuf,
        /// The results CSV.
        results: PathBuf,
        /// Import the good rows and list the bad ones (default: refuse the
        /// whole file when a row is bad).
        #[arg(long)]
        skip_bad: bool,
    },
    /// Accuracy, realism and agreement of the answers so far.
    Report {
        /// The study file.
        study: PathBuf,
        /// Print the report as JSON on stdout instead of the table.
        #[arg(long)]
        json: bool,
        /// Also write a self-contained HTML report here.
        #[arg(long)]
        html: Option<PathBuf>,
    },
}

#[derive(Args)]
pub struct JudgeNewArgs {
    /// Real conversations: IARD .json, INSPIRED dialogs .tsv, or JSONL.
    #[arg(long)]
    pub real: PathBuf,
    /// A simulated run (usersim or chat JSONL). Repeatable.
    #[arg(long, required = true)]
    pub sim: Vec<PathBuf>,
    /// What a judge judges: one seeker turn in context, or a whole
    /// conversation.
    #[arg(long, default_value = "turn", value_parser = parse_from_str::<usersim::judge::study::Unit>)]
    pub unit: usersim::judge::study::Unit,
    /// Items in all: a multiple of the number of sources (real + each --sim).
    #[arg(short = 'n', long, default_value_t = 40)]
    pub items: usize,
    /// Sampling seed (also seeds each judge's item order).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The study file to write.
    #[arg(short, long, default_value = "study.sqlite")]
    pub output: PathBuf,
    /// Replace an existing study file.
    #[arg(long)]
    pub force: bool,
}

#[derive(Subcommand)]
pub enum CriticCommand {
    /// Fit a critic on real vs simulated seeker turns (each with the system
    /// turn before it) and save it; prints its k-fold held-out AUC.
    Train(CriticTrainArgs),
}

#[derive(Args)]
pub struct CriticTrainArgs {
    /// Real conversations (IARD .json, INSPIRED dialogs .tsv, JSONL);
    /// repeatable.
    #[arg(long, required = true)]
    pub real: Vec<PathBuf>,
    /// Simulated runs (`usersim simulate` output); repeatable.
    #[arg(long, required = true)]
    pub sim: Vec<PathBuf>,
    /// Critic file to write.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Cross-validation folds of the held-out figures.
    #[arg(long, default_value_t = 5)]
    pub folds: usize,
    /// Bootstrap resamples behind the intervals.
    #[arg(long, default_value_t = 1000)]
    pub bootstrap: usize,
    /// Seed of balancing, folds and bootstrap.
    #[arg(long, default_value_t = 13)]
    pub seed: u64,
    /// Print the held-out figures as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum ModelsCommand {
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

/// A flag value through the library type's `FromStr`, so library types
/// need no clap derive.
fn parse_from_str<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
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
