//! `fit-intents`: estimate the intent markov chain of a scenario from real
//! dialogues, so simulated users open, move and stop the way real seekers do.
//!
//! An utterance may carry several intents; each of its k intents counts 1/k,
//! and a transition between utterances with k and m intents counts 1/(k·m),
//! so every utterance (and every pair of consecutive seeker utterances)
//! weighs the same. The seeker's last utterance transitions to END.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::corpus::{load_iard, CorpusError, Dialogue, Speaker, IARD_SEEKER_INTENTS};
use crate::scenario::{MarkovTable, END_STATE};

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
    for d in dialogues {
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
    let table = MarkovTable {
        first: normalised(&first, cfg.decimals),
        transitions: trans
            .iter()
            .map(|(k, row)| (k.clone(), normalised(row, cfg.decimals)))
            .collect(),
    };
    FittedIntents {
        table,
        first_counts: first,
        turns,
    }
}

/// Fit on an IARD file.
pub fn fit_iard(path: &Path, cfg: &FitIntentsConfig) -> Result<FittedIntents, CorpusError> {
    Ok(fit(&load_iard(path)?, cfg))
}

/// The table as a scenario `markov_file` (TOML), with a header saying where
/// it came from.
pub fn to_toml(f: &FittedIntents, source: &str) -> String {
    let body = toml::to_string(&f.table).unwrap_or_default();
    format!(
        "# Intent markov chain fitted by `usersim fit-intents` on {source}\n\
         # {} dialogues; seeker turns: min {}, median {}, mean {}, p95 {}, max {}.\n\
         # Use it from a scenario with: markov_file = \"<this file>\"\n\n{body}",
        f.turns.dialogues, f.turns.min, f.turns.median, f.turns.mean, f.turns.p95, f.turns.max
    )
}
