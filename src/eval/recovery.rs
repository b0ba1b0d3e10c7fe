//! Session-latent recovery: for every session variable of the simulated
//! set, can a classifier tell its value from the seeker's turns? A label
//! whose value cannot be recovered from the text carries no information
//! for anyone training on it, and the report flags it.
//!
//! Per variable: string values are classes; numbers (range variables) are
//! split at their median into `low` / `high`; lists and objects (picked
//! genres, a catalog item) are left to `session_fidelity`. Each dialogue's
//! seeker turns, joined, are classified by the eval's TF-IDF one-vs-rest
//! logistic regression, k-fold and stratified; the figures are accuracy
//! (with a bootstrap 95% interval over dialogues), macro-F1 and the
//! majority-class rate that accuracy must beat.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::intent::{IntentClassifier, IntentConfig, IntentError};
use super::loaders::Corpus;
use super::stats::{bootstrap_ci, confusion_matrix, macro_f1, stratified_kfold, Estimate};

/// How well one session variable is recovered from the text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentRecovery {
    /// Variable name.
    pub variable: String,
    /// Classes (values, or `low`/`high` around the median of a number).
    pub classes: Vec<String>,
    /// Dialogues classified.
    pub n: usize,
    /// Cross-validated accuracy with its bootstrap 95% interval.
    pub accuracy: Estimate,
    /// Cross-validated macro-F1.
    pub macro_f1: f64,
    /// Share of the most frequent class: what guessing it scores.
    pub majority: f64,
    /// Whether the accuracy interval lies above the majority rate.
    pub recoverable: bool,
}

/// Keys the loaders add beside the session latents, which are outcomes,
/// not latents.
const NOT_LATENTS: [&str; 1] = ["end_reason"];

/// Fewest dialogues per class a variable needs to be measured.
pub const MIN_PER_CLASS: usize = 3;

/// The class of each dialogue for `variable`, or `None` when the variable
/// is not categorical or not a number.
fn classes_of(values: &[&Value]) -> Option<Vec<String>> {
    if values.iter().all(|v| v.is_string()) {
        return Some(
            values
                .iter()
                .map(|v| v.as_str().unwrap_or_default().to_string())
                .collect(),
        );
    }
    let nums: Option<Vec<f64>> = values.iter().map(|v| v.as_f64()).collect();
    let nums = nums?;
    let mut sorted = nums.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    Some(
        nums.iter()
            .map(|x| if *x < median { "low" } else { "high" }.to_string())
            .collect(),
    )
}

/// Recovery of every session variable that every simulated dialogue has.
pub fn latent_recovery(
    sim: &Corpus,
    folds: usize,
    n_boot: usize,
    seed: u64,
) -> Result<Vec<LatentRecovery>, IntentError> {
    // Dialogues with seeker turns, each with its seeker turns joined.
    let (dialogues, texts): (Vec<_>, Vec<String>) = sim
        .dialogues
        .iter()
        .zip(sim.seeker_conversations())
        .filter(|(d, _)| d.turns.iter().any(|t| t.seeker))
        .unzip();
    let Some(first) = dialogues.first().and_then(|d| d.latents.as_object()) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in first.keys().filter(|k| !NOT_LATENTS.contains(&k.as_str())) {
        let values: Option<Vec<&Value>> = dialogues
            .iter()
            .map(|d| d.latents.get(name).filter(|v| !v.is_null()))
            .collect();
        let Some(labels) = values.as_deref().and_then(classes_of) else {
            continue;
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for l in &labels {
            *counts.entry(l).or_default() += 1;
        }
        if counts.len() < 2 || counts.values().any(|c| *c < MIN_PER_CLASS) {
            continue;
        }
        let classes: Vec<String> = counts.keys().map(|c| c.to_string()).collect();
        let k = folds.clamp(2, *counts.values().min().unwrap_or(&2));
        let assignment = stratified_kfold(&labels, k, seed);
        let cfg = IntentConfig {
            labels: classes.clone(),
            folds: k,
            seed,
            ..IntentConfig::default()
        };
        let mut predicted = vec![0usize; labels.len()];
        for fold in 0..k {
            let (train, test): (Vec<usize>, Vec<usize>) =
                (0..labels.len()).partition(|&i| assignment[i] != fold);
            if test.is_empty() || train.is_empty() {
                continue;
            }
            let tx: Vec<&str> = train.iter().map(|&i| texts[i].as_str()).collect();
            let ty: Vec<Vec<String>> = train.iter().map(|&i| vec![labels[i].clone()]).collect();
            let clf = IntentClassifier::fit(&tx, &ty, &cfg)?;
            for &i in &test {
                let top = clf.top_intent(&texts[i]);
                predicted[i] = clf
                    .labels()
                    .get(top)
                    .and_then(|l| classes.iter().position(|c| c == l))
                    .unwrap_or(0);
            }
        }
        let truth: Vec<usize> = labels
            .iter()
            .map(|l| classes.iter().position(|c| c == l).unwrap_or(0))
            .collect();
        let hits: Vec<f64> = truth
            .iter()
            .zip(&predicted)
            .map(|(t, p)| f64::from(u8::from(t == p)))
            .collect();
        let accuracy = bootstrap_ci(hits.len(), n_boot, seed, |ix| {
            Some(ix.iter().map(|&i| hits[i]).sum::<f64>() / ix.len().max(1) as f64)
        })
        .unwrap_or(Estimate {
            value: 0.0,
            lo: 0.0,
            hi: 0.0,
        });
        let majority = *counts.values().max().unwrap_or(&0) as f64 / labels.len() as f64;
        out.push(LatentRecovery {
            variable: name.clone(),
            n: labels.len(),
            macro_f1: macro_f1(&confusion_matrix(&truth, &predicted, classes.len())),
            recoverable: accuracy.lo > majority,
            accuracy,
            majority,
            classes,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::loaders::{EvalDialogue, EvalTurn};
    use super::*;

    fn dialogue(i: usize, mood: &str, text: &str) -> EvalDialogue {
        EvalDialogue {
            id: i.to_string(),
            turns: vec![EvalTurn {
                seeker: true,
                text: text.into(),
                intents: Vec::new(),
            }],
            latents: serde_json::json!({ "mood": mood, "noise": if i.is_multiple_of(2) { "a" } else { "b" }, "patience": i % 7 }),
            profile: Default::default(),
        }
    }

    #[test]
    fn a_value_shown_in_the_text_is_recovered_and_one_that_is_not_is_flagged() {
        // `mood` is written into the text; `noise` is not.
        let words = ["great lovely fun happy", "awful boring sad grim"];
        let dialogues = (0..60)
            .map(|i| {
                let mood = if i % 3 == 0 { "bad" } else { "good" };
                let text = format!(
                    "{} movie number {}",
                    words[usize::from(mood == "bad")],
                    i % 5
                );
                dialogue(i, mood, &text)
            })
            .collect();
        let r = latent_recovery(&Corpus { dialogues }, 5, 200, 1).unwrap();
        let get = |v: &str| r.iter().find(|x| x.variable == v).unwrap();
        let mood = get("mood");
        assert!(mood.recoverable && mood.accuracy.value > 0.95, "{mood:?}");
        assert!((mood.majority - 40.0 / 60.0).abs() < 1e-9);
        let noise = get("noise");
        assert!(!noise.recoverable, "{noise:?}");
        // A number is binned at its median.
        assert_eq!(get("patience").classes, ["high", "low"]);
    }
}
