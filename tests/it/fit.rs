//! `usersim fit` (alias `fit-intents`) on the real IARD file, checked
//! against counts computed here independently from the raw JSON.

use std::collections::BTreeMap;

use crate::util::*;
use usersim::tools::fit::{fit_iard, FitIntentsConfig};

#[test]
fn first_turn_distribution_matches_independent_counts() {
    let path = shared_data().join("iard/iard.json");
    let fitted = fit_iard(&path, &FitIntentsConfig::default()).unwrap();

    // Independent count: the first seeker utterance of each dialogue, each
    // of its k labels weighing 1/k.
    let raw: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut counts: BTreeMap<String, f64> = BTreeMap::new();
    let mut dialogues = 0;
    for d in raw.as_object().unwrap().values() {
        let info = d["dialogue_info"].as_object().unwrap();
        let first = info
            .values()
            .filter(|u| u["role"] == "seeker")
            .min_by_key(|u| u["utterance_pos"].as_u64().unwrap())
            .unwrap();
        let labels = first["sub-intent/action"].as_array().unwrap();
        for l in labels {
            *counts.entry(l.as_str().unwrap().to_string()).or_default() +=
                1.0 / labels.len() as f64;
        }
        dialogues += 1;
    }
    assert_eq!(fitted.turns.dialogues, dialogues);
    let total: f64 = counts.values().sum();
    for (k, c) in &counts {
        let p = fitted.table.first.get(k).copied().unwrap_or(0.0);
        assert!(
            (p - c / total).abs() < 1e-3,
            "{k}: fitted {p}, counted {}",
            c / total
        );
    }
    // Real seekers open with a query or a greeting.
    let open = fitted.table.first["IQU"] + fitted.table.first["OTH"];
    assert!(open > 0.8, "IQU+OTH = {open}");
    // Every row is a distribution and END is reachable.
    for (from, row) in &fitted.table.transitions {
        let s: f64 = row.values().sum();
        assert!((s - 1.0).abs() < 1e-2, "{from} sums to {s}");
    }
    assert!(fitted.table.transitions["OTH"].contains_key("END"));
    // The share of dialogues the recommender opens (conversation.system_opens).
    let opened = raw
        .as_object()
        .unwrap()
        .values()
        .filter(|d| {
            let info = d["dialogue_info"].as_object().unwrap();
            let first = info
                .values()
                .min_by_key(|u| u["utterance_pos"].as_u64().unwrap())
                .unwrap();
            first["role"] == "recommender"
        })
        .count();
    assert_eq!(fitted.recommender_opens, (opened, dialogues));
    assert!(opened > dialogues / 2, "{opened} of {dialogues}");
}

/// Each dialogue's utterances of the raw IARD JSON, in order.
fn raw_utterances() -> Vec<Vec<serde_json::Value>> {
    let raw: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(shared_data().join("iard/iard.json")).unwrap(),
    )
    .unwrap();
    raw.as_object()
        .unwrap()
        .values()
        .map(|d| {
            let mut utts: Vec<serde_json::Value> = d["dialogue_info"]
                .as_object()
                .unwrap()
                .values()
                .cloned()
                .collect();
            utts.sort_by_key(|u| u["utterance_pos"].as_u64().unwrap());
            utts
        })
        .collect()
}

/// The library's fit of the IARD file.
fn fitted() -> usersim::tools::fit::FittedIntents {
    fit_iard(
        &shared_data().join("iard/iard.json"),
        &FitIntentsConfig::default(),
    )
    .unwrap()
}

/// A seeker turn of the raw IARD JSON: a speaker's consecutive utterances
/// joined, mentions `@id <Title (year)>` counted as the title's words.
#[derive(Default)]
struct RawSeekerTurn {
    labels: Vec<String>,
    words: usize,
    /// The text of its first utterance.
    opening: String,
    /// Whether it is the seeker's first turn of the dialogue.
    first: bool,
}

fn raw_seeker_turns() -> Vec<RawSeekerTurn> {
    let mut out = Vec::new();
    for utts in raw_utterances() {
        let mut current: Option<RawSeekerTurn> = None;
        let mut seen = 0;
        for u in utts {
            let text = usersim::corpus::strip_mentions(u["utterance_text"].as_str().unwrap());
            let words = text.split_whitespace().count();
            // An utterance with no words is no turn of either side.
            if words == 0 {
                continue;
            }
            if u["role"] != "seeker" {
                out.extend(current.take());
                continue;
            }
            let t = current.get_or_insert_with(|| {
                seen += 1;
                RawSeekerTurn {
                    opening: text.clone(),
                    first: seen == 1,
                    ..RawSeekerTurn::default()
                }
            });
            t.words += words;
            for l in u["sub-intent/action"].as_array().unwrap() {
                let l = l.as_str().unwrap().to_string();
                if !t.labels.contains(&l) {
                    t.labels.push(l);
                }
            }
        }
        out.extend(current.take());
    }
    out
}

/// A turn's intent as the fit files it: its first label that is not small
/// talk (or OTH when it has no other).
fn primary(labels: &[String]) -> Option<&String> {
    let known: Vec<&String> = labels
        .iter()
        .filter(|l| usersim::corpus::IARD_SEEKER_INTENTS.contains(&l.as_str()))
        .collect();
    known
        .iter()
        .find(|l| l.as_str() != "OTH")
        .or(known.first())
        .copied()
}

#[test]
fn lengths_match_independent_counts_and_real_seekers_are_terse() {
    let fitted = fitted();
    // Each turn counts once, under its first label that is not small talk
    // (or OTH when it has no other).
    let mut expected: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for t in raw_seeker_turns() {
        if let Some(p) = primary(&t.labels) {
            *expected
                .entry(p.to_string())
                .or_default()
                .entry(t.words.to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(fitted.lengths, expected);
    let (mut n, mut sum) = (0u64, 0u64);
    for (w, c) in fitted.lengths.values().flatten() {
        n += c;
        sum += w.parse::<u64>().unwrap() * c;
    }
    let mean = sum as f64 / n as f64;
    assert!(
        (8.0..16.0).contains(&mean),
        "mean words per real seeker turn {mean}"
    );
}

#[test]
fn first_words_match_independent_counts_and_depend_on_the_place() {
    let fitted = fitted();
    // Each turn counts once, under its intent and place, by the first word
    // of its text: the letters after any leading punctuation, up to the
    // first character that is neither a letter nor an apostrophe.
    let mut expected: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>> = BTreeMap::new();
    for t in raw_seeker_turns() {
        let Some(p) = primary(&t.labels) else {
            continue;
        };
        let token = t.opening.split_whitespace().next().unwrap_or("");
        let letters: String = token
            .chars()
            .skip_while(|c| !c.is_alphanumeric())
            .map(|c| if c == '’' { '\'' } else { c })
            .take_while(|c| c.is_alphabetic() || *c == '\'')
            .collect();
        let word = letters.trim_end_matches('\'').to_lowercase();
        let word = if word.is_empty() {
            "*".to_string()
        } else {
            word
        };
        let place = if t.first { "first_turn" } else { "later_turns" };
        *expected
            .entry(place.into())
            .or_default()
            .entry(p.to_string())
            .or_default()
            .entry(word)
            .or_default() += 1;
    }
    assert_eq!(fitted.first_words, expected);
    // Where a turn is changes how it opens: real seekers greet in their
    // first turn ("hi", "hello", "hey") and open later ones with "i".
    let share = |place: &str, words: &[&str]| {
        let cells = &fitted.first_words[place];
        let all: u64 = cells.values().flat_map(|c| c.values()).sum();
        let of: u64 = cells
            .values()
            .flat_map(|c| c.iter())
            .filter(|(w, _)| words.contains(&w.as_str()))
            .map(|(_, n)| n)
            .sum();
        of as f64 / all as f64
    };
    let greet = ["hi", "hello", "hey"];
    assert!(
        share("first_turn", &greet) > 0.5,
        "{}",
        share("first_turn", &greet)
    );
    assert!(
        share("later_turns", &greet) < 0.05,
        "{}",
        share("later_turns", &greet)
    );
    assert!(
        share("later_turns", &["i"]) > 0.2,
        "{}",
        share("later_turns", &["i"])
    );
    // Few turns open with no word at all.
    assert!(share("later_turns", &["*"]) < 0.05);
}

/// Seeker turns of the raw IARD JSON that follow a recommender turn, as
/// (the recommender's turn has a `?`, the seeker turn's labels).
fn raw_answers() -> Vec<(bool, Vec<String>)> {
    let mut out = Vec::new();
    for utts in raw_utterances() {
        // (role, text, labels) per merged turn.
        let mut turns: Vec<(String, String, Vec<String>)> = Vec::new();
        for u in &utts {
            let role = u["role"].as_str().unwrap().to_string();
            let text = u["utterance_text"].as_str().unwrap();
            let labels = u["sub-intent/action"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|l| l.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            match turns.last_mut() {
                Some(last) if last.0 == role => {
                    last.1.push(' ');
                    last.1.push_str(text);
                    last.2.extend(labels);
                }
                _ => turns.push((role, text.to_string(), labels)),
            }
        }
        for pair in turns.windows(2) {
            if pair[0].0 == "recommender" && pair[1].0 == "seeker" {
                out.push((pair[0].1.contains('?'), pair[1].2.clone()));
            }
        }
    }
    out
}

#[test]
fn answering_a_question_is_fitted_from_what_follows_one() {
    let fitted = fitted();
    let turns = raw_answers();
    // Share of seeker turns labelled ANS after a `?` and after none.
    let share = |asked: bool| {
        let of: Vec<_> = turns.iter().filter(|t| t.0 == asked).collect();
        of.iter().filter(|t| t.1.iter().any(|l| l == "ANS")).count() as f64 / of.len() as f64
    };
    let (q, s) = (share(true), share(false));
    // Real seekers answer after a question far more often, and ignore
    // most questions all the same.
    assert!(q > 3.0 * s && q < 0.5, "ANS after ? {q}, after none {s}");
    let f = &fitted.table;
    assert!(f.after_question["ANS"] > 2.0, "{:?}", f.after_question);
    assert!(f.after_statement["ANS"] < 0.5, "{:?}", f.after_statement);
    // The factors' ratio is the ratio of the shares (smoothing towards the
    // prior shrinks it, never reverses it).
    let fitted_ratio = f.after_question["ANS"] / f.after_statement["ANS"];
    assert!(
        fitted_ratio > 0.6 * q / s && fitted_ratio <= 1.05 * q / s,
        "{fitted_ratio} vs {}",
        q / s
    );
    // Every factor is positive and every declared intent has one.
    assert_eq!(f.after_question.len(), 16);
    assert!(f
        .after_question
        .values()
        .chain(f.after_statement.values())
        .all(|v| *v > 0.0));
}

#[test]
fn cli_writes_a_table_the_scenario_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("intents.toml");
    let o = std::process::Command::new(bin())
        .args(["fit", "--iard"])
        .arg(shared_data().join("iard/iard.json"))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The committed table is what the command produces today.
    let committed =
        std::fs::read_to_string(root().join("prompts/movies/intents_iard.toml")).unwrap();
    let fresh = std::fs::read_to_string(&out).unwrap();
    let body = |s: &str| {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body(&committed), body(&fresh));
    let bad = std::process::Command::new(bin())
        .args(["fit-intents", "--iard", "/nonexistent/iard.json"])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("/nonexistent/iard.json"));
}
