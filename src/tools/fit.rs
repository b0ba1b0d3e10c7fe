//! `usersim fit` (also `fit-intents`): estimate, from real dialogues, the
//! intent markov chain of a scenario, so simulated users open, move and stop
//! the way real seekers do, and each intent's distribution of seeker-turn
//! lengths in words (the scenario's `[length]` latent), every real
//! seeker's typing rates (the scenario's `[style]`,
//! [`crate::session::style`]), and how a question from the recommender
//! moves the seeker's next intent (`after_question` / `after_statement`:
//! real seekers answer far more often after a `?`, and still ignore most
//! questions).
//!
//! Lengths are counted on [`crate::corpus::Dialogue::turns`] (a speaker's
//! consecutive utterances merged, as replay and eval count turns), each
//! turn under its primary intent (the first label that is not small talk).
//!
//! An utterance may carry several intents; each of its k intents counts 1/k,
//! and a transition between utterances with k and m intents counts 1/(k·m),
//! so every utterance (and every pair of consecutive seeker utterances)
//! weighs the same. The seeker's last utterance transitions to END.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::corpus::{load_iard, CorpusError, Dialogue, Speaker, IARD_SEEKER_INTENTS};
use crate::latent::primary_intent;
use crate::scenario::{
    FittedTables, MarkovTable, END_STATE, FIRST_TURN, LATER_TURNS, OTHER_FIRST_WORD,
};
use crate::session::style::StyleRates;

/// Options of `fit-intents`.
#[derive(Clone, Debug)]
pub struct FitIntentsConfig {
    /// Keep this many decimals in the written probabilities.
    pub decimals: u32,
}

/// Default decimals.
pub const DEFAULT_DECIMALS: u32 = 4;

impl Default for FitIntentsConfig {
    fn default() -> Self {
        FitIntentsConfig {
            decimals: DEFAULT_DECIMALS,
        }
    }
}

/// Summary of the seeker turn counts.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TurnCountStats {
    /// Dialogues.
    pub dialogues: usize,
    /// Fewest seeker turns.
    pub min: usize,
    /// Mean seeker turns.
    pub mean: f64,
    /// Median.
    pub median: usize,
    /// 95th percentile.
    pub p95: usize,
    /// Most.
    pub max: usize,
}

/// A fitted table and what it was fitted on.
#[derive(Clone, Debug)]
pub struct FittedIntents {
    /// The chain, probabilities normalised per row.
    pub table: MarkovTable,
    /// Weighted counts behind `table.first`.
    pub first_counts: BTreeMap<String, f64>,
    /// Turn-count summary.
    pub turns: TurnCountStats,
    /// Per intent, how many seeker turns had each length in words.
    pub lengths: BTreeMap<String, BTreeMap<String, u64>>,
    /// Per place (the seeker's first turn, or a later one), per intent, how
    /// many seeker turns opened with each word ([`first_word_of`]).
    pub first_words: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// Per real seeker (dialogue), their typing rates, rounded.
    pub style: Vec<StyleRates>,
    /// Per real seeker, the mean over their turns of the turn's words ÷ the
    /// mean words of its intent: how wordy that person is, intent aside.
    pub length_ratios: Vec<f64>,
    /// Dialogues whose first turn is the recommender's, and all dialogues:
    /// the share behind a scenario's `conversation.system_opens`.
    pub recommender_opens: (usize, usize),
}

fn round(x: f64, decimals: u32) -> f64 {
    let f = 10f64.powi(decimals as i32);
    (x * f).round() / f
}

fn normalised(row: &BTreeMap<String, f64>, decimals: u32) -> BTreeMap<String, f64> {
    let sum: f64 = row.values().sum();
    row.iter()
        .filter(|(_, w)| **w > 0.0)
        .map(|(k, w)| (k.clone(), round(w / sum, decimals)))
        .filter(|(_, p)| *p > 0.0)
        .collect()
}

/// Fit the chain on dialogues. Labels outside the 16 seeker intents are
/// ignored; an utterance left with none is skipped.
pub fn fit(dialogues: &[Dialogue], cfg: &FitIntentsConfig) -> FittedIntents {
    let known = |l: &String| IARD_SEEKER_INTENTS.contains(&l.as_str());
    let mut first: BTreeMap<String, f64> = BTreeMap::new();
    let mut trans: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    let mut counts = Vec::new();
    let mut lengths: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    let declared: Vec<String> = IARD_SEEKER_INTENTS.iter().map(|s| s.to_string()).collect();
    let mut style = Vec::new();
    let mut first_words: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>> =
        BTreeMap::new();
    for d in dialogues {
        let turns = d.turns();
        let seeker_texts = turns
            .iter()
            .filter(|t| t.speaker == Speaker::Seeker)
            .map(|t| t.text.as_str());
        if let Some(r) = StyleRates::measure(seeker_texts) {
            style.push(r.rounded());
        }
        for (i, t) in turns
            .iter()
            .filter(|t| t.speaker == Speaker::Seeker)
            .enumerate()
        {
            let words = t.text.split_whitespace().count() as u32;
            if let Some(intent) = primary_intent(&t.labels, &declared).filter(|_| words > 0) {
                *lengths
                    .entry(intent.to_string())
                    .or_default()
                    .entry(words)
                    .or_default() += 1;
                let place = if i == 0 { FIRST_TURN } else { LATER_TURNS };
                *first_words
                    .entry(place.to_string())
                    .or_default()
                    .entry(intent.to_string())
                    .or_default()
                    .entry(first_word_of(&t.text))
                    .or_default() += 1;
            }
        }
        let seeker: Vec<Vec<&String>> = d
            .utterances
            .iter()
            .filter(|u| u.speaker == Speaker::Seeker)
            .map(|u| u.labels.iter().filter(|l| known(l)).collect::<Vec<_>>())
            .filter(|l| !l.is_empty())
            .collect();
        if seeker.is_empty() {
            continue;
        }
        counts.push(seeker.len());
        let k0 = seeker[0].len() as f64;
        for l in &seeker[0] {
            *first.entry((*l).clone()).or_default() += 1.0 / k0;
        }
        for pair in seeker.windows(2) {
            let w = 1.0 / (pair[0].len() * pair[1].len()) as f64;
            for a in &pair[0] {
                let row = trans.entry((*a).clone()).or_default();
                for b in &pair[1] {
                    *row.entry((*b).clone()).or_default() += w;
                }
            }
        }
        if let Some(last) = seeker.last() {
            let w = 1.0 / last.len() as f64;
            for a in last {
                *trans
                    .entry((*a).clone())
                    .or_default()
                    .entry(END_STATE.to_string())
                    .or_default() += w;
            }
        }
    }
    let length_ratios = seeker_length_ratios(dialogues, &lengths, &declared);
    let opened = dialogues
        .iter()
        .filter(|d| {
            d.turns()
                .first()
                .is_some_and(|t| t.speaker == Speaker::Recommender)
        })
        .count();
    counts.sort_unstable();
    let n = counts.len();
    let turns = TurnCountStats {
        dialogues: n,
        min: counts.first().copied().unwrap_or(0),
        mean: if n == 0 {
            0.0
        } else {
            round(counts.iter().sum::<usize>() as f64 / n as f64, 2)
        },
        median: counts.get(n / 2).copied().unwrap_or(0),
        p95: counts
            .get(((n as f64 * 0.95).ceil() as usize).saturating_sub(1))
            .copied()
            .unwrap_or(0),
        max: counts.last().copied().unwrap_or(0),
    };
    let (after_question, after_statement) = question_factors(dialogues, cfg.decimals);
    let table = MarkovTable {
        first: normalised(&first, cfg.decimals),
        transitions: trans
            .iter()
            .map(|(k, row)| (k.clone(), normalised(row, cfg.decimals)))
            .collect(),
        after_question,
        after_statement,
    };
    FittedIntents {
        table,
        first_counts: first,
        turns,
        lengths: lengths
            .into_iter()
            .map(|(intent, c)| {
                let c = c.into_iter().map(|(w, n)| (w.to_string(), n)).collect();
                (intent, c)
            })
            .collect(),
        first_words,
        style,
        length_ratios,
        recommender_opens: (opened, dialogues.len()),
    }
}

/// The word a real seeker turn opens with, as `[first_words]` counts it:
/// the letters (and apostrophes) its first whitespace-separated token
/// starts with, after any punctuation, in lower case ("Hi!...I" → "hi",
/// "I’m" → "i'm"), or [`OTHER_FIRST_WORD`] when the token holds no letter
/// before a digit or has none (a number, a movie mention, an emoji).
pub fn first_word_of(text: &str) -> String {
    let token = text.split_whitespace().next().unwrap_or("");
    let start = token.trim_start_matches(|c: char| !c.is_alphanumeric());
    let word: String = start
        .chars()
        .map(|c| if c == '\u{2019}' { '\'' } else { c })
        .take_while(|c| c.is_alphabetic() || *c == '\'')
        .collect::<String>()
        .trim_end_matches('\'')
        .to_lowercase();
    if word.is_empty() {
        OTHER_FIRST_WORD.to_string()
    } else {
        word
    }
}

/// Pseudo-turns of the prior in [`question_factors`]: an intent seen a few
/// times after questions moves its factor a little, not to 0 or 5.
const QUESTION_PRIOR_TURNS: f64 = 10.0;

/// Per intent, P(intent | the recommender's turn before has a `?`) ÷
/// P(intent), and the same without a `?`, over merged seeker turns that
/// follow a recommender turn (labels weighted 1/k as in the chain). Each
/// conditional is smoothed towards P(intent) with
/// [`QUESTION_PRIOR_TURNS`]. The `?` test is the one the simulator applies
/// to the system's turns, so the fit and its use see the same thing.
fn question_factors(
    dialogues: &[Dialogue],
    decimals: u32,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let known = |l: &&String| IARD_SEEKER_INTENTS.contains(&l.as_str());
    // [after a statement, after a question]: intent → weighted turns.
    let mut by: [BTreeMap<String, f64>; 2] = Default::default();
    for d in dialogues {
        let turns = d.turns();
        for pair in turns.windows(2) {
            let (before, t) = (&pair[0], &pair[1]);
            if before.speaker != Speaker::Recommender || t.speaker != Speaker::Seeker {
                continue;
            }
            let labels: Vec<&String> = t.labels.iter().filter(known).collect();
            let asked = usize::from(before.text.contains('?'));
            for l in &labels {
                *by[asked].entry((*l).clone()).or_default() += 1.0 / labels.len() as f64;
            }
        }
    }
    let mut all: BTreeMap<&String, f64> = BTreeMap::new();
    for m in &by {
        for (k, w) in m {
            *all.entry(k).or_default() += w;
        }
    }
    let total: f64 = all.values().sum();
    let factors = |m: &BTreeMap<String, f64>| {
        let n: f64 = m.values().sum();
        all.iter()
            .map(|(k, w)| {
                let p = w / total;
                let conditional = (m.get(*k).copied().unwrap_or(0.0) + QUESTION_PRIOR_TURNS * p)
                    / (n + QUESTION_PRIOR_TURNS);
                ((*k).clone(), round(conditional / p, decimals))
            })
            .filter(|(_, f)| *f > 0.0)
            .collect()
    };
    (factors(&by[1]), factors(&by[0]))
}

/// Per dialogue with labelled seeker turns, the mean of words ÷ the mean
/// words of the turn's intent (rounded to two decimals).
fn seeker_length_ratios(
    dialogues: &[Dialogue],
    lengths: &BTreeMap<String, BTreeMap<u32, u64>>,
    declared: &[String],
) -> Vec<f64> {
    let means: BTreeMap<&str, f64> = lengths
        .iter()
        .map(|(intent, c)| {
            let n: u64 = c.values().sum();
            let words: u64 = c.iter().map(|(w, k)| u64::from(*w) * k).sum();
            (intent.as_str(), words as f64 / n.max(1) as f64)
        })
        .collect();
    let mut out = Vec::new();
    for d in dialogues {
        let ratios: Vec<f64> = d
            .turns()
            .iter()
            .filter(|t| t.speaker == Speaker::Seeker)
            .filter_map(|t| {
                let mean = means.get(primary_intent(&t.labels, declared)?)?;
                Some(t.text.split_whitespace().count() as f64 / mean)
            })
            .collect();
        if !ratios.is_empty() {
            out.push(round(ratios.iter().sum::<f64>() / ratios.len() as f64, 2));
        }
    }
    out
}

/// Fit on an IARD file.
pub fn fit_iard(path: &Path, cfg: &FitIntentsConfig) -> Result<FittedIntents, CorpusError> {
    Ok(fit(&load_iard(path)?, cfg))
}

/// The tables as a scenario's fitted file (TOML), with a header saying
/// where they came from.
pub fn to_toml(f: &FittedIntents, source: &str) -> String {
    let tables = FittedTables {
        first: f.table.first.clone(),
        transitions: f.table.transitions.clone(),
        lengths: f.lengths.clone(),
        first_words: f.first_words.clone(),
        seeker_style: f
            .style
            .iter()
            .map(|r| [r.lower_first, r.bare_end, r.ellipsis])
            .collect(),
        seeker_length_ratio: f.length_ratios.clone(),
        after_question: f.table.after_question.clone(),
        after_statement: f.table.after_statement.clone(),
    };
    let body = toml::to_string(&tables).unwrap_or_default();
    let turns: u64 = f.lengths.values().flat_map(|c| c.values()).sum();
    format!(
        "# Intent markov chain and seeker-turn lengths fitted by `usersim fit` on {source}\n\
         # {} dialogues; seeker turns: min {}, median {}, mean {}, p95 {}, max {}.\n\
         # [lengths.<intent>]: words -> number of the {turns} merged seeker turns of that length.\n\
         # [first_words.<first_turn|later_turns>.<intent>]: the word a seeker turn opens with (lower case; \"*\": not a word) -> turns.\n\
         # seeker_length_ratio: per real seeker, the mean of (turn words / mean words of the turn's intent).\n\
         # seeker_style: per real seeker, the share of their turns that start in lower case, end without . ! or ?, and join with \"...\".\n\
         # [after_question] / [after_statement]: P(intent | the recommender's turn before has a ? / has none) / P(intent).\n\
         # The recommender opens {} of the {} dialogues (a scenario's conversation.system_opens = {:.2}).\n\
         # Use it from a scenario with: markov_file = \"<this file>\", and fitted_file = \"<this file>\" in [length], [style] and [first_word]\n\n{body}",
        f.turns.dialogues,
        f.turns.min,
        f.turns.median,
        f.turns.mean,
        f.turns.p95,
        f.turns.max,
        f.recommender_opens.0,
        f.recommender_opens.1,
        f.recommender_opens.0 as f64 / f.recommender_opens.1.max(1) as f64,
    )
}
