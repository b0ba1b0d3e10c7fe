//! What a finished session writes: one [`ConversationRecord`] per line,
//! with the latents that steered each turn beside its text.
//!
//! Invariant: a record is a pure function of the run's configuration and
//! seed (no timings), and every number in it survives a float-64 JSON
//! reader: 64-bit seeds are written as decimal strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::chat::Side;
use crate::corpus::CorpusKind;
use crate::scenario::SidesSampling;

/// Why a conversation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The turn policy drew END (the user leaves).
    UserLeft,
    /// A user turn carried one of the scenario's end intents.
    EndIntent,
    /// The user accepted the target item.
    TargetAccepted,
    /// The scenario's turn limit.
    TurnLimit,
    /// A side's context filled up.
    ContextFull,
    /// A replayed dialogue has no seeker turn left.
    ReplayEnd,
    /// The system under test ended the conversation (`"end": true`).
    SystemEnded,
}

/// The real turn a replayed user turn stands for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RealTurn {
    /// What the real seeker said (the text every later prompt shows).
    pub text: String,
    /// Its intent labels in the corpus (IARD sub-intents; empty for
    /// corpora without labels).
    pub intents: Vec<String>,
}

/// The real dialogue a replayed conversation follows.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplaySource {
    /// Corpus.
    pub corpus: CorpusKind,
    /// Dialogue id in the corpus.
    pub dialogue_id: String,
    /// What the corpus knows about the real seeker (INSPIRED's survey:
    /// age group, gender, Big-Five scores).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub seeker: BTreeMap<String, Value>,
}

/// One message of a recorded conversation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnRecord {
    /// `user` (simulated) or `assistant` (the system).
    pub role: Side,
    /// The message.
    pub text: String,
    /// Turn latents that steered it (user turns).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub latents: BTreeMap<String, String>,
    /// Tokens generated for it (0 for fixed text).
    pub tokens: u32,
    /// Replay: the real turn this simulated user turn stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub real: Option<RealTurn>,
    /// System turns: the catalog ids of the items it recommended (its
    /// `items` answer, or else the catalog titles spotted in its text), in
    /// order, without repeats.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<String>,
    /// The note its speaker saw when writing it; repeated in later prompts,
    /// never written to the output.
    #[serde(skip)]
    pub note: Option<String>,
}

impl TurnRecord {
    /// A message the system did not generate (an opening greeting, a
    /// replayed real turn's reply): no latents, no tokens.
    pub fn fixed(role: Side, text: String) -> TurnRecord {
        TurnRecord {
            role,
            text,
            latents: BTreeMap::new(),
            tokens: 0,
            real: None,
            items: Vec::new(),
            note: None,
        }
    }
}

/// How a conversation served its user's target item. Turn numbers are
/// indices into the record's `turns`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The target item's catalog id.
    pub target: String,
    /// The first system turn whose items include the target.
    #[serde(default)]
    pub target_recommended: Option<usize>,
    /// The user turn that accepted the target: an accept intent right after
    /// a system turn that recommended it.
    #[serde(default)]
    pub accepted: Option<usize>,
    /// Items the user rejected: those of every system turn answered with a
    /// reject intent, in order, without repeats.
    #[serde(default)]
    pub rejected: Vec<String>,
    /// User turns up to and including the acceptance (none without one).
    #[serde(default)]
    pub turns_to_success: Option<u32>,
}

impl Outcome {
    /// The outcome of `turns` for `target`, with the scenario's accept and
    /// reject intents (a user turn's `intent` latent). A pure function of
    /// the turns, so a record's outcome can be recomputed from its lines.
    pub fn of(
        turns: &[TurnRecord],
        target: &str,
        accept_intents: &[String],
        reject_intents: &[String],
    ) -> Outcome {
        let mut out = Outcome {
            target: target.to_string(),
            ..Outcome::default()
        };
        let mut user_turns = 0u32;
        let mut last_system: Option<&TurnRecord> = None;
        for (i, t) in turns.iter().enumerate() {
            match t.role {
                Side::Assistant => {
                    if out.target_recommended.is_none() && t.items.iter().any(|x| x == target) {
                        out.target_recommended = Some(i);
                    }
                    last_system = Some(t);
                }
                Side::User => {
                    user_turns += 1;
                    let intent = t.latents.get("intent");
                    let offered = last_system.map_or(&[][..], |s| &s.items[..]);
                    if intent.is_some_and(|x| reject_intents.contains(x)) {
                        for item in offered {
                            if !out.rejected.contains(item) {
                                out.rejected.push(item.clone());
                            }
                        }
                    }
                    if out.accepted.is_none()
                        && intent.is_some_and(|x| accept_intents.contains(x))
                        && offered.iter().any(|x| x == target)
                    {
                        out.accepted = Some(i);
                        out.turns_to_success = Some(user_turns);
                    }
                }
            }
        }
        out
    }
}

/// Scenario identity in a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScenarioRef {
    /// Name.
    pub name: String,
    /// sha256 of its files.
    pub hash: String,
}

/// Model identity in a record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelRef {
    /// Name.
    pub name: String,
    /// sha256 of the file.
    pub sha256: String,
}

/// A finished conversation: one JSONL line. A pure function of the run
/// configuration and seed (no timings).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConversationRecord {
    /// Stable id: scenario, run seed and session index.
    pub id: String,
    /// Session index in the run.
    pub session_index: u64,
    /// Run seed, written as a decimal string (see [`u64_string`]).
    #[serde(with = "u64_string")]
    pub run_seed: u64,
    /// Seed of this session, derived from run seed and index; a decimal
    /// string (see [`u64_string`]).
    #[serde(with = "u64_string")]
    pub session_seed: u64,
    /// Scenario.
    pub scenario: ScenarioRef,
    /// Model.
    pub model: ModelRef,
    /// The system the user talked to.
    pub system: String,
    /// Sampling options of both sides.
    pub sampling: SidesSampling,
    /// Session latents.
    pub latents: BTreeMap<String, Value>,
    /// Messages in order.
    pub turns: Vec<TurnRecord>,
    /// Why it ended.
    pub end_reason: EndReason,
    /// Replay: the real dialogue it follows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplaySource>,
    /// How the system served the target item (scenarios with a target).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
}

/// Run-level facts every conversation records.
#[derive(Clone, Debug)]
pub struct RunIdentity {
    /// Run seed.
    pub run_seed: u64,
    /// Scenario.
    pub scenario: ScenarioRef,
    /// Model.
    pub model: ModelRef,
    /// Sampling options of both sides.
    pub sampling: SidesSampling,
}

impl RunIdentity {
    /// The run facts a record was written with.
    pub fn of(record: &ConversationRecord) -> RunIdentity {
        RunIdentity {
            run_seed: record.run_seed,
            scenario: record.scenario.clone(),
            model: record.model.clone(),
            sampling: record.sampling.clone(),
        }
    }

    /// The first fact in which `record` was written by another run, as
    /// (field, the record's value, this run's value); `None` if it is of
    /// this run. Resume and merge both refuse records of another run by it.
    pub fn mismatch(&self, record: &ConversationRecord) -> Option<(&'static str, String, String)> {
        let shown = |r: &RunIdentity| {
            [
                ("seed", r.run_seed.to_string()),
                (
                    "scenario",
                    format!("{} {}", r.scenario.name, r.scenario.hash),
                ),
                ("model", format!("{} {}", r.model.name, r.model.sha256)),
                (
                    "sampling",
                    serde_json::to_string(&r.sampling).unwrap_or_default(),
                ),
            ]
        };
        shown(&RunIdentity::of(record))
            .into_iter()
            .zip(shown(self))
            .find(|((_, found), (_, expected))| found != expected)
            .map(|((field, found), (_, expected))| (field, found, expected))
    }
}

/// Serde for a `u64` written as a decimal string. JSON readers that parse
/// numbers as float-64 (pandas, Hugging Face `datasets`, JavaScript) change
/// integers above 2^53, and session seeds are spread over all 64 bits.
/// Reading also accepts a plain JSON number, as files before 0.2 wrote.
pub mod u64_string {
    use serde::{de, Deserializer, Serializer};

    /// Write `v` as a decimal string.
    pub fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    /// Read a decimal string or a non-negative integer.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = u64;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a 64-bit unsigned integer as a decimal string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                v.parse()
                    .map_err(|_| E::custom(format!("`{v}` is not a 64-bit unsigned integer")))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::u64_string;

    #[derive(serde::Serialize, serde::Deserialize)]
    struct Seed(#[serde(with = "u64_string")] u64);

    #[test]
    fn seeds_above_2_pow_53_survive_a_float64_reader() {
        let seed = 18_446_744_073_709_551_557u64; // not representable in f64
        let json = serde_json::to_string(&Seed(seed)).unwrap();
        assert_eq!(json, "\"18446744073709551557\"");
        // A float-64 reader sees a string and keeps every digit.
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_str().unwrap().parse::<u64>().unwrap(), seed);
        // Written as a number, the same seed would not survive.
        assert_ne!((seed as f64) as u64, seed);
        // Old files with numbers still read.
        assert_eq!(serde_json::from_str::<Seed>("12").unwrap().0, 12);
        assert!(serde_json::from_str::<Seed>("\"x\"").is_err());
    }
}
