//! Top-level evaluation: [`evaluate`] compares a real and a simulated
//! [`Corpus`] and fills an [`EvalReport`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::discriminator::{discriminate, DensePair, DiscriminatorConfig, DiscriminatorError};
use super::diversity::{distinct_n, latent_coverage, self_bleu};
use super::intent::{
    cross_validate_intents, label_fidelity, IntentClassifier, IntentConfig, IntentError,
};
use super::lexicon::{sentiment_counts, TopicLabeller};
use super::loaders::{intent_counts, Corpus};
use super::report::{
    DistributionComparison, DiversityStats, EvalReport, IntentReport, LengthStats,
};
use super::stats::{
    align_distributions, entropy_bits, frechet_distance, js_divergence, total_variation,
    wasserstein_1d, StatsError,
};
use super::text::word_count;

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

fn compare(
    real: BTreeMap<String, f64>,
    sim: BTreeMap<String, f64>,
) -> Result<DistributionComparison, StatsError> {
    let (labels, r, s) = align_distributions(&real, &sim);
    Ok(DistributionComparison {
        js: js_divergence(&r, &s)?,
        tv: total_variation(&r, &s)?,
        real_entropy: entropy_bits(&r),
        sim_entropy: entropy_bits(&s),
        labels,
        real: r,
        sim: s,
    })
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

/// Evaluates `sim` against `real`; the intent classifier is trained on the
/// labelled seeker turns of `real`. `embeddings` are optional per-seeker-turn
/// embeddings `(real, sim)` in corpus order.
pub fn evaluate(
    real: &Corpus,
    sim: &Corpus,
    cfg: &EvalConfig,
    embeddings: Option<DensePair<'_>>,
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
    embeddings: Option<DensePair<'_>>,
) -> Result<EvalReport, EvalError> {
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

    let turn_discriminator =
        match discriminate(&real_texts, &sim_texts, embeddings, &cfg.discriminator) {
            Ok(r) => Some(r),
            Err(DiscriminatorError::TooFew { .. }) => {
                warnings.push("too few seeker turns for the turn discriminator".into());
                None
            }
            Err(e) => return Err(e.into()),
        };
    let conversation_discriminator = if cfg.conversation_discriminator {
        match discriminate(
            &real.seeker_conversations(),
            &sim.seeker_conversations(),
            None,
            &cfg.discriminator,
        ) {
            Ok(r) => Some(r),
            Err(DiscriminatorError::TooFew { .. }) => {
                warnings.push("too few dialogues for the conversation discriminator".into());
                None
            }
            Err(e) => return Err(e.into()),
        }
    } else {
        None
    };

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
                let predicted = compare(
                    clf.label_distribution(&real_texts),
                    clf.label_distribution(&sim_texts),
                )?;
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
                let requested = if st.is_empty() {
                    None
                } else {
                    Some(compare(intent_counts(ic), intent_counts(sim))?)
                };
                Some(IntentReport {
                    cv,
                    predicted,
                    requested_vs_gold: requested,
                    fidelity,
                })
            }
        }
    };

    let sentiment = compare(sentiment_counts(&real_texts), sentiment_counts(&sim_texts))?;
    let topics = compare(
        cfg.topics.genre_counts(&real_texts),
        cfg.topics.genre_counts(&sim_texts),
    )?;
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
    Ok(EvalReport {
        n_real_dialogues: real.dialogues.len(),
        n_sim_dialogues: sim.dialogues.len(),
        n_real_turns: real_texts.len(),
        n_sim_turns: sim_texts.len(),
        turn_lengths,
        dialogue_lengths,
        turn_discriminator,
        conversation_discriminator,
        intents,
        sentiment,
        topics,
        diversity_real: diversity(&real_texts, cfg),
        diversity_sim: diversity(&sim_texts, cfg),
        latent_coverage,
        frechet,
        embedding_spread,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::super::loaders::{load_iard, tests::IARD, Corpus, EvalDialogue};
    use super::*;

    /// IARD split by dialogue into two halves; the "simulated" half keeps its
    /// labels as requested intents.
    fn halves() -> (Corpus, Corpus) {
        let c = load_iard(std::path::Path::new(IARD)).unwrap();
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
        let txt = r.render_text();
        assert!(txt.contains("AUC"));
        let html = r.render_html("IARD halves");
        assert!(html.contains("<svg class=\"plot\" id=\"intent-bars\""));
        assert!(
            html.contains("id=\"roc-turn\"")
                && html.contains("id=\"confusion\"")
                && html.contains("id=\"turn-length-hist\"")
        );
        assert!(!html.contains("<script"));
        assert!(serde_json::to_string(&r)
            .unwrap()
            .contains("turn_discriminator"));
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
        let r = evaluate(&a, &b, &cfg, Some((&ea, &eb))).unwrap();
        assert!(r.frechet.unwrap() < 0.05);
        assert!(evaluate(&a, &b, &cfg, Some((&ea[1..], &eb))).is_err());
    }
}
