//! Conditional realism: realism measured per group of seekers (age group,
//! gender, a Big-Five trait), each simulated group against the real
//! conversations of the same group.
//!
//! A simulator steered by a profile should not only look real on average: the
//! users it plays as, say, introverts should look like real introverts. So for
//! every group `g` of a field this reports, beside counts and turn lengths,
//! three turn-level discriminator AUCs (TF-IDF, cross-validated):
//! * `sim g` vs `real g`: realism within the group (0.5 = indistinguishable);
//! * `sim g` vs `real other groups`: if the profile shows in the text, this is
//!   higher than the first (the simulated group looks more like its own real
//!   group than like the others);
//! * `real g` vs `real other groups`: how far real groups differ at all, the
//!   ceiling of what conditioning can show.
//!
//! A dialogue's group is read from its `profile` (INSPIRED survey, also
//! recorded on replayed simulations), else from its session latents. Text
//! values compare case- and space-insensitively (`"25 - 34"` = `"25-34"`,
//! `"Female"` = `"female"`); numeric values (Big-Five scores) split at the real
//! set's median into `≤m` and `>m`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::discriminator::{discriminate, DiscriminatorConfig};
use super::lexicon::sentiment_counts;
use super::loaders::{Corpus, EvalDialogue};
use super::stats::{align_distributions, js_divergence, wasserstein_1d, Estimate};
use super::text::word_count;

/// Settings of [`conditional_realism`].
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionalConfig {
    /// Fields to group by (e.g. `age_group`, `gender`, `Extrovert`).
    pub fields: Vec<String>,
    /// Fewest user turns a group needs on each side for its discriminators.
    pub min_turns: usize,
    /// The discriminator (TF-IDF only: groups are small).
    pub discriminator: DiscriminatorConfig,
}

/// Fewest user turns per side for a group's discriminators.
pub const DEFAULT_MIN_GROUP_TURNS: usize = 20;

impl Default for ConditionalConfig {
    fn default() -> Self {
        Self {
            fields: Vec::new(),
            min_turns: DEFAULT_MIN_GROUP_TURNS,
            discriminator: DiscriminatorConfig {
                n_bootstrap: 300,
                top_k: 0,
                ..DiscriminatorConfig::default()
            },
        }
    }
}

/// Realism of one group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupRealism {
    /// The group's value.
    pub group: String,
    /// Real dialogues in the group.
    pub real_dialogues: usize,
    /// Simulated dialogues in the group.
    pub sim_dialogues: usize,
    /// Real user turns in the group.
    pub real_turns: usize,
    /// Simulated user turns in the group.
    pub sim_turns: usize,
    /// Mean words per real user turn.
    pub real_words_per_turn: f64,
    /// Mean words per simulated user turn.
    pub sim_words_per_turn: f64,
    /// Wasserstein-1 distance of the turn-length distributions.
    pub turn_length_w1: f64,
    /// Jensen–Shannon divergence of the sentiment distributions.
    pub sentiment_js: f64,
    /// AUC of simulated vs real turns of this group.
    pub auc_same_group: Option<Estimate>,
    /// AUC of simulated turns of this group vs real turns of the others.
    pub auc_other_groups: Option<Estimate>,
    /// AUC of real turns of this group vs real turns of the others.
    pub auc_real_vs_other_groups: Option<Estimate>,
}

/// Conditional realism along one field.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldRealism {
    /// The field.
    pub field: String,
    /// Median that split numeric values (`None` for text values).
    pub split_at: Option<f64>,
    /// Groups present on both sides, largest real group first.
    pub groups: Vec<GroupRealism>,
    /// Dialogues without a value for the field: (real, simulated).
    pub unassigned: (usize, usize),
    /// Groups present on one side only: (group, real dialogues, simulated).
    pub one_sided: Vec<(String, usize, usize)>,
}

/// Errors of [`conditional_realism`].
#[derive(Debug, thiserror::Error)]
pub enum ConditionalError {
    /// No dialogue of one side has the field.
    #[error("no {side} dialogue has `{field}` in its profile or session latents")]
    MissingField {
        /// `real` or `simulated`.
        side: &'static str,
        /// The field.
        field: String,
    },
}

fn normalise_text(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

fn field_value<'a>(d: &'a EvalDialogue, field: &str) -> Option<&'a Value> {
    d.profile
        .get(field)
        .or_else(|| d.latents.get(field))
        .filter(|v| v.is_string() || v.is_number())
}

/// The group of a dialogue, given the split of numeric values.
fn group_of(d: &EvalDialogue, field: &str, split: Option<f64>) -> Option<String> {
    match field_value(d, field)? {
        Value::String(s) => Some(normalise_text(s)),
        Value::Number(n) => {
            let (x, m) = (n.as_f64()?, split?);
            Some(if x <= m {
                format!("≤{m:.2}")
            } else {
                format!(">{m:.2}")
            })
        }
        _ => None,
    }
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// User turns of the dialogues whose group is (or, with `negate`, is not)
/// `group`, each with its dialogue's index; dialogues without a group are
/// left out either way.
fn turns_of<'a>(
    c: &'a Corpus,
    field: &str,
    split: Option<f64>,
    group: &str,
    negate: bool,
) -> Turns<'a> {
    let (dialogue, texts) = c
        .dialogues
        .iter()
        .enumerate()
        .filter(|(_, d)| match group_of(d, field, split) {
            Some(g) => (g == group) != negate,
            None => false,
        })
        .flat_map(|(k, d)| {
            d.turns
                .iter()
                .filter(|t| t.seeker)
                .map(move |t| (k, t.text.as_str()))
        })
        .unzip();
    Turns { texts, dialogue }
}

/// A group's user-turn texts and the dialogue of each.
struct Turns<'a> {
    texts: Vec<&'a str>,
    dialogue: Vec<usize>,
}

fn auc(real: &Turns<'_>, sim: &Turns<'_>, cfg: &ConditionalConfig) -> Option<Estimate> {
    if real.texts.len() < cfg.min_turns || sim.texts.len() < cfg.min_turns {
        return None;
    }
    let dialogues = Some((real.dialogue.as_slice(), sim.dialogue.as_slice()));
    discriminate(&real.texts, &sim.texts, None, dialogues, &cfg.discriminator)
        .ok()
        .map(|r| r.auc)
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

/// Per-group realism of `sim` against `real` along each field of `cfg`.
pub fn conditional_realism(
    real: &Corpus,
    sim: &Corpus,
    cfg: &ConditionalConfig,
) -> Result<Vec<FieldRealism>, ConditionalError> {
    cfg.fields
        .iter()
        .map(|f| field_realism(real, sim, f, cfg))
        .collect()
}

fn field_realism(
    real: &Corpus,
    sim: &Corpus,
    field: &str,
    cfg: &ConditionalConfig,
) -> Result<FieldRealism, ConditionalError> {
    for (side, c) in [("real", real), ("simulated", sim)] {
        if !c.dialogues.iter().any(|d| field_value(d, field).is_some()) {
            return Err(ConditionalError::MissingField {
                side,
                field: field.to_string(),
            });
        }
    }
    let split = median(
        real.dialogues
            .iter()
            .filter_map(|d| field_value(d, field).and_then(Value::as_f64))
            .collect(),
    );
    let count = |c: &Corpus| {
        let mut groups: BTreeMap<String, usize> = BTreeMap::new();
        let mut none = 0;
        for d in &c.dialogues {
            match group_of(d, field, split) {
                Some(g) => *groups.entry(g).or_default() += 1,
                None => none += 1,
            }
        }
        (groups, none)
    };
    let (real_groups, real_none) = count(real);
    let (sim_groups, sim_none) = count(sim);
    let mut one_sided = Vec::new();
    let mut both: Vec<(String, usize, usize)> = Vec::new();
    for g in real_groups.keys().chain(sim_groups.keys()) {
        if both.iter().any(|b| &b.0 == g) || one_sided.iter().any(|o: &(String, _, _)| &o.0 == g) {
            continue;
        }
        let (r, s) = (
            real_groups.get(g).copied().unwrap_or(0),
            sim_groups.get(g).copied().unwrap_or(0),
        );
        if r > 0 && s > 0 {
            both.push((g.clone(), r, s));
        } else {
            one_sided.push((g.clone(), r, s));
        }
    }
    both.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let groups = both
        .into_iter()
        .map(|(group, real_dialogues, sim_dialogues)| {
            let r = turns_of(real, field, split, &group, false);
            let s = turns_of(sim, field, split, &group, false);
            let r_other = turns_of(real, field, split, &group, true);
            let words = |t: &[&str]| t.iter().map(|x| word_count(x) as f64).collect::<Vec<_>>();
            let (rw, sw) = (words(&r.texts), words(&s.texts));
            let (labels, rp, sp) =
                align_distributions(&sentiment_counts(&r.texts), &sentiment_counts(&s.texts));
            debug_assert_eq!(labels.len(), rp.len());
            GroupRealism {
                real_dialogues,
                sim_dialogues,
                real_turns: r.texts.len(),
                sim_turns: s.texts.len(),
                real_words_per_turn: mean(&rw),
                sim_words_per_turn: mean(&sw),
                turn_length_w1: wasserstein_1d(&rw, &sw).unwrap_or(f64::NAN),
                sentiment_js: js_divergence(&rp, &sp).unwrap_or(f64::NAN),
                auc_same_group: auc(&r, &s, cfg),
                auc_other_groups: auc(&r_other, &s, cfg),
                auc_real_vs_other_groups: auc(&r_other, &r, cfg),
                group,
            }
        })
        .collect();
    Ok(FieldRealism {
        field: field.to_string(),
        split_at: split,
        groups,
        unassigned: (real_none, sim_none),
        one_sided,
    })
}

/// The per-group table of one field.
pub fn render_field(f: &FieldRealism) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let split = f
        .split_at
        .map(|m| format!(" (numeric, split at the real median {m:.2})"))
        .unwrap_or_default();
    let _ = writeln!(o, "conditional realism by {}{split}", f.field);
    let _ = writeln!(
        o,
        "  {:<14} {:>9} {:>9} {:>11} {:>8} {:>8} {:>18} {:>18} {:>18}",
        "group",
        "real dlg",
        "sim dlg",
        "words r/s",
        "len W1",
        "sent JS",
        "AUC sim vs same",
        "AUC sim vs others",
        "AUC real vs others"
    );
    let est = |e: &Option<Estimate>| {
        e.as_ref().map_or_else(
            || "-".to_string(),
            |e| format!("{:.2} [{:.2},{:.2}]", e.value, e.lo, e.hi),
        )
    };
    for g in &f.groups {
        let _ = writeln!(
            o,
            "  {:<14} {:>9} {:>9} {:>11} {:>8.2} {:>8.3} {:>18} {:>18} {:>18}",
            g.group,
            g.real_dialogues,
            g.sim_dialogues,
            format!("{:.1}/{:.1}", g.real_words_per_turn, g.sim_words_per_turn),
            g.turn_length_w1,
            g.sentiment_js,
            est(&g.auc_same_group),
            est(&g.auc_other_groups),
            est(&g.auc_real_vs_other_groups)
        );
    }
    for (g, r, s) in &f.one_sided {
        let _ = writeln!(o, "  {g:<14} {r:>9} {s:>9}   (one side only)");
    }
    if f.unassigned != (0, 0) {
        let _ = writeln!(
            o,
            "  without a value: {} real, {} simulated dialogues",
            f.unassigned.0, f.unassigned.1
        );
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::loaders::load_real;
    use std::path::Path;

    fn inspired() -> Corpus {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/inspired/dialogs.tsv");
        load_real(&p, crate::corpus::CorpusKind::Inspired).expect("INSPIRED")
    }

    fn halves(c: &Corpus) -> (Corpus, Corpus) {
        let (mut a, mut b) = (Corpus::default(), Corpus::default());
        for (i, d) in c.dialogues.iter().enumerate() {
            if i % 2 == 0 {
                a.dialogues.push(d.clone());
            } else {
                b.dialogues.push(d.clone());
            }
        }
        (a, b)
    }

    fn cfg(fields: &[&str]) -> ConditionalConfig {
        ConditionalConfig {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            ..ConditionalConfig::default()
        }
    }

    #[test]
    fn groups_of_real_halves_are_alike_and_counts_add_up() {
        let all = inspired();
        let (a, b) = halves(&all);
        let out = conditional_realism(&a, &b, &cfg(&["gender", "Extrovert"])).expect("groups");
        let gender = &out[0];
        assert_eq!(gender.split_at, None);
        // Counts against the survey read independently: every dialogue with a
        // gender answer lands in exactly one group.
        let with = |c: &Corpus| {
            c.dialogues
                .iter()
                .filter(|d| d.profile.get("gender").and_then(Value::as_str).is_some())
                .count()
        };
        let (r_sum, s_sum) = gender
            .groups
            .iter()
            .map(|g| (g.real_dialogues, g.sim_dialogues))
            .chain(gender.one_sided.iter().map(|o| (o.1, o.2)))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
        assert_eq!((r_sum, s_sum), (with(&a), with(&b)));
        assert_eq!(r_sum + gender.unassigned.0, a.dialogues.len());
        let female = gender
            .groups
            .iter()
            .find(|g| g.group == "female")
            .expect("female");
        let auc = female.auc_same_group.as_ref().expect("enough turns").value;
        assert!(
            (0.35..=0.65).contains(&auc),
            "halves of real women: AUC {auc}"
        );
        // Numeric: split at the median, both halves present.
        let ext = &out[1];
        assert!(ext.split_at.is_some());
        assert_eq!(ext.groups.len(), 2, "{:?}", ext.groups);
    }

    #[test]
    fn shuffled_text_in_one_group_is_caught_there() {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        let all = inspired();
        // The same dialogues with each turn's words shuffled.
        let (a, _) = halves(&all);
        let mut b = a.clone();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for d in &mut b.dialogues {
            for t in &mut d.turns {
                let mut w: Vec<&str> = t.text.split_whitespace().collect();
                w.shuffle(&mut rng);
                t.text = w.join(" ");
            }
        }
        let out = conditional_realism(&a, &b, &cfg(&["gender"])).expect("groups");
        let female = out[0]
            .groups
            .iter()
            .find(|g| g.group == "female")
            .expect("female");
        let same = female.auc_same_group.as_ref().expect("auc").value;
        // Same bags of words: only word order gives them away (a few hundred
        // turns: 0.85 measured; real halves give about 0.5).
        assert!(same > 0.75, "shuffled words: AUC {same}");
        assert_eq!(female.turn_length_w1, 0.0, "shuffling keeps lengths");
    }

    #[test]
    fn missing_field_is_an_error_and_text_values_normalise() {
        let all = inspired();
        let e = conditional_realism(&all, &all, &cfg(&["shoe_size"])).unwrap_err();
        assert!(e.to_string().contains("shoe_size"));
        let mut sim = all.clone();
        for d in &mut sim.dialogues {
            if let Some(Value::String(a)) = d.profile.remove("age_group") {
                d.latents = serde_json::json!({ "age_group": a.replace(' ', "").to_uppercase() });
            }
        }
        let out = conditional_realism(&all, &sim, &cfg(&["age_group"])).expect("groups");
        assert!(out[0].one_sided.is_empty(), "{:?}", out[0].one_sided);
        assert!(out[0].groups.iter().any(|g| g.group == "25-34"));
    }
}
