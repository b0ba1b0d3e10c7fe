//! Real-vs-simulated discriminator.
//!
//! Given real and simulated texts (single user turns, or whole conversations
//! as the seeker's turns joined), [`discriminate`] balances the classes by
//! seeded downsampling, runs stratified k-fold cross-validation of TF-IDF +
//! logistic regression (optionally with dense embedding features appended),
//! and reports out-of-fold accuracy and ROC AUC with bootstrap 95% intervals.
//! A final model fitted on all (balanced) data lists the n-grams that most
//! indicate "simulated" (positive class) and "real".
//!
//! An AUC near 0.5 means the simulator's text cannot be told apart from real
//! text by this model; near 1.0 means it is easy to spot.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::features::{FeatureError, SparseVec, TfidfConfig, TfidfVectorizer};
use super::logreg::{LogReg, LogRegConfig, LogRegError};
use super::stats::{
    self, bootstrap_ci, grouped_stratified_kfold, percentile_interval, roc_auc, roc_curve,
    stratified_kfold, Estimate,
};

/// Errors of the discriminator.
#[derive(Debug, thiserror::Error)]
pub enum DiscriminatorError {
    /// Too few texts in a class.
    #[error("need at least {need} texts per class, got {real} real and {sim} simulated")]
    TooFew {
        /// Required per class.
        need: usize,
        /// Real texts.
        real: usize,
        /// Simulated texts.
        sim: usize,
    },
    /// Embeddings do not line up with texts.
    #[error("embeddings: {0}")]
    Embeddings(String),
    /// Folds by dialogue need each class's texts from two dialogues at
    /// least (else a fold trains without that class).
    #[error("folds by dialogue need 2 dialogues per class, got {real} real and {sim} simulated")]
    TooFewDialogues {
        /// Real dialogues among the sampled texts.
        real: usize,
        /// Simulated dialogues among the sampled texts.
        sim: usize,
    },
    /// The dialogue map does not line up with the texts.
    #[error(
        "dialogue map: {}/{} real and {}/{} simulated entries per text",
        real.0, real.1, sim.0, sim.1
    )]
    Dialogues {
        /// Real entries and texts.
        real: (usize, usize),
        /// Simulated entries and texts.
        sim: (usize, usize),
    },
    /// Feature extraction failed.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// Model fitting failed.
    #[error(transparent)]
    LogReg(#[from] LogRegError),
    /// A statistic failed.
    #[error(transparent)]
    Stats(#[from] stats::StatsError),
}

/// Settings of [`discriminate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorConfig {
    /// Cross-validation folds.
    pub folds: usize,
    /// Seed of downsampling, folds and bootstrap.
    pub seed: u64,
    /// Bootstrap resamples for the intervals.
    pub n_bootstrap: usize,
    /// Cap on texts per class after balancing (`None`: the smaller class size).
    pub max_per_class: Option<usize>,
    /// Features.
    pub tfidf: TfidfConfig,
    /// Classifier.
    pub logreg: LogRegConfig,
    /// Number of top n-grams listed per direction.
    pub top_k: usize,
    /// Scale of the (L2-normalised) dense features relative to TF-IDF.
    pub dense_scale: f32,
    /// What one cross-validation fold holds whole: single texts, or all
    /// the texts of a dialogue.
    #[serde(default)]
    pub fold_unit: FoldUnit,
}

/// What the discriminator's folds are drawn over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FoldUnit {
    /// Each text on its own: a dialogue's turns can be both trained and
    /// tested on (the protocol of every figure before `dialogue` existed).
    #[default]
    Turn,
    /// A dialogue's texts stay in one fold, so the model is tested only on
    /// conversations it never saw: what it learnt of one conversation's
    /// words (a title it keeps naming) cannot count as telling real from
    /// simulated.
    Dialogue,
}

impl std::str::FromStr for FoldUnit {
    type Err = String;
    fn from_str(s: &str) -> Result<FoldUnit, String> {
        match s {
            "turn" => Ok(FoldUnit::Turn),
            "dialogue" => Ok(FoldUnit::Dialogue),
            _ => Err(format!("expected `turn` or `dialogue`, got `{s}`")),
        }
    }
}

impl std::fmt::Display for FoldUnit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            FoldUnit::Turn => "turn",
            FoldUnit::Dialogue => "dialogue",
        })
    }
}

impl Default for DiscriminatorConfig {
    fn default() -> Self {
        Self {
            folds: 5,
            seed: 13,
            n_bootstrap: 1000,
            max_per_class: Some(3000),
            tfidf: TfidfConfig::default(),
            logreg: LogRegConfig::default(),
            top_k: 20,
            dense_scale: 1.0,
            fold_unit: FoldUnit::Turn,
        }
    }
}

/// Result of [`discriminate`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiscriminatorResult {
    /// Texts used per class after balancing.
    pub n_per_class: usize,
    /// Out-of-fold accuracy at probability 0.5.
    pub accuracy: Estimate,
    /// Out-of-fold ROC AUC.
    pub auc: Estimate,
    /// Out-of-fold ROC curve (at most ~200 points), `(fpr, tpr)`.
    pub roc: Vec<(f64, f64)>,
    /// Features with the most positive ("simulated") coefficients.
    pub top_simulated: Vec<(String, f64)>,
    /// Features with the most negative ("real") coefficients.
    pub top_real: Vec<(String, f64)>,
    /// Whether dense features were appended.
    pub used_dense: bool,
    /// What its folds were drawn over.
    #[serde(default)]
    pub fold_unit: FoldUnit,
    /// Out-of-fold scores of every example (not serialised): what a paired
    /// comparison with another discriminator resamples.
    #[serde(skip)]
    pub out_of_fold: OutOfFold,
}

/// Out-of-fold P(simulated) of a discriminator's examples, each keyed by
/// its index in the real or the simulated input.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutOfFold {
    /// `(real input index, score)`, increasing index.
    pub real: Vec<(usize, f64)>,
    /// `(simulated input index, score)`, increasing index.
    pub sim: Vec<(usize, f64)>,
}

fn thin_roc(pts: Vec<(f64, f64)>, max: usize) -> Vec<(f64, f64)> {
    if pts.len() <= max {
        return pts;
    }
    let step = pts.len() as f64 / max as f64;
    let mut out: Vec<(f64, f64)> = (0..max).map(|i| pts[(i as f64 * step) as usize]).collect();
    if let Some(&last) = pts.last() {
        out.push(last);
    }
    out
}

/// `v` scaled to unit length (unchanged if all zero).
pub(crate) fn l2(v: &[f32]) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter().map(|x| x / n).collect()
    } else {
        v.to_vec()
    }
}

/// Dense vectors (one per text) of the real and the simulated set.
pub type DensePair<'a> = (&'a [Vec<f32>], &'a [Vec<f32>]);

/// The dialogue index of each real and of each simulated input text, for
/// [`FoldUnit::Dialogue`]; without it, each text is its own dialogue (as
/// whole conversations are).
pub type DialoguePair<'a> = (&'a [usize], &'a [usize]);

/// Features of the examples of one cross-validation fold, fitted on that
/// fold's training examples only (so no test text shapes the vocabulary).
pub(crate) trait Encoder {
    /// Number of features: the model's input dimension.
    fn n_features(&self) -> usize;
    /// Feature vector of example `i`.
    fn encode(&self, i: usize) -> SparseVec;
    /// Name of feature `j` for the coefficient listing; `None` for unnamed
    /// (embedding) dimensions, which are not listed.
    fn feature_name(&self, j: usize) -> Option<String>;
}

/// A class-balanced sample: `n` real and `n` simulated example indices,
/// each list increasing.
pub(crate) struct Balanced {
    /// Examples per class.
    pub n: usize,
    /// Indices into the real examples.
    pub real: Vec<usize>,
    /// Indices into the simulated examples.
    pub sim: Vec<usize>,
    /// The dialogue of each example, real ones then simulated ones (each
    /// class's numbering its own).
    pub dialogue: Vec<usize>,
}

/// Seeded downsampling of both classes to the smaller one (and to
/// `max_per_class`); fails when a class has fewer examples than folds.
/// `dialogues`: each input's dialogue (else each its own).
pub(crate) fn balance(
    n_real: usize,
    n_sim: usize,
    dialogues: Option<DialoguePair<'_>>,
    cfg: &DiscriminatorConfig,
) -> Result<Balanced, DiscriminatorError> {
    if let Some((r, s)) = dialogues {
        if r.len() != n_real || s.len() != n_sim {
            return Err(DiscriminatorError::Dialogues {
                real: (r.len(), n_real),
                sim: (s.len(), n_sim),
            });
        }
    }
    let need = cfg.folds.max(2);
    if n_real < need || n_sim < need {
        return Err(DiscriminatorError::TooFew {
            need,
            real: n_real,
            sim: n_sim,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut n = n_real.min(n_sim);
    if let Some(m) = cfg.max_per_class {
        n = n.min(m.max(need));
    }
    let mut ri: Vec<usize> = (0..n_real).collect();
    let mut si: Vec<usize> = (0..n_sim).collect();
    ri.shuffle(&mut rng);
    si.shuffle(&mut rng);
    ri.truncate(n);
    si.truncate(n);
    ri.sort_unstable();
    si.sort_unstable();
    let dialogue = ri
        .iter()
        .map(|&i| dialogues.map_or(i, |(r, _)| r[i]))
        .chain(si.iter().map(|&i| dialogues.map_or(i, |(_, s)| s[i])))
        .collect::<Vec<usize>>();
    if cfg.fold_unit == FoldUnit::Dialogue {
        let distinct = |d: &[usize]| d.iter().collect::<std::collections::BTreeSet<_>>().len();
        let (real, sim) = (distinct(&dialogue[..n]), distinct(&dialogue[n..]));
        if real < 2 || sim < 2 {
            return Err(DiscriminatorError::TooFewDialogues { real, sim });
        }
    }
    Ok(Balanced {
        n,
        real: ri,
        sim: si,
        dialogue,
    })
}

/// Checks that `vectors` holds one embedding per example, all of one
/// length, and returns that length.
pub(crate) fn dense_dim(
    what: &str,
    vectors: (&[Vec<f32>], &[Vec<f32>]),
    examples: (usize, usize),
) -> Result<usize, DiscriminatorError> {
    let (dr, ds) = vectors;
    if dr.len() != examples.0 || ds.len() != examples.1 {
        return Err(DiscriminatorError::Embeddings(format!(
            "{} real / {} simulated {what} embeddings for {} / {} examples",
            dr.len(),
            ds.len(),
            examples.0,
            examples.1
        )));
    }
    let d = dr.first().or(ds.first()).map_or(0, Vec::len);
    if dr.iter().chain(ds).any(|v| v.len() != d) {
        return Err(DiscriminatorError::Embeddings(format!(
            "{what} embeddings of different lengths"
        )));
    }
    Ok(d)
}

/// The protocol every discriminator shares: stratified k-fold logistic
/// regression over examples labelled real (`false`) or simulated (`true`),
/// features fitted per fold by `fit` on the fold's training indices;
/// out-of-fold accuracy and ROC AUC with bootstrap 95% intervals; a final
/// model on every example for the listing of the most telling features.
pub(crate) fn cross_validate<E: Encoder>(
    sample: &Balanced,
    used_dense: bool,
    cfg: &DiscriminatorConfig,
    fit: impl Fn(&[usize]) -> Result<E, DiscriminatorError>,
) -> Result<DiscriminatorResult, DiscriminatorError> {
    cross_validate_fitted(sample, used_dense, cfg, fit).map(|(r, _, _)| r)
}

/// [`cross_validate`], also returning the final model (fitted on every
/// example) and its encoder: what a critic keeps. The examples are the
/// sample's real ones, then its simulated ones, in its order.
pub(crate) fn cross_validate_fitted<E: Encoder>(
    sample: &Balanced,
    used_dense: bool,
    cfg: &DiscriminatorConfig,
    fit: impl Fn(&[usize]) -> Result<E, DiscriminatorError>,
) -> Result<(DiscriminatorResult, E, LogReg), DiscriminatorError> {
    let n_per_class = sample.n;
    let n_examples = 2 * n_per_class;
    let labels: Vec<bool> = (0..n_examples).map(|i| i >= n_per_class).collect();
    let labels = &labels[..];
    let fold_seed = cfg.seed ^ 0x9e37_79b9;
    let folds = match cfg.fold_unit {
        FoldUnit::Turn => stratified_kfold(labels, cfg.folds, fold_seed),
        FoldUnit::Dialogue => {
            grouped_stratified_kfold(labels, &sample.dialogue, cfg.folds, fold_seed)
        }
    };
    let mut scores = vec![0.0; n_examples];
    for k in 0..cfg.folds {
        let train: Vec<usize> = (0..n_examples).filter(|&i| folds[i] != k).collect();
        let test: Vec<usize> = (0..n_examples).filter(|&i| folds[i] == k).collect();
        if test.is_empty() {
            continue;
        }
        let enc = fit(&train)?;
        let xtr: Vec<SparseVec> = train.iter().map(|&i| enc.encode(i)).collect();
        let ytr: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let model = LogReg::fit(&xtr, &ytr, enc.n_features(), &cfg.logreg)?;
        for &i in &test {
            scores[i] = model.predict_proba(&enc.encode(i));
        }
    }
    let auc_of = |ix: &[usize]| -> Option<f64> {
        let s: Vec<f64> = ix.iter().map(|&i| scores[i]).collect();
        let l: Vec<bool> = ix.iter().map(|&i| labels[i]).collect();
        roc_auc(&s, &l).ok()
    };
    let acc_of = |ix: &[usize]| -> Option<f64> {
        Some(
            ix.iter()
                .filter(|&&i| (scores[i] >= 0.5) == labels[i])
                .count() as f64
                / ix.len().max(1) as f64,
        )
    };
    let auc = bootstrap_ci(
        n_examples,
        cfg.n_bootstrap,
        cfg.seed.wrapping_add(1),
        auc_of,
    )
    .ok_or(stats::StatsError::OneClass {
        pos: n_per_class,
        neg: n_per_class,
    })?;
    let accuracy = bootstrap_ci(
        n_examples,
        cfg.n_bootstrap,
        cfg.seed.wrapping_add(2),
        acc_of,
    )
    .ok_or(stats::StatsError::Empty("discriminator predictions"))?;
    let roc = thin_roc(roc_curve(&scores, labels), 200);
    // final model on everything for the coefficient listing
    let all: Vec<usize> = (0..n_examples).collect();
    let enc = fit(&all)?;
    let x: Vec<SparseVec> = all.iter().map(|&i| enc.encode(i)).collect();
    let model = LogReg::fit(&x, labels, enc.n_features(), &cfg.logreg)?;
    let mut coefs: Vec<(String, f64)> = model
        .weights
        .iter()
        .enumerate()
        .filter_map(|(j, &w)| enc.feature_name(j).map(|name| (name, w)))
        .collect();
    // stable sort: equal weights keep feature order
    coefs.sort_by(|a, b| b.1.total_cmp(&a.1));
    let top_simulated = coefs.iter().take(cfg.top_k).cloned().collect();
    let top_real = coefs.iter().rev().take(cfg.top_k).cloned().collect();
    let out_of_fold = OutOfFold {
        real: sample
            .real
            .iter()
            .copied()
            .zip(scores.iter().copied())
            .collect(),
        sim: sample
            .sim
            .iter()
            .copied()
            .zip(scores[n_per_class..].iter().copied())
            .collect(),
    };
    let result = DiscriminatorResult {
        n_per_class,
        accuracy,
        auc,
        roc,
        top_simulated,
        top_real,
        used_dense,
        fold_unit: cfg.fold_unit,
        out_of_fold,
    };
    Ok((result, enc, model))
}

/// Features of single texts: TF-IDF fitted on the training texts, then the
/// text's embedding (L2-normalised, scaled) if there is one.
struct TextEncoder<'a> {
    vectorizer: TfidfVectorizer,
    texts: &'a [&'a str],
    dense: &'a [Option<&'a Vec<f32>>],
    dense_dim: usize,
    dense_scale: f32,
}

impl Encoder for TextEncoder<'_> {
    fn n_features(&self) -> usize {
        self.vectorizer.n_features() + self.dense_dim
    }

    fn encode(&self, i: usize) -> SparseVec {
        let mut x = self.vectorizer.transform(self.texts[i]);
        if let Some(dv) = self.dense[i] {
            x.append_dense(
                self.vectorizer.n_features() as u32,
                &l2(dv),
                self.dense_scale,
            );
        }
        x
    }

    fn feature_name(&self, j: usize) -> Option<String> {
        self.vectorizer.feature_name(j).map(str::to_string)
    }
}

/// Features of embeddings alone (L2-normalised, scaled): no n-gram, so it
/// sees what a text means, not how it is typed.
struct DenseEncoder<'a> {
    vectors: &'a [&'a Vec<f32>],
    dim: usize,
    scale: f32,
}

impl Encoder for DenseEncoder<'_> {
    fn n_features(&self) -> usize {
        self.dim
    }

    fn encode(&self, i: usize) -> SparseVec {
        let mut x = SparseVec::default();
        x.append_dense(0, &l2(self.vectors[i]), self.scale);
        x
    }

    fn feature_name(&self, _j: usize) -> Option<String> {
        None
    }
}

/// The k-fold protocol of [`discriminate`] on sentence embeddings alone
/// (one per text of `real` and `sim`): the check that a simulator which
/// learned to type like people (what the TF-IDF discriminators and a
/// realism critic see) also says what people say.
pub fn discriminate_dense(
    real: &[Vec<f32>],
    sim: &[Vec<f32>],
    dialogues: Option<DialoguePair<'_>>,
    cfg: &DiscriminatorConfig,
) -> Result<DiscriminatorResult, DiscriminatorError> {
    let sample = balance(real.len(), sim.len(), dialogues, cfg)?;
    let dim = dense_dim("text", (real, sim), (real.len(), sim.len()))?;
    let vectors: Vec<&Vec<f32>> = sample
        .real
        .iter()
        .map(|&i| &real[i])
        .chain(sample.sim.iter().map(|&i| &sim[i]))
        .collect();
    cross_validate(&sample, true, cfg, |_| {
        Ok(DenseEncoder {
            vectors: &vectors,
            dim,
            scale: cfg.dense_scale,
        })
    })
}

/// Trains and cross-validates a real (label 0) vs simulated (label 1)
/// classifier. `dense`, if given, holds one embedding per text of `real` and
/// `sim` respectively; `dialogues`, the dialogue of each (read when
/// `cfg.fold_unit` is [`FoldUnit::Dialogue`]).
pub fn discriminate<S: AsRef<str>>(
    real: &[S],
    sim: &[S],
    dense: Option<DensePair<'_>>,
    dialogues: Option<DialoguePair<'_>>,
    cfg: &DiscriminatorConfig,
) -> Result<DiscriminatorResult, DiscriminatorError> {
    let sample = balance(real.len(), sim.len(), dialogues, cfg)?;
    let dim = dense
        .map(|d| dense_dim("text", d, (real.len(), sim.len())))
        .transpose()?;
    // examples: real ones first, then simulated ones
    let mut texts: Vec<&str> = Vec::with_capacity(2 * sample.n);
    let mut dvecs: Vec<Option<&Vec<f32>>> = Vec::with_capacity(2 * sample.n);
    for &i in &sample.real {
        texts.push(real[i].as_ref());
        dvecs.push(dense.map(|d| &d.0[i]));
    }
    for &i in &sample.sim {
        texts.push(sim[i].as_ref());
        dvecs.push(dense.map(|d| &d.1[i]));
    }
    cross_validate(&sample, dim.is_some(), cfg, |train| {
        let tr_texts: Vec<&str> = train.iter().map(|&i| texts[i]).collect();
        Ok(TextEncoder {
            vectorizer: TfidfVectorizer::fit(&tr_texts, &cfg.tfidf)?,
            texts: &texts,
            dense: &dvecs,
            dense_dim: dim.unwrap_or(0),
            dense_scale: cfg.dense_scale,
        })
    })
}

/// `a − b` of two discriminators' out-of-fold AUCs, both made against the
/// same real inputs, with a paired cluster-bootstrap 95% interval. Each
/// replicate draws real clusters (`real_cluster`: the dialogue of each real
/// input) and simulated clusters (each run's map from input to conversation
/// index) once, with replacement, and computes both AUCs on the examples of
/// the drawn clusters. One draw for both runs pairs them: the shared real
/// turns, and in replay the same dialogues replayed, cancel out of the
/// difference's noise, which two separate intervals cannot show. Clusters,
/// not turns, because a conversation's turns are not independent. `None` if
/// an input index has no cluster or an AUC is undefined on the full data.
pub fn paired_auc_difference(
    a: (&OutOfFold, &[usize]),
    b: (&OutOfFold, &[usize]),
    real_cluster: &[usize],
    n_boot: usize,
    seed: u64,
) -> Option<Estimate> {
    use rand::Rng;
    let n_real = real_cluster.iter().max().map_or(0, |m| m + 1);
    let n_sim = a.1.iter().chain(b.1).max().map_or(0, |m| m + 1);
    let group = |scores: &[(usize, f64)], cluster: &[usize], n: usize| {
        let mut g = vec![Vec::new(); n];
        for &(i, s) in scores {
            g[*cluster.get(i)?].push(s);
        }
        Some(g)
    };
    let side = |(o, sim_cluster): (&OutOfFold, &[usize])| {
        Some((
            group(&o.real, real_cluster, n_real)?,
            group(&o.sim, sim_cluster, n_sim)?,
        ))
    };
    let (ga, gb) = (side(a)?, side(b)?);
    let auc = |(real, sim): &(Vec<Vec<f64>>, Vec<Vec<f64>>), rd: &[usize], sd: &[usize]| {
        let (mut scores, mut labels) = (Vec::new(), Vec::new());
        for (groups, label, draw) in [(real, false, rd), (sim, true, sd)] {
            for &c in draw {
                scores.extend(&groups[c]);
                labels.extend(std::iter::repeat_n(label, groups[c].len()));
            }
        }
        roc_auc(&scores, &labels).ok()
    };
    let diff = |rd: &[usize], sd: &[usize]| Some(auc(&ga, rd, sd)? - auc(&gb, rd, sd)?);
    let (all_real, all_sim): (Vec<usize>, Vec<usize>) =
        ((0..n_real).collect(), (0..n_sim).collect());
    let value = diff(&all_real, &all_sim)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let (mut rd, mut sd) = (vec![0; n_real], vec![0; n_sim]);
    let mut reps = Vec::with_capacity(n_boot);
    for _ in 0..n_boot {
        rd.iter_mut().for_each(|c| *c = rng.random_range(0..n_real));
        sd.iter_mut().for_each(|c| *c = rng.random_range(0..n_sim));
        reps.extend(diff(&rd, &sd));
    }
    let (lo, hi) = percentile_interval(reps).unwrap_or((value, value));
    Some(Estimate { value, lo, hi })
}

#[cfg(test)]
mod tests {
    use super::super::loaders::{load_real, tests::IARD};
    use super::*;
    use rand::seq::SliceRandom;
    use rand::Rng;

    fn iard_seeker() -> Vec<String> {
        load_real(std::path::Path::new(IARD), crate::corpus::CorpusKind::Iard)
            .unwrap()
            .seeker_texts()
    }

    fn fast() -> DiscriminatorConfig {
        DiscriminatorConfig {
            n_bootstrap: 200,
            ..DiscriminatorConfig::default()
        }
    }

    #[test]
    fn dialogue_folds_do_not_credit_a_conversations_own_words() {
        // Both classes from one distribution, but every turn of a dialogue
        // names that dialogue's own made-up title: folds by turn learn the
        // titles of each class's dialogues and score their other turns;
        // folds by dialogue never test on a title they trained on.
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let common = [
            "movie",
            "good",
            "like",
            "want",
            "watch",
            "something",
            "funny",
            "scary",
            "old",
            "new",
            "seen",
            "thanks",
            "maybe",
            "really",
            "love",
        ];
        let (mut real, mut sim, mut real_d, mut sim_d) = (vec![], vec![], vec![], vec![]);
        for d in 0..80usize {
            let title: String = (0..7)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            for _ in 0..6 {
                let words: Vec<&str> = (0..5)
                    .map(|_| common[rng.random_range(0..common.len())])
                    .collect();
                let text = format!("{} {title}", words.join(" "));
                if d % 2 == 0 {
                    real.push(text);
                    real_d.push(d);
                } else {
                    sim.push(text);
                    sim_d.push(d);
                }
            }
        }
        let dialogues = Some((real_d.as_slice(), sim_d.as_slice()));
        let by_turn = discriminate(&real, &sim, None, dialogues, &fast()).unwrap();
        let by_dialogue = discriminate(
            &real,
            &sim,
            None,
            dialogues,
            &DiscriminatorConfig {
                fold_unit: FoldUnit::Dialogue,
                ..fast()
            },
        )
        .unwrap();
        assert_eq!(by_turn.fold_unit, FoldUnit::Turn);
        assert_eq!(by_dialogue.fold_unit, FoldUnit::Dialogue);
        assert!(by_turn.auc.value > 0.8, "by turn {:?}", by_turn.auc);
        assert!(
            (0.35..0.65).contains(&by_dialogue.auc.value),
            "by dialogue {:?}",
            by_dialogue.auc
        );
        // A dialogue map that does not line up is an error, not a guess.
        assert!(discriminate(&real, &sim, None, Some((&real_d[1..], &sim_d)), &fast()).is_err());
        // One simulated dialogue cannot be folded by dialogue: a fold would
        // train without the class.
        let one = vec![1; sim_d.len()];
        assert!(matches!(
            discriminate(
                &real,
                &sim,
                None,
                Some((&real_d, &one)),
                &DiscriminatorConfig {
                    fold_unit: FoldUnit::Dialogue,
                    ..fast()
                },
            ),
            Err(DiscriminatorError::TooFewDialogues { real: 40, sim: 1 })
        ));
    }

    #[test]
    fn iard_halves_are_indistinguishable() {
        let t = iard_seeker();
        let (a, b): (Vec<_>, Vec<_>) = t.iter().enumerate().partition(|(i, _)| i % 2 == 0);
        let a: Vec<String> = a.into_iter().map(|x| x.1.clone()).collect();
        let b: Vec<String> = b.into_iter().map(|x| x.1.clone()).collect();
        let r = discriminate(&a, &b, None, None, &fast()).unwrap();
        eprintln!("IARD halves AUC {:?} acc {:?}", r.auc, r.accuracy);
        assert!(r.auc.value >= 0.4 && r.auc.value <= 0.6, "{:?}", r.auc);
        assert!(r.auc.lo <= r.auc.value && r.auc.value <= r.auc.hi);
    }

    #[test]
    fn shuffled_words_are_detected() {
        let t = iard_seeker();
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let shuffled: Vec<String> = t
            .iter()
            .map(|s| {
                let mut w: Vec<&str> = s.split_whitespace().collect();
                w.shuffle(&mut rng);
                w.join(" ")
            })
            .collect();
        let r = discriminate(&t, &shuffled, None, None, &fast()).unwrap();
        eprintln!(
            "IARD vs shuffled AUC {:?} acc {:?} top {:?}",
            r.auc,
            r.accuracy,
            &r.top_simulated[..5]
        );
        assert!(r.auc.value > 0.95, "{:?}", r.auc);
        assert_eq!(r.top_simulated.len(), 20);
    }

    #[test]
    fn dense_features_are_used_and_checked() {
        let real: Vec<String> = (0..20).map(|i| format!("same text {}", i % 3)).collect();
        let sim = real.clone();
        let dr: Vec<Vec<f32>> = (0..20).map(|i| vec![1.0, (i % 5) as f32 * 0.01]).collect();
        let ds: Vec<Vec<f32>> = (0..20).map(|i| vec![-1.0, (i % 5) as f32 * 0.01]).collect();
        let r = discriminate(&real, &sim, Some((&dr, &ds)), None, &fast()).unwrap();
        assert!(r.used_dense);
        assert!(r.auc.value > 0.99, "{:?}", r.auc);
        assert!(discriminate(&real, &sim, Some((&dr[..3], &ds)), None, &fast()).is_err());
        assert!(discriminate(&real[..1], &sim, None, None, &fast()).is_err());
    }

    /// Scores of `n` examples in clusters of 4: a cluster level (shared by
    /// its examples) plus noise, from `rng`.
    fn clustered(rng: &mut ChaCha8Rng, n: usize, shift: f64) -> (Vec<(usize, f64)>, Vec<usize>) {
        use rand::Rng;
        let mut level = 0.0;
        let scores = (0..n)
            .map(|i| {
                if i % 4 == 0 {
                    level = rng.random_range(0.0..1.0);
                }
                (i, level + rng.random_range(0.0..0.3) + shift)
            })
            .collect();
        (scores, (0..n).map(|i| i / 4).collect())
    }

    #[test]
    fn paired_auc_difference_of_a_run_with_itself_is_exactly_zero() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let (real, real_cluster) = clustered(&mut rng, 200, 0.0);
        let (sim, sim_cluster) = clustered(&mut rng, 160, 0.2);
        let o = OutOfFold { real, sim };
        let d = paired_auc_difference(
            (&o, &sim_cluster),
            (&o, &sim_cluster),
            &real_cluster,
            200,
            3,
        )
        .unwrap();
        assert_eq!((d.value, d.lo, d.hi), (0.0, 0.0, 0.0));
    }

    #[test]
    fn paired_auc_difference_cancels_the_shared_noise() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let (real, real_cluster) = clustered(&mut rng, 200, 0.0);
        let (sim_a, sim_cluster) = clustered(&mut rng, 160, 0.2);
        // The baseline: the same conversations, a little easier to spot in
        // every turn (as a replay of the same dialogues with a worse setting).
        let sim_b: Vec<(usize, f64)> = sim_a.iter().map(|&(i, s)| (i, s + 0.05)).collect();
        let a = OutOfFold {
            real: real.clone(),
            sim: sim_a.clone(),
        };
        let b = OutOfFold {
            real: real.clone(),
            sim: sim_b.clone(),
        };
        let d = paired_auc_difference(
            (&a, &sim_cluster),
            (&b, &sim_cluster),
            &real_cluster,
            400,
            5,
        )
        .unwrap();
        assert!(d.value < 0.0 && d.hi < 0.0, "{d:?}");
        assert!(d.lo <= d.value && d.value <= d.hi, "{d:?}");
        // Each AUC alone varies far more than their paired difference.
        let auc_ci = |sim: &[(usize, f64)]| {
            let all: Vec<(f64, bool)> = real
                .iter()
                .map(|&(_, s)| (s, false))
                .chain(sim.iter().map(|&(_, s)| (s, true)))
                .collect();
            bootstrap_ci(all.len(), 400, 5, |ix| {
                let (s, l): (Vec<f64>, Vec<bool>) = ix.iter().map(|&i| all[i]).unzip();
                roc_auc(&s, &l).ok()
            })
            .unwrap()
        };
        let (ea, eb) = (auc_ci(&sim_a), auc_ci(&sim_b));
        assert!(
            (d.hi - d.lo) < 0.5 * ((ea.hi - ea.lo) + (eb.hi - eb.lo)) / 2.0,
            "paired {d:?}, alone {ea:?} {eb:?}"
        );
        // An input without a cluster is refused, not miscounted.
        assert!(paired_auc_difference(
            (&a, &sim_cluster[..10]),
            (&b, &sim_cluster),
            &real_cluster,
            10,
            5
        )
        .is_none());
    }
}
