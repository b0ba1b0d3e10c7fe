//! The figures of a study: judge accuracy per simulated source (answers on
//! the real items and that source's items; 0.5 = judges cannot tell),
//! mean realism per source, inter-judge agreement (Krippendorff's alpha),
//! per-judge accuracy and the items most often mistaken either way, as a
//! serialisable [`JudgeReport`] ([`super::render`] draws it as text or
//! HTML).
//!
//! Invariant: every interval is a bootstrap 95% percentile interval over
//! items (a resampled item brings all its answers), seeded from the study
//! seed, so the same study gives the same report.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::agreement::{interval, krippendorff_alpha, nominal};
use super::derive_seed;
use super::study::{SourceKind, Study, Unit, Verdict};
use super::JudgeError;
use crate::eval::stats::{bootstrap_ci, Estimate};

/// Bootstrap resamples behind every interval.
pub const BOOTSTRAP: usize = 2000;
/// Items listed in each "most often mistaken" table.
pub const MISTAKEN: usize = 5;

/// One source's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceFigures {
    /// The file as given to `judge new`.
    pub label: String,
    /// Real or simulated.
    pub kind: SourceKind,
    /// Items from it.
    pub items: usize,
    /// Answers on those items.
    pub answers: usize,
    /// Share of those answers that said "person".
    pub judged_person: Option<f64>,
    /// Mean realism (1–5) with its interval.
    pub realism: Option<Estimate>,
}

/// How well judges tell one simulated source from the real corpus.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimAccuracy {
    /// The simulated run.
    pub label: String,
    /// Answers counted (on real items and this source's items).
    pub answers: usize,
    /// Share of those answers that were right, with its interval.
    pub accuracy: Option<Estimate>,
}

/// Agreement between judges on the items two or more of them answered.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Agreement {
    /// Krippendorff's alpha of the verdicts (nominal); 1 = perfect, 0 =
    /// chance. `None` with fewer than two answers on any item, or when all
    /// answers agree trivially (one value in all).
    pub verdict_alpha: Option<f64>,
    /// Krippendorff's alpha of the realism ratings (interval metric).
    pub realism_alpha: Option<f64>,
    /// Items with at least two answers.
    pub items_pairable: usize,
}

/// One judge's accuracy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeFigures {
    /// Name (`crowd:<worker>` for imported answers).
    pub name: String,
    /// Answers given.
    pub answers: usize,
    /// Right answers.
    pub correct: usize,
    /// `correct / answers`.
    pub accuracy: f64,
}

/// An item judges often got wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mistaken {
    /// The item's token.
    pub item: String,
    /// Its source's label.
    pub source: String,
    /// Where in the source (dialogue id, turn).
    pub origin: String,
    /// Answers on it.
    pub answers: usize,
    /// Wrong answers.
    pub wrong: usize,
    /// The judged text (seeker turns of a conversation joined by ` / `).
    pub text: String,
}

/// Everything `usersim judge report` says about a study.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    /// The study file.
    pub study: String,
    /// What was judged.
    pub unit: Unit,
    /// Items in the study.
    pub items: usize,
    /// Judges with at least one answer.
    pub judges: usize,
    /// Answers in all.
    pub answers: usize,
    /// Share of all answers that were right, with its interval.
    pub overall_accuracy: Option<Estimate>,
    /// Per simulated source: accuracy against the real corpus.
    pub accuracy: Vec<SimAccuracy>,
    /// Per source (real first): realism and "person" share.
    pub sources: Vec<SourceFigures>,
    /// Inter-judge agreement.
    pub agreement: Agreement,
    /// Per judge, by name.
    pub per_judge: Vec<JudgeFigures>,
    /// Real items most often judged "simulator".
    pub mistaken_real: Vec<Mistaken>,
    /// Simulated items most often judged "person".
    pub mistaken_sim: Vec<Mistaken>,
}

/// Answers on one item, as the figures need them.
#[derive(Default)]
struct ItemAnswers {
    correct: usize,
    answers: usize,
    realism_sum: f64,
    verdicts: Vec<f64>,
    realism: Vec<f64>,
}

/// Share `Σ correct / Σ answers` over the items `idx` of `items`,
/// bootstrapped over items.
fn ratio_ci(items: &[(f64, f64)], seed: u64) -> Option<Estimate> {
    if items.is_empty() {
        return None;
    }
    bootstrap_ci(items.len(), BOOTSTRAP, seed, |idx| {
        let (num, den) = idx
            .iter()
            .fold((0.0, 0.0), |(n, d), &i| (n + items[i].0, d + items[i].1));
        (den > 0.0).then(|| num / den)
    })
}

/// Computes the report of the study at `path`.
pub fn report(path: &Path) -> Result<JudgeReport, JudgeError> {
    let study = Study::open(path)?;
    let sources = study.sources()?;
    let item_src = study.item_sources()?;
    let items = study.items()?;
    let answers = study.answers()?;
    let kind_of: BTreeMap<i64, SourceKind> = sources.iter().map(|s| (s.id, s.kind)).collect();
    let is_real = |item: i64| {
        item_src
            .get(&item)
            .and_then(|(s, _)| kind_of.get(s))
            .is_some_and(|k| *k == SourceKind::Real)
    };
    let mut per_item: BTreeMap<i64, ItemAnswers> = BTreeMap::new();
    let mut per_judge: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for a in &answers {
        let right = (a.answer.verdict == Verdict::Person) == is_real(a.item);
        let e = per_item.entry(a.item).or_default();
        e.answers += 1;
        e.correct += usize::from(right);
        e.realism_sum += f64::from(a.answer.realism);
        e.verdicts.push(match a.answer.verdict {
            Verdict::Person => 1.0,
            Verdict::Simulator => 0.0,
        });
        e.realism.push(f64::from(a.answer.realism));
        let j = per_judge.entry(a.judge_name.clone()).or_default();
        j.0 += 1;
        j.1 += usize::from(right);
    }
    let seed = derive_seed(study.seed, "report");
    let items_of = |source: i64| -> Vec<i64> {
        item_src
            .iter()
            .filter(|(_, (s, _))| *s == source)
            .map(|(i, _)| *i)
            .collect()
    };
    let real_ids: Vec<i64> = sources
        .iter()
        .filter(|s| s.kind == SourceKind::Real)
        .flat_map(|s| items_of(s.id))
        .collect();
    let counts = |ids: &[i64]| -> Vec<(f64, f64)> {
        ids.iter()
            .filter_map(|i| per_item.get(i))
            .map(|a| (a.correct as f64, a.answers as f64))
            .collect()
    };
    let all_ids: Vec<i64> = item_src.keys().copied().collect();
    let overall_accuracy = ratio_ci(&counts(&all_ids), seed);
    let mut accuracy = Vec::new();
    let mut figures = Vec::new();
    for (k, s) in sources.iter().enumerate() {
        let ids = items_of(s.id);
        let answered: Vec<&ItemAnswers> = ids.iter().filter_map(|i| per_item.get(i)).collect();
        let n_answers: usize = answered.iter().map(|a| a.answers).sum();
        let person: f64 = answered
            .iter()
            .map(|a| a.verdicts.iter().sum::<f64>())
            .sum();
        let realism: Vec<(f64, f64)> = answered
            .iter()
            .map(|a| (a.realism_sum, a.answers as f64))
            .collect();
        figures.push(SourceFigures {
            label: s.label.clone(),
            kind: s.kind,
            items: ids.len(),
            answers: n_answers,
            judged_person: (n_answers > 0).then(|| person / n_answers as f64),
            realism: ratio_ci(&realism, seed ^ (k as u64 + 1)),
        });
        if s.kind == SourceKind::Sim {
            let mut both = real_ids.clone();
            both.extend(&ids);
            let c = counts(&both);
            accuracy.push(SimAccuracy {
                label: s.label.clone(),
                answers: c.iter().map(|x| x.1 as usize).sum(),
                accuracy: ratio_ci(&c, seed ^ (0x100 + k as u64)),
            });
        }
    }
    let verdicts: Vec<Vec<f64>> = per_item.values().map(|a| a.verdicts.clone()).collect();
    let ratings: Vec<Vec<f64>> = per_item.values().map(|a| a.realism.clone()).collect();
    let agreement = Agreement {
        verdict_alpha: krippendorff_alpha(&verdicts, nominal),
        realism_alpha: krippendorff_alpha(&ratings, interval),
        items_pairable: verdicts.iter().filter(|v| v.len() >= 2).count(),
    };
    let label_of: BTreeMap<i64, &str> = sources.iter().map(|s| (s.id, s.label.as_str())).collect();
    let mut mistaken_real = Vec::new();
    let mut mistaken_sim = Vec::new();
    for it in &items {
        let Some(a) = per_item.get(&it.id) else {
            continue;
        };
        let wrong = a.answers - a.correct;
        if wrong == 0 {
            continue;
        }
        let (src, origin) = item_src.get(&it.id).cloned().unwrap_or((-1, String::new()));
        let text = match &it.target {
            Some(t) => t.clone(),
            None => it
                .context
                .iter()
                .filter(|t| t.seeker)
                .map(|t| t.text.as_str())
                .collect::<Vec<_>>()
                .join(" / "),
        };
        let m = Mistaken {
            item: it.token.clone(),
            source: label_of.get(&src).copied().unwrap_or("?").to_string(),
            origin,
            answers: a.answers,
            wrong,
            text,
        };
        if is_real(it.id) {
            mistaken_real.push(m);
        } else {
            mistaken_sim.push(m);
        }
    }
    for list in [&mut mistaken_real, &mut mistaken_sim] {
        list.sort_by(|a, b| {
            let (ra, rb) = (
                a.wrong as f64 / a.answers as f64,
                b.wrong as f64 / b.answers as f64,
            );
            rb.total_cmp(&ra)
                .then(b.wrong.cmp(&a.wrong))
                .then(a.item.cmp(&b.item))
        });
        list.truncate(MISTAKEN);
    }
    Ok(JudgeReport {
        study: path.display().to_string(),
        unit: study.unit,
        items: items.len(),
        judges: per_judge.len(),
        answers: answers.len(),
        overall_accuracy,
        accuracy,
        sources: figures,
        agreement,
        per_judge: per_judge
            .into_iter()
            .map(|(name, (n, c))| JudgeFigures {
                name,
                answers: n,
                correct: c,
                accuracy: c as f64 / n as f64,
            })
            .collect(),
        mistaken_real,
        mistaken_sim,
    })
}
