//! `--set` pins: `session.<name>=<value>` and `turn.<name>=<value>`,
//! checked against the scenario's declared values.
//!
//! Invariant: a pin that parses names a declared variable and one of its
//! declared values (or a catalog item, checked once the catalog is loaded).

use std::collections::BTreeMap;

use super::*;

/// Values pinned from the command line, e.g. `session.verbosity=terse`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Pins {
    /// Session variable → raw value.
    pub session: BTreeMap<String, String>,
    /// Turn variable → value used at every turn.
    pub turn: BTreeMap<String, String>,
}

impl Pins {
    /// Parse `--set` arguments and check them against the scenario. Catalog
    /// items are checked later, when the catalog is loaded.
    pub fn parse(args: &[String], scenario: &Scenario) -> Result<Pins> {
        let mut pins = Pins::default();
        for arg in args {
            let bad = |expected: String| ScenarioError::Pin {
                pin: arg.clone(),
                expected,
            };
            let Some((key, value)) = arg.split_once('=') else {
                return Err(bad(
                    "expected session.<name>=<value> or turn.<name>=<value>".into(),
                ));
            };
            let (key, value) = (key.trim(), value.trim());
            match key.split_once('.') {
                Some(("session", name)) => {
                    let Some(var) = scenario.session_var(name) else {
                        let names: Vec<&str> =
                            scenario.session.iter().map(SessionVar::name).collect();
                        return Err(bad(format!(
                            "unknown session variable \"{name}\" (scenario {} declares: {})",
                            scenario.name,
                            names.join(", ")
                        )));
                    };
                    match var {
                        SessionVar::Categorical { pick, .. } => {
                            let all = var.all_values();
                            let parts: Vec<&str> = value.split(',').map(str::trim).collect();
                            if parts.len() != *pick as usize {
                                return Err(bad(format!("{pick} comma-separated value(s)")));
                            }
                            if let Some(p) = parts.iter().find(|p| !all.iter().any(|a| a == *p)) {
                                return Err(bad(format!(
                                    "unknown value \"{p}\" (expected one of: {})",
                                    all.join(", ")
                                )));
                            }
                        }
                        SessionVar::Range {
                            min, max, integer, ..
                        } => {
                            let ok = value.parse::<f64>().ok().filter(|x| {
                                *x >= *min && *x <= *max && (!*integer || x.fract() == 0.0)
                            });
                            if ok.is_none() {
                                return Err(bad(format!(
                                    "a {} between {min} and {max}",
                                    if *integer { "whole number" } else { "number" }
                                )));
                            }
                        }
                        SessionVar::CatalogItem { .. } => {}
                    }
                    pins.session.insert(name.to_string(), value.to_string());
                }
                Some(("turn", name)) => {
                    let Some(var) = scenario.turn_var(name) else {
                        return Err(bad(format!("unknown turn variable \"{name}\"")));
                    };
                    if !var.values.iter().any(|v| v == value) {
                        return Err(bad(format!(
                            "unknown value \"{value}\" (expected one of: {})",
                            var.values.join(", ")
                        )));
                    }
                    pins.turn.insert(name.to_string(), value.to_string());
                }
                _ => {
                    return Err(bad(
                        "expected session.<name>=<value> or turn.<name>=<value>".into(),
                    ))
                }
            }
        }
        Ok(pins)
    }
}
