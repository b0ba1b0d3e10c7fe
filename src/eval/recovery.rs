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
//!
//! Beside the words the classifier sees the conversation's shape: how many
//! turns the seeker took and how many words they average. A value can show
//! there and nowhere else (a patient seeker stays longer, a terse one writes
//! less), and the joined text hides where one turn ends and the next
//! begins. The words-only accuracy is reported beside it, so a reader sees
//! whether a value shows in what the seeker says or only in how much.
//!
//! A third figure bounds what rendering can do: the same classifier on the
//! conversation's turn intents (a simulated run's drawn ones, a real
//! corpus's labels) and its shape instead of its words. A value it cannot
//! tell either is not held back by how the model writes but by how little
//! it changes what the seeker does.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::features::{SparseVec, TfidfVectorizer};
use super::intent::{IntentConfig, IntentError};
use super::loaders::{Corpus, EvalDialogue};
use super::logreg::{argmax, OneVsRest};
use super::stats::{bootstrap_ci, confusion_matrix, macro_f1, stratified_kfold, Estimate};
use super::text::word_count;

/// How well one session variable is recovered from the text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatentRecovery {
    /// Variable name.
    pub variable: String,
    /// Classes (values, or `low`/`high` around the median of a number).
    pub classes: Vec<String>,
    /// Dialogues classified.
    pub n: usize,
    /// Cross-validated accuracy (words and conversation shape) with its
    /// bootstrap 95% interval.
    pub accuracy: Estimate,
    /// Cross-validated macro-F1 (words and conversation shape) with its
    /// bootstrap 95% interval over dialogues.
    pub macro_f1: Estimate,
    /// Cross-validated accuracy from the words alone, with its interval.
    pub text_accuracy: Estimate,
    /// Cross-validated accuracy from the turns' intents (in order) and the
    /// conversation's shape instead of its words: what the value would
    /// score if every turn said its intent perfectly. `None` when the
    /// seeker turns carry no intents.
    #[serde(default)]
    pub intent_accuracy: Option<Estimate>,
    /// Share of the most frequent class: what guessing it scores.
    pub majority: f64,
    /// Macro-F1 of guessing without the text, each value at its own
    /// frequency: `1 / classes` in expectation (each value's F1 is its
    /// share), what macro-F1 must beat. Always guessing the most frequent
    /// value scores less (`2m / (1 + m) / classes`).
    pub chance_macro_f1: f64,
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

/// Recovery of every session variable that every simulated dialogue has,
/// then of every field of the seekers' profiles (INSPIRED's survey
/// answers, of a real corpus or of the real seekers a run replayed), as
/// `profile.<field>` over the dialogues that have it: how much of a real
/// person's age or personality shows in what they type.
pub fn latent_recovery(
    sim: &Corpus,
    folds: usize,
    n_boot: usize,
    seed: u64,
) -> Result<Vec<LatentRecovery>, IntentError> {
    let mut out = session_recovery(sim, folds, n_boot, seed)?;
    let fields: std::collections::BTreeSet<&String> = sim
        .dialogues
        .iter()
        .flat_map(|d| d.profile.keys())
        .collect();
    for field in fields {
        let name = format!("profile.{field}");
        let dialogues: Vec<EvalDialogue> = sim
            .dialogues
            .iter()
            .filter_map(|d| {
                let value = d.profile.get(field).filter(|v| !v.is_null())?;
                Some(EvalDialogue {
                    latents: serde_json::json!({ name.as_str(): value }),
                    profile: BTreeMap::new(),
                    ..d.clone()
                })
            })
            .collect();
        out.extend(session_recovery(
            &Corpus { dialogues },
            folds,
            n_boot,
            seed,
        )?);
    }
    Ok(out)
}

/// [`latent_recovery`] of the session latents alone.
fn session_recovery(
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
    let shapes: Vec<[f64; 2]> = dialogues.iter().map(|d| shape_of(d)).collect();
    let intents = intents_of(&dialogues);
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
        let truth: Vec<usize> = labels
            .iter()
            .map(|l| classes.iter().position(|c| c == l).unwrap_or(0))
            .collect();
        let k = folds.clamp(2, *counts.values().min().unwrap_or(&2));
        let assignment = stratified_kfold(&labels, k, seed);
        let cfg = IntentConfig {
            labels: classes.clone(),
            folds: k,
            seed,
            ..IntentConfig::default()
        };
        let fit = |texts: &[String], with_shape: bool| {
            cross_validated_classes(
                texts,
                with_shape.then_some(shapes.as_slice()),
                &truth,
                &assignment,
                &cfg,
            )
        };
        let predicted = fit(&texts, true)?;
        let accuracy = accuracy_of(&truth, &predicted, n_boot, seed);
        let text_accuracy = accuracy_of(&truth, &fit(&texts, false)?, n_boot, seed);
        let intent_accuracy = match &intents {
            Some(t) => Some(accuracy_of(&truth, &fit(t, true)?, n_boot, seed)),
            None => None,
        };
        let majority = *counts.values().max().unwrap_or(&0) as f64 / labels.len() as f64;
        out.push(LatentRecovery {
            variable: name.clone(),
            n: labels.len(),
            macro_f1: macro_f1_of(&truth, &predicted, classes.len(), n_boot, seed),
            chance_macro_f1: 1.0 / classes.len() as f64,
            recoverable: accuracy.lo > majority,
            accuracy,
            text_accuracy,
            intent_accuracy,
            majority,
            classes,
        });
    }
    Ok(out)
}

/// Each dialogue's seeker-turn intents as one text of tokens, in turn
/// order (letters and digits only, so `CRI-F` stays one token), or `None`
/// when no seeker turn carries an intent.
fn intents_of(dialogues: &[&EvalDialogue]) -> Option<Vec<String>> {
    let texts: Vec<String> = dialogues
        .iter()
        .map(|d| {
            d.turns
                .iter()
                .filter(|t| t.seeker)
                .flat_map(|t| &t.intents)
                .map(|i| i.chars().filter(char::is_ascii_alphanumeric).collect())
                .collect::<Vec<String>>()
                .join(" ")
        })
        .collect();
    texts.iter().any(|t| !t.is_empty()).then_some(texts)
}

/// The conversation's shape: the number of seeker turns and their mean
/// length in words, each `ln(1 + x)` (a turn more matters less the more
/// there are).
fn shape_of(d: &EvalDialogue) -> [f64; 2] {
    let words: Vec<usize> = d
        .turns
        .iter()
        .filter(|t| t.seeker)
        .map(|t| word_count(&t.text))
        .collect();
    let turns = words.len() as f64;
    let mean_words = words.iter().sum::<usize>() as f64 / turns.max(1.0);
    [turns.ln_1p(), mean_words.ln_1p()]
}

/// Out-of-fold class predictions: per fold, TF-IDF fitted on the training
/// texts (with `shapes`, the shape features appended, standardised by the
/// training fold's mean and deviation so they weigh like the unit-length
/// text block) and one-vs-rest logistic regression; the most probable
/// class of each held-out dialogue.
fn cross_validated_classes(
    texts: &[String],
    shapes: Option<&[[f64; 2]]>,
    truth: &[usize],
    assignment: &[usize],
    cfg: &IntentConfig,
) -> Result<Vec<usize>, IntentError> {
    let mut predicted = vec![0usize; truth.len()];
    for fold in 0..cfg.folds {
        let (train, test): (Vec<usize>, Vec<usize>) =
            (0..truth.len()).partition(|&i| assignment[i] != fold);
        if test.is_empty() || train.is_empty() {
            continue;
        }
        let tx: Vec<&str> = train.iter().map(|&i| texts[i].as_str()).collect();
        let vectorizer = TfidfVectorizer::fit(&tx, &cfg.tfidf)?;
        let n_text = vectorizer.n_features();
        let standardise = shapes.map(|s| standardiser(train.iter().map(|&i| s[i])));
        let features = |i: usize| -> SparseVec {
            let mut x = vectorizer.transform(&texts[i]);
            if let (Some(s), Some((mean, sd))) = (shapes, &standardise) {
                let z: Vec<f32> = (0..2)
                    .map(|j| ((s[i][j] - mean[j]) / sd[j]) as f32)
                    .collect();
                x.append_dense(n_text as u32, &z, 1.0);
            }
            x
        };
        let x: Vec<SparseVec> = train.iter().map(|&i| features(i)).collect();
        let y: Vec<Vec<String>> = train
            .iter()
            .map(|&i| vec![cfg.labels[truth[i]].clone()])
            .collect();
        let n_features = n_text + if shapes.is_some() { 2 } else { 0 };
        let model = OneVsRest::fit(&x, &y, &cfg.labels, n_features, &cfg.logreg)?;
        for &i in &test {
            predicted[i] = argmax(&model.predict_proba(&features(i))).unwrap_or(0);
        }
    }
    Ok(predicted)
}

/// Mean and standard deviation (1 where there is no spread) of each shape
/// feature over `rows`.
fn standardiser(rows: impl Iterator<Item = [f64; 2]>) -> ([f64; 2], [f64; 2]) {
    let rows: Vec<[f64; 2]> = rows.collect();
    let n = rows.len().max(1) as f64;
    let mut mean = [0.0; 2];
    let mut sd = [0.0; 2];
    for j in 0..2 {
        mean[j] = rows.iter().map(|r| r[j]).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / n;
        sd[j] = if var > 1e-12 { var.sqrt() } else { 1.0 };
    }
    (mean, sd)
}

/// Share of `predicted` equal to `truth`, with a bootstrap interval over
/// dialogues.
fn accuracy_of(truth: &[usize], predicted: &[usize], n_boot: usize, seed: u64) -> Estimate {
    let hits: Vec<f64> = truth
        .iter()
        .zip(predicted)
        .map(|(t, p)| f64::from(u8::from(t == p)))
        .collect();
    bootstrap_ci(hits.len(), n_boot, seed, |ix| {
        Some(ix.iter().map(|&i| hits[i]).sum::<f64>() / ix.len().max(1) as f64)
    })
    .unwrap_or(Estimate {
        value: 0.0,
        lo: 0.0,
        hi: 0.0,
    })
}

/// Macro-F1 of `predicted` against `truth` over `n_classes`, with a
/// bootstrap interval over dialogues.
fn macro_f1_of(
    truth: &[usize],
    predicted: &[usize],
    n_classes: usize,
    n_boot: usize,
    seed: u64,
) -> Estimate {
    bootstrap_ci(truth.len(), n_boot, seed, |ix| {
        let t: Vec<usize> = ix.iter().map(|&i| truth[i]).collect();
        let p: Vec<usize> = ix.iter().map(|&i| predicted[i]).collect();
        Some(macro_f1(&confusion_matrix(&t, &p, n_classes)))
    })
    .unwrap_or(Estimate {
        value: 0.0,
        lo: 0.0,
        hi: 0.0,
    })
}

#[cfg(test)]
mod tests {
    use super::super::loaders::EvalTurn;
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

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
        // Guessing "good" 2/3 of the time: F1 2/3 on it, 1/3 on "bad" (always
        // "good" would score 0.8 and 0, less).
        assert!((mood.chance_macro_f1 - 0.5).abs() < 1e-9);
        let f1 = &mood.macro_f1;
        assert!(
            f1.value > 0.95 && f1.lo <= f1.value && f1.value <= f1.hi,
            "{f1:?}"
        );
        let noise = get("noise");
        assert!(!noise.recoverable, "{noise:?}");
        assert!(
            noise.macro_f1.lo < mood.macro_f1.lo && noise.macro_f1.value < 0.8,
            "{noise:?}"
        );
        // A number is binned at its median.
        assert_eq!(get("patience").classes, ["high", "low"]);
    }

    /// `n` words drawn from one vocabulary of 40: text that says nothing
    /// about any latent.
    fn random_words(rng: &mut ChaCha8Rng, n: usize) -> String {
        (0..n)
            .map(|_| format!("word{}", rng.random_range(0..40usize)))
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_value_shown_only_in_how_many_turns_the_seeker_takes_is_recovered_from_the_shape() {
        // Every dialogue is 12 words drawn from one vocabulary; a patient
        // seeker says them in 6 turns of 2, an impatient one in 2 turns of
        // 6. The joined words cannot tell them apart; the turn count can.
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let dialogues = (0..80)
            .map(|i| {
                let patient = i % 2 == 0;
                let (turns, per_turn) = if patient { (6, 2) } else { (2, 6) };
                let turns = (0..turns)
                    .map(|_| EvalTurn {
                        seeker: true,
                        text: random_words(&mut rng, per_turn),
                        intents: Vec::new(),
                    })
                    .collect();
                EvalDialogue {
                    id: i.to_string(),
                    turns,
                    latents: serde_json::json!({ "stay": if patient { "long" } else { "short" } }),
                    profile: Default::default(),
                }
            })
            .collect();
        let r = latent_recovery(&Corpus { dialogues }, 5, 200, 1).unwrap();
        let stay = &r[0];
        assert!(stay.recoverable && stay.accuracy.value > 0.95, "{stay:?}");
        assert!(stay.text_accuracy.hi < 0.75, "{stay:?}");
        assert_eq!(stay.intent_accuracy, None, "no turn carries an intent");
    }

    #[test]
    fn profile_fields_are_recovered_over_the_dialogues_that_have_them() {
        // A real corpus: no session latents, a survey for 3 of 4 seekers;
        // their taste shows in the text, their openness does not.
        let dialogues = (0..60)
            .map(|i| {
                let sweet = i % 2 == 0;
                let text = if sweet {
                    "sugar candy please"
                } else {
                    "lemon vinegar please"
                };
                let mut d = dialogue(i, "x", text);
                d.latents = Value::Null;
                if i % 4 != 3 {
                    d.profile.insert(
                        "taste".into(),
                        (if sweet { "sweet" } else { "sour" }).into(),
                    );
                    d.profile
                        .insert("Open".into(), serde_json::json!((i * 7 % 11) as f64 / 2.0));
                }
                d
            })
            .collect();
        let r = latent_recovery(&Corpus { dialogues }, 5, 200, 1).unwrap();
        let names: Vec<&str> = r.iter().map(|x| x.variable.as_str()).collect();
        assert_eq!(names, ["profile.Open", "profile.taste"]);
        let taste = &r[1];
        assert_eq!(taste.n, 45, "only the dialogues with a survey");
        assert!(
            taste.recoverable && taste.accuracy.value > 0.95,
            "{taste:?}"
        );
        assert!(!r[0].recoverable, "{:?}", r[0]);
    }

    #[test]
    fn intents_bound_what_a_value_could_show() {
        // `manner` steers the drawn intents (a picky seeker rejects, an
        // easy one accepts) but the words come from one vocabulary, as
        // when a model ignores its intent; `luck` steers nothing.
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let dialogues = (0..80)
            .map(|i| {
                let picky = i % 2 == 0;
                let turns = (0..5)
                    .map(|_| {
                        let rejects = rng.random_bool(if picky { 0.8 } else { 0.2 });
                        EvalTurn {
                            seeker: true,
                            text: random_words(&mut rng, 4),
                            intents: vec![if rejects { "CRI-F" } else { "ACC" }.to_string()],
                        }
                    })
                    .collect();
                EvalDialogue {
                    id: i.to_string(),
                    turns,
                    latents: serde_json::json!({
                        "manner": if picky { "picky" } else { "easy" },
                        "luck": if rng.random_bool(0.5) { "good" } else { "bad" },
                    }),
                    profile: Default::default(),
                }
            })
            .collect();
        let r = latent_recovery(&Corpus { dialogues }, 5, 200, 1).unwrap();
        let get = |v: &str| r.iter().find(|x| x.variable == v).unwrap();
        let manner = get("manner");
        assert!(!manner.recoverable, "the words do not show it: {manner:?}");
        let by_intents = manner.intent_accuracy.as_ref().unwrap();
        assert!(by_intents.lo > manner.majority, "{manner:?}");
        let luck = get("luck");
        assert!(
            luck.intent_accuracy.as_ref().unwrap().lo < luck.majority,
            "{luck:?}"
        );
    }
}
