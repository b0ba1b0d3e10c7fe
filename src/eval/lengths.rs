//! Words per seeker turn, intent by intent, real against simulated.
//!
//! The scenario's `[length]` latent is fitted per intent (`usersim fit`), so
//! a simulator can match the overall words per turn while a rejection runs
//! twice as long as a real one. [`intent_lengths`] takes the intents most
//! frequent among the real labelled seeker turns and compares their mean
//! length on both sides. A turn counts under its primary intent (the first
//! label that is not small talk, [`crate::latent::primary_intent`]), as
//! `usersim fit` counts it and as replay steers it; a simulated turn's
//! labels are those the loader gives it (the drawn `latents.intent`, or in a
//! replay the real turn's). Words are counted as the rest of eval counts
//! them ([`super::text::word_count`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::loaders::Corpus;
use super::text::word_count;
use crate::latent::primary_intent;

/// How many intents the table lists.
pub const TOP_INTENTS: usize = 6;

/// Largest relative difference of the simulated mean from the real one
/// still counted as matching.
pub const LENGTH_TOLERANCE: f64 = 0.2;

/// One intent's words per seeker turn on both sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IntentLength {
    /// The intent label.
    pub intent: String,
    /// Real seeker turns under it.
    pub real_turns: usize,
    /// Simulated seeker turns under it.
    pub sim_turns: usize,
    /// Mean words per real turn.
    pub real_mean_words: f64,
    /// Mean words per simulated turn (`None`: no simulated turn).
    pub sim_mean_words: Option<f64>,
    /// Simulated mean over real mean.
    pub ratio: Option<f64>,
    /// Whether the ratio is within 1 ± [`LENGTH_TOLERANCE`] (±20%).
    pub within_20_percent: bool,
}

/// Word counts of a corpus's seeker turns, grouped by primary intent among
/// `declared` (turns without one are left out).
fn words_by_intent(c: &Corpus, declared: &[String]) -> BTreeMap<String, Vec<usize>> {
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for t in c.seeker_turns() {
        if let Some(intent) = primary_intent(&t.intents, declared) {
            by.entry(intent.to_string())
                .or_default()
                .push(word_count(&t.text));
        }
    }
    by
}

fn mean(v: &[usize]) -> Option<f64> {
    (!v.is_empty()).then(|| v.iter().sum::<usize>() as f64 / v.len() as f64)
}

/// The `top` intents most frequent among `real`'s labelled seeker turns
/// (ties by name), most frequent first, with both sides' mean words per
/// turn. Empty when `real` has no labelled seeker turn.
pub fn intent_lengths(
    real: &Corpus,
    sim: &Corpus,
    declared: &[String],
    top: usize,
) -> Vec<IntentLength> {
    let real_by = words_by_intent(real, declared);
    let sim_by = words_by_intent(sim, declared);
    let mut ranked: Vec<(&String, &Vec<usize>)> = real_by.iter().collect();
    // stable sort: equal counts stay in name order
    ranked.sort_by_key(|(_, words)| std::cmp::Reverse(words.len()));
    ranked
        .into_iter()
        .take(top)
        .filter_map(|(intent, words)| {
            let real_mean_words = mean(words)?;
            let sim_words = sim_by.get(intent).map_or(&[][..], Vec::as_slice);
            let sim_mean_words = mean(sim_words);
            let ratio = sim_mean_words
                .filter(|_| real_mean_words > 0.0)
                .map(|s| s / real_mean_words);
            Some(IntentLength {
                intent: intent.clone(),
                real_turns: words.len(),
                sim_turns: sim_words.len(),
                real_mean_words,
                sim_mean_words,
                ratio,
                within_20_percent: ratio.is_some_and(|r| (r - 1.0).abs() <= LENGTH_TOLERANCE),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::loaders::{EvalDialogue, EvalTurn};

    fn corpus(turns: &[(&[&str], &str)]) -> Corpus {
        Corpus {
            dialogues: vec![EvalDialogue {
                id: "d".into(),
                turns: turns
                    .iter()
                    .map(|(labels, text)| EvalTurn {
                        seeker: true,
                        text: (*text).into(),
                        intents: labels.iter().map(|l| l.to_string()).collect(),
                    })
                    .chain(std::iter::once(EvalTurn {
                        seeker: false,
                        text: "a recommender turn with many words in it".into(),
                        intents: vec!["REJ".into()],
                    }))
                    .collect(),
                latents: serde_json::Value::Null,
                profile: Default::default(),
            }],
        }
    }

    #[test]
    fn top_real_intents_with_both_means_ratio_and_flag() {
        let declared: Vec<String> = ["OTH", "IQU", "REJ", "ACC", "SEE"]
            .map(String::from)
            .to_vec();
        let real = corpus(&[
            (&["OTH", "IQU"], "hi can you help me find a film"), // IQU, 8 words
            (&["IQU"], "any good comedies"),                     // 3
            (&["IQU"], "what about something from the eighties"), // 6
            (&["REJ"], "no thanks"),                             // 2
            (&["REJ"], "not that one please"),                   // 4
            (&["OTH"], "bye"),                                   // 1
            (&["ACC"], "great"),                                 // 1
            (&["XYZ"], "an undeclared label is not counted at all"),
            (&[], "neither is a turn without one"),
        ]);
        let sim = corpus(&[
            (
                &["IQU"],
                "could you please help me find a movie to watch tonight",
            ), // 11
            (&["IQU"], "anything funny"), // 2
            (&["REJ"], "nah not for me"), // 4
            (&["REJ"], "no"),             // 1
            (&["SEE"], "I have not seen that one"),
        ]);
        let t = intent_lengths(&real, &sim, &declared, 3);
        let names: Vec<&str> = t.iter().map(|l| l.intent.as_str()).collect();
        // IQU 3 turns, REJ 2, then ACC and OTH tie at 1: by name.
        assert_eq!(names, ["IQU", "REJ", "ACC"]);
        let iqu = &t[0];
        assert_eq!((iqu.real_turns, iqu.sim_turns), (3, 2));
        assert!((iqu.real_mean_words - 17.0 / 3.0).abs() < 1e-12);
        assert_eq!(iqu.sim_mean_words, Some(6.5));
        let r = iqu.ratio.expect("ratio");
        assert!((r - 6.5 / (17.0 / 3.0)).abs() < 1e-12);
        assert!(iqu.within_20_percent, "{r}");
        let rej = &t[1];
        assert_eq!((rej.real_mean_words, rej.sim_mean_words), (3.0, Some(2.5)));
        assert!(rej.within_20_percent);
        // An intent the simulation never used: no mean, no ratio, not within.
        let acc = &t[2];
        assert_eq!(
            (acc.sim_turns, acc.sim_mean_words, acc.ratio),
            (0, None, None)
        );
        assert!(!acc.within_20_percent);
        // Off by more than 20%: flagged.
        let long = corpus(&[(&["REJ"], "no no no no no no no no")]);
        let t = intent_lengths(&real, &long, &declared, 6);
        let rej = t.iter().find(|l| l.intent == "REJ").expect("REJ");
        assert_eq!(rej.ratio, Some(8.0 / 3.0));
        assert!(!rej.within_20_percent);
        assert_eq!(t.len(), 4, "only 4 intents have real turns");
        // No labelled real turn, no table.
        assert!(intent_lengths(&corpus(&[(&[], "hi")]), &sim, &declared, 6).is_empty());
    }
}
