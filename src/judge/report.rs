//! The figures of a study: judge accuracy per simulated source (answers on
//! the real items and that source's items; 0.5 = judges cannot tell),
//! mean realism per source, inter-judge agreement (Krippendorff's alpha),
//! per-judge accuracy and the items most often mistaken either way; as
//! JSON ([`JudgeReport`]), a text table and a self-contained HTML page
//! (inline SVG and CSS, no scripts, as `eval`'s report).
//!
//! Invariant: every interval is a bootstrap 95% percentile interval over
//! items (a resampled item brings all its answers), seeded from the study
//! seed, so the same study gives the same report.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::study::{derive_seed, SourceKind, Study, Unit, Verdict};
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

/// Krippendorff's alpha of `units` (each the values its coders gave; units
/// with fewer than two values are not pairable and left out) under the
/// difference `delta`. `None` without pairable values or when the expected
/// disagreement is zero.
pub fn krippendorff_alpha(units: &[Vec<f64>], delta: impl Fn(f64, f64) -> f64) -> Option<f64> {
    let pairable: Vec<&Vec<f64>> = units.iter().filter(|u| u.len() >= 2).collect();
    let n: usize = pairable.iter().map(|u| u.len()).sum();
    if n < 2 {
        return None;
    }
    let mut d_o = 0.0;
    for u in &pairable {
        let m = u.len() as f64;
        let mut s = 0.0;
        for (i, a) in u.iter().enumerate() {
            for (j, b) in u.iter().enumerate() {
                if i != j {
                    s += delta(*a, *b);
                }
            }
        }
        d_o += s / (m - 1.0);
    }
    d_o /= n as f64;
    let all: Vec<f64> = pairable.iter().flat_map(|u| u.iter().copied()).collect();
    let mut d_e = 0.0;
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate() {
            if i != j {
                d_e += delta(*a, *b);
            }
        }
    }
    d_e /= (n * (n - 1)) as f64;
    if d_e <= 0.0 {
        return None;
    }
    Some(1.0 - d_o / d_e)
}

/// Nominal difference: 0 if equal, else 1.
pub fn nominal(a: f64, b: f64) -> f64 {
    if a == b {
        0.0
    } else {
        1.0
    }
}

/// Interval difference: the squared distance.
pub fn interval(a: f64, b: f64) -> f64 {
    (a - b) * (a - b)
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

fn est(e: &Option<Estimate>) -> String {
    e.as_ref().map_or_else(
        || "-".to_string(),
        |e| format!("{:.3} [{:.3}, {:.3}]", e.value, e.lo, e.hi),
    )
}

fn opt(v: Option<f64>) -> String {
    v.map_or_else(|| "-".to_string(), |v| format!("{v:.3}"))
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A source label's file name (plots; tables keep the whole path).
fn short(label: &str) -> String {
    Path::new(label)
        .file_name()
        .map_or_else(|| label.to_string(), |n| n.to_string_lossy().into_owned())
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut c: String = s.chars().take(n).collect();
        c.push('…');
        c
    }
}

impl JudgeReport {
    /// Plain-text report for terminals.
    pub fn render_text(&self) -> String {
        let mut o = String::new();
        let _ = writeln!(
            o,
            "human judging: {} ({} items, unit {}, {} judges, {} answers)",
            self.study,
            self.items,
            self.unit.as_str(),
            self.judges,
            self.answers
        );
        let _ = writeln!(
            o,
            "accuracy (0.5 = judges cannot tell), 95% CI: all {}",
            est(&self.overall_accuracy)
        );
        for a in &self.accuracy {
            let _ = writeln!(
                o,
                "  {:<40} {:>5} answers  {}",
                a.label,
                a.answers,
                est(&a.accuracy)
            );
        }
        let _ = writeln!(o, "per source: realism 1-5 (95% CI), share judged person");
        for s in &self.sources {
            let kind = match s.kind {
                SourceKind::Real => "real",
                SourceKind::Sim => "sim",
            };
            let _ = writeln!(
                o,
                "  {kind:<4} {:<35} {:>3} items {:>5} answers  realism {}  person {}",
                s.label,
                s.items,
                s.answers,
                est(&s.realism),
                opt(s.judged_person)
            );
        }
        let _ = writeln!(
            o,
            "agreement (Krippendorff's alpha, {} items with 2+ answers): verdict {}, realism {}",
            self.agreement.items_pairable,
            opt(self.agreement.verdict_alpha),
            opt(self.agreement.realism_alpha)
        );
        let _ = writeln!(o, "per judge:");
        for j in &self.per_judge {
            let _ = writeln!(
                o,
                "  {:<30} {:>4} answers  accuracy {:.3}",
                j.name, j.answers, j.accuracy
            );
        }
        for (title, list) in [
            (
                "real items most often judged simulated",
                &self.mistaken_real,
            ),
            ("simulated items most often judged real", &self.mistaken_sim),
        ] {
            let _ = writeln!(o, "{title}:");
            for m in list {
                let _ = writeln!(
                    o,
                    "  {}/{} wrong  {} ({})  {}",
                    m.wrong,
                    m.answers,
                    m.source,
                    m.origin,
                    clip(&m.text, 80)
                );
            }
        }
        o
    }

    /// The report's body as HTML (headings, inline SVG, tables), for a
    /// page of its own or a section of `eval`'s report.
    pub fn render_html_section(&self) -> String {
        let mut h = String::new();
        let _ = writeln!(
            h,
            "<p>{} items (unit: {}), {} judges, {} answers. Accuracy 0.5 means judges cannot tell the simulator from people.</p>",
            self.items,
            self.unit.as_str(),
            self.judges,
            self.answers
        );
        h.push_str("<h3>Judge accuracy per simulated source (95% CI)</h3>\n");
        let rows: Vec<(String, Option<Estimate>)> =
            std::iter::once(("all answers".to_string(), self.overall_accuracy.clone()))
                .chain(
                    self.accuracy
                        .iter()
                        .map(|a| (a.label.clone(), a.accuracy.clone())),
                )
                .collect();
        h.push_str(&interval_plot("judge-accuracy", &rows, 0.0, 1.0, Some(0.5)));
        h.push_str("<h3>Mean realism per source, 1–5 (95% CI)</h3>\n");
        let rows: Vec<(String, Option<Estimate>)> = self
            .sources
            .iter()
            .map(|s| (s.label.clone(), s.realism.clone()))
            .collect();
        h.push_str(&interval_plot("judge-realism", &rows, 1.0, 5.0, None));
        h.push_str("<table><tr><th>source</th><th>kind</th><th>items</th><th>answers</th><th>realism</th><th>judged person</th></tr>\n");
        for s in &self.sources {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&s.label),
                if s.kind == SourceKind::Real {
                    "real"
                } else {
                    "sim"
                },
                s.items,
                s.answers,
                est(&s.realism),
                opt(s.judged_person)
            );
        }
        h.push_str("</table>\n");
        let _ = writeln!(
            h,
            "<h3>Agreement</h3>\n<p>Krippendorff's alpha over {} items with two or more answers: verdict (nominal) {}, realism (interval) {}.</p>",
            self.agreement.items_pairable,
            opt(self.agreement.verdict_alpha),
            opt(self.agreement.realism_alpha)
        );
        h.push_str("<h3>Per judge</h3>\n<table><tr><th>judge</th><th>answers</th><th>correct</th><th>accuracy</th></tr>\n");
        for j in &self.per_judge {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.3}</td></tr>",
                esc(&j.name),
                j.answers,
                j.correct,
                j.accuracy
            );
        }
        h.push_str("</table>\n");
        for (title, list) in [
            (
                "Real items most often judged simulated",
                &self.mistaken_real,
            ),
            ("Simulated items most often judged real", &self.mistaken_sim),
        ] {
            let _ = writeln!(h, "<h3>{title}</h3>");
            if list.is_empty() {
                h.push_str("<p>none</p>\n");
                continue;
            }
            h.push_str("<table><tr><th>wrong</th><th>source</th><th>origin</th><th class=\"l\">text</th></tr>\n");
            for m in list {
                let _ = writeln!(
                    h,
                    "<tr><td>{}/{}</td><td>{}</td><td>{}</td><td class=\"l\">{}</td></tr>",
                    m.wrong,
                    m.answers,
                    esc(&m.source),
                    esc(&m.origin),
                    esc(&clip(&m.text, 200))
                );
            }
            h.push_str("</table>\n");
        }
        h
    }

    /// Self-contained HTML page (inline SVG and CSS, no scripts).
    pub fn render_html(&self) -> String {
        let title = format!("usersim judge: {}", self.study);
        format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
             body{{font-family:sans-serif;margin:2em;max-width:1100px}}table{{border-collapse:collapse;margin:.5em 0}}\
             td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th{{background:#eee}}td.l,th.l{{text-align:left}}\
             svg.plot{{display:block;margin:1em 0}}</style></head><body>\n<h1>{t}</h1>\n{body}</body></html>\n",
            t = esc(&title),
            body = self.render_html_section()
        )
    }

    /// Writes [`Self::render_html`] to `path`, whole or not at all.
    pub fn write_html(&self, path: &Path) -> Result<(), JudgeError> {
        crate::atomic::write_atomic(path, self.render_html().as_bytes()).map_err(|source| {
            JudgeError::Write {
                path: path.to_path_buf(),
                source,
            }
        })
    }
}

/// Horizontal points with interval whiskers on a `[lo, hi]` axis, one row
/// per label; `reference` draws a dashed line (chance).
fn interval_plot(
    id: &str,
    rows: &[(String, Option<Estimate>)],
    lo: f64,
    hi: f64,
    reference: Option<f64>,
) -> String {
    let (left, width, row_h) = (260.0, 480.0, 28.0);
    let height = 30.0 + row_h * rows.len() as f64 + 10.0;
    let x = |v: f64| left + (v.clamp(lo, hi) - lo) / (hi - lo) * width;
    let mut s = format!(
        "<svg class=\"plot\" id=\"{id}\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" font-size=\"12\">\n",
        w = left + width + 40.0
    );
    for k in 0..=4 {
        let v = lo + (hi - lo) * k as f64 / 4.0;
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"20\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#ddd\"/><text x=\"{0:.1}\" y=\"14\" text-anchor=\"middle\">{2}</text>",
            x(v),
            height - 10.0,
            if (hi - lo) > 2.0 { format!("{v:.0}") } else { format!("{v:.2}") }
        );
    }
    if let Some(r) = reference {
        let _ = writeln!(
            s,
            "<line x1=\"{0:.1}\" y1=\"20\" x2=\"{0:.1}\" y2=\"{1:.1}\" stroke=\"#c00\" stroke-dasharray=\"4 3\"/>",
            x(r),
            height - 10.0
        );
    }
    for (i, (label, e)) in rows.iter().enumerate() {
        let y = 30.0 + row_h * i as f64 + row_h / 2.0;
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            left - 8.0,
            y + 4.0,
            esc(&clip(&short(label), 40))
        );
        if let Some(e) = e {
            let _ = writeln!(
                s,
                "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#1f77b4\" stroke-width=\"2\"/>\
                 <circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"5\" fill=\"#1f77b4\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{:.2}</text>",
                x(e.lo),
                x(e.hi),
                x(e.value),
                x(e.hi) + 6.0,
                y + 4.0,
                e.value
            );
        }
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Krippendorff (2011), "Computing Krippendorff's alpha-reliability":
    /// four coders, twelve units, missing values; alpha 0.743 (nominal)
    /// and 0.849 (interval).
    #[test]
    fn judge_alpha_matches_krippendorffs_worked_example() {
        let nan = f64::NAN;
        let coders = [
            [1., 2., 3., 3., 2., 1., 4., 1., 2., nan, nan, nan],
            [1., 2., 3., 3., 2., 2., 4., 1., 2., 5., nan, 3.],
            [nan, 3., 3., 3., 2., 3., 4., 2., 2., 5., 1., nan],
            [1., 2., 3., 3., 2., 4., 4., 1., 2., 5., 1., nan],
        ];
        let units: Vec<Vec<f64>> = (0..12)
            .map(|u| {
                coders
                    .iter()
                    .map(|c| c[u])
                    .filter(|v| !v.is_nan())
                    .collect()
            })
            .collect();
        let a = krippendorff_alpha(&units, nominal).unwrap();
        assert!((a - 0.743).abs() < 0.0005, "nominal {a}");
        let a = krippendorff_alpha(&units, interval).unwrap();
        assert!((a - 0.849).abs() < 0.0005, "interval {a}");
        // Perfect agreement with variation is 1; a single value has no
        // expected disagreement.
        let perfect = vec![vec![1., 1.], vec![0., 0., 0.]];
        assert_eq!(krippendorff_alpha(&perfect, nominal), Some(1.0));
        assert_eq!(krippendorff_alpha(&[vec![1., 1.]], nominal), None);
    }

    #[test]
    fn judge_interval_plot_is_one_svg_per_id() {
        let rows = vec![(
            "a<b".to_string(),
            Some(Estimate {
                value: 0.6,
                lo: 0.4,
                hi: 0.8,
            }),
        )];
        let s = interval_plot("p", &rows, 0.0, 1.0, Some(0.5));
        assert_eq!(s.matches("<svg").count(), 1);
        assert!(s.contains("a&lt;b") && s.contains("stroke-dasharray"));
    }
}
