//! The evaluation report: [`EvalReport`] (serialisable), a plain-text table
//! ([`EvalReport::render_text`]) and a self-contained HTML page with inline,
//! hand-written SVG plots ([`EvalReport::render_html`]; no scripts, no
//! external resources). Every plot is an `<svg class="plot" id="...">`.
//!
//! Why one file of ~870 lines: the report types and their three renderings (table, JSON, HTML with inline SVG) change together.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::discriminator::DiscriminatorResult;
use super::diversity::LatentCoverage;
use super::intent::{IntentCvResult, LabelFidelity};
use super::lengths::IntentLength;

/// Two categorical distributions on aligned labels and their distances.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistributionComparison {
    /// Category labels.
    pub labels: Vec<String>,
    /// Real probabilities.
    pub real: Vec<f64>,
    /// Simulated probabilities.
    pub sim: Vec<f64>,
    /// Jensen–Shannon divergence (bits, in [0,1]).
    pub js: f64,
    /// Total variation distance.
    pub tv: f64,
    /// Entropy (bits) of the real distribution.
    pub real_entropy: f64,
    /// Entropy (bits) of the simulated distribution.
    pub sim_entropy: f64,
    /// Bootstrap 95% interval of `js` (turns of each side resampled;
    /// percentile interval corrected for the resamples' upward bias).
    #[serde(default)]
    pub js_ci: Option<(f64, f64)>,
    /// Bootstrap 95% interval of `tv`.
    #[serde(default)]
    pub tv_ci: Option<(f64, f64)>,
}

impl DistributionComparison {
    /// `JS x [lo, hi] TV y [lo, hi]` for tables.
    pub fn distances(&self) -> String {
        let ci =
            |c: Option<(f64, f64)>| c.map_or(String::new(), |(l, h)| format!(" [{l:.3},{h:.3}]"));
        format!(
            "JS {:.3}{} TV {:.3}{}",
            self.js,
            ci(self.js_ci),
            self.tv,
            ci(self.tv_ci)
        )
    }
}

/// Whether session latents that name genres or a target item show in the
/// conversation's text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionFidelity {
    /// Conversations whose latents name at least one known genre.
    pub genre_conversations: usize,
    /// Share of (conversation, latent genre) pairs whose genre the user's
    /// turns mention.
    pub latent_genre_mentioned: f64,
    /// The same share for the other genres of each conversation: the chance
    /// level the first should beat.
    pub other_genre_mentioned: f64,
    /// Conversations with a target item (a latent object with a `title`).
    pub target_conversations: usize,
    /// Share of those whose text (either side) names the target.
    pub target_named: f64,
    /// Share of those whose user turns name it.
    pub target_named_by_user: f64,
}

/// Per-turn values behind the distribution and length measures of one side,
/// kept (not serialised) so a baseline can be compared turn-resampled.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SideTurns {
    /// The dialogue index of each user turn (the cluster a paired
    /// bootstrap draws).
    pub dialogue: Vec<usize>,
    /// Number of dialogues (also those without user turns).
    pub n_dialogues: usize,
    /// Words per user turn.
    pub words: Vec<f64>,
    /// Sentiment label of each turn.
    pub sentiment: Vec<Vec<String>>,
    /// Genres each turn mentions.
    pub genres: Vec<Vec<String>>,
    /// Top predicted intent of each turn (when intents were analysed).
    pub intent: Option<Vec<Vec<String>>>,
    /// Per turn with a requested intent: whether the prediction matches.
    pub fidelity_hits: Option<Vec<bool>>,
}

/// Per-turn values of both sides and the label sets they range over.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TurnValues {
    /// Real side.
    pub real: SideTurns,
    /// Simulated side.
    pub sim: SideTurns,
    /// Genre labels.
    pub genre_labels: Vec<String>,
    /// Intent labels.
    pub intent_labels: Vec<String>,
}

/// Length statistics (words per turn, or seeker turns per dialogue).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LengthStats {
    /// Real mean.
    pub real_mean: f64,
    /// Simulated mean.
    pub sim_mean: f64,
    /// 1-D Wasserstein distance between the samples.
    pub wasserstein: f64,
    /// Histogram bin edges (last bin also holds everything above).
    pub bin_edges: Vec<f64>,
    /// Real counts per bin.
    pub real_hist: Vec<usize>,
    /// Simulated counts per bin.
    pub sim_hist: Vec<usize>,
}

/// Lexical diversity of one text set.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiversityStats {
    /// distinct-1.
    pub distinct_1: f64,
    /// distinct-2.
    pub distinct_2: f64,
    /// distinct-3.
    pub distinct_3: f64,
    /// Self-BLEU-4 (higher = more repetitive).
    pub self_bleu: f64,
}

/// Intent analysis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentReport {
    /// Cross-validated quality of the classifier on its training corpus.
    pub cv: IntentCvResult,
    /// Predicted (top-1) intent distribution, real vs simulated turns.
    pub predicted: DistributionComparison,
    /// Gold labels of the training corpus vs requested intents of the
    /// simulation (if any were requested).
    pub requested_vs_gold: Option<DistributionComparison>,
    /// Requested vs predicted intents of simulated turns.
    pub fidelity: Option<LabelFidelity>,
    /// Utility of the simulated labels: a classifier trained on the
    /// simulated turns with their intents, tested on the labelled real
    /// turns (macro-F1, bootstrap interval over the real turns); compare
    /// with `cv.macro_f1`, the real-trained figure.
    #[serde(default)]
    pub sim_trained_macro_f1: Option<super::stats::Estimate>,
}

/// Everything [`super::evaluate::evaluate`] measures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Real dialogues.
    pub n_real_dialogues: usize,
    /// Simulated dialogues.
    pub n_sim_dialogues: usize,
    /// Real seeker turns.
    pub n_real_turns: usize,
    /// Simulated user turns.
    pub n_sim_turns: usize,
    /// Words per seeker turn.
    pub turn_lengths: LengthStats,
    /// Seeker turns per dialogue.
    pub dialogue_lengths: LengthStats,
    /// Share of seeker turns sharing a word 6-gram with the system turn
    /// just before them `(real, simulated)`: echoing the recommender.
    #[serde(default)]
    pub echo_rate: (f64, f64),
    /// Share of simulated turns sharing a word 8-gram with any real seeker
    /// turn of the reference set: pasted rather than written.
    #[serde(default)]
    pub copy_rate: f64,
    /// Turn-level real-vs-simulated discriminator.
    pub turn_discriminator: Option<DiscriminatorResult>,
    /// The turn-level protocol on MiniLM sentence embeddings alone (no
    /// n-grams): what the turns say rather than how they are typed, so a
    /// simulator tuned against the TF-IDF features (a realism critic's)
    /// is checked by features it never saw. `None` without embeddings.
    #[serde(default)]
    pub embedding_discriminator: Option<DiscriminatorResult>,
    /// Context-aware discriminator ("context AUC"): each seeker turn with
    /// the system turn just before it (empty if none), as TF-IDF blocks
    /// `turn:` and `ctx:`, pair features `pair:` (word overlap, shared
    /// 6-gram, length share, cosine of their embeddings) and both
    /// embeddings; same protocol as `turn_discriminator`. Above it when the
    /// simulator answers its context unlike people (ignores or parrots it).
    #[serde(default)]
    pub context_discriminator: Option<DiscriminatorResult>,
    /// Conversation-level discriminator.
    pub conversation_discriminator: Option<DiscriminatorResult>,
    /// Intent analysis.
    pub intents: Option<IntentReport>,
    /// Words per seeker turn for the intents most frequent among the real
    /// labelled turns, real vs simulated (empty when the real set has no
    /// intent labels).
    #[serde(default)]
    pub intent_lengths: Vec<IntentLength>,
    /// Sentiment (pos/neu/neg) distributions.
    pub sentiment: DistributionComparison,
    /// Genre mention distributions.
    pub topics: DistributionComparison,
    /// Diversity of real seeker turns.
    pub diversity_real: DiversityStats,
    /// Diversity of simulated user turns.
    pub diversity_sim: DiversityStats,
    /// distinct-1/2/3 of the real turns at the simulated side's size (mean
    /// over seeded samples of as many turns): distinct-n falls as a set
    /// grows, so this, not `diversity_real`, is what the simulated figures
    /// compare with. Self-BLEU is left at 0.
    #[serde(default)]
    pub diversity_real_at_sim_size: Option<DiversityStats>,
    /// Coverage of declared latents.
    pub latent_coverage: Option<LatentCoverage>,
    /// Per session variable, how well its value is recovered from the
    /// seeker's turns (k-fold classifier against the majority rate).
    #[serde(default)]
    pub latent_recovery: Vec<super::recovery::LatentRecovery>,
    /// Genre and target latents shown in the text.
    #[serde(default)]
    pub session_fidelity: Option<SessionFidelity>,
    /// Fréchet distance of turn embeddings.
    pub frechet: Option<f64>,
    /// Mean pairwise cosine distance of turn embeddings `(real, simulated)`:
    /// how spread out each set is in meaning.
    pub embedding_spread: Option<(f64, f64)>,
    /// Parts skipped and why.
    pub warnings: Vec<String>,
    /// Per-turn values for paired baseline comparisons (not serialised).
    #[serde(skip)]
    pub turn_values: Option<TurnValues>,
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn row(out: &mut String, name: &str, real: &str, sim: &str, extra: &str) {
    let _ = writeln!(out, "| {name:<36} | {real:>12} | {sim:>12} | {extra:<46} |");
}

impl EvalReport {
    /// Plain-text table for terminals.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let line = format!(
            "+{}+{}+{}+{}+",
            "-".repeat(38),
            "-".repeat(14),
            "-".repeat(14),
            "-".repeat(48)
        );
        let _ = writeln!(o, "{line}");
        row(&mut o, "metric", "real", "simulated", "comparison");
        let _ = writeln!(o, "{line}");
        let f = |x: f64| format!("{x:.3}");
        row(
            &mut o,
            "dialogues",
            &self.n_real_dialogues.to_string(),
            &self.n_sim_dialogues.to_string(),
            "",
        );
        row(
            &mut o,
            "seeker turns",
            &self.n_real_turns.to_string(),
            &self.n_sim_turns.to_string(),
            "",
        );
        let tl = &self.turn_lengths;
        row(
            &mut o,
            "words per turn (mean)",
            &f(tl.real_mean),
            &f(tl.sim_mean),
            &format!("W1 {:.3}", tl.wasserstein),
        );
        for l in &self.intent_lengths {
            row(
                &mut o,
                &format!("  words per turn, intent {}", l.intent),
                &f(l.real_mean_words),
                &l.sim_mean_words.map_or_else(|| "-".to_string(), f),
                &format!(
                    "ratio {} {} n={}/{}",
                    l.ratio.map_or_else(|| "-".to_string(), f),
                    if l.within_20_percent {
                        "within ±20%"
                    } else {
                        "OFF BY >20%"
                    },
                    l.real_turns,
                    l.sim_turns
                ),
            );
        }
        row(
            &mut o,
            "echo rate (6-gram of system turn)",
            &f(self.echo_rate.0),
            &f(self.echo_rate.1),
            "",
        );
        row(
            &mut o,
            "copy rate (8-gram of a real turn)",
            "",
            &f(self.copy_rate),
            "",
        );
        let dl = &self.dialogue_lengths;
        row(
            &mut o,
            "seeker turns per dialogue (mean)",
            &f(dl.real_mean),
            &f(dl.sim_mean),
            &format!("W1 {:.3}", dl.wasserstein),
        );
        if let Some(d) = &self.turn_discriminator {
            row(
                &mut o,
                "discriminator folds",
                "",
                "",
                &format!("by {} (--folds-by)", d.fold_unit),
            );
        }
        for (name, d) in [
            ("turn", &self.turn_discriminator),
            ("embedding-only turn", &self.embedding_discriminator),
            ("context", &self.context_discriminator),
            ("conversation", &self.conversation_discriminator),
        ] {
            if let Some(d) = d {
                row(
                    &mut o,
                    &format!("{name} discriminator AUC"),
                    "",
                    "",
                    &format!("{}, {} per class", d.auc, d.n_per_class),
                );
                row(
                    &mut o,
                    &format!("{name} discriminator accuracy"),
                    "",
                    "",
                    &d.accuracy.to_string(),
                );
            }
        }
        for l in &self.latent_recovery {
            row(
                &mut o,
                &format!("latent `{}` recovered (acc.)", l.variable),
                "",
                &f(l.accuracy.value),
                &format!(
                    "{} vs majority {:.3}, macro-F1 {:.3} vs chance {:.3}, words alone {:.3}{}{}",
                    l.accuracy.interval(),
                    l.majority,
                    l.macro_f1.value,
                    l.chance_macro_f1,
                    l.text_accuracy.value,
                    l.intent_accuracy
                        .as_ref()
                        .map_or_else(String::new, |a| format!(", intents {:.3}", a.value)),
                    if l.recoverable { "" } else { " NOT RECOVERED" }
                ),
            );
        }
        if let Some(i) = &self.intents {
            row(
                &mut o,
                "intent classifier CV macro-F1",
                &f(i.cv.macro_f1),
                "",
                &format!("n={}", i.cv.n),
            );
            if let Some(u) = &i.sim_trained_macro_f1 {
                row(
                    &mut o,
                    "intent macro-F1, trained on simulated",
                    "",
                    &f(u.value),
                    &format!("{} on real labelled turns", u.interval()),
                );
            }
            let p = &i.predicted;
            row(
                &mut o,
                "intent entropy (bits, predicted)",
                &f(p.real_entropy),
                &f(p.sim_entropy),
                &p.distances(),
            );
            if let Some(fd) = &i.fidelity {
                row(
                    &mut o,
                    "intent fidelity accuracy",
                    "",
                    &f(fd.accuracy),
                    &format!("macro-F1 {:.3} n={}", fd.macro_f1, fd.n),
                );
            }
        }
        let s = &self.sentiment;
        row(
            &mut o,
            "sentiment entropy (bits)",
            &f(s.real_entropy),
            &f(s.sim_entropy),
            &s.distances(),
        );
        let t = &self.topics;
        row(
            &mut o,
            "genre-mention entropy (bits)",
            &f(t.real_entropy),
            &f(t.sim_entropy),
            &t.distances(),
        );
        let (dr, ds) = (&self.diversity_real, &self.diversity_sim);
        let matched = |pick: fn(&DiversityStats) -> f64| {
            self.diversity_real_at_sim_size
                .as_ref()
                .map(|d| format!("real at the sim's size {:.3}", pick(d)))
                .unwrap_or_default()
        };
        row(
            &mut o,
            "distinct-1",
            &f(dr.distinct_1),
            &f(ds.distinct_1),
            &matched(|d| d.distinct_1),
        );
        row(
            &mut o,
            "distinct-2",
            &f(dr.distinct_2),
            &f(ds.distinct_2),
            &matched(|d| d.distinct_2),
        );
        row(
            &mut o,
            "distinct-3",
            &f(dr.distinct_3),
            &f(ds.distinct_3),
            &matched(|d| d.distinct_3),
        );
        row(
            &mut o,
            "self-BLEU-4",
            &f(dr.self_bleu),
            &f(ds.self_bleu),
            "",
        );
        if let Some(c) = &self.latent_coverage {
            row(
                &mut o,
                "latent value / pair coverage",
                "",
                &f(c.value_coverage),
                &format!("pairs {:.3}", c.pair_coverage),
            );
        }
        if let Some(sf) = &self.session_fidelity {
            if sf.genre_conversations > 0 {
                row(
                    &mut o,
                    "latent genres mentioned by user",
                    "",
                    &f(sf.latent_genre_mentioned),
                    &format!(
                        "other genres {:.3}, n={}",
                        sf.other_genre_mentioned, sf.genre_conversations
                    ),
                );
            }
            if sf.target_conversations > 0 {
                row(
                    &mut o,
                    "target item named",
                    "",
                    &f(sf.target_named),
                    &format!(
                        "by the user {:.3}, n={}",
                        sf.target_named_by_user, sf.target_conversations
                    ),
                );
            }
        }
        if let Some((r, s)) = self.embedding_spread {
            row(&mut o, "mean pairwise embedding distance", &f(r), &f(s), "");
        }
        if let Some(fd) = self.frechet {
            row(
                &mut o,
                "Fréchet embedding distance",
                "",
                "",
                &format!("{fd:.4}"),
            );
        }
        let _ = writeln!(o, "{line}");
        for (which, d) in [
            ("turn", &self.turn_discriminator),
            ("context", &self.context_discriminator),
        ] {
            let Some(d) = d else { continue };
            let top: Vec<String> = d
                .top_simulated
                .iter()
                .take(10)
                .map(|(n, w)| format!("{n} ({w:.2})"))
                .collect();
            let _ = writeln!(o, "most 'simulated' {which} features: {}", top.join(", "));
        }
        for w in &self.warnings {
            let _ = writeln!(o, "warning: {w}");
        }
        o
    }

    /// Self-contained HTML page with inline SVG plots.
    pub fn render_html(&self, title: &str) -> String {
        let mut h = String::new();
        let _ = write!(
            h,
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
             body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse}}\
             td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#eee}}\
             pre{{background:#f6f6f6;padding:1em}}svg.plot{{display:block;margin:1em 0}}</style></head><body>\n\
             <h1>{t}</h1>\n<h2>Summary</h2>\n<pre>{s}</pre>\n",
            t = esc(title),
            s = esc(&self.render_text())
        );
        if let Some(i) = &self.intents {
            h.push_str("<h2>Intent distribution (predicted, top-1)</h2>\n");
            h.push_str(&grouped_bars("intent-bars", &i.predicted));
            if let Some(fd) = &i.fidelity {
                h.push_str("<h2>Intent fidelity: requested (rows) vs predicted (columns)</h2>\n");
                h.push_str(&heatmap("confusion", &fd.labels, &fd.confusion));
            }
        }
        h.push_str("<h2>Sentiment</h2>\n");
        h.push_str(&grouped_bars("sentiment-bars", &self.sentiment));
        h.push_str("<h2>Genre mentions</h2>\n");
        h.push_str(&grouped_bars("topic-bars", &self.topics));
        h.push_str("<h2>Words per seeker turn</h2>\n");
        h.push_str(&histogram("turn-length-hist", &self.turn_lengths));
        if !self.intent_lengths.is_empty() {
            h.push_str(&intent_length_table(&self.intent_lengths));
        }
        if !self.latent_recovery.is_empty() {
            h.push_str(&recovery_table(&self.latent_recovery));
        }
        h.push_str("<h2>Seeker turns per dialogue</h2>\n");
        h.push_str(&histogram("dialogue-length-hist", &self.dialogue_lengths));
        for (id, heading, d) in [
            (
                "roc-turn",
                "ROC of the turn-level discriminator (turn AUC",
                &self.turn_discriminator,
            ),
            (
                "roc-context",
                "ROC of the context-aware discriminator: seeker turn with the system turn before it (context AUC",
                &self.context_discriminator,
            ),
            (
                "roc-conversation",
                "ROC of the conversation-level discriminator (AUC",
                &self.conversation_discriminator,
            ),
        ] {
            if let Some(d) = d {
                let _ = writeln!(h, "<h2>{heading} {:.3})</h2>", d.auc.value);
                h.push_str(&roc(id, &d.roc));
                h.push_str("<table><tr><th>most simulated</th><th>coef</th><th>most real</th><th>coef</th></tr>\n");
                for k in 0..d.top_simulated.len().max(d.top_real.len()) {
                    let cell = |v: Option<&(String, f64)>| {
                        v.map_or(("".to_string(), "".to_string()), |(n, w)| {
                            (esc(n), format!("{w:.2}"))
                        })
                    };
                    let (a, b) = cell(d.top_simulated.get(k));
                    let (c, e) = cell(d.top_real.get(k));
                    let _ = writeln!(
                        h,
                        "<tr><td>{a}</td><td>{b}</td><td>{c}</td><td>{e}</td></tr>"
                    );
                }
                h.push_str("</table>\n");
            }
        }
        h.push_str("</body></html>\n");
        h
    }
}

/// Session-variable recovery as an HTML table, a row per variable.
fn recovery_table(rows: &[super::recovery::LatentRecovery]) -> String {
    let mut h = String::from(
        "<h2>Session variables recovered from the seeker's turns</h2>\n\
         <p>A classifier (k-fold over dialogues) tells each variable's value from the \
         seeker's words and the conversation's shape; a variable it cannot tell better than \
         guessing the most frequent value (its accuracy interval above <i>majority</i>) is \
         a label that carries no information. Macro-F1 weighs every value alike; guessing \
         each value at its own frequency scores <i>chance macro-F1</i> (1 / classes). \
         \"intents\" is the same classifier on the turns' intents instead of their words: \
         what the value could show if every turn said its intent perfectly.</p>\n\
         <table id=\"latent-recovery\"><tr><th>variable</th><th>dialogues</th><th>classes</th>\
         <th>accuracy [95%]</th><th>majority</th><th>macro-F1 [95%]</th><th>chance macro-F1</th>\
         <th>words alone</th><th>intents</th><th>recovered</th></tr>\n",
    );
    for l in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td><td>{}</td>\
             <td>{:.3}</td><td>{:.3}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.variable),
            l.n,
            esc(&l.classes.join(", ")),
            l.accuracy,
            l.majority,
            l.macro_f1,
            l.chance_macro_f1,
            l.text_accuracy.value,
            l.intent_accuracy
                .as_ref()
                .map_or_else(|| "-".to_string(), |a| format!("{:.3}", a.value)),
            if l.recoverable {
                "yes"
            } else {
                "<b>NOT RECOVERED</b>"
            }
        );
    }
    h.push_str("</table>\n");
    h
}

/// Words per turn by intent as an HTML table.
fn intent_length_table(rows: &[IntentLength]) -> String {
    let mut h = String::from(
        "<h3>Words per seeker turn by intent (the most frequent real intents)</h3>\n\
         <table id=\"intent-lengths\"><tr><th>intent</th><th>real turns</th><th>real mean</th>\
         <th>simulated turns</th><th>simulated mean</th><th>ratio</th><th>within ±20%</th></tr>\n",
    );
    let cell = |v: Option<f64>, d: usize| v.map_or_else(|| "-".to_string(), |x| format!("{x:.d$}"));
    for l in rows {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&l.intent),
            l.real_turns,
            l.real_mean_words,
            l.sim_turns,
            cell(l.sim_mean_words, 2),
            cell(l.ratio, 3),
            if l.within_20_percent { "yes" } else { "no" }
        );
    }
    h.push_str("</table>\n");
    h
}

const REAL: &str = "#1f77b4";
const SIM: &str = "#ff7f0e";

fn legend(out: &mut String, x: f64, y: f64) {
    let _ = write!(
        out,
        "<rect x=\"{x}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{REAL}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">real</text>\
         <rect x=\"{}\" y=\"{y}\" width=\"12\" height=\"12\" fill=\"{SIM}\"/><text x=\"{}\" y=\"{}\" font-size=\"12\">simulated</text>",
        x + 16.0,
        y + 10.0,
        x + 60.0,
        x + 76.0,
        y + 10.0
    );
}

/// Grouped bar chart of two aligned distributions.
pub fn grouped_bars(id: &str, d: &DistributionComparison) -> String {
    let n = d.labels.len().max(1);
    let (w, hgt, left, bottom, top) = (60.0 + 48.0 * n as f64, 300.0, 50.0, 60.0, 30.0);
    let max = d
        .real
        .iter()
        .chain(&d.sim)
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-9);
    let ph = hgt - bottom - top;
    let mut s = format!("<svg class=\"plot\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\">", esc(id));
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>",
        hgt - bottom,
        w - 10.0,
        hgt - bottom
    );
    for k in 0..=4 {
        let v = max * k as f64 / 4.0;
        let y = hgt - bottom - ph * k as f64 / 4.0;
        let _ = write!(s, "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{v:.2}</text><line x1=\"{left}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#eee\"/>", left - 4.0, y + 3.0, w - 10.0);
    }
    for (i, l) in d.labels.iter().enumerate() {
        let x0 = left + 5.0 + 48.0 * i as f64;
        for (j, (vals, col)) in [(&d.real, REAL), (&d.sim, SIM)].into_iter().enumerate() {
            let v = vals.get(i).copied().unwrap_or(0.0);
            let bh = ph * v / max;
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{}\" width=\"18\" height=\"{bh:.2}\" fill=\"{col}\"><title>{}: {v:.3}</title></rect>",
                x0 + 19.0 * j as f64,
                hgt - bottom - bh,
                esc(l)
            );
        }
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{y}\" font-size=\"11\" text-anchor=\"end\" transform=\"rotate(-45 {x} {y})\">{}</text>",
            esc(l),
            x = x0 + 19.0,
            y = hgt - bottom + 14.0
        );
    }
    legend(&mut s, left + 10.0, 8.0);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"20\" font-size=\"11\">JS {:.3} · TV {:.3}</text></svg>",
        left + 170.0,
        d.js,
        d.tv
    );
    s
}

/// Side-by-side histogram of two length samples.
pub fn histogram(id: &str, l: &LengthStats) -> String {
    let n = l.real_hist.len().max(1);
    let (w, hgt, left, bottom, top) = (700.0, 280.0, 50.0, 40.0, 30.0);
    let tr = l.real_hist.iter().sum::<usize>().max(1) as f64;
    let ts = l.sim_hist.iter().sum::<usize>().max(1) as f64;
    let fr: Vec<f64> = l.real_hist.iter().map(|&c| c as f64 / tr).collect();
    let fs: Vec<f64> = l.sim_hist.iter().map(|&c| c as f64 / ts).collect();
    let max = fr
        .iter()
        .chain(&fs)
        .fold(0.0f64, |a, &b| a.max(b))
        .max(1e-9);
    let ph = hgt - bottom - top;
    let bw = (w - left - 10.0) / n as f64;
    let mut s = format!("<svg class=\"plot\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{hgt}\">", esc(id));
    let _ = write!(
        s,
        "<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#000\"/>",
        hgt - bottom,
        w - 10.0,
        hgt - bottom
    );
    for k in 0..=4 {
        let y = hgt - bottom - ph * k as f64 / 4.0;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{:.2}</text>",
            left - 4.0,
            y + 3.0,
            max * k as f64 / 4.0
        );
    }
    for i in 0..n {
        let x0 = left + bw * i as f64;
        for (j, (vals, col)) in [(&fr, REAL), (&fs, SIM)].into_iter().enumerate() {
            let v = vals.get(i).copied().unwrap_or(0.0);
            let bh = ph * v / max;
            let _ = write!(
                s,
                "<rect x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\" fill=\"{col}\" fill-opacity=\"0.85\"/>",
                x0 + 1.0 + j as f64 * (bw - 2.0) / 2.0,
                hgt - bottom - bh,
                (bw - 2.0) / 2.0
            );
        }
        if i % 2 == 0 {
            if let Some(e) = l.bin_edges.get(i) {
                let _ = write!(s, "<text x=\"{x0:.2}\" y=\"{}\" font-size=\"10\" text-anchor=\"middle\">{e:.0}</text>", hgt - bottom + 14.0);
            }
        }
    }
    legend(&mut s, left + 10.0, 8.0);
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"20\" font-size=\"11\">mean {:.2} vs {:.2} · W1 {:.3}</text></svg>",
        left + 170.0,
        l.real_mean,
        l.sim_mean,
        l.wasserstein
    );
    s
}

/// ROC curve with the chance diagonal.
pub fn roc(id: &str, pts: &[(f64, f64)]) -> String {
    let (size, m) = (320.0, 40.0);
    let p = size - 2.0 * m;
    let mut s = format!("<svg class=\"plot\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\">", esc(id));
    let _ = write!(
        s,
        "<rect x=\"{m}\" y=\"{m}\" width=\"{p}\" height=\"{p}\" fill=\"none\" stroke=\"#000\"/>"
    );
    let _ = write!(s, "<line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{m}\" stroke=\"#999\" stroke-dasharray=\"4 3\"/>", m + p, m + p);
    let path: Vec<String> = pts
        .iter()
        .map(|(x, y)| format!("{:.2},{:.2}", m + p * x, m + p * (1.0 - y)))
        .collect();
    let _ = write!(
        s,
        "<polyline points=\"{}\" fill=\"none\" stroke=\"{SIM}\" stroke-width=\"2\"/>",
        path.join(" ")
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\">false positive rate</text>\
         <text x=\"12\" y=\"{}\" font-size=\"11\" text-anchor=\"middle\" transform=\"rotate(-90 12 {})\">true positive rate</text>\
         <text x=\"{m}\" y=\"{}\" font-size=\"10\">0</text><text x=\"{}\" y=\"{}\" font-size=\"10\">1</text></svg>",
        m + p / 2.0,
        size - 8.0,
        m + p / 2.0,
        m + p / 2.0,
        m + p + 12.0,
        m + p - 6.0,
        m + p + 12.0
    );
    s
}

/// Heatmap of a confusion matrix (rows: truth/requested, columns: predicted),
/// colour by row share.
pub fn heatmap(id: &str, labels: &[String], m: &[Vec<usize>]) -> String {
    let n = labels.len();
    let (cell, left, top) = (30.0, 60.0, 60.0);
    let size_w = left + cell * n as f64 + 10.0;
    let size_h = top + cell * n as f64 + 10.0;
    let mut s = format!("<svg class=\"plot\" id=\"{}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{size_w}\" height=\"{size_h}\">", esc(id));
    let mut totals: BTreeMap<usize, usize> = BTreeMap::new();
    for (i, r) in m.iter().enumerate() {
        totals.insert(i, r.iter().sum());
    }
    for i in 0..n {
        let y = top + cell * i as f64;
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" text-anchor=\"end\">{}</text>",
            left - 4.0,
            y + cell / 2.0 + 3.0,
            esc(&labels[i])
        );
        let x = left + cell * i as f64 + cell / 2.0;
        let _ = write!(
            s,
            "<text x=\"{x}\" y=\"{}\" font-size=\"10\" transform=\"rotate(-60 {x} {})\">{}</text>",
            top - 4.0,
            top - 4.0,
            esc(&labels[i])
        );
        for j in 0..n {
            let c = m.get(i).and_then(|r| r.get(j)).copied().unwrap_or(0);
            let t = totals.get(&i).copied().unwrap_or(0).max(1);
            let share = c as f64 / t as f64;
            let shade = (255.0 - 200.0 * share).round() as u8;
            let _ = write!(
                s,
                "<rect x=\"{}\" y=\"{y}\" width=\"{cell}\" height=\"{cell}\" fill=\"rgb({shade},{shade},255)\" stroke=\"#fff\"><title>{} → {}: {c}</title></rect>",
                left + cell * j as f64,
                esc(&labels[i]),
                esc(&labels[j])
            );
            if c > 0 {
                let _ = write!(
                    s,
                    "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"middle\">{c}</text>",
                    left + cell * j as f64 + cell / 2.0,
                    y + cell / 2.0 + 3.0
                );
            }
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_table_flags_only_what_is_not_recovered() {
        let est = |value: f64| crate::eval::stats::Estimate {
            value,
            lo: value - 0.05,
            hi: value + 0.05,
        };
        let row = |variable: &str, accuracy: f64, recoverable: bool| {
            crate::eval::recovery::LatentRecovery {
                variable: variable.into(),
                classes: vec!["a".into(), "b<".into()],
                n: 40,
                accuracy: est(accuracy),
                macro_f1: est(accuracy - 0.1),
                text_accuracy: est(accuracy - 0.2),
                intent_accuracy: None,
                majority: 0.5,
                chance_macro_f1: 0.5,
                recoverable,
            }
        };
        let t = recovery_table(&[row("patience", 0.8, true), row("age", 0.4, false)]);
        assert!(t.contains("id=\"latent-recovery\""));
        assert_eq!(t.matches("<tr><td>").count(), 2);
        let patience = &t[t.find("<tr><td>patience").expect("row")..];
        let patience = &patience[..patience.find("</tr>").expect("end")];
        assert!(
            patience.contains("<td>0.800 [0.750, 0.850]</td>"),
            "{patience}"
        );
        assert!(
            patience.contains("<td>0.700 [0.650, 0.750]</td>"),
            "{patience}"
        );
        assert!(patience.contains("<td>0.500</td>") && patience.contains("<td>yes</td>"));
        assert!(patience.contains("a, b&lt;"), "classes escaped: {patience}");
        assert_eq!(t.matches("NOT RECOVERED").count(), 1);
        assert!(t[t.find("<tr><td>age").expect("row")..].contains("NOT RECOVERED"));
    }

    #[test]
    fn svgs_are_well_formed_and_identified() {
        let d = DistributionComparison {
            labels: vec!["A".into(), "B<".into()],
            real: vec![0.5, 0.5],
            sim: vec![1.0, 0.0],
            js: 0.31,
            tv: 0.5,
            real_entropy: 1.0,
            sim_entropy: 0.0,
            js_ci: None,
            tv_ci: None,
        };
        let g = grouped_bars("x", &d);
        assert!(g.starts_with("<svg class=\"plot\" id=\"x\""));
        assert!(g.contains("B&lt;") && g.trim_end().ends_with("</svg>"));
        assert_eq!(g.matches("<rect").count(), 4 + 2); // 4 bars + 2 legend boxes
        let h = heatmap("c", &["A".into(), "B".into()], &[vec![2, 0], vec![1, 1]]);
        assert_eq!(h.matches("<rect").count(), 4);
        let r = roc("r", &[(0.0, 0.0), (0.5, 1.0), (1.0, 1.0)]);
        assert!(r.contains("<polyline points=\"40.00,280.00 160.00,40.00 280.00,40.00\""));
        let l = LengthStats {
            real_mean: 1.0,
            sim_mean: 2.0,
            wasserstein: 1.0,
            bin_edges: vec![0.0, 1.0, 2.0],
            real_hist: vec![1, 0],
            sim_hist: vec![0, 1],
        };
        assert!(histogram("h", &l).contains("id=\"h\""));
    }
}
