//! Seeker intent classifier trained on IARD.
//!
//! One-vs-rest logistic regression over TF-IDF features predicts the 16 IARD
//! seeker sub-intents (multi-label). [`cross_validate_intents`] measures
//! multi-label macro-F1 with stratified k-fold (stratified by each
//! utterance's rarest label); [`IntentClassifier::label_distribution`]
//! predicts the intent distribution of any text set (share of the top
//! predicted intent); [`label_fidelity`] checks whether simulated turns
//! express the intent they were asked to express.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::features::{FeatureError, TfidfConfig, TfidfVectorizer};
use super::logreg::{argmax, LogRegConfig, LogRegError, OneVsRest};
use super::stats::{
    bootstrap_ci, confusion_matrix, macro_f1, multilabel_macro_f1, per_class_f1, stratified_kfold,
    Estimate,
};

/// The 16 IARD seeker sub-intents (one list for the whole crate).
pub use crate::corpus::IARD_SEEKER_INTENTS as IARD_INTENTS;

/// Errors of the intent classifier.
#[derive(Debug, thiserror::Error)]
pub enum IntentError {
    /// No labelled training text.
    #[error("no labelled seeker turns to train the intent classifier")]
    NoTrainingData,
    /// Texts and labels differ in length.
    #[error("{texts} texts but {labels} label lists")]
    LengthMismatch {
        /// Texts.
        texts: usize,
        /// Label lists.
        labels: usize,
    },
    /// Feature extraction failed.
    #[error(transparent)]
    Features(#[from] FeatureError),
    /// Model fitting failed.
    #[error(transparent)]
    LogReg(#[from] LogRegError),
}

/// Settings of the intent classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentConfig {
    /// Label set (order of outputs).
    pub labels: Vec<String>,
    /// Cross-validation folds.
    pub folds: usize,
    /// Fold seed.
    pub seed: u64,
    /// Probability threshold for multi-label prediction.
    pub threshold: f64,
    /// Features.
    pub tfidf: TfidfConfig,
    /// Per-label classifier.
    pub logreg: LogRegConfig,
}

impl Default for IntentConfig {
    fn default() -> Self {
        Self {
            labels: IARD_INTENTS.iter().map(|s| s.to_string()).collect(),
            folds: 5,
            seed: 17,
            threshold: 0.35,
            tfidf: TfidfConfig {
                word_block_share: 0.5,
                ..TfidfConfig::default()
            },
            logreg: LogRegConfig {
                c: 10.0,
                max_iter: 100,
                tol: 1e-4,
                balanced: true,
            },
        }
    }
}

/// A fitted intent classifier.
#[derive(Clone, Debug)]
pub struct IntentClassifier {
    vectorizer: TfidfVectorizer,
    model: OneVsRest,
    threshold: f64,
}

impl IntentClassifier {
    /// Fits on texts with their label lists (labels outside `cfg.labels` are
    /// ignored).
    pub fn fit<S: AsRef<str>>(
        texts: &[S],
        labels: &[Vec<String>],
        cfg: &IntentConfig,
    ) -> Result<Self, IntentError> {
        if texts.len() != labels.len() {
            return Err(IntentError::LengthMismatch {
                texts: texts.len(),
                labels: labels.len(),
            });
        }
        if texts.is_empty() {
            return Err(IntentError::NoTrainingData);
        }
        let vectorizer = TfidfVectorizer::fit(texts, &cfg.tfidf)?;
        let x = vectorizer.transform_all(texts);
        let model = OneVsRest::fit(
            &x,
            labels,
            &cfg.labels,
            vectorizer.n_features(),
            &cfg.logreg,
        )?;
        Ok(Self {
            vectorizer,
            model,
            threshold: cfg.threshold,
        })
    }

    /// Label names in output order.
    pub fn labels(&self) -> &[String] {
        &self.model.labels
    }

    /// Per-label probabilities of one text.
    pub fn predict_proba(&self, text: &str) -> Vec<f64> {
        self.model.predict_proba(&self.vectorizer.transform(text))
    }

    /// Predicted label indices (probability ≥ threshold, else the top one).
    pub fn predict_labels(&self, text: &str) -> Vec<usize> {
        self.model
            .predict_labels(&self.vectorizer.transform(text), self.threshold)
    }

    /// Index of the most probable label.
    pub fn top_intent(&self, text: &str) -> usize {
        argmax(&self.predict_proba(text)).unwrap_or(0)
    }

    /// Share of texts whose top predicted intent is each label (all labels
    /// present, zero if unused).
    pub fn label_distribution<S: AsRef<str>>(&self, texts: &[S]) -> BTreeMap<String, f64> {
        let mut m: BTreeMap<String, f64> = self.labels().iter().map(|l| (l.clone(), 0.0)).collect();
        for t in texts {
            let i = self.top_intent(t.as_ref());
            if let Some(v) = self.labels().get(i).and_then(|l| m.get_mut(l)) {
                *v += 1.0;
            }
        }
        let n = texts.len().max(1) as f64;
        m.values_mut().for_each(|v| *v /= n);
        m
    }
}

/// Cross-validated quality of the intent classifier.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentCvResult {
    /// Training utterances.
    pub n: usize,
    /// Multi-label macro-F1 over labels.
    pub macro_f1: f64,
    /// Per-label F1 (`None` if the label never occurs nor is predicted).
    pub per_label_f1: BTreeMap<String, Option<f64>>,
    /// Share of utterances whose top predicted label is one of the true ones.
    pub top1_accuracy: f64,
}

/// Stratified k-fold cross-validation of [`IntentClassifier`].
pub fn cross_validate_intents<S: AsRef<str>>(
    texts: &[S],
    labels: &[Vec<String>],
    cfg: &IntentConfig,
) -> Result<IntentCvResult, IntentError> {
    if texts.len() != labels.len() {
        return Err(IntentError::LengthMismatch {
            texts: texts.len(),
            labels: labels.len(),
        });
    }
    let n = texts.len();
    if n < cfg.folds.max(2) {
        return Err(IntentError::NoTrainingData);
    }
    let mut freq: BTreeMap<&str, usize> = BTreeMap::new();
    for ls in labels {
        for l in ls {
            *freq.entry(l.as_str()).or_insert(0) += 1;
        }
    }
    let strata: Vec<String> = labels
        .iter()
        .map(|ls| {
            ls.iter()
                .min_by_key(|l| (freq.get(l.as_str()).copied().unwrap_or(0), l.as_str()))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    let folds = stratified_kfold(&strata, cfg.folds, cfg.seed);
    let nl = cfg.labels.len();
    let truth: Vec<Vec<bool>> = labels
        .iter()
        .map(|ls| cfg.labels.iter().map(|l| ls.contains(l)).collect())
        .collect();
    let mut pred = vec![vec![false; nl]; n];
    let mut top_hits = 0usize;
    for k in 0..cfg.folds {
        let tr: Vec<usize> = (0..n).filter(|&i| folds[i] != k).collect();
        let te: Vec<usize> = (0..n).filter(|&i| folds[i] == k).collect();
        if te.is_empty() {
            continue;
        }
        let tx: Vec<&str> = tr.iter().map(|&i| texts[i].as_ref()).collect();
        let ty: Vec<Vec<String>> = tr.iter().map(|&i| labels[i].clone()).collect();
        let clf = IntentClassifier::fit(&tx, &ty, cfg)?;
        for &i in &te {
            let p = clf.predict_proba(texts[i].as_ref());
            for l in clf
                .model
                .predict_labels(&clf.vectorizer.transform(texts[i].as_ref()), cfg.threshold)
            {
                pred[i][l] = true;
            }
            if argmax(&p).is_some_and(|t| truth[i][t]) {
                top_hits += 1;
            }
        }
    }
    let (macro_f1, per) = multilabel_macro_f1(&truth, &pred, nl);
    Ok(IntentCvResult {
        n,
        macro_f1,
        per_label_f1: cfg.labels.iter().cloned().zip(per).collect(),
        top1_accuracy: top_hits as f64 / n as f64,
    })
}

/// Agreement between requested intents and the classifier's top prediction.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabelFidelity {
    /// Turns with a requested intent that the classifier knows.
    pub n: usize,
    /// Share whose top prediction equals the request.
    pub accuracy: f64,
    /// Macro-F1 over labels occurring as request or prediction.
    pub macro_f1: f64,
    /// Per-label F1.
    pub per_label_f1: BTreeMap<String, Option<f64>>,
    /// Label order of the confusion matrix.
    pub labels: Vec<String>,
    /// `confusion[requested][predicted]`.
    pub confusion: Vec<Vec<usize>>,
}

/// For each text with a requested intent the classifier knows, whether its
/// top prediction is one of the requested intents (the per-turn terms of
/// [`LabelFidelity::accuracy`]).
pub fn fidelity_hits<S: AsRef<str>>(
    clf: &IntentClassifier,
    texts: &[S],
    requested: &[Vec<String>],
) -> Vec<bool> {
    let labels = clf.labels();
    texts
        .iter()
        .zip(requested)
        .filter_map(|(t, req)| {
            let known: Vec<usize> = req
                .iter()
                .filter_map(|l| labels.iter().position(|x| x == l))
                .collect();
            (!known.is_empty()).then(|| known.contains(&clf.top_intent(t.as_ref())))
        })
        .collect()
}

/// Compares, for each text with a requested intent, the top predicted intent
/// with the request. With several requested labels the prediction counts as
/// correct if it is any of them (otherwise the first known one is the truth).
pub fn label_fidelity<S: AsRef<str>>(
    clf: &IntentClassifier,
    texts: &[S],
    requested: &[Vec<String>],
) -> LabelFidelity {
    let labels = clf.labels().to_vec();
    let mut truth = Vec::new();
    let mut pred = Vec::new();
    for (t, req) in texts.iter().zip(requested) {
        let known: Vec<usize> = req
            .iter()
            .filter_map(|l| labels.iter().position(|x| x == l))
            .collect();
        if let Some(&first) = known.first() {
            let p = clf.top_intent(t.as_ref());
            // with several requested intents, a prediction of any of them counts
            truth.push(if known.contains(&p) { p } else { first });
            pred.push(p);
        }
    }
    let cm = confusion_matrix(&truth, &pred, labels.len());
    let per = per_class_f1(&cm);
    LabelFidelity {
        n: truth.len(),
        accuracy: if truth.is_empty() {
            0.0
        } else {
            super::stats::accuracy(&pred, &truth)
        },
        macro_f1: macro_f1(&cm),
        per_label_f1: labels.iter().cloned().zip(per).collect(),
        labels,
        confusion: cm,
    }
}

/// Macro-F1 on `test` of a classifier trained on `train` (texts with label
/// lists), with a bootstrap interval over the test turns: how well labels
/// learnt from one set (simulated turns and their drawn intents) transfer
/// to another (real labelled turns). `None` when a side is empty.
pub fn transfer_macro_f1<S: AsRef<str>>(
    train: (&[S], &[Vec<String>]),
    test: (&[S], &[Vec<String>]),
    cfg: &IntentConfig,
    n_boot: usize,
    seed: u64,
) -> Result<Option<Estimate>, IntentError> {
    if train.0.is_empty() || test.0.is_empty() {
        return Ok(None);
    }
    let clf = IntentClassifier::fit(train.0, train.1, cfg)?;
    let nl = cfg.labels.len();
    let truth: Vec<Vec<bool>> = test
        .1
        .iter()
        .map(|ls| cfg.labels.iter().map(|l| ls.contains(l)).collect())
        .collect();
    // The classifier's labels are cfg.labels in order (OneVsRest keeps them).
    let pred: Vec<Vec<bool>> = test
        .0
        .iter()
        .map(|t| {
            let mut row = vec![false; nl];
            for l in clf.predict_labels(t.as_ref()) {
                if let Some(i) = clf
                    .labels()
                    .get(l)
                    .and_then(|name| cfg.labels.iter().position(|x| x == name))
                {
                    row[i] = true;
                }
            }
            row
        })
        .collect();
    let f1 = |ix: &[usize]| {
        let t: Vec<Vec<bool>> = ix.iter().map(|&i| truth[i].clone()).collect();
        let p: Vec<Vec<bool>> = ix.iter().map(|&i| pred[i].clone()).collect();
        Some(multilabel_macro_f1(&t, &p, nl).0)
    };
    Ok(bootstrap_ci(truth.len(), n_boot, seed, f1))
}

#[cfg(test)]
mod tests {
    use super::super::loaders::{load_real, tests::IARD};
    use super::*;

    fn iard() -> (Vec<String>, Vec<Vec<String>>) {
        let c = load_real(std::path::Path::new(IARD), crate::corpus::CorpusKind::Iard).unwrap();
        c.seeker_turns()
            .map(|t| (t.text.clone(), t.intents.clone()))
            .unzip()
    }

    #[test]
    fn iard_cross_validated_macro_f1() {
        let (t, l) = iard();
        let t0 = std::time::Instant::now();
        let r = cross_validate_intents(&t, &l, &IntentConfig::default()).unwrap();
        eprintln!(
            "IARD intent CV macro-F1 {:.4} top1 {:.4} ({:?}) {:?}",
            r.macro_f1,
            r.top1_accuracy,
            t0.elapsed(),
            r.per_label_f1
        );
        assert_eq!(r.n, 1884);
        // measured 0.5087 with the default config (5 folds, seed 17)
        assert!(r.macro_f1 >= 0.48, "measured {}", r.macro_f1);
        assert!(r.top1_accuracy >= 0.72, "measured {}", r.top1_accuracy);
    }

    #[test]
    fn fidelity_on_training_texts() {
        let (t, l) = iard();
        let clf = IntentClassifier::fit(&t, &l, &IntentConfig::default()).unwrap();
        let d = clf.label_distribution(&t);
        assert_eq!(d.len(), 16);
        assert!((d.values().sum::<f64>() - 1.0).abs() < 1e-9);
        // requests = first gold label of clearly single-label turns
        let (st, sl): (Vec<String>, Vec<Vec<String>>) = t
            .iter()
            .zip(&l)
            .filter(|(_, l)| l.len() == 1)
            .map(|(t, l)| (t.clone(), l.clone()))
            .unzip();
        let f = label_fidelity(&clf, &st, &sl);
        assert_eq!(f.n, st.len());
        assert!(f.accuracy > 0.7, "{}", f.accuracy);
        assert_eq!(f.confusion.iter().flatten().sum::<usize>(), f.n);
        let none = label_fidelity(&clf, &st, &vec![vec!["XYZ".to_string()]; st.len()]);
        assert_eq!(none.n, 0);
    }
}
