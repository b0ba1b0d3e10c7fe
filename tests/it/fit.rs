//! `fit-intents` on the real IARD file, checked against counts computed
//! here independently from the raw JSON.

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
}

#[test]
fn cli_writes_a_table_the_scenario_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("intents.toml");
    let o = std::process::Command::new(bin())
        .args(["fit-intents", "--iard"])
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
