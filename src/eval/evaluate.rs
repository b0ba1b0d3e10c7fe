//! Top-level evaluation: [`evaluate`] compares a real and a simulated
//! [`Corpus`] and fills an [`EvalReport`].
//!
//! Why one file of ~1180 lines: it is the list of measures `eval` reports, each a short function over the same inputs; about a third is tests, end to end on real IARD and on synthetic dialogues.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use super::context::{discriminate_in_context, turns_in_context, PairEmbeddings};
use super::discriminator::{
    discriminate, discriminate_dense, DensePair, DiscriminatorConfig, DiscriminatorError,
    DiscriminatorResult,
};
use super::diversity::{distinct_at_size, distinct_n, latent_coverage, self_bleu};
use super::intent::{
    cross_validate_intents, fidelity_hits, label_fidelity, transfer_macro_f1, IntentClassifier,
    IntentConfig, IntentError,
};
use super::lengths::{intent_lengths, TOP_INTENTS};
use super::lexicon::{sentiment, TopicLabeller};
use super::loaders::Corpus;
use super::recovery::latent_recovery;
use super::report::{
    DistributionComparison, DiversityStats, EvalReport, IntentReport, LengthStats, SessionFidelity,
    SideTurns, TurnValues,
};
use super::stats::{
    align_distributions, entropy_bits, frechet_distance, js_divergence, percentile_interval,
    total_variation, wasserstein_1d, Estimate, StatsError,
};
use super::text::word_count;
use crate::session::guard;

/// Errors of [`evaluate`].
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A corpus has no seeker turns.
    #[error("the {0} corpus has no seeker (user) turns")]
    NoSeekerTurns(&'static str),
    /// Embeddings do not match the seeker turns.
    #[error("embeddings: {0}")]
    Embeddings(String),
    /// Discriminator failure.
    #[error("discriminator: {0}")]
    Discriminator(#[from] DiscriminatorError),
    /// Intent classifier failure.
    #[error("intent classifier: {0}")]
    Intent(#[from] IntentError),
    /// Statistics failure.
    #[error("statistics: {0}")]
    Stats(#[from] StatsError),
}

/// Settings of [`evaluate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalConfig {
    /// Turn- and conversation-level discriminator settings.
    pub discriminator: DiscriminatorConfig,
    /// Also discriminate whole conversations (seeker turns joined).
    pub conversation_discriminator: bool,
    /// Cap on conversations per class of the conversation discriminator
    /// (`None`: the discriminator's `max_per_class`). A baseline comparison
    /// sets it to the smaller run's conversations, as it sets
    /// `max_per_class` to the smaller run's turns.
    #[serde(default)]
    pub conversations_per_class: Option<usize>,
    /// Also discriminate seeker turns in their context (the system turn
    /// before each).
    pub context_discriminator: bool,
    /// Intent classifier settings.
    pub intent: IntentConfig,
    /// Run the intent part (needs labelled seeker turns in the intent corpus).
    pub intents: bool,
    /// Maximum texts sampled for self-BLEU.
    pub self_bleu_max_texts: usize,
    /// Seed of sampling outside the discriminator.
    pub seed: u64,
    /// Declared latent values (variable → values) for coverage, if known.
    pub declared_latents: Option<BTreeMap<String, Vec<String>>>,
    /// Genre cues for the topic distribution.
    pub topics: TopicLabeller,
    /// Bins of the turn-length histograms.
    pub length_bins: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            discriminator: DiscriminatorConfig::default(),
            conversation_discriminator: true,
            conversations_per_class: None,
            context_discriminator: true,
            intent: IntentConfig::default(),
            intents: true,
            self_bleu_max_texts: 200,
            seed: 7,
            declared_latents: None,
            topics: TopicLabeller::default(),
            length_bins: 20,
        }
    }
}

/// Lowercase words of `s` joined by single spaces, padded with spaces so
/// that whole-word phrases can be found with `contains`.
fn padded_words(s: &str) -> String {
    let words: Vec<String> = s
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
}

/// Genre and target latents of each simulated conversation against its text.
/// A latent names genres when its values (a string or a list) are genre
/// names the topic labeller knows; a target is a latent object with a
/// `title` (the year in parentheses ignored).
pub fn session_fidelity(sim: &Corpus, topics: &TopicLabeller) -> Option<SessionFidelity> {
    let genres = topics.genre_names();
    let (mut gconv, mut hit, mut pairs, mut other_hit, mut other_pairs) = (0, 0, 0, 0, 0);
    let (mut tconv, mut named, mut by_user) = (0usize, 0usize, 0usize);
    for d in &sim.dialogues {
        let serde_json::Value::Object(lat) = &d.latents else {
            continue;
        };
        let mut latent_genres: Vec<&String> = Vec::new();
        let mut target: Option<String> = None;
        for v in lat.values() {
            let strings: Vec<&str> = match v {
                serde_json::Value::String(x) => vec![x.as_str()],
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
                serde_json::Value::Object(o) => {
                    if let Some(t) = o.get("title").and_then(|t| t.as_str()) {
                        let bare = t.split(" (").next().unwrap_or(t);
                        target = Some(padded_words(bare));
                    }
                    Vec::new()
                }
                _ => Vec::new(),
            };
            for x in strings {
                if let Some(g) = genres.iter().find(|g| g.eq_ignore_ascii_case(x)) {
                    if !latent_genres.contains(&g) {
                        latent_genres.push(g);
                    }
                }
            }
        }
        let user_text: Vec<&str> = d
            .turns
            .iter()
            .filter(|t| t.seeker)
            .map(|t| t.text.as_str())
            .collect();
        if !latent_genres.is_empty() {
            gconv += 1;
            let mentioned = topics.genres_in(&user_text.join(" \n "));
            for g in &genres {
                let m = mentioned.contains(g);
                if latent_genres.contains(&g) {
                    pairs += 1;
                    hit += usize::from(m);
                } else {
                    other_pairs += 1;
                    other_hit += usize::from(m);
                }
            }
        }
        if let Some(t) = target.filter(|t| t.trim().len() > 1) {
            tconv += 1;
            let all: Vec<&str> = d.turns.iter().map(|x| x.text.as_str()).collect();
            named += usize::from(padded_words(&all.join(" \n ")).contains(&t));
            by_user += usize::from(padded_words(&user_text.join(" \n ")).contains(&t));
        }
    }
    if gconv == 0 && tconv == 0 {
        return None;
    }
    let share = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    Some(SessionFidelity {
        genre_conversations: gconv,
        latent_genre_mentioned: share(hit, pairs),
        other_genre_mentioned: share(other_hit, other_pairs),
        target_conversations: tconv,
        target_named: share(named, tconv),
        target_named_by_user: share(by_user, tconv),
    })
}

/// Label counts of the turns `idx` of `turns` (each label of a turn counts
/// one), every label of `universe` present.
fn label_counts(
    turns: &[Vec<String>],
    idx: &[usize],
    universe: &[String],
) -> BTreeMap<String, f64> {
    let mut m: BTreeMap<String, f64> = universe.iter().map(|l| (l.clone(), 0.0)).collect();
    for &i in idx {
        for l in &turns[i] {
            *m.entry(l.clone()).or_insert(0.0) += 1.0;
        }
    }
    m
}

fn js_tv(real: &BTreeMap<String, f64>, sim: &BTreeMap<String, f64>) -> Option<(f64, f64)> {
    let (_, r, s) = align_distributions(real, sim);
    // A resample with no label at all on one side has no distribution.
    if r.iter().sum::<f64>() <= 0.0 || s.iter().sum::<f64>() <= 0.0 {
        return None;
    }
    Some((js_divergence(&r, &s).ok()?, total_variation(&r, &s).ok()?))
}

/// Resampled indices `0..n`, with replacement.
fn resample(rng: &mut rand_chacha::ChaCha8Rng, n: usize, out: &mut Vec<usize>) {
    use rand::Rng;
    out.clear();
    out.extend((0..n).map(|_| rng.random_range(0..n)));
}

/// Percentile interval of a distance's resamples, shifted by their bias
/// (resample mean − estimate) and floored at 0. Plug-in JS and TV are biased
/// upward in resamples (sampling noise only adds distance), so the plain
/// percentile interval of a small distance can sit above the estimate, and
/// that of a set against itself can exclude 0.
fn bias_corrected_interval(estimate: f64, reps: Vec<f64>) -> Option<(f64, f64)> {
    let bias = reps.iter().sum::<f64>() / reps.len().max(1) as f64 - estimate;
    percentile_interval(reps).map(|(lo, hi)| ((lo - bias).max(0.0), (hi - bias).max(0.0)))
}

/// Two label distributions (per-turn labels of each side) and their
/// distances, with 95% intervals from `n_boot` resamples of each side's turns.
fn compare_turns(
    real: &[Vec<String>],
    sim: &[Vec<String>],
    universe: &[String],
    n_boot: usize,
    seed: u64,
) -> Result<DistributionComparison, StatsError> {
    use rand::SeedableRng;
    let all = |n: usize| (0..n).collect::<Vec<_>>();
    let (rc, sc) = (
        label_counts(real, &all(real.len()), universe),
        label_counts(sim, &all(sim.len()), universe),
    );
    let (labels, r, s) = align_distributions(&rc, &sc);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let (mut ri, mut si) = (Vec::new(), Vec::new());
    let (mut js_b, mut tv_b) = (Vec::with_capacity(n_boot), Vec::with_capacity(n_boot));
    for _ in 0..n_boot {
        resample(&mut rng, real.len(), &mut ri);
        resample(&mut rng, sim.len(), &mut si);
        if let Some((j, t)) = js_tv(
            &label_counts(real, &ri, universe),
            &label_counts(sim, &si, universe),
        ) {
            js_b.push(j);
            tv_b.push(t);
        }
    }
    let (js, tv) = (js_divergence(&r, &s)?, total_variation(&r, &s)?);
    Ok(DistributionComparison {
        js_ci: bias_corrected_interval(js, js_b),
        tv_ci: bias_corrected_interval(tv, tv_b),
        js,
        tv,
        real_entropy: entropy_bits(&r),
        sim_entropy: entropy_bits(&s),
        labels,
        real: r,
        sim: s,
    })
}

/// Differences `simulated − baseline` of the turn-level measures, each with a
/// paired bootstrap 95% interval: every resample draws the real turns once
/// and measures both sets against that same draw. Names are those of the
/// baseline table. Empty if the two reports were made against different
/// real sets or without per-turn values.
pub fn baseline_differences(
    sim: &EvalReport,
    baseline: &EvalReport,
    n_boot: usize,
    seed: u64,
) -> Vec<(String, Estimate)> {
    use rand::SeedableRng;
    let (Some(a), Some(b)) = (&sim.turn_values, &baseline.turn_values) else {
        return Vec::new();
    };
    // The same real set (intents may have been analysed for one only).
    if a.real.words != b.real.words || a.real.sentiment != b.real.sentiment {
        return Vec::new();
    }
    let real = &a.real;
    let (s, bl) = (&a.sim, &b.sim);
    let mean = |v: &[f64], idx: &[usize]| {
        if idx.is_empty() {
            None
        } else {
            Some(idx.iter().map(|&i| v[i]).sum::<f64>() / idx.len() as f64)
        }
    };
    let pick = |v: &[f64], idx: &[usize]| idx.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    let hit_rate = |h: &[bool], idx: &[usize]| {
        if idx.is_empty() {
            None
        } else {
            Some(idx.iter().filter(|&&i| h[i]).count() as f64 / idx.len() as f64)
        }
    };
    let sentiment_labels: Vec<String> = ["pos", "neu", "neg"].map(String::from).to_vec();
    type Stat<'a> = Box<dyn Fn(&[usize], &[usize], &[usize]) -> Option<f64> + 'a>;
    let dist = |pick_side: fn(&SideTurns) -> Option<&Vec<Vec<String>>>,
                universe: Vec<String>|
     -> Option<Stat<'_>> {
        let (r, s, b) = (pick_side(real)?, pick_side(s)?, pick_side(bl)?);
        Some(Box::new(move |ri: &[usize], si: &[usize], bi: &[usize]| {
            let rc = label_counts(r, ri, &universe);
            let x = js_tv(&rc, &label_counts(s, si, &universe))?.0;
            let y = js_tv(&rc, &label_counts(b, bi, &universe))?.0;
            Some(x - y)
        }))
    };
    let mut stats: Vec<(&str, Stat<'_>)> = vec![
        (
            "words per user turn",
            Box::new(|_: &[usize], si: &[usize], bi: &[usize]| {
                Some(mean(&s.words, si)? - mean(&bl.words, bi)?)
            }),
        ),
        (
            "turn length W1",
            Box::new(|ri: &[usize], si: &[usize], bi: &[usize]| {
                let r = pick(&real.words, ri);
                Some(
                    wasserstein_1d(&r, &pick(&s.words, si)).ok()?
                        - wasserstein_1d(&r, &pick(&bl.words, bi)).ok()?,
                )
            }),
        ),
    ];
    if let Some(f) = dist(|t| t.intent.as_ref(), a.intent_labels.clone()) {
        stats.push(("intent JS (predicted)", f));
    }
    if let (Some(hs), Some(hb)) = (&s.fidelity_hits, &bl.fidelity_hits) {
        if !hs.is_empty() && !hb.is_empty() {
            stats.push((
                "intent fidelity accuracy",
                Box::new(move |_: &[usize], si: &[usize], bi: &[usize]| {
                    Some(hit_rate(hs, si)? - hit_rate(hb, bi)?)
                }),
            ));
        }
    }
    if let Some(f) = dist(|t| Some(&t.sentiment), sentiment_labels) {
        stats.push(("sentiment JS", f));
    }
    if let Some(f) = dist(|t| Some(&t.genres), a.genre_labels.clone()) {
        stats.push(("genre-mention JS", f));
    }
    let n = |side: &SideTurns, fid: bool| {
        if fid {
            side.fidelity_hits.as_ref().map_or(0, Vec::len)
        } else {
            side.words.len()
        }
    };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let all = |k: usize| (0..k).collect::<Vec<usize>>();
    let mut out = Vec::new();
    for (name, stat) in &stats {
        let fid = *name == "intent fidelity accuracy";
        let (nr, ns, nb) = (real.words.len(), n(s, fid), n(bl, fid));
        let Some(value) = stat(&all(nr), &all(ns), &all(nb)) else {
            continue;
        };
        let (mut ri, mut si, mut bi) = (Vec::new(), Vec::new(), Vec::new());
        let mut reps = Vec::with_capacity(n_boot);
        for _ in 0..n_boot {
            resample(&mut rng, nr, &mut ri);
            resample(&mut rng, ns, &mut si);
            resample(&mut rng, nb, &mut bi);
            if let Some(d) = stat(&ri, &si, &bi) {
                reps.push(d);
            }
        }
        let (lo, hi) = percentile_interval(reps).unwrap_or((value, value));
        out.push((name.to_string(), Estimate { value, lo, hi }));
    }
    out
}

fn length_stats(real: &[f64], sim: &[f64], bins: usize) -> Result<LengthStats, StatsError> {
    let bins = bins.max(1);
    let max = real.iter().chain(sim).fold(0.0f64, |a, &b| a.max(b));
    // cap the range at the 99th percentile of both samples to keep bins useful
    let mut all: Vec<f64> = real.iter().chain(sim).copied().collect();
    all.sort_by(f64::total_cmp);
    let p99 = all
        .get(((all.len() as f64 * 0.99) as usize).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or(max);
    let top = p99.max(1.0).ceil();
    let width = (top / bins as f64).max(1.0);
    let edges: Vec<f64> = (0..=bins).map(|i| i as f64 * width).collect();
    let hist = |v: &[f64]| {
        let mut h = vec![0usize; bins];
        for &x in v {
            h[((x / width) as usize).min(bins - 1)] += 1;
        }
        h
    };
    let mean = |v: &[f64]| {
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    };
    Ok(LengthStats {
        real_mean: mean(real),
        sim_mean: mean(sim),
        wasserstein: wasserstein_1d(real, sim)?,
        bin_edges: edges,
        real_hist: hist(real),
        sim_hist: hist(sim),
    })
}

fn diversity<S: AsRef<str>>(texts: &[S], cfg: &EvalConfig) -> DiversityStats {
    DiversityStats {
        distinct_1: distinct_n(texts, 1),
        distinct_2: distinct_n(texts, 2),
        distinct_3: distinct_n(texts, 3),
        self_bleu: self_bleu(texts, cfg.self_bleu_max_texts, cfg.seed),
    }
}

/// Most vectors compared pairwise; beyond it a seeded sample keeps the cost
/// at about 2 million pairs.
const SPREAD_MAX_VECTORS: usize = 2000;

/// Mean cosine distance over all pairs of (a seeded sample of) `v`, whose
/// vectors are L2-normalised.
fn mean_pairwise_distance(v: &[Vec<f32>], seed: u64) -> f64 {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let mut idx: Vec<usize> = (0..v.len()).collect();
    if idx.len() > SPREAD_MAX_VECTORS {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        idx.shuffle(&mut rng);
        idx.truncate(SPREAD_MAX_VECTORS);
    }
    let (mut sum, mut pairs) = (0.0f64, 0u64);
    for (k, &i) in idx.iter().enumerate() {
        for &j in &idx[k + 1..] {
            let dot: f32 = v[i].iter().zip(&v[j]).map(|(a, b)| a * b).sum();
            sum += 1.0 - dot as f64;
            pairs += 1;
        }
    }
    if pairs == 0 {
        0.0
    } else {
        sum / pairs as f64
    }
}

/// Sentence embeddings of both sides, in corpus order.
#[derive(Clone, Copy, Debug)]
pub struct EvalEmbeddings<'a> {
    /// One per seeker turn, `(real, sim)`.
    pub turns: DensePair<'a>,
    /// One per seeker turn's context (the system turn before it, see
    /// [`turns_in_context`]), an empty vector where there is
    /// none, `(real, sim)`. `None`: the context discriminator uses the
    /// turns' embeddings only.
    pub contexts: Option<DensePair<'a>>,
}

impl<'a> EvalEmbeddings<'a> {
    /// Embeddings of the seeker turns only.
    pub fn turns_only(real: &'a [Vec<f32>], sim: &'a [Vec<f32>]) -> Self {
        Self {
            turns: (real, sim),
            contexts: None,
        }
    }
}

/// Evaluates `sim` against `real`; the intent classifier is trained on the
/// labelled seeker turns of `real`. `embeddings` are optional embeddings of
/// both sides' seeker turns (and their contexts) in corpus order.
pub fn evaluate(
    real: &Corpus,
    sim: &Corpus,
    cfg: &EvalConfig,
    embeddings: Option<EvalEmbeddings<'_>>,
) -> Result<EvalReport, EvalError> {
    evaluate_with(real, sim, Some(real), cfg, embeddings)
}

/// Like [`evaluate`] with an explicit intent training corpus (e.g. IARD when
/// `real` is INSPIRED); `None` skips the intent part.
pub fn evaluate_with(
    real: &Corpus,
    sim: &Corpus,
    intent_corpus: Option<&Corpus>,
    cfg: &EvalConfig,
    all_embeddings: Option<EvalEmbeddings<'_>>,
) -> Result<EvalReport, EvalError> {
    let embeddings = all_embeddings.map(|e| e.turns);
    let real_texts = real.seeker_texts();
    let sim_texts = sim.seeker_texts();
    if real_texts.is_empty() {
        return Err(EvalError::NoSeekerTurns("real"));
    }
    if sim_texts.is_empty() {
        return Err(EvalError::NoSeekerTurns("simulated"));
    }
    if let Some((er, es)) = embeddings {
        if er.len() != real_texts.len() || es.len() != sim_texts.len() {
            return Err(EvalError::Embeddings(format!(
                "{} real / {} simulated embeddings for {} / {} seeker turns",
                er.len(),
                es.len(),
                real_texts.len(),
                sim_texts.len()
            )));
        }
    }
    let mut warnings = Vec::new();
    let wc = |v: &[String]| v.iter().map(|t| word_count(t) as f64).collect::<Vec<f64>>();
    let turn_lengths = length_stats(&wc(&real_texts), &wc(&sim_texts), cfg.length_bins)?;
    let tpd = |c: &Corpus| {
        c.dialogues
            .iter()
            .map(|d| d.turns.iter().filter(|t| t.seeker).count() as f64)
            .collect::<Vec<_>>()
    };
    let dialogue_lengths = length_stats(&tpd(real), &tpd(sim), cfg.length_bins)?;

    // Too few examples for one discriminator is a warning, not a failure.
    let mut unless_too_few = |r: Result<DiscriminatorResult, DiscriminatorError>,
                              what: &str|
     -> Result<Option<DiscriminatorResult>, EvalError> {
        match r {
            Ok(r) => Ok(Some(r)),
            Err(DiscriminatorError::TooFew { .. } | DiscriminatorError::TooFewDialogues { .. }) => {
                warnings.push(format!("too few {what} discriminator"));
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    };
    // The dialogue of every seeker turn: what a fold keeps whole under
    // `FoldUnit::Dialogue`.
    let (real_dialogues, sim_dialogues) =
        (real.seeker_turn_dialogues(), sim.seeker_turn_dialogues());
    let dialogues = Some((real_dialogues.as_slice(), sim_dialogues.as_slice()));
    let turn_discriminator = unless_too_few(
        discriminate(
            &real_texts,
            &sim_texts,
            embeddings,
            dialogues,
            &cfg.discriminator,
        ),
        "seeker turns for the turn",
    )?;
    let embedding_discriminator = match embeddings {
        Some((r, s)) => unless_too_few(
            discriminate_dense(r, s, dialogues, &cfg.discriminator),
            "seeker turns for the embedding-only",
        )?,
        None => None,
    };
    let context_discriminator = if cfg.context_discriminator {
        let pair_embeddings = all_embeddings.map(|e| {
            let side = |turns, contexts| PairEmbeddings { turns, contexts };
            (
                side(e.turns.0, e.contexts.map(|c| c.0)),
                side(e.turns.1, e.contexts.map(|c| c.1)),
            )
        });
        unless_too_few(
            discriminate_in_context(
                &turns_in_context(real),
                &turns_in_context(sim),
                pair_embeddings,
                dialogues,
                &cfg.discriminator,
            ),
            "seeker turns for the context",
        )?
    } else {
        None
    };
    let conversation_discriminator = if cfg.conversation_discriminator {
        unless_too_few(
            discriminate(
                &real.seeker_conversations(),
                &sim.seeker_conversations(),
                None,
                None,
                &DiscriminatorConfig {
                    max_per_class: cfg
                        .conversations_per_class
                        .or(cfg.discriminator.max_per_class),
                    ..cfg.discriminator.clone()
                },
            ),
            "dialogues for the conversation",
        )?
    } else {
        None
    };

    let n_boot = cfg.discriminator.n_bootstrap;
    let mut intent_values = None;
    let intents = match intent_corpus.filter(|_| cfg.intents) {
        None => None,
        Some(ic) => {
            let (tt, tl): (Vec<String>, Vec<Vec<String>>) = ic
                .seeker_turns()
                .filter(|t| t.intents.iter().any(|l| cfg.intent.labels.contains(l)))
                .map(|t| (t.text.clone(), t.intents.clone()))
                .unzip();
            if tt.len() < 50 {
                warnings.push(format!(
                    "only {} labelled seeker turns: intent analysis skipped",
                    tt.len()
                ));
                None
            } else {
                let cv = cross_validate_intents(&tt, &tl, &cfg.intent)?;
                let clf = IntentClassifier::fit(&tt, &tl, &cfg.intent)?;
                let top = |texts: &[String]| -> Vec<Vec<String>> {
                    texts
                        .iter()
                        .map(|t| {
                            clf.labels()
                                .get(clf.top_intent(t))
                                .cloned()
                                .into_iter()
                                .collect()
                        })
                        .collect()
                };
                let (real_top, sim_top) = (top(&real_texts), top(&sim_texts));
                let predicted = compare_turns(&real_top, &sim_top, clf.labels(), n_boot, cfg.seed)?;
                let (st, sl): (Vec<String>, Vec<Vec<String>>) = sim
                    .seeker_turns()
                    .filter(|t| !t.intents.is_empty())
                    .map(|t| (t.text.clone(), t.intents.clone()))
                    .unzip();
                let fidelity = if st.is_empty() {
                    None
                } else {
                    Some(label_fidelity(&clf, &st, &sl))
                };
                let hits = fidelity_hits(&clf, &st, &sl);
                let requested = if st.is_empty() {
                    None
                } else {
                    let gold: Vec<Vec<String>> =
                        ic.seeker_turns().map(|t| t.intents.clone()).collect();
                    let asked: Vec<Vec<String>> =
                        sim.seeker_turns().map(|t| t.intents.clone()).collect();
                    Some(compare_turns(
                        &gold,
                        &asked,
                        clf.labels(),
                        n_boot,
                        cfg.seed,
                    )?)
                };
                intent_values = Some((real_top, sim_top, hits, clf.labels().to_vec()));
                // Only the simulated turns' own intents (drawn, or a
                // replay's real labels) that the classifier knows.
                let (ut, ul): (Vec<String>, Vec<Vec<String>>) = st
                    .iter()
                    .zip(&sl)
                    .filter(|(_, l)| l.iter().any(|x| cfg.intent.labels.contains(x)))
                    .map(|(t, l)| (t.clone(), l.clone()))
                    .unzip();
                let sim_trained_macro_f1 = if ut.len() < 20 {
                    None
                } else {
                    transfer_macro_f1((&ut, &ul), (&tt, &tl), &cfg.intent, n_boot, cfg.seed)?
                };
                Some(IntentReport {
                    cv,
                    predicted,
                    requested_vs_gold: requested,
                    fidelity,
                    sim_trained_macro_f1,
                })
            }
        }
    };

    let sentiments = |texts: &[String]| -> Vec<Vec<String>> {
        texts
            .iter()
            .map(|t| vec![sentiment(t).name().to_string()])
            .collect()
    };
    let genres = |texts: &[String]| -> Vec<Vec<String>> {
        texts.iter().map(|t| cfg.topics.genres_in(t)).collect()
    };
    let sentiment_labels: Vec<String> = ["pos", "neu", "neg"].map(String::from).to_vec();
    let genre_labels = cfg.topics.genre_names();
    let (real_sent, sim_sent) = (sentiments(&real_texts), sentiments(&sim_texts));
    let (real_genres, sim_genres) = (genres(&real_texts), genres(&sim_texts));
    let sentiment = compare_turns(&real_sent, &sim_sent, &sentiment_labels, n_boot, cfg.seed)?;
    let topics = compare_turns(&real_genres, &sim_genres, &genre_labels, n_boot, cfg.seed)?;
    let (real_intent, sim_intent, hits, intent_labels) = match intent_values {
        Some((r, s, h, l)) => (Some(r), Some(s), Some(h), l),
        None => (None, None, None, Vec::new()),
    };
    let turn_values = TurnValues {
        real: SideTurns {
            dialogue: real.seeker_turn_dialogues(),
            n_dialogues: real.dialogues.len(),
            words: wc(&real_texts),
            sentiment: real_sent,
            genres: real_genres,
            intent: real_intent,
            fidelity_hits: None,
        },
        sim: SideTurns {
            dialogue: sim.seeker_turn_dialogues(),
            n_dialogues: sim.dialogues.len(),
            words: wc(&sim_texts),
            sentiment: sim_sent,
            genres: sim_genres,
            intent: sim_intent,
            fidelity_hits: hits,
        },
        genre_labels,
        intent_labels,
    };
    let latent_recovery = latent_recovery(sim, cfg.discriminator.folds, n_boot, cfg.seed)?;
    let latent_coverage = cfg.declared_latents.as_ref().map(|d| {
        let sessions: Vec<&serde_json::Value> = sim.dialogues.iter().map(|d| &d.latents).collect();
        latent_coverage(d, &sessions)
    });
    let frechet = match embeddings {
        Some((er, es)) => Some(frechet_distance(er, es)?),
        None => None,
    };
    let embedding_spread = embeddings.map(|(er, es)| {
        (
            mean_pairwise_distance(er, cfg.seed),
            mean_pairwise_distance(es, cfg.seed),
        )
    });
    let echo_rate = (echo_rate(real), echo_rate(sim));
    let real_grams: HashSet<Vec<String>> = real_texts
        .iter()
        .flat_map(|t| guard::ngrams(t, COPY_NGRAM))
        .collect();
    let copied = sim_texts
        .iter()
        .filter(|t| {
            guard::ngrams(t, COPY_NGRAM)
                .iter()
                .any(|g| real_grams.contains(g))
        })
        .count();
    Ok(EvalReport {
        n_real_dialogues: real.dialogues.len(),
        n_sim_dialogues: sim.dialogues.len(),
        n_real_turns: real_texts.len(),
        n_sim_turns: sim_texts.len(),
        turn_lengths,
        dialogue_lengths,
        echo_rate,
        copy_rate: copied as f64 / sim_texts.len().max(1) as f64,
        turn_discriminator,
        embedding_discriminator,
        context_discriminator,
        conversation_discriminator,
        intents,
        intent_lengths: intent_lengths(real, sim, &cfg.intent.labels, TOP_INTENTS),
        sentiment,
        topics,
        diversity_real: diversity(&real_texts, cfg),
        diversity_real_at_sim_size: Some(DiversityStats {
            distinct_1: distinct_at_size(&real_texts, sim_texts.len(), 1, cfg.seed),
            distinct_2: distinct_at_size(&real_texts, sim_texts.len(), 2, cfg.seed),
            distinct_3: distinct_at_size(&real_texts, sim_texts.len(), 3, cfg.seed),
            self_bleu: 0.0,
        }),
        diversity_sim: diversity(&sim_texts, cfg),
        latent_coverage,
        latent_recovery,
        session_fidelity: session_fidelity(sim, &cfg.topics),
        frechet,
        embedding_spread,
        warnings,
        turn_values: Some(turn_values),
    })
}

/// Word n-gram length of the copy rate.
pub const COPY_NGRAM: usize = 8;

/// Share of a corpus's seeker turns that share a word 6-gram with the
/// other side's turn just before them.
pub fn echo_rate(c: &Corpus) -> f64 {
    let (mut n, mut echoed) = (0usize, 0usize);
    for d in &c.dialogues {
        for w in d.turns.windows(2) {
            if !w[0].seeker && w[1].seeker {
                n += 1;
                echoed += usize::from(guard::shares_ngram(
                    &w[1].text,
                    &w[0].text,
                    guard::ECHO_NGRAM,
                ));
            }
        }
    }
    echoed as f64 / n.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::super::loaders::{load_real, tests::IARD, Corpus, EvalDialogue};

    #[test]
    fn echo_rate_counts_seeker_turns_repeating_the_turn_before() {
        use super::super::loaders::EvalTurn;
        let turn = |seeker: bool, text: &str| EvalTurn {
            seeker,
            text: text.into(),
            intents: Vec::new(),
        };
        let c = Corpus {
            dialogues: vec![EvalDialogue {
                id: "d".into(),
                turns: vec![
                    turn(
                        false,
                        "How about The Shining, a classic horror movie from 1980?",
                    ),
                    turn(
                        true,
                        "The Shining, a classic horror movie from 1980? Seen it.",
                    ),
                    turn(false, "Then try Alien."),
                    turn(true, "Not a fan of space."),
                    turn(true, "Anything else?"),
                ],
                latents: serde_json::Value::Null,
                profile: Default::default(),
            }],
        };
        // Two seeker turns follow a system turn; one echoes it.
        assert_eq!(echo_rate(&c), 0.5);
    }
    use super::*;

    /// IARD split by dialogue into two halves; the "simulated" half keeps its
    /// labels as requested intents.
    fn halves() -> (Corpus, Corpus) {
        let c = load_real(std::path::Path::new(IARD), crate::corpus::CorpusKind::Iard).unwrap();
        let (mut a, mut b): (Vec<EvalDialogue>, Vec<EvalDialogue>) = (Vec::new(), Vec::new());
        for (i, d) in c.dialogues.into_iter().enumerate() {
            if i % 2 == 0 {
                a.push(d)
            } else {
                b.push(d)
            }
        }
        (Corpus { dialogues: a }, Corpus { dialogues: b })
    }

    #[test]
    fn iard_halves_end_to_end() {
        let (a, b) = halves();
        let cfg = EvalConfig {
            discriminator: DiscriminatorConfig {
                n_bootstrap: 100,
                ..Default::default()
            },
            ..Default::default()
        };
        let t0 = std::time::Instant::now();
        let r = evaluate(&a, &b, &cfg, None).unwrap();
        eprintln!("end-to-end {:?}", t0.elapsed());
        let td = r.turn_discriminator.as_ref().unwrap();
        assert!(td.auc.value > 0.4 && td.auc.value < 0.6, "{:?}", td.auc);
        let cd = r.context_discriminator.as_ref().unwrap();
        assert!(cd.auc.value > 0.4 && cd.auc.value < 0.6, "{:?}", cd.auc);
        // Real people against real people: every listed intent's length
        // within 20%.
        assert_eq!(r.intent_lengths.len(), super::super::lengths::TOP_INTENTS);
        for l in &r.intent_lengths {
            assert!(l.within_20_percent, "{l:?}");
        }
        let it = r.intents.as_ref().unwrap();
        assert!(it.predicted.js < 0.05, "{}", it.predicted.js);
        let fid = it.fidelity.as_ref().unwrap();
        eprintln!(
            "halves: turn AUC {:?} fidelity {:.3} intent JS {:.4}",
            td.auc, fid.accuracy, it.predicted.js
        );
        assert!(fid.accuracy > 0.6, "{}", fid.accuracy);
        assert!(r.sentiment.js < 0.05 && r.topics.js < 0.05);
        // a set against itself: JS = 0
        let same = evaluate(
            &a,
            &a,
            &EvalConfig {
                intents: false,
                conversation_discriminator: false,
                ..cfg.clone()
            },
            None,
        )
        .unwrap();
        assert_eq!(same.sentiment.js, 0.0);
        assert_eq!(same.topics.js, 0.0);
        assert_eq!(same.turn_lengths.wasserstein, 0.0);
        // Intervals hold their estimate; a set against itself reaches 0.
        assert_eq!(same.sentiment.js_ci.expect("interval").0, 0.0);
        for d in [&r.sentiment, &r.topics, &it.predicted] {
            let (lo, hi) = d.js_ci.expect("JS interval");
            assert!(lo <= d.js && d.js <= hi, "{} not in [{lo}, {hi}]", d.js);
            let (lo, hi) = d.tv_ci.expect("TV interval");
            assert!(lo <= d.tv && d.tv <= hi);
        }
        // Paired differences: a run against itself differs by exactly 0;
        // a run whose turns say everything twice is longer, surely.
        let diffs = baseline_differences(&r, &r, 200, 1);
        assert!(diffs.len() >= 5, "{diffs:?}");
        for (name, e) in &diffs {
            assert_eq!(e.value, 0.0, "{name}");
            assert!(e.lo <= 0.0 && 0.0 <= e.hi, "{name}: {e:?}");
        }
        let mut twice = b.clone();
        for d in &mut twice.dialogues {
            for t in &mut d.turns {
                t.text = format!("{} {}", t.text, t.text);
            }
        }
        let r2 = evaluate(
            &a,
            &twice,
            &EvalConfig {
                intents: false,
                ..cfg.clone()
            },
            None,
        )
        .unwrap();
        let diffs = baseline_differences(&r2, &r, 200, 1);
        let words = &diffs
            .iter()
            .find(|d| d.0 == "words per user turn")
            .expect("words")
            .1;
        assert!(words.lo > 0.0, "{words:?}");
        assert!(
            diffs.iter().all(|d| d.0 != "intent JS (predicted)"),
            "no intents in r2"
        );
        let txt = r.render_text();
        assert!(txt.contains("AUC"));
        let html = r.render_html("IARD halves");
        assert!(html.contains("<svg class=\"plot\" id=\"intent-bars\""));
        assert!(
            html.contains("id=\"roc-turn\"")
                && html.contains("id=\"confusion\"")
                && html.contains("id=\"turn-length-hist\"")
        );
        assert!(html.contains("<table id=\"intent-lengths\">"));
        assert!(txt.contains("words per turn, intent "));
        assert!(!html.contains("<script"));
        assert!(serde_json::to_string(&r)
            .unwrap()
            .contains("turn_discriminator"));
    }

    /// Synthetic dialogues: each opens with a seeker turn (no context), then
    /// `exchanges` (system, seeker) pairs. Every text is a sentence of words
    /// drawn from one vocabulary, so every turn of either speaker comes from
    /// one distribution; with `copy`, a seeker turn after a system turn
    /// repeats it instead: the same seeker-turn distribution, another
    /// relation to the context.
    fn synthetic(n_dialogues: usize, exchanges: usize, copy: bool, seed: u64) -> Corpus {
        use super::super::loaders::EvalTurn;
        use rand::{Rng, SeedableRng};
        const VOCAB: [&str; 48] = [
            "movie",
            "film",
            "like",
            "love",
            "watch",
            "seen",
            "good",
            "great",
            "funny",
            "scary",
            "action",
            "comedy",
            "horror",
            "drama",
            "old",
            "new",
            "classic",
            "story",
            "actor",
            "ending",
            "plot",
            "maybe",
            "really",
            "not",
            "yes",
            "no",
            "thanks",
            "sure",
            "try",
            "about",
            "something",
            "else",
            "another",
            "one",
            "that",
            "this",
            "with",
            "and",
            "but",
            "the",
            "a",
            "i",
            "you",
            "it",
            "was",
            "is",
            "so",
            "too",
        ];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut sentence = || -> String {
            let n = rng.random_range(5..10);
            (0..n)
                .map(|_| VOCAB[rng.random_range(0..VOCAB.len())])
                .collect::<Vec<_>>()
                .join(" ")
        };
        let turn = |seeker: bool, text: String| EvalTurn {
            seeker,
            text,
            intents: Vec::new(),
        };
        let dialogues = (0..n_dialogues)
            .map(|d| {
                let mut turns = vec![turn(true, sentence())];
                for _ in 0..exchanges {
                    let system = sentence();
                    let answer = if copy { system.clone() } else { sentence() };
                    turns.push(turn(false, system));
                    turns.push(turn(true, answer));
                }
                EvalDialogue {
                    id: d.to_string(),
                    turns,
                    latents: serde_json::Value::Null,
                    profile: Default::default(),
                }
            })
            .collect();
        Corpus { dialogues }
    }

    fn discriminators_only() -> EvalConfig {
        EvalConfig {
            intents: false,
            conversation_discriminator: false,
            discriminator: DiscriminatorConfig {
                n_bootstrap: 100,
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn context_auc_catches_a_seeker_pasting_its_context() {
        let real = synthetic(60, 4, false, 1);
        let sim = synthetic(60, 4, true, 2);
        let r = evaluate(&real, &sim, &discriminators_only(), None).unwrap();
        let td = r.turn_discriminator.as_ref().expect("turn discriminator");
        let cd = r
            .context_discriminator
            .as_ref()
            .expect("context discriminator");
        eprintln!("pasting: turn AUC {:?}, context AUC {:?}", td.auc, cd.auc);
        // The pasted turns are ordinary sentences: turn by turn, nothing
        // gives them away; beside their context, all but the first
        // (context-free) turn of each dialogue do.
        assert!(td.auc.value < 0.65, "{:?}", td.auc);
        assert!(cd.auc.value > 0.9, "{:?}", cd.auc);
        assert!(cd.auc.lo > td.auc.hi, "{:?} vs {:?}", cd.auc, td.auc);
        assert!(cd.auc.lo <= cd.auc.value && cd.auc.value <= cd.auc.hi);
        assert!(
            cd.top_simulated
                .iter()
                .take(3)
                .any(|(n, _)| n.starts_with("pair:")),
            "{:?}",
            cd.top_simulated
        );
        let txt = r.render_text();
        assert!(txt.contains("context discriminator AUC"), "{txt}");
        let html = r.render_html("pasting");
        assert!(html.contains("id=\"roc-context\"") && html.contains("context AUC"));
        let json = serde_json::to_value(&r).unwrap();
        assert!(json["context_discriminator"]["auc"]["value"].is_f64());
    }

    #[test]
    fn context_auc_is_chance_for_one_distribution() {
        let real = synthetic(60, 4, false, 3);
        let sim = synthetic(60, 4, false, 4);
        let r = evaluate(&real, &sim, &discriminators_only(), None).unwrap();
        let td = r.turn_discriminator.as_ref().expect("turn discriminator");
        let cd = r
            .context_discriminator
            .as_ref()
            .expect("context discriminator");
        eprintln!("same: turn AUC {:?}, context AUC {:?}", td.auc, cd.auc);
        assert!(td.auc.value > 0.4 && td.auc.value < 0.6, "{:?}", td.auc);
        assert!(cd.auc.value > 0.4 && cd.auc.value < 0.6, "{:?}", cd.auc);
        // Switched off, it is absent, not an error.
        let off = EvalConfig {
            context_discriminator: false,
            ..discriminators_only()
        };
        let r = evaluate(&real, &sim, &off, None).unwrap();
        assert!(r.context_discriminator.is_none());
        assert!(!r.render_text().contains("context discriminator"));
    }

    #[test]
    fn session_fidelity_counts_genres_and_targets_in_the_text() {
        use super::super::loaders::EvalTurn;
        let turn = |seeker: bool, text: &str| EvalTurn {
            seeker,
            text: text.into(),
            intents: Vec::new(),
        };
        let d = |latents: serde_json::Value, turns: Vec<EvalTurn>| EvalDialogue {
            id: "x".into(),
            turns,
            latents,
            profile: Default::default(),
        };
        let sim = Corpus {
            dialogues: vec![
                d(
                    serde_json::json!({"liked_genres": ["Horror", "Comedy"], "target_item": {"title": "The Dark Knight (2008)"}}),
                    vec![
                        turn(true, "Something scary, a horror film please"),
                        turn(false, "Try The Dark Knight."),
                    ],
                ),
                d(
                    serde_json::json!({"liked_genres": ["Western"], "age_group": "teen"}),
                    vec![turn(true, "I love cowboys. And a romance maybe.")],
                ),
            ],
        };
        let topics = TopicLabeller::default();
        let f = session_fidelity(&sim, &topics).expect("fidelity");
        let n = topics.genre_names().len();
        assert_eq!(f.genre_conversations, 2);
        // Horror and Western mentioned of 3 latent pairs; Romance of the others.
        assert!((f.latent_genre_mentioned - 2.0 / 3.0).abs() < 1e-12);
        let others = (n - 2) + (n - 1);
        assert!((f.other_genre_mentioned - 1.0 / others as f64).abs() < 1e-12);
        assert_eq!(f.target_conversations, 1);
        assert_eq!((f.target_named, f.target_named_by_user), (1.0, 0.0));
    }

    #[test]
    fn embeddings_are_checked_and_used() {
        let (a, b) = halves();
        let cfg = EvalConfig {
            intents: false,
            conversation_discriminator: false,
            discriminator: DiscriminatorConfig {
                n_bootstrap: 20,
                ..Default::default()
            },
            ..Default::default()
        };
        let ea: Vec<Vec<f32>> = (0..a.n_seeker_turns())
            .map(|i| vec![(i % 7) as f32, 1.0])
            .collect();
        let eb: Vec<Vec<f32>> = (0..b.n_seeker_turns())
            .map(|i| vec![(i % 7) as f32, 1.0])
            .collect();
        let r = evaluate(&a, &b, &cfg, Some(EvalEmbeddings::turns_only(&ea, &eb))).unwrap();
        assert!(r.frechet.unwrap() < 0.05);
        assert!(evaluate(
            &a,
            &b,
            &cfg,
            Some(EvalEmbeddings::turns_only(&ea[1..], &eb))
        )
        .is_err());
    }
}
