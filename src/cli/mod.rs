//! The `usersim` binary's own code (not part of the library): [`args`]
//! parses flags ("low-level arguments"), this module turns them into the
//! library's config structs ("high-level arguments"), calls the library and
//! prints. stdout carries data only; everything else goes to stderr.

pub mod args;
mod print;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use tracing::Span;
use tracing_indicatif::span_ext::IndicatifSpanExt;

use usersim::backend::llama::LlamaConfig;
use usersim::backend::openai::OpenAiConfig;
use usersim::eval::conditional::ConditionalConfig;
use usersim::eval::discriminator::DiscriminatorConfig;
use usersim::eval::{EvalConfig, EvalRunConfig};
use usersim::models::{self, Registry};
use usersim::run::{ModelChoice, Progress, SamplingOverrides, SimulateConfig, DEFAULT_SESSIONS};
use usersim::scenario::system::SystemOverrides;
use usersim::scenario::{default_prompts_dir, resolve_scenario_dir, Scenario};
use usersim::tools::{bench, fit};

use args::{
    BenchArgs, Command, CriticCommand, CriticTrainArgs, EngineArgs, EvalArgs, FitArgs,
    JudgeCommand, MergeArgs, ModelArgs, ModelsCommand, ReportSystemArgs, ServerArgs, SimulateArgs,
};

/// Run the parsed command; `Ok` holds the exit code of a run that ended
/// as planned (130 after Ctrl-C).
pub fn run(command: Command, quiet: bool) -> anyhow::Result<ExitCode> {
    match command {
        Command::Simulate(a) => simulate(*a, quiet),
        Command::Fit(a) => fit(a),
        Command::Bench(a) => bench(a, quiet),
        Command::Eval(a) => eval(a, quiet),
        Command::ReportSystem(a) => report_system(a),
        Command::Merge(a) => merge(a),
        Command::Critic {
            command: CriticCommand::Train(a),
        } => critic_train(a),
        Command::Judge { command } => judge(command),
        Command::Models { command, registry } => models(command, registry, quiet),
    }
}

impl EngineArgs {
    fn config(&self) -> LlamaConfig {
        LlamaConfig {
            threads: self.threads,
            context_per_sequence: self.context,
            step_token_budget: self.step_tokens,
            gpu_layers: self.gpu_layers,
            chat_template: None,
            forks_per_conversation: 0,
            flash_attention: self.flash_attn,
            kv_pool_tokens: self.kv_pool,
            ..LlamaConfig::default()
        }
    }
}

impl ModelArgs {
    /// The simulate config these flags fill in; the rest default.
    fn config(&self, engine: &EngineArgs, quiet: bool) -> SimulateConfig {
        SimulateConfig {
            scenario_dir: resolve_scenario_dir(&self.scenario, &default_prompts_dir()),
            seed: self.seed,
            model: ModelChoice::from_arg(self.model.as_deref()),
            registry: self.registry.clone(),
            llama: engine.config(),
            progress: !quiet,
            ..SimulateConfig::default()
        }
    }
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

fn simulate(a: SimulateArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let cfg = SimulateConfig {
        // A replay runs every dialogue unless told otherwise; the library
        // caps sessions at the corpus size.
        sessions: a.sessions.unwrap_or(if a.replay.is_some() {
            u64::MAX
        } else {
            DEFAULT_SESSIONS
        }),
        parallel: a.parallel,
        output: a.output.clone(),
        format: a.format,
        force: a.force,
        pins: a.set,
        catalog: a.catalog,
        backend: a.server.backend,
        openai: a.server.config(a.parallel, a.engine.context),
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
        shard: a.shard,
        resume: a.resume,
        replay: a.replay,
        pool: a.pool,
        best_of: a.best_of,
        critic: a.critic,
        system: SystemOverrides {
            kind: a.system.kind,
            url: a.system.system_url,
            cmd: a.system.system_cmd,
            sees_latents: a.system.system_sees_latents.then_some(true),
            timeout_secs: a.system.system_timeout,
            max_retries: a.system.system_retries,
            backoff_secs: a.system.system_backoff,
            concurrency: a.system.system_concurrency,
            model: a.system.system_model,
            base_url: a.system.system_base_url,
            api_model: a.system.system_api_model,
        },
        ..a.model.config(&a.engine, quiet)
    };
    let mut cfg = cfg;
    if let Some(b) = a.mode.batching {
        cfg.llama.batching = b;
    }
    cfg.llama.kv_type = a.mode.kv_type;
    cfg.llama.kv_layout = a.mode.kv_layout;
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
        usersim::run::simulate(&cfg, &progress, interrupt)?
    };
    drop(span);
    print::summary(&summary, &a.output, a.json)?;
    if summary.interrupted {
        eprintln!(
            "interrupted: {} conversations written",
            summary.conversations
        );
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
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

fn bench(a: BenchArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let cfg = bench::BenchConfig {
        parallel: a.parallel,
        sessions_per_slot: a.sessions_per_slot,
        raw_steps: a.raw_steps,
        raw_prompt_tokens: a.raw_prompt_tokens,
        llama_server: a.llama_server,
        best_of: a.best_of,
        batching: a.batching,
        kv_types: a.kv_type,
        kv_layouts: a.kv_layout,
        kv_memory_bytes: (a.kv_memory_gib * (1u64 << 30) as f64) as u64,
        simulate: SimulateConfig {
            max_user_turns: a.max_turns,
            critic: a.critic,
            ..a.model.config(&a.engine, quiet)
        },
    };
    let rows = bench::bench(&cfg, |r| {
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
        write!(out, "{}", bench::table(&rows))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn report_system(a: ReportSystemArgs) -> anyhow::Result<ExitCode> {
    let cfg = usersim::eval::system::SystemReportConfig {
        input: a.input,
        by: a.by,
        k: a.k,
        bootstrap: a.bootstrap,
        ..Default::default()
    };
    let report = usersim::eval::system::report_system(&cfg).map_err(usersim::Error::from)?;
    if let Some(p) = &a.html {
        usersim::eval::system::write_html(&report, p).map_err(|source| usersim::Error::Write {
            path: p.clone(),
            source,
        })?;
        eprintln!("report -> {}", p.display());
    }
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", report.table())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn eval(a: EvalArgs, quiet: bool) -> anyhow::Result<ExitCode> {
    let embed = if a.no_embed {
        None
    } else {
        Some(usersim::embed::EmbedConfig {
            model_dir: match a.embed_model {
                Some(d) => d,
                None => models::default_embedding_dir(!quiet)?,
            },
            ..usersim::embed::EmbedConfig::default()
        })
    };
    let mut eval = EvalConfig::default();
    if let Some(name) = &a.scenario {
        let scenario = Scenario::load(&resolve_scenario_dir(name, &default_prompts_dir()))
            .map_err(usersim::Error::from)
            .with_context(|| format!("--scenario {name}"))?;
        eval.declared_latents = Some(scenario.declared_session_values());
    }
    eval.discriminator.folds = a.folds;
    eval.discriminator.n_bootstrap = a.bootstrap;
    eval.discriminator.fold_unit = a.folds_by;
    if let Some(n) = a.per_class {
        if n < a.folds.max(2) {
            return Err(usersim::Error::Config(format!(
                "--per-class: expected at least --folds ({}) texts per class (got {n})",
                a.folds.max(2)
            ))
            .into());
        }
        eval.discriminator.max_per_class = Some(n);
    }
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
        conditional: ConditionalConfig {
            fields: a.by,
            min_turns: a.min_group_turns,
            discriminator: DiscriminatorConfig {
                folds: a.folds,
                fold_unit: a.folds_by,
                ..ConditionalConfig::default().discriminator
            },
        },
        study: a.study,
    };
    let run = usersim::eval::run_eval(&cfg).map_err(usersim::Error::from)?;
    if let Some(p) = &a.html {
        run.write_html(p)?;
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

fn judge(cmd: JudgeCommand) -> anyhow::Result<ExitCode> {
    use usersim::judge::{crowd, report, sample, serve, study};
    let lib = |e: usersim::judge::JudgeError| usersim::Error::from(e);
    let mut out = std::io::stdout().lock();
    match cmd {
        JudgeCommand::New(a) => {
            let summary = sample::create(&sample::NewStudyConfig {
                real: a.real,
                sims: a.sim,
                unit: a.unit,
                n: a.items,
                seed: a.seed,
                output: a.output,
                force: a.force,
            })
            .map_err(lib)?;
            let shares: Vec<String> = summary
                .per_source
                .iter()
                .map(|(s, n)| format!("{n} from {s}"))
                .collect();
            eprintln!(
                "{} items ({}) -> {}",
                summary.items,
                shares.join(", "),
                summary.path.display()
            );
        }
        JudgeCommand::Serve {
            study,
            addr,
            public,
        } => {
            let addr = serve::check_addr(&addr, public).map_err(lib)?;
            let server = serve::Server::bind(&study, addr).map_err(lib)?;
            let items = server.study().items().map_err(lib)?.len();
            let bound = server.addr();
            eprintln!(
                "serving {items} items of {} at http://{bound}/ (every answer is saved when given; Ctrl-C stops)",
                study.display()
            );
            eprintln!("reachable by {}", serve::reach(bound));
            server.run().map_err(lib)?;
        }
        JudgeCommand::Invite { study, names } => {
            let s = study::Study::open(&study).map_err(lib)?;
            for name in names {
                let j = s.add_judge(&name, false).map_err(lib)?;
                writeln!(out, "{}\t/j/{}", j.name, j.token)?;
            }
        }
        JudgeCommand::Export { study, crowd: path } => {
            let s = study::Study::open(&study).map_err(lib)?;
            let n = crowd::export(&s, &path).map_err(lib)?;
            eprintln!("{n} items -> {}", path.display());
        }
        JudgeCommand::Import {
            study,
            results,
            skip_bad,
        } => {
            let mut s = study::Study::open(&study).map_err(lib)?;
            let r = crowd::import(&mut s, &results, skip_bad).map_err(lib)?;
            for p in &r.skipped {
                eprintln!("skipped: {p}");
            }
            eprintln!(
                "{} answers imported into {} ({} rows skipped)",
                r.imported,
                study.display(),
                r.skipped.len()
            );
        }
        JudgeCommand::Report { study, json, html } => {
            let r = report::report(&study).map_err(lib)?;
            if let Some(p) = &html {
                r.write_html(p).map_err(lib)?;
                eprintln!("report -> {}", p.display());
            }
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?;
            } else {
                write!(out, "{}", r.render_text())?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn fit(a: FitArgs) -> anyhow::Result<ExitCode> {
    let fitted = fit::fit_iard(
        &a.iard,
        &fit::FitIntentsConfig {
            decimals: a.decimals,
        },
    )
    .map_err(usersim::Error::from)?;
    let text = fit::to_toml(&fitted, &a.iard.display().to_string());
    match a.output {
        Some(p) => {
            usersim::atomic::write_atomic(&p, text.as_bytes()).map_err(|source| {
                usersim::Error::Write {
                    path: p.clone(),
                    source,
                }
            })?;
            eprintln!(
                "fitted on {} dialogues -> {}",
                fitted.turns.dialogues,
                p.display()
            );
        }
        None => std::io::stdout().write_all(text.as_bytes())?,
    }
    Ok(ExitCode::SUCCESS)
}

fn critic_train(a: CriticTrainArgs) -> anyhow::Result<ExitCode> {
    let opts = usersim::critic::TrainOptions {
        folds: a.folds,
        seed: a.seed,
        bootstrap: a.bootstrap,
    };
    let (critic, result) =
        usersim::critic::train(&a.real, &a.sim, &opts).map_err(usersim::Error::from)?;
    critic.save(&a.output)?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let v = serde_json::json!({
            "critic": a.output.display().to_string(),
            "sha256": critic.sha256(),
            "trained_on": critic.trained_on(),
            "held_out": critic.held_out(),
            "top_simulated": &result.top_simulated[..result.top_simulated.len().min(10)],
            "top_real": &result.top_real[..result.top_real.len().min(10)],
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        let h = critic.held_out();
        writeln!(
            out,
            "{}: held-out AUC {}, accuracy {:.3} ({}-fold, {} seeker turns per class)",
            a.output.display(),
            h.auc,
            h.accuracy.value,
            h.folds,
            critic.trained_on().per_class
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

fn merge(a: MergeArgs) -> anyhow::Result<ExitCode> {
    let report = usersim::output::merge::merge(&usersim::output::merge::MergeConfig {
        inputs: a.inputs,
        output: a.output.clone(),
        sessions: a.sessions,
        force: a.force,
    })
    .map_err(usersim::Error::from)?;
    eprintln!(
        "{} conversations -> {}",
        report.conversations,
        a.output.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn models(cmd: ModelsCommand, registry: Option<PathBuf>, quiet: bool) -> anyhow::Result<ExitCode> {
    let reg = Registry::open(registry.as_deref()).map_err(usersim::Error::from)?;
    match cmd {
        ModelsCommand::List { json } => print::models(&reg.listing(), json)?,
        // `pull` also re-checks a cached file's sha256; `path` trusts the cache.
        ModelsCommand::Pull { name } => model_path(&reg, name, quiet, models::pull)?,
        ModelsCommand::Path { name } => model_path(&reg, name, quiet, models::resolve)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Print the cached file of registry model `name` (default: the registry
/// default), got through `fetch`.
fn model_path(
    reg: &Registry,
    name: Option<String>,
    quiet: bool,
    fetch: fn(&models::ModelEntry, &models::FetchOptions) -> Result<PathBuf, models::ModelError>,
) -> anyhow::Result<()> {
    let name = name.unwrap_or_else(|| reg.default.clone());
    let opts = models::FetchOptions {
        progress: !quiet,
        ..models::FetchOptions::default()
    };
    let path = reg
        .get(&name)
        .and_then(|entry| fetch(entry, &opts))
        .map_err(usersim::Error::from)?;
    writeln!(std::io::stdout(), "{}", path.display())?;
    Ok(())
}
