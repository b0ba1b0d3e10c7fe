//! `usersim eval` as a library call: load the real, simulated and (optional)
//! baseline sets, embed their user turns (cached on disk for real corpora),
//! run [`super::evaluate_with`] and write the requested outputs.
//!
//! The real set is both the reference of every distance and, when its turns
//! carry intent labels (IARD), the training set of the intent classifier;
//! `intent_corpus` names another labelled set when the real one has none
//! (INSPIRED).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::conditional::{
    conditional_realism, render_field, ConditionalConfig, ConditionalError, FieldRealism,
};
use super::loaders::{load_auto, Corpus, LoadError};
use super::report::EvalReport;
use super::{evaluate_with, EvalConfig, EvalEmbeddings, EvalError};
use crate::embed::{embed_cached, EmbedConfig, EmbedError, Embedder};

/// Settings of one `usersim eval` run.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalRunConfig {
    /// Real conversations (IARD `.json`, INSPIRED `.tsv`, usersim or
    /// chat-messages `.jsonl`).
    pub real: PathBuf,
    /// Simulated conversations (or a second real set, for sanity checks).
    pub sim: PathBuf,
    /// An uncontrolled (or any other) run measured beside `sim`.
    pub baseline: Option<PathBuf>,
    /// Labelled corpus that trains the intent classifier; `None` uses `real`
    /// when it has intent labels.
    pub intent_corpus: Option<PathBuf>,
    /// Sentence embeddings for the discriminator, Fréchet distance and
    /// embedding diversity; `None` runs without them.
    pub embed: Option<EmbedConfig>,
    /// Where embeddings of input sets are cached (keyed by model and texts).
    pub embed_cache: PathBuf,
    /// Measures and their settings.
    pub eval: EvalConfig,
    /// Per-group realism (`--by`); no fields, no groups.
    #[serde(default)]
    pub conditional: ConditionalConfig,
    /// A human-judging study whose figures the report includes.
    #[serde(default)]
    pub study: Option<PathBuf>,
}

/// Errors of [`run_eval`]: each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum EvalRunError {
    /// An input set could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The embedding model failed.
    #[error(transparent)]
    Embed(#[from] EmbedError),
    /// A measure failed.
    #[error("{path}: {source}")]
    Eval {
        /// The simulated set being measured.
        path: PathBuf,
        /// What failed.
        source: EvalError,
    },
    /// The human-judging study could not be read.
    #[error(transparent)]
    Judge(#[from] crate::judge::JudgeError),
    /// A `--by` field is missing from one side.
    #[error("{path}: --by: {source}")]
    Conditional {
        /// The set without the field.
        path: PathBuf,
        /// What is missing.
        source: ConditionalError,
    },
}

impl EvalRunError {
    /// Whether the user's input is at fault (exit code 2), not the machine.
    pub fn is_input_error(&self) -> bool {
        match self {
            EvalRunError::Judge(e) => e.is_input(),
            e => matches!(
                e,
                EvalRunError::Load(_)
                    | EvalRunError::Eval { .. }
                    | EvalRunError::Conditional { .. }
            ),
        }
    }
}

/// One measured set and what it was measured against.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MeasuredSet {
    /// The file.
    pub path: PathBuf,
    /// Every measure.
    pub report: EvalReport,
    /// Per-group realism along each `--by` field.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditional: Vec<FieldRealism>,
}

/// The outcome of [`run_eval`].
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EvalRun {
    /// Real reference set.
    pub real: PathBuf,
    /// The simulated set.
    pub sim: MeasuredSet,
    /// The baseline, if one was given.
    pub baseline: Option<MeasuredSet>,
    /// `simulated − baseline` of the turn-level measures with paired
    /// bootstrap 95% intervals (empty without a baseline).
    #[serde(default)]
    pub baseline_differences: Vec<(String, super::stats::Estimate)>,
    /// Embedding model fingerprint (`None`: embeddings off).
    pub embedding_model: Option<String>,
    /// Human judges' figures (`--study`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<crate::judge::report::JudgeReport>,
    /// Wall-clock seconds of the whole evaluation (stderr and JSON only).
    pub seconds: f64,
}

/// Embeddings of a set's seeker turns and of their contexts.
struct SetEmbeddings {
    turns: Vec<Vec<f32>>,
    /// One per seeker turn: its context's embedding, empty where it has
    /// none (an empty text would still get a vector, of nothing said).
    contexts: Vec<Vec<f32>>,
}

fn embed_set(
    embedder: &Embedder,
    corpus: &Corpus,
    cache: &Path,
) -> Result<SetEmbeddings, EmbedError> {
    let turns = embed_cached(embedder, &corpus.seeker_texts(), cache)?;
    let in_context = super::context::turns_in_context(corpus);
    let said: Vec<String> = in_context
        .iter()
        .filter(|t| !t.context.trim().is_empty())
        .map(|t| t.context.clone())
        .collect();
    let mut said_vectors = embed_cached(embedder, &said, cache)?.into_iter();
    let contexts = in_context
        .iter()
        .map(|t| {
            if t.context.trim().is_empty() {
                Vec::new()
            } else {
                said_vectors.next().unwrap_or_default()
            }
        })
        .collect();
    Ok(SetEmbeddings { turns, contexts })
}

/// Runs every measure of `cfg`.
pub fn run_eval(cfg: &EvalRunConfig) -> Result<EvalRun, EvalRunError> {
    let t0 = Instant::now();
    // The study first: a wrong path fails before the long measures.
    let human = cfg
        .study
        .as_deref()
        .map(crate::judge::report::report)
        .transpose()?;
    let real = load_auto(&cfg.real)?;
    let sim = load_auto(&cfg.sim)?;
    let baseline = cfg.baseline.as_deref().map(load_auto).transpose()?;
    let intent_corpus = match &cfg.intent_corpus {
        Some(p) => Some(load_auto(p)?),
        None => None,
    };
    let intents = intent_corpus.as_ref().unwrap_or(&real);
    tracing::info!(
        real = real.n_seeker_turns(),
        sim = sim.n_seeker_turns(),
        "loaded user turns"
    );

    let embedder = cfg.embed.as_ref().map(Embedder::load).transpose()?;
    let embedded = |c: &Corpus| -> Result<Option<SetEmbeddings>, EmbedError> {
        embedder
            .as_ref()
            .map(|e| embed_set(e, c, &cfg.embed_cache))
            .transpose()
    };
    let real_emb = embedded(&real)?;

    let eval = match &baseline {
        Some(b) => matched_sizes(&cfg.eval, &sim, b),
        None => cfg.eval.clone(),
    };
    let measure = |path: &Path, set: &Corpus| -> Result<MeasuredSet, EvalRunError> {
        let set_emb = embedded(set)?;
        let pair = real_emb
            .as_ref()
            .zip(set_emb.as_ref())
            .map(|(r, s)| EvalEmbeddings {
                turns: (&r.turns, &s.turns),
                contexts: Some((&r.contexts, &s.contexts)),
            });
        let report = evaluate_with(&real, set, Some(intents), &eval, pair).map_err(|source| {
            EvalRunError::Eval {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let conditional = conditional_realism(&real, set, &cfg.conditional).map_err(|source| {
            EvalRunError::Conditional {
                path: match &source {
                    ConditionalError::MissingField { side: "real", .. } => cfg.real.clone(),
                    _ => path.to_path_buf(),
                },
                source,
            }
        })?;
        Ok(MeasuredSet {
            path: path.to_path_buf(),
            report,
            conditional,
        })
    };
    let sim = measure(&cfg.sim, &sim)?;
    let baseline = match (&cfg.baseline, &baseline) {
        (Some(p), Some(b)) => Some(measure(p, b)?),
        _ => None,
    };
    let baseline_differences = baseline
        .as_ref()
        .map(|b| {
            let mut d = super::evaluate::baseline_differences(
                &sim.report,
                &b.report,
                cfg.eval.discriminator.n_bootstrap,
                cfg.eval.seed,
            );
            d.extend(auc_differences(
                &sim.report,
                &b.report,
                cfg.eval.discriminator.n_bootstrap,
                cfg.eval.seed,
            ));
            d
        })
        .unwrap_or_default();
    Ok(EvalRun {
        real: cfg.real.clone(),
        sim,
        baseline,
        baseline_differences,
        embedding_model: embedder.as_ref().map(|e| e.fingerprint().to_string()),
        human,
        seconds: t0.elapsed().as_secs_f64(),
    })
}

/// `eval` with every discriminator's classes capped at the smaller of the
/// two runs: a learnt discriminator's AUC grows with its training data, so
/// a run compared with a baseline of another size is measured at the same
/// number of turns (and of conversations) per class. A smaller cap already
/// set (`--per-class`) stays.
fn matched_sizes(eval: &EvalConfig, sim: &Corpus, baseline: &Corpus) -> EvalConfig {
    let smallest =
        |cap: Option<usize>, a: usize, b: usize| Some(cap.map_or(a, |m| m.min(a)).min(b));
    let turns_cap = eval.discriminator.max_per_class;
    let mut out = eval.clone();
    out.discriminator.max_per_class =
        smallest(turns_cap, sim.n_seeker_turns(), baseline.n_seeker_turns());
    // The conversation discriminator's own cap, as `evaluate_with` reads it.
    out.conversations_per_class = smallest(
        eval.conversations_per_class.or(turns_cap),
        sim.dialogues.len(),
        baseline.dialogues.len(),
    );
    out
}

/// `simulated − baseline` of the discriminator AUCs, each with the paired
/// cluster-bootstrap interval of
/// [`paired_auc_difference`](super::discriminator::paired_auc_difference):
/// one draw of real dialogues and of conversation indices per replicate,
/// applied to both runs' out-of-fold scores. Empty if the two reports were
/// made against different real sets or without per-turn values.
fn auc_differences(
    sim: &EvalReport,
    base: &EvalReport,
    n_boot: usize,
    seed: u64,
) -> Vec<(String, super::stats::Estimate)> {
    use super::discriminator::{paired_auc_difference, DiscriminatorResult};
    let (Some(a), Some(b)) = (&sim.turn_values, &base.turn_values) else {
        return Vec::new();
    };
    if a.real.dialogue != b.real.dialogue || a.real.words != b.real.words {
        return Vec::new();
    }
    let identity = |n: usize| (0..n).collect::<Vec<usize>>();
    let (real_dialogues, a_dialogues, b_dialogues) = (
        identity(a.real.n_dialogues),
        identity(a.sim.n_dialogues),
        identity(b.sim.n_dialogues),
    );
    let pair = |name: &str,
                x: &Option<DiscriminatorResult>,
                y: &Option<DiscriminatorResult>,
                per_dialogue: bool| {
        let (x, y) = (x.as_ref()?, y.as_ref()?);
        let (real, xs, ys) = if per_dialogue {
            (&real_dialogues, &a_dialogues, &b_dialogues)
        } else {
            (&a.real.dialogue, &a.sim.dialogue, &b.sim.dialogue)
        };
        let d = paired_auc_difference(
            (&x.out_of_fold, xs),
            (&y.out_of_fold, ys),
            real,
            n_boot,
            seed.wrapping_add(7),
        )?;
        Some((name.to_string(), d))
    };
    [
        pair(
            "turn discriminator AUC",
            &sim.turn_discriminator,
            &base.turn_discriminator,
            false,
        ),
        pair(
            "embedding-only turn discriminator AUC",
            &sim.embedding_discriminator,
            &base.embedding_discriminator,
            false,
        ),
        pair(
            "context discriminator AUC",
            &sim.context_discriminator,
            &base.context_discriminator,
            false,
        ),
        pair(
            "conversation discriminator AUC",
            &sim.conversation_discriminator,
            &base.conversation_discriminator,
            true,
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// Headline measures of a report, `(name, value)`, in display order; the
/// rows of the side-by-side baseline table.
fn headline(r: &EvalReport) -> Vec<(&'static str, Option<f64>)> {
    let auc =
        |d: &Option<super::discriminator::DiscriminatorResult>| d.as_ref().map(|d| d.auc.value);
    let intents = r.intents.as_ref();
    vec![
        ("turn discriminator AUC", auc(&r.turn_discriminator)),
        (
            "embedding-only turn discriminator AUC",
            auc(&r.embedding_discriminator),
        ),
        ("context discriminator AUC", auc(&r.context_discriminator)),
        (
            "conversation discriminator AUC",
            auc(&r.conversation_discriminator),
        ),
        ("words per user turn", Some(r.turn_lengths.sim_mean)),
        ("turn length W1", Some(r.turn_lengths.wasserstein)),
        (
            "user turns per conversation",
            Some(r.dialogue_lengths.sim_mean),
        ),
        ("intent JS (predicted)", intents.map(|i| i.predicted.js)),
        (
            "intent fidelity accuracy",
            intents.and_then(|i| i.fidelity.as_ref().map(|f| f.accuracy)),
        ),
        (
            "intent fidelity macro-F1",
            intents.and_then(|i| i.fidelity.as_ref().map(|f| f.macro_f1)),
        ),
        (
            "latent genres mentioned by user",
            r.session_fidelity
                .as_ref()
                .filter(|f| f.genre_conversations > 0)
                .map(|f| f.latent_genre_mentioned),
        ),
        (
            "target item named",
            r.session_fidelity
                .as_ref()
                .filter(|f| f.target_conversations > 0)
                .map(|f| f.target_named),
        ),
        ("sentiment JS", Some(r.sentiment.js)),
        ("genre-mention JS", Some(r.topics.js)),
        ("Fréchet embedding distance", r.frechet),
        ("embedding spread", r.embedding_spread.map(|(_, s)| s)),
        ("distinct-2", Some(r.diversity_sim.distinct_2)),
        ("self-BLEU-4", Some(r.diversity_sim.self_bleu)),
    ]
}

impl EvalRun {
    /// The side-by-side table of the set and its baseline, if there is one.
    pub fn baseline_table(&self) -> Option<String> {
        use std::fmt::Write as _;
        let b = self.baseline.as_ref()?;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "{:<34} {:>12} {:>12} {:>12}  95% CI of the difference",
            "measure", "simulated", "baseline", "difference"
        );
        let per_class = |d: &Option<super::discriminator::DiscriminatorResult>| {
            d.as_ref()
                .map_or_else(|| "-".to_string(), |d| d.n_per_class.to_string())
        };
        let _ = writeln!(
            o,
            "(both measured at {} turns and {} conversations per class)",
            per_class(&self.sim.report.turn_discriminator),
            per_class(&self.sim.report.conversation_discriminator)
        );
        let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |x| format!("{x:.3}"));
        for ((name, s), (_, bl)) in headline(&self.sim.report)
            .into_iter()
            .zip(headline(&b.report))
        {
            let diff = s.zip(bl).map(|(s, b)| s - b);
            let ci = self
                .baseline_differences
                .iter()
                .find(|(n, _)| n == name)
                .map_or(String::new(), |(_, e)| {
                    format!("[{:+.3}, {:+.3}]", e.lo, e.hi)
                });
            let _ = writeln!(
                o,
                "{name:<34} {:>12} {:>12} {:>12}  {ci}",
                cell(s),
                cell(bl),
                diff.map_or_else(|| "-".to_string(), |d| format!("{d:+.3}"))
            );
        }
        Some(o)
    }

    /// Terminal report: the full table of the set, then the baseline
    /// comparison.
    pub fn render_text(&self) -> String {
        let mut o = format!(
            "real: {}\nsimulated: {}\n{}",
            self.real.display(),
            self.sim.path.display(),
            self.sim.report.render_text()
        );
        for f in &self.sim.conditional {
            o.push('\n');
            o.push_str(&render_field(f));
        }
        if let (Some(b), Some(t)) = (&self.baseline, self.baseline_table()) {
            o.push_str(&format!("\nagainst baseline {}:\n{t}", b.path.display()));
            for f in &b.conditional {
                o.push_str(&format!("\nbaseline {}", render_field(f)));
            }
        }
        if let Some(h) = &self.human {
            o.push('\n');
            o.push_str(&h.render_text());
        }
        o
    }

    /// Write [`Self::render_html`] to `path`, whole or not at all.
    pub fn write_html(&self, path: &Path) -> Result<(), crate::Error> {
        crate::atomic::write_atomic(path, self.render_html().as_bytes()).map_err(|source| {
            crate::Error::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }

    /// Self-contained HTML page (inline SVG, no scripts).
    pub fn render_html(&self) -> String {
        let title = format!(
            "usersim eval: {} against {}",
            self.sim.path.display(),
            self.real.display()
        );
        let mut page = self.sim.report.render_html(&title);
        let esc = |s: &str| {
            s.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        };
        if !self.sim.conditional.is_empty() {
            let tables: String = self.sim.conditional.iter().map(render_field).collect();
            let section = format!(
                "<h2>Conditional realism</h2>\n<p>Each simulated group against the real conversations of the same group (AUC 0.5 = indistinguishable); a profile shows in the text when <i>sim vs others</i> exceeds <i>sim vs same</i>.</p>\n<pre>{}</pre>\n",
                esc(&tables)
            );
            if let Some(at) = page.rfind("</body>") {
                page.insert_str(at, &section);
            }
        }
        if let (Some(b), Some(t)) = (&self.baseline, self.baseline_table()) {
            let section = format!(
                "<h2>Against baseline {}</h2>\n<pre>{}</pre>\n<h3>Baseline report</h3>\n<pre>{}</pre>\n",
                esc(&b.path.display().to_string()),
                esc(&t),
                esc(&b.report.render_text())
            );
            if let Some(at) = page.rfind("</body>") {
                page.insert_str(at, &section);
            }
        }
        if let Some(h) = &self.human {
            let section = format!(
                "<h2>Human judges: {}</h2>\n{}",
                esc(&h.study),
                h.render_html_section()
            );
            if let Some(at) = page.rfind("</body>") {
                page.insert_str(at, &section);
            }
        }
        page
    }
}
