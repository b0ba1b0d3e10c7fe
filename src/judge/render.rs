//! The text and HTML renderings of a [`JudgeReport`]: a terminal table,
//! and a self-contained page (inline SVG and CSS, no scripts, in the style
//! of `eval`'s report) whose body `eval --study` embeds.
//!
//! Invariant: every `<svg>` is an `<svg class="plot" id="...">` with an
//! id of its own, and every text from the study is HTML-escaped.

use std::fmt::Write as _;
use std::path::Path;

use super::report::JudgeReport;
use super::study::SourceKind;
use super::JudgeError;
use crate::eval::stats::Estimate;

fn est(e: &Option<Estimate>) -> String {
    e.as_ref()
        .map_or_else(|| "-".to_string(), Estimate::to_string)
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
