//! Latent draws: the session-level profile drawn once per conversation and
//! the turn-level values (intent) drawn before every user turn.
//!
//! Draws take the session's own generators (see [`crate::rng`]), so a
//! session's latents are a function of (run seed, session index) alone.

use std::collections::BTreeMap;

use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

use crate::rng::SessionRng;
use crate::scenario::catalog::Catalog;
use crate::scenario::{
    Categorical, CategoricalSource, FirstWordModel, LengthModel, Pins, Scenario, SessionVar,
    TurnPolicy, END_STATE, FIRST_WORD_VAR, LENGTH_VAR,
};

/// Errors while drawing latents.
#[derive(Debug, thiserror::Error)]
pub enum LatentError {
    /// A catalog item variable has no catalog to draw from.
    #[error("session \"{0}\": a catalog_item variable needs a catalog (scenario `catalog` or --catalog)")]
    NoCatalog(String),
    /// A pinned catalog item does not exist.
    #[error("--set session.{name}={value}: no catalog item has this id or title")]
    UnknownItem {
        /// Variable.
        name: String,
        /// Pinned value.
        value: String,
    },
}

/// The values of one session's session-level variables.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct SessionLatents {
    /// Variable → drawn value (string, number, list of strings, or item).
    pub values: BTreeMap<String, Value>,
    /// Variable → prose that templates show (`text.<name>`); not recorded.
    #[serde(skip)]
    pub text: BTreeMap<String, String>,
}

/// The values of one user turn's turn-level variables.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct TurnLatents {
    /// Variable → value.
    pub values: BTreeMap<String, String>,
    /// Variable → instruction prose (`turn_text.<name>`); not recorded.
    #[serde(skip)]
    pub text: BTreeMap<String, String>,
}

impl TurnLatents {
    /// The intent of this turn, when the scenario declares one.
    pub fn intent(&self) -> Option<&str> {
        self.values.get("intent").map(String::as_str)
    }

    /// The word this turn opens with, when the `[first_word]` latent drew
    /// one (not when it left the opening to the model).
    pub fn first_word(&self) -> Option<&str> {
        self.values.get(FIRST_WORD_VAR).map(String::as_str)
    }

    /// The words this turn aims at, when the `[length]` latent drew a
    /// target for it.
    pub fn length(&self) -> Option<u32> {
        self.values.get(LENGTH_VAR).and_then(|w| w.parse().ok())
    }
}

/// What the turn policy decided before a user turn.
#[derive(Clone, Debug, PartialEq)]
pub enum TurnDecision {
    /// The user speaks, steered by these values.
    Speak(TurnLatents),
    /// The user ends the conversation (a markov chain drew END).
    End,
}

fn draw_index(probs: &[f64], rng: &mut SessionRng) -> usize {
    // One uniform per draw keeps the stream's consumption predictable.
    let u: f64 = rng.random();
    let mut acc = 0.0;
    for (i, p) in probs.iter().enumerate() {
        acc += p;
        if u < acc {
            return i;
        }
    }
    // Rounding can leave `acc` a hair under 1: take the last positive value.
    probs.iter().rposition(|p| *p > 0.0).unwrap_or(0)
}

impl LengthModel {
    /// A target length in words for a turn whose `of` variable is `value`:
    /// one draw from that value's fitted distribution, or the pooled one
    /// when the value has too few fitted turns (or the turn has no value).
    ///
    /// With `scale_by`, the draw is scaled by the factor of the session's
    /// value (`session`: the session's drawn values), rounded, at least 1.
    pub fn draw(
        &self,
        value: Option<&str>,
        session: &BTreeMap<String, Value>,
        rng: &mut SessionRng,
    ) -> u32 {
        let d = value
            .and_then(|v| self.per_value.get(v))
            .unwrap_or(&self.pooled);
        let words = d.words[draw_index(&d.probs, rng)];
        let factor = self
            .scale
            .as_ref()
            .and_then(|(var, factors)| factors.get(session.get(var)?.as_str()?))
            .copied()
            .unwrap_or(1.0);
        ((f64::from(words) * factor).round() as u32).max(1)
    }

    /// The token budget of a turn aiming at `words` words: room for the
    /// words and a sentence end, never above the side's own `max_tokens`.
    pub fn budget(&self, words: u32, max_tokens: u32) -> u32 {
        let want = (f64::from(words) * self.tokens_per_word).ceil() as u32 + 4;
        want.min(max_tokens).max(1)
    }
}

impl FirstWordModel {
    /// The word a turn whose `of` variable is `value` opens with: one draw
    /// from the words real seekers opened such turns with at the same place
    /// (`first_turn`: the seeker's first turn of the conversation), or from
    /// the place's pooled words when the value has too few fitted turns.
    /// `None`: the draw left the opening to the model.
    pub fn draw(
        &self,
        value: Option<&str>,
        first_turn: bool,
        rng: &mut SessionRng,
    ) -> Option<String> {
        let place = usize::from(first_turn);
        let d = value
            .and_then(|v| self.per_value[place].get(v))
            .unwrap_or(&self.pooled[place]);
        if d.words.is_empty() {
            return None;
        }
        d.words[draw_index(&d.probs, rng)].clone()
    }
}

/// Per value v of a markov chain, the chance that the chain, from v, goes
/// on for `turns` more steps without drawing END: S_0(v) = 1,
/// S_k(v) = sum over w (not END) of P(w | v) S_{k-1}(w). A value with no
/// row of its own never ends (1). The base chain's rows, without the
/// question and profile tilts.
fn survival(table: &crate::scenario::MarkovTable, turns: u32) -> BTreeMap<String, f64> {
    let mut s: BTreeMap<&str, f64> = BTreeMap::new();
    for _ in 0..turns {
        let next: BTreeMap<&str, f64> = table
            .transitions
            .iter()
            .map(|(v, row)| {
                let go_on: f64 = row
                    .iter()
                    .filter(|(w, _)| w.as_str() != END_STATE)
                    .map(|(w, p)| p * s.get(w.as_str()).copied().unwrap_or(1.0))
                    .sum();
                (v.as_str(), go_on)
            })
            .collect();
        s = next;
    }
    s.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn draw_distinct(c: &Categorical, k: usize, rng: &mut SessionRng) -> Vec<String> {
    let mut probs = c.probs.clone();
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        let sum: f64 = probs.iter().sum();
        if sum <= 0.0 {
            break;
        }
        let norm: Vec<f64> = probs.iter().map(|p| p / sum).collect();
        let i = draw_index(&norm, rng);
        out.push(c.values[i].clone());
        probs[i] = 0.0;
    }
    out
}

fn value_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(value_text).collect::<Vec<_>>().join(", "),
        Value::Object(o) => o.get("title").map(value_text).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// Draw the session latents, honouring pins.
pub fn draw_session(
    scenario: &Scenario,
    catalog: Option<&Catalog>,
    pins: &Pins,
    rng: &mut SessionRng,
) -> Result<SessionLatents, LatentError> {
    let mut out = SessionLatents::default();
    for var in &scenario.session {
        let name = var.name().to_string();
        let pinned = pins.session.get(&name);
        let value = match var {
            SessionVar::Categorical { source, pick, .. } => {
                let dist = match source {
                    CategoricalSource::Fixed(c) => c,
                    CategoricalSource::Given { given, cases } => {
                        let key = out.values.get(given).map(value_text).unwrap_or_default();
                        // Validation guarantees a case for every value of `given`.
                        match cases.get(&key) {
                            Some(c) => c,
                            None => continue,
                        }
                    }
                };
                // Draw even when pinned, so pinning one variable leaves the
                // stream (and so every other variable) unchanged.
                let drawn = draw_distinct(dist, *pick as usize, rng);
                let chosen: Vec<String> = match pinned {
                    Some(p) => p.split(',').map(|s| s.trim().to_string()).collect(),
                    None => drawn,
                };
                if *pick == 1 {
                    Value::String(chosen.into_iter().next().unwrap_or_default())
                } else {
                    json!(chosen)
                }
            }
            SessionVar::Range {
                min, max, integer, ..
            } => {
                let u: f64 = rng.random();
                let x = match pinned.and_then(|p| p.parse::<f64>().ok()) {
                    Some(p) => p,
                    None if *integer => {
                        let lo = min.ceil();
                        let span = max.floor() - lo + 1.0;
                        (lo + (u * span).floor()).min(max.floor())
                    }
                    None => min + u * (max - min),
                };
                if *integer {
                    json!(x as i64)
                } else {
                    json!((x * 1000.0).round() / 1000.0)
                }
            }
            SessionVar::CatalogItem {
                prefer_genres_from, ..
            } => {
                let Some(cat) = catalog else {
                    return Err(LatentError::NoCatalog(name));
                };
                let u: f64 = rng.random();
                let idx = match pinned {
                    Some(p) => find_item(cat, p).ok_or_else(|| LatentError::UnknownItem {
                        name: name.clone(),
                        value: p.clone(),
                    })?,
                    None => {
                        let mut pool: Vec<usize> = Vec::new();
                        if let Some(from) = prefer_genres_from {
                            let genres = match out.values.get(from) {
                                Some(Value::Array(a)) => a.iter().map(value_text).collect(),
                                Some(v) => vec![value_text(v)],
                                None => Vec::new(),
                            };
                            for g in genres {
                                pool.extend(cat.items_with_genre(&g));
                            }
                            pool.sort_unstable();
                            pool.dedup();
                        }
                        if pool.is_empty() {
                            ((u * cat.len() as f64) as usize).min(cat.len().saturating_sub(1))
                        } else {
                            pool[((u * pool.len() as f64) as usize).min(pool.len() - 1)]
                        }
                    }
                };
                let item = &cat.items()[idx];
                json!({
                    "id": item.id,
                    "title": item.title,
                    "year": item.year,
                    "genres": item.genres,
                })
            }
        };
        let prose = match (var, &value) {
            (SessionVar::Categorical { text, .. }, Value::String(s)) => {
                text.get(s).cloned().unwrap_or_else(|| s.clone())
            }
            (SessionVar::Categorical { text, .. }, Value::Array(a)) if !text.is_empty() => a
                .iter()
                .map(|v| {
                    let s = value_text(v);
                    text.get(&s).cloned().unwrap_or(s)
                })
                .collect::<Vec<_>>()
                .join(" "),
            _ => value_text(&value),
        };
        out.text.insert(name.clone(), prose);
        out.values.insert(name, value);
    }
    Ok(out)
}

/// Find a catalog item by id or (case-insensitive) title.
pub fn find_item(cat: &Catalog, key: &str) -> Option<usize> {
    let key_l = key.to_lowercase();
    cat.items().iter().position(|it| it.id == key).or_else(|| {
        cat.items()
            .iter()
            .position(|it| it.title.to_lowercase() == key_l)
    })
}

/// IARD's small-talk label: a real turn that greets and then asks carries
/// both, and is steered by what it asks.
pub const SMALL_TALK_INTENT: &str = "OTH";

/// The one intent that steers a replayed turn with these real labels: the
/// first label the scenario declares, passing over small talk when the turn
/// has another declared label. `None` when no label is declared.
pub fn primary_intent<'l>(labels: &'l [String], declared: &[String]) -> Option<&'l str> {
    let known: Vec<&'l str> = labels
        .iter()
        .map(String::as_str)
        .filter(|l| declared.iter().any(|d| d == l))
        .collect();
    known
        .iter()
        .copied()
        .find(|l| *l != SMALL_TALK_INTENT)
        .or_else(|| known.first().copied())
}

/// Chooses turn-level values, turn after turn, for one session.
#[derive(Debug)]
pub struct TurnPlanner<'a> {
    scenario: &'a Scenario,
    pins: &'a Pins,
    previous: Option<TurnLatents>,
    /// Turn variable → value → this session's `[turn.by]` factor.
    profile_tilt: BTreeMap<String, BTreeMap<String, f64>>,
    /// With `stay_for_patience`: the user turns the seeker stays for (its
    /// patience, at most `max_user_turns`).
    stays_for: Option<u32>,
}

impl<'a> TurnPlanner<'a> {
    /// A planner for a new session.
    pub fn new(scenario: &'a Scenario, pins: &'a Pins) -> Self {
        TurnPlanner {
            scenario,
            pins,
            previous: None,
            profile_tilt: BTreeMap::new(),
            stays_for: None,
        }
    }

    /// The planner of a session with these session values: each turn
    /// variable's `[turn.by]` factors for them, multiplied together.
    pub fn for_session(mut self, session: &SessionLatents) -> Self {
        for var in &self.scenario.turn {
            let mut tilt: BTreeMap<String, f64> = BTreeMap::new();
            for (svar, cases) in &var.by {
                let Some(factors) = session
                    .values
                    .get(svar)
                    .and_then(Value::as_str)
                    .and_then(|v| cases.get(v))
                else {
                    continue;
                };
                for (k, f) in factors {
                    *tilt.entry(k.clone()).or_insert(1.0) *= f;
                }
            }
            if !tilt.is_empty() {
                self.profile_tilt.insert(var.name.clone(), tilt);
            }
        }
        let conv = &self.scenario.conversation;
        if conv.stay_for_patience {
            self.stays_for = conv
                .patience
                .as_ref()
                .and_then(|p| session.values.get(p))
                .and_then(Value::as_u64)
                .map(|p| (p as u32).min(conv.max_user_turns));
        }
        self
    }

    /// Values of a replayed turn whose real intent labels are `labels`: the
    /// turn variable `intent` takes [`primary_intent`] unless its policy is
    /// `none` (the uncontrolled baseline); `--set turn.<name>` pins still
    /// win. Other turn variables are not drawn: a real turn gives no value
    /// for them, and drawing would ask a policy (and its END) that the real
    /// dialogue has replaced.
    pub fn replayed(&mut self, labels: &[String]) -> TurnLatents {
        let mut out = TurnLatents::default();
        for var in &self.scenario.turn {
            let real = match var.policy {
                TurnPolicy::None => None,
                _ if var.name == "intent" => {
                    primary_intent(labels, &var.values).map(str::to_string)
                }
                _ => None,
            };
            if let Some(v) = self.pins.turn.get(&var.name).cloned().or(real) {
                if let Some(t) = var.text.get(&v) {
                    out.text.insert(var.name.clone(), t.clone());
                }
                out.values.insert(var.name.clone(), v);
            }
        }
        self.previous = Some(out.clone());
        out
    }

    /// Decide user turn `turn_index` (0-based) with that turn's generator.
    /// `asked`: whether the system's turn before this one asked a question
    /// (`None` before the system's first turn); a markov row is tilted by
    /// its table's `after_question` or `after_statement` factors.
    pub fn next(
        &mut self,
        turn_index: u32,
        asked: Option<bool>,
        rng: &mut SessionRng,
    ) -> TurnDecision {
        if turn_index >= self.scenario.conversation.max_user_turns {
            return TurnDecision::End;
        }
        self.draw(turn_index, asked, rng, false)
    }

    /// Values of a leaving seeker's last turn (`conversation.closing_turn`):
    /// drawn as [`TurnPlanner::next`] draws them, except that a markov
    /// variable's row is weighted by each value's chance of being the last,
    /// P(v | previous) · P(END | v), and cannot draw END (real seekers'
    /// last turns are mostly thanks and goodbyes, and accepting). A row in
    /// which no value ever ends is drawn as it is.
    pub fn closing(
        &mut self,
        turn_index: u32,
        asked: Option<bool>,
        rng: &mut SessionRng,
    ) -> TurnDecision {
        // The turn is first drawn as any other, from the same stream, so a
        // chain that ends here anyway still ends here (its last turn was a
        // natural last turn already).
        let previous = self.previous.clone();
        match self.draw(turn_index, asked, rng, false) {
            TurnDecision::End => TurnDecision::End,
            TurnDecision::Speak(_) => {
                self.previous = previous;
                self.draw(turn_index, asked, rng, true)
            }
        }
    }

    fn draw(
        &mut self,
        turn_index: u32,
        asked: Option<bool>,
        rng: &mut SessionRng,
        last: bool,
    ) -> TurnDecision {
        let conv = &self.scenario.conversation;
        // With `stay_for_patience` only patience ends the conversation
        // (the session's loop leaves when it is spent), never the chain.
        let may_end = turn_index >= conv.min_user_turns && !last && !conv.stay_for_patience;
        let mut out = TurnLatents::default();
        let mut end = false;
        for var in &self.scenario.turn {
            let drawn: Option<String> = match &var.policy {
                TurnPolicy::None => None,
                TurnPolicy::Scripted(script) => {
                    let i = (turn_index as usize).min(script.len() - 1);
                    Some(script[i].clone())
                }
                TurnPolicy::Iid(c) => {
                    let probs = match self.profile_tilt.get(&var.name) {
                        None => c.probs.clone(),
                        Some(t) => {
                            let w: Vec<f64> = c
                                .values
                                .iter()
                                .zip(&c.probs)
                                .map(|(v, p)| p * t.get(v).copied().unwrap_or(1.0))
                                .collect();
                            let sum: f64 = w.iter().sum();
                            w.iter().map(|x| x / sum).collect()
                        }
                    };
                    Some(c.values[draw_index(&probs, rng)].clone())
                }
                TurnPolicy::Markov(table) => {
                    let prev = self.previous.as_ref().and_then(|p| p.values.get(&var.name));
                    let row = match prev {
                        None => Some(&table.first),
                        Some(p) => table.transitions.get(p),
                    };
                    let tilt = match asked {
                        Some(true) => Some(&table.after_question),
                        Some(false) => Some(&table.after_statement),
                        None => None,
                    };
                    let profile = self.profile_tilt.get(&var.name);
                    // P(END | v): how often a real seeker stops after v.
                    let ends = |k: &String| {
                        table
                            .transitions
                            .get(k)
                            .and_then(|r| r.get(END_STATE))
                            .copied()
                            .unwrap_or(0.0)
                    };
                    let closing = last && row.is_some_and(|r| r.keys().any(|k| ends(k) > 0.0));
                    // A seeker who stays for its patience: the chain given
                    // that it does not end before then, each value weighed
                    // by its chance of going on for the turns still to come
                    // (not only this one: a goodbye would else be followed
                    // by more turns, most of them goodbyes again).
                    let staying = match self.stays_for {
                        Some(n) if !last => survival(table, n.saturating_sub(turn_index + 1)),
                        _ => BTreeMap::new(),
                    };
                    match row {
                        None => None,
                        Some(row) => {
                            let entries: Vec<(&String, f64)> = row
                                .iter()
                                .filter(|(k, _)| may_end || k.as_str() != END_STATE)
                                .map(|(k, w)| {
                                    let f = tilt.and_then(|t| t.get(k)).copied().unwrap_or(1.0)
                                        * profile.and_then(|t| t.get(k)).copied().unwrap_or(1.0)
                                        * if closing { ends(k) } else { 1.0 }
                                        * staying.get(k).copied().unwrap_or(1.0);
                                    (k, *w * f)
                                })
                                .collect();
                            let sum: f64 = entries.iter().map(|e| e.1).sum();
                            if sum <= 0.0 {
                                // Only END was possible but too early: stay.
                                prev.cloned()
                            } else {
                                let probs: Vec<f64> = entries.iter().map(|e| e.1 / sum).collect();
                                let k = entries[draw_index(&probs, rng)].0;
                                if k == END_STATE {
                                    end = true;
                                    None
                                } else {
                                    Some(k.clone())
                                }
                            }
                        }
                    }
                }
            };
            let value = self.pins.turn.get(&var.name).cloned().or(drawn);
            if let Some(v) = value {
                if let Some(t) = var.text.get(&v) {
                    out.text.insert(var.name.clone(), t.clone());
                }
                out.values.insert(var.name.clone(), v);
            }
        }
        if end {
            return TurnDecision::End;
        }
        self.previous = Some(out.clone());
        TurnDecision::Speak(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{stream_rng, Stream};

    /// Intent of user turn 1 of `sessions` sessions of `scenario`, after
    /// a system turn that asked (or not).
    fn second_intents(scenario: &Scenario, asked: Option<bool>, sessions: u64) -> Vec<String> {
        let pins = Pins::default();
        (0..sessions)
            .map(|seed| {
                let mut planner = TurnPlanner::new(scenario, &pins);
                planner.next(0, None, &mut stream_rng(seed, Stream::TurnLatents(0)));
                match planner.next(1, asked, &mut stream_rng(seed, Stream::TurnLatents(1))) {
                    TurnDecision::Speak(t) => t.intent().unwrap_or_default().to_string(),
                    TurnDecision::End => "END".into(),
                }
            })
            .collect()
    }

    /// Every intent of `sessions` sessions of up to 8 turns whose
    /// personality is `personality` (no question asked), and their mean
    /// number of turns.
    fn intents_of(scenario: &Scenario, personality: &str, sessions: u64) -> (Vec<String>, f64) {
        let pins = Pins::default();
        let session = SessionLatents {
            values: [("personality".to_string(), json!(personality))].into(),
            text: BTreeMap::new(),
        };
        let mut all = Vec::new();
        let mut turns = 0;
        for seed in 0..sessions {
            let mut planner = TurnPlanner::new(scenario, &pins).for_session(&session);
            for i in 0..8 {
                let rng = &mut stream_rng(seed, Stream::TurnLatents(i));
                match planner.next(i, Some(false), rng) {
                    TurnDecision::Speak(t) => all.push(t.intent().unwrap_or_default().to_string()),
                    TurnDecision::End => break,
                }
                turns += 1;
            }
        }
        (all, turns as f64 / sessions as f64)
    }

    #[test]
    fn verbosity_scales_lengths_by_the_mean_ratio_of_its_third_of_real_seekers() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies");
        let scenario = Scenario::load(&dir).expect("movies scenario");
        let (var, factors) = scenario
            .length
            .as_ref()
            .and_then(|l| l.scale.clone())
            .expect("scale_by");
        assert_eq!(var, "verbosity");
        // The fitted file's per-seeker ratios, cut into thirds here.
        let fitted: toml::Value =
            toml::from_str(&std::fs::read_to_string(dir.join("intents_iard.toml")).unwrap())
                .unwrap();
        let mut ratios: Vec<f64> = fitted["seeker_length_ratio"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_float().unwrap())
            .collect();
        ratios.sort_by(f64::total_cmp);
        let n = ratios.len();
        let third = |a: usize, b: usize| ratios[a..b].iter().sum::<f64>() / (b - a) as f64;
        let (lo, hi) = (
            (n as f64 / 3.0).round() as usize,
            (2.0 * n as f64 / 3.0).round() as usize,
        );
        for (value, want) in [
            ("terse", third(0, lo)),
            ("normal", third(lo, hi)),
            ("chatty", third(hi, n)),
        ] {
            assert!(
                (factors[value] - want).abs() < 1e-9,
                "{value}: {} vs {want}",
                factors[value]
            );
        }
        assert!(
            factors["terse"] < 0.75 && factors["chatty"] > 1.3,
            "{factors:?}"
        );
    }

    #[test]
    fn first_words_are_drawn_from_the_turns_cell_and_place_at_its_rates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies");
        let text = std::fs::read_to_string(dir.join("intents_iard.toml")).unwrap();
        let fitted: crate::scenario::FittedTables = toml::from_str(&text).unwrap();
        let model = FirstWordModel {
            of: "intent".into(),
            per_value: [
                [("SEE".to_string(), dist(&[(Some("I"), 3), (Some("Yes"), 1)]))].into(),
                [("IQU".to_string(), dist(&[(Some("Hi"), 1), (None, 1)]))].into(),
            ],
            pooled: [dist(&[(Some("Oh"), 1)]), dist(&[(Some("Hello"), 1)])],
        };
        let mut rng = stream_rng(9, Stream::TurnFirstWord(0));
        let mut later_see = BTreeMap::<Option<String>, u32>::new();
        let mut first_iqu = BTreeMap::<Option<String>, u32>::new();
        for _ in 0..4000 {
            *later_see
                .entry(model.draw(Some("SEE"), false, &mut rng))
                .or_default() += 1;
            *first_iqu
                .entry(model.draw(Some("IQU"), true, &mut rng))
                .or_default() += 1;
        }
        let share = |m: &BTreeMap<Option<String>, u32>, w: Option<&str>| {
            f64::from(m.get(&w.map(str::to_string)).copied().unwrap_or(0)) / 4000.0
        };
        assert!(
            (share(&later_see, Some("I")) - 0.75).abs() < 0.03,
            "{later_see:?}"
        );
        assert!(
            (share(&first_iqu, None) - 0.5).abs() < 0.03,
            "left to the model: {first_iqu:?}"
        );
        // A value without a cell of its own at that place takes the place's pool.
        assert_eq!(
            model.draw(Some("SEE"), true, &mut rng).as_deref(),
            Some("Hello")
        );
        assert_eq!(
            model.draw(Some("ACC"), false, &mut rng).as_deref(),
            Some("Oh")
        );
        assert_eq!(model.draw(None, false, &mut rng).as_deref(), Some("Oh"));
        // The fitted file has both places (what `usersim fit` wrote).
        assert!(fitted.first_words.contains_key(crate::scenario::FIRST_TURN));
        assert!(fitted
            .first_words
            .contains_key(crate::scenario::LATER_TURNS));
    }

    fn dist(entries: &[(Option<&str>, u64)]) -> crate::scenario::FirstWordDistribution {
        let samples: u64 = entries.iter().map(|e| e.1).sum();
        crate::scenario::FirstWordDistribution {
            words: entries.iter().map(|e| e.0.map(str::to_string)).collect(),
            probs: entries
                .iter()
                .map(|e| e.1 as f64 / samples as f64)
                .collect(),
            samples,
        }
    }

    /// movies with its intent chain as fitted, free to end (movies itself
    /// stays for patience, which never draws END).
    fn movies_chain_free_to_end() -> Scenario {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies");
        let mut scenario = Scenario::load(&dir).expect("movies scenario");
        scenario.conversation.stay_for_patience = false;
        scenario
    }

    #[test]
    fn a_sessions_value_tilts_its_intents_by_turn_by() {
        let mut scenario = movies_chain_free_to_end();
        let share = |v: &[String], of: &[&str]| {
            v.iter().filter(|i| of.contains(&i.as_str())).count() as f64 / v.len() as f64
        };
        // movies has no tilt: the quartile tilts it once had, set here.
        let critical = ["REJ", "CRI-F", "CRI-A", "CRI-C"];
        let factors = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(k, f)| (k.to_string(), *f)).collect()
        };
        let tables = scenario.turn[0].by.entry("personality".into()).or_default();
        tables.insert(
            "picky".into(),
            factors(&[
                ("REJ", 1.7),
                ("CRI-F", 1.7),
                ("CRI-A", 1.7),
                ("CRI-C", 1.7),
                ("ACC", 0.5),
            ]),
        );
        tables.insert(
            "agreeable".into(),
            factors(&[
                ("ACC", 2.1),
                ("REJ", 0.47),
                ("CRI-F", 0.47),
                ("CRI-A", 0.47),
                ("CRI-C", 0.47),
            ]),
        );
        tables.insert("hasty".into(), factors(&[("END", 2.0)]));
        let (picky, _) = intents_of(&scenario, "picky", 1500);
        let (agreeable, _) = intents_of(&scenario, "agreeable", 1500);
        assert!(
            share(&picky, &critical) > 2.0 * share(&agreeable, &critical),
            "critical: picky {} agreeable {}",
            share(&picky, &critical),
            share(&agreeable, &critical)
        );
        assert!(share(&agreeable, &["ACC"]) > 2.0 * share(&picky, &["ACC"]));
        // An END factor shortens a value's conversations.
        let (_, hasty_turns) = intents_of(&scenario, "hasty", 1500);
        let (_, plain_turns) = intents_of(&scenario, "nobody", 1500);
        assert!(
            hasty_turns < 0.9 * plain_turns,
            "{hasty_turns} vs {plain_turns}"
        );
        // A value with no table draws as the untilted chain does.
        let pins = Pins::default();
        let tilted = TurnPlanner::new(&scenario, &pins).for_session(&SessionLatents {
            values: [("personality".to_string(), json!("nobody"))].into(),
            text: BTreeMap::new(),
        });
        assert!(tilted.profile_tilt.is_empty());
    }

    #[test]
    fn a_closing_turn_draws_what_real_seekers_leave_on() {
        let scenario = movies_chain_free_to_end();
        let Some(TurnPolicy::Markov(table)) = scenario.turn_var("intent").map(|v| &v.policy) else {
            panic!("movies' intent is a markov chain");
        };
        let ends = |k: &str| table.transitions.get(k).and_then(|r| r.get(END_STATE));
        let after = |prev: &str| TurnLatents {
            values: [("intent".to_string(), prev.to_string())].into(),
            text: BTreeMap::new(),
        };
        let pins = Pins::default();
        let (mut closing, mut plain) = (Vec::new(), Vec::new());
        let mut ended = 0;
        for seed in 0..4000 {
            let draw = |closing_turn: bool| {
                let mut planner = TurnPlanner::new(&scenario, &pins);
                planner.previous = Some(after("ACC"));
                let rng = &mut stream_rng(seed, Stream::TurnLatents(4));
                if closing_turn {
                    planner.closing(4, None, rng)
                } else {
                    planner.next(4, None, rng)
                }
            };
            match (draw(true), draw(false)) {
                (TurnDecision::Speak(c), TurnDecision::Speak(p)) => {
                    closing.push(c.intent().unwrap_or_default().to_string());
                    plain.push(p.intent().unwrap_or_default().to_string());
                }
                // The chain ends here whether or not the turn is the last.
                (TurnDecision::End, TurnDecision::End) => ended += 1,
                (c, p) => panic!("seed {seed}: closing {c:?}, plain {p:?}"),
            }
        }
        assert!(
            ended > 400,
            "ACC -> END is 0.19 in the fitted chain: {ended}"
        );
        // Only values real seekers ever stopped after, at the chain's
        // P(v | ACC) * P(END | v).
        for v in &closing {
            assert!(ends(v).is_some_and(|p| *p > 0.0), "{v}");
        }
        let row = &table.transitions["ACC"];
        let weight = |v: &str| row.get(v).copied().unwrap_or(0.0) * ends(v).copied().unwrap_or(0.0);
        let total: f64 = row
            .keys()
            .filter(|k| *k != END_STATE)
            .map(|k| weight(k))
            .sum();
        let share =
            |v: &[String], of: &str| v.iter().filter(|i| *i == of).count() as f64 / v.len() as f64;
        let want = weight("OTH") / total;
        assert!(
            (share(&closing, "OTH") - want).abs() < 0.03,
            "{} vs {want}",
            share(&closing, "OTH")
        );
        assert!(share(&closing, "OTH") > share(&plain, "OTH") + 0.2);
        assert!(!plain.iter().all(|v| ends(v).is_some_and(|p| *p > 0.0)));
    }

    #[test]
    fn a_seeker_who_stays_for_patience_never_draws_the_chains_end() {
        let mut scenario = movies_chain_free_to_end();
        let pins = Pins::default();
        let ends = |scenario: &Scenario| {
            (0..2000)
                .filter(|&seed| {
                    let mut planner = TurnPlanner::new(scenario, &pins);
                    planner.previous = Some(TurnLatents {
                        values: [("intent".to_string(), "ACC".to_string())].into(),
                        text: BTreeMap::new(),
                    });
                    let rng = &mut stream_rng(seed, Stream::TurnLatents(4));
                    matches!(planner.next(4, None, rng), TurnDecision::End)
                })
                .count()
        };
        let chain = ends(&scenario);
        // ACC -> END is 0.19 in the fitted chain.
        assert!(chain > 200, "{chain}");
        scenario.conversation.stay_for_patience = true;
        assert_eq!(ends(&scenario), 0);
    }

    #[test]
    fn a_seeker_who_stays_draws_the_chain_given_that_it_goes_on() {
        // movies stays for patience. The seeker's intents over 8 turns:
        // with its patience known, each turn's value is weighed by its
        // chance of going on for the turns left; without (the chain only
        // kept from END at each turn) a goodbye is followed by more turns.
        let scenario = Scenario::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies"),
        )
        .expect("movies scenario");
        assert!(scenario.conversation.stay_for_patience);
        let pins = Pins::default();
        let small_talk = |patience: Option<u64>| {
            let session = SessionLatents {
                values: patience
                    .map(|p| ("patience".to_string(), json!(p)))
                    .into_iter()
                    .collect(),
                text: BTreeMap::new(),
            };
            let (mut oth, mut all) = (0, 0);
            for seed in 0..1000 {
                let mut planner = TurnPlanner::new(&scenario, &pins).for_session(&session);
                for turn in 0..8 {
                    let rng = &mut stream_rng(seed, Stream::TurnLatents(turn));
                    let TurnDecision::Speak(t) = planner.next(turn, None, rng) else {
                        panic!("a staying seeker's chain never ends");
                    };
                    // The middle turns: not the first (greetings), not the last.
                    if (1..7).contains(&turn) {
                        all += 1;
                        oth += usize::from(t.intent() == Some("OTH"));
                    }
                }
            }
            oth as f64 / all as f64
        };
        let (kept_from_end, going_on) = (small_talk(None), small_talk(Some(8)));
        // OTH -> END is the chain's likeliest end: given that the seeker
        // goes on, small talk in the middle is rarer.
        assert!(
            going_on < 0.7 * kept_from_end,
            "{going_on} vs {kept_from_end}"
        );
        assert!(going_on > 0.02, "{going_on}");
    }

    #[test]
    fn a_question_before_the_turn_tilts_the_intent_by_the_fitted_factors() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies");
        let scenario = Scenario::load(&dir).expect("movies scenario");
        let share = |v: &[String]| v.iter().filter(|i| *i == "ANS").count() as f64 / v.len() as f64;
        let asked = share(&second_intents(&scenario, Some(true), 4000));
        let not_asked = share(&second_intents(&scenario, Some(false), 4000));
        let before_any = share(&second_intents(&scenario, None, 4000));
        // Fitted: ANS ×2.6 after a question, ×0.27 after none.
        assert!(
            asked > 5.0 * not_asked,
            "ANS after ? {asked}, after none {not_asked}"
        );
        assert!(
            asked > before_any && before_any > not_asked,
            "{asked} {before_any} {not_asked}"
        );
        // Without factors the draws are the untilted chain's, whatever
        // was asked: a scenario without them keeps its files.
        let mut plain = Scenario::load(&dir).expect("movies scenario");
        for var in &mut plain.turn {
            if let TurnPolicy::Markov(t) = &mut var.policy {
                t.after_question.clear();
                t.after_statement.clear();
            }
        }
        assert_eq!(
            second_intents(&plain, Some(true), 500),
            second_intents(&scenario, None, 500)
        );
    }
}
