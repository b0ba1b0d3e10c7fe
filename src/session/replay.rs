//! Teacher-forced replay of real dialogues (`simulate --replay`).
//!
//! Each real dialogue becomes one session (session index = dialogue
//! position in the corpus): the real recommender's turns are the system's
//! replies ([`ReplaySystem`]), and before every real seeker turn the
//! simulator writes that turn from the real history up to it, steered by
//! the turn's real intent. The history never holds the simulator's own
//! earlier outputs, so every simulated turn can be compared with the real
//! turn it stands for, in the same context.
//!
//! Turns are [`Dialogue::turns`]: a speaker's consecutive utterances merged
//! (texts joined by a space, labels united in order), movie mentions in
//! ReDial's `@id <Title (year)>` form shown as plain titles. `eval` reads
//! real dialogues through the same function, so replayed and real
//! conversations align turn for turn.
//!
//! Conditional realism: for INSPIRED, the seeker's survey answers (files
//! beside `dialogs.tsv`) are recorded with the source, and the scenario's
//! `[[replay.inspired]]` maps can pin session variables from them, so the
//! simulated seeker of a session has the real seeker's age group.

use std::path::{Path, PathBuf};

use crate::corpus::{load_dialogues, CorpusError, CorpusKind, Dialogue, Speaker};
use crate::scenario::{Pins, Scenario};
use crate::session::record::{RealTurn, ReplaySource};
use crate::session::system::{System, SystemAction, SystemError, SystemTurn};

/// One real dialogue, ready to replay.
#[derive(Clone, Debug, PartialEq)]
pub struct ReplayScript {
    /// Where it comes from.
    pub source: ReplaySource,
    /// The recommender's words before the seeker's first turn.
    pub opening: Option<String>,
    /// The seeker's turns in order.
    pub seeker_turns: Vec<RealTurn>,
    /// `replies[i]`: the recommender's turn after seeker turn `i` (one
    /// fewer than the seeker turns when the dialogue ends on the seeker).
    pub replies: Vec<String>,
}

/// The dialogues of a replay file.
#[derive(Clone, Debug)]
pub struct Replay {
    /// File.
    pub path: PathBuf,
    /// Corpus.
    pub corpus: CorpusKind,
    /// One script per dialogue, in corpus order (IARD by numeric id,
    /// INSPIRED in file order).
    pub scripts: Vec<ReplayScript>,
}

/// Load an IARD `.json` or INSPIRED `.tsv` file for replay.
pub fn load_replay(path: &Path) -> Result<Replay, CorpusError> {
    let (corpus, dialogues) = load_dialogues(path)?;
    if dialogues.is_empty() {
        return Err(CorpusError::Format {
            path: path.to_path_buf(),
            message: "no dialogues to replay".into(),
        });
    }
    let scripts: Vec<ReplayScript> = dialogues.iter().map(|d| script(corpus, d)).collect();
    Ok(Replay {
        path: path.to_path_buf(),
        corpus,
        scripts,
    })
}

/// The pins of a replayed session: `pins` (the command line's, which win)
/// plus the session variables the scenario takes from this seeker's survey.
pub fn session_pins(scenario: &Scenario, script: &ReplayScript, pins: &Pins) -> Pins {
    let mut out = pins.clone();
    if script.source.corpus != CorpusKind::Inspired {
        return out;
    }
    for m in &scenario.replay_inspired {
        let value = script
            .source
            .seeker
            .get(&m.survey)
            .and_then(|a| m.value_for(a));
        if let Some(value) = value {
            out.session
                .entry(m.session.clone())
                .or_insert_with(|| value.to_string());
        }
    }
    out
}

/// The replay script of one dialogue: its turns ([`Dialogue::turns`]),
/// the recommender's before the first seeker turn as the opening.
pub fn script(corpus: CorpusKind, d: &Dialogue) -> ReplayScript {
    let turns = d.turns();
    let mut opening = None;
    let mut seeker_turns = Vec::new();
    let mut replies = Vec::new();
    for t in turns {
        match t.speaker {
            Speaker::Seeker => seeker_turns.push(RealTurn {
                text: t.text,
                intents: t.labels,
            }),
            Speaker::Recommender if seeker_turns.is_empty() => opening = Some(t.text),
            Speaker::Recommender => replies.push(t.text),
        }
    }
    ReplayScript {
        source: ReplaySource {
            corpus,
            dialogue_id: d.id.clone(),
            seeker: d.profile.clone(),
        },
        opening,
        seeker_turns,
        replies,
    }
}

/// The real recommender: answers with the real reply that followed the
/// seeker's turn.
pub struct ReplaySystem<'a> {
    replay: &'a Replay,
}

impl<'a> ReplaySystem<'a> {
    /// The recommender of `replay`'s dialogues, session index = dialogue
    /// position.
    pub fn new(replay: &'a Replay) -> Self {
        ReplaySystem { replay }
    }
}

impl System for ReplaySystem<'_> {
    fn name(&self) -> &str {
        match self.replay.corpus {
            CorpusKind::Iard => "replay-iard",
            CorpusKind::Inspired => "replay-inspired",
        }
    }

    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError> {
        usize::try_from(turn.conversation)
            .ok()
            .and_then(|i| self.replay.scripts.get(i))
            .and_then(|s| s.replies.get(turn.reply_index as usize))
            .map(|text| SystemAction::Reply(text.clone()))
            .ok_or(SystemError::NoReplay {
                conversation: turn.conversation,
                reply_index: turn.reply_index,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::corpus::Utterance;
    use crate::latent::primary_intent;

    #[test]
    fn inspired_scenario_takes_each_seekers_survey_profile() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let scenario = Scenario::load(&root.join("prompts/inspired")).expect("inspired scenario");
        let replay = load_replay(&root.join("../shared/data/inspired/dialogs.tsv"))
            .expect("INSPIRED dialogues");
        // The expected values, written out independently of the scenario file.
        let age = |a: &str| match a {
            "12 or younger" | "12 - 17" | "18 - 24" => "18-24",
            "25 - 34" => "25-34",
            "35 - 44" => "35-44",
            "45 - 54" => "45-54",
            "55 - 74" | "75 or older" => "55+",
            _ => "",
        };
        let traits = [
            ("Extrovert", "extraversion"),
            ("Agreeable", "agreeableness"),
            ("Conscientious", "conscientiousness"),
            ("Neurotic", "neuroticism"),
            ("Open", "openness"),
        ];
        let (mut with_survey, mut pinned) = (0, 0);
        for s in &replay.scripts {
            let pins = session_pins(&scenario, s, &Pins::default());
            let seeker = &s.source.seeker;
            if seeker.is_empty() {
                assert!(pins.session.is_empty());
                continue;
            }
            with_survey += 1;
            if let Some(a) = seeker.get("age_group").and_then(|v| v.as_str()) {
                if !age(a).is_empty() {
                    assert_eq!(
                        pins.session.get("age_group").map(String::as_str),
                        Some(age(a))
                    );
                }
            }
            if let Some(g) = seeker.get("gender").and_then(|v| v.as_str()) {
                if ["Female", "Male", "Other"].contains(&g) {
                    let want = g.to_lowercase();
                    assert_eq!(pins.session.get("gender"), Some(&want));
                }
            }
            for (field, var) in traits {
                if let Some(x) = seeker.get(field).and_then(|v| v.as_f64()) {
                    let want = if x < 3.0 { "low" } else { "high" };
                    assert_eq!(
                        pins.session.get(var).map(String::as_str),
                        Some(want),
                        "{field} {x}"
                    );
                    pinned += 1;
                }
            }
        }
        assert!(
            with_survey >= 80,
            "most INSPIRED dialogues have a survey: {with_survey}"
        );
        assert!(pinned >= 5 * 80, "Big-Five pinned {pinned} times");
        // --set wins over the survey.
        let s = replay
            .scripts
            .iter()
            .find(|s| s.source.seeker.contains_key("gender"))
            .expect("a survey");
        let set = Pins::parse(&["session.gender=other".to_string()], &scenario).expect("pin");
        assert_eq!(
            session_pins(&scenario, s, &set)
                .session
                .get("gender")
                .map(String::as_str),
            Some("other")
        );
    }

    #[test]
    fn consecutive_utterances_merge_and_mentions_render() {
        let d = Dialogue {
            id: "7".into(),
            utterances: vec![
                Utterance::new(Speaker::Recommender, "Hi!", &["OTH"]),
                Utterance::new(Speaker::Recommender, "What do you like?", &["REQ"]),
                Utterance::new(Speaker::Seeker, "I liked @123 <Alien  (1979)> .", &["PRO"]),
                Utterance::new(Speaker::Seeker, "Anything scary?", &["IQU", "PRO"]),
                Utterance::new(Speaker::Recommender, "Try @9 <It (2017)>", &["REC-S"]),
                Utterance::new(Speaker::Seeker, "Seen it", &["SEE"]),
            ],
            ..Dialogue::default()
        };
        let s = script(CorpusKind::Iard, &d);
        assert_eq!(s.opening.as_deref(), Some("Hi! What do you like?"));
        assert_eq!(s.seeker_turns.len(), 2);
        assert_eq!(s.seeker_turns[0].text, "I liked Alien . Anything scary?");
        assert_eq!(s.seeker_turns[0].intents, ["PRO", "IQU"]);
        assert_eq!(s.replies, ["Try It"]);
        assert_eq!(s.source.dialogue_id, "7");
    }

    /// Teacher forcing without a model: the next prompt shows the real
    /// seeker text, never the generated one, and extends the previous
    /// prompt (so engines reuse its KV).
    #[test]
    fn prompts_show_the_real_history_and_only_grow() {
        use crate::backend::{FinishReason, Generation};
        use crate::chat::Side;
        use crate::latent::{draw_session, TurnPlanner};
        use crate::rng::{stream_rng, Stream};
        use crate::scenario::{Pins, Scenario};
        use crate::session::conversation::{Conversation, Next};

        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies");
        let scenario = Scenario::load(&dir).expect("movies scenario");
        let catalog =
            crate::scenario::catalog::Catalog::load_csv(&dir.join("catalog.csv")).expect("catalog");
        let pins = Pins::default();
        let d = Dialogue {
            id: "1".into(),
            utterances: vec![
                Utterance::new(Speaker::Recommender, "What do you like?", &["REQ"]),
                Utterance::new(Speaker::Seeker, "REAL-ONE", &["OTH", "PRO"]),
                Utterance::new(Speaker::Recommender, "REPLY-ONE", &["REC-S"]),
                Utterance::new(Speaker::Seeker, "REAL-TWO", &["REJ"]),
            ],
            ..Dialogue::default()
        };
        let replay = Replay {
            path: PathBuf::from("x.json"),
            corpus: CorpusKind::Iard,
            scripts: vec![script(CorpusKind::Iard, &d)],
        };
        let mut system = ReplaySystem::new(&replay);
        let latents = draw_session(
            &scenario,
            Some(&catalog),
            &pins,
            &mut stream_rng(1, Stream::SessionLatents),
        )
        .expect("latents");
        let mut conv = Conversation::new(
            &scenario,
            Some(&catalog),
            TurnPlanner::new(&scenario, &pins),
            0,
            1,
            latents,
            scenario.sampling.user.clone(),
        )
        .expect("conversation")
        .with_replay(&replay.scripts[0]);
        let gen = |text: &str| Generation {
            conversation: 0,
            side: Side::User,
            text: text.into(),
            prompt_tokens: 0,
            reused_prompt_tokens: 0,
            completion_tokens: 3,
            finish: FinishReason::Stop,
            candidate: 0,
        };
        let Next::Generate(first) = conv.user_turn().expect("turn") else {
            panic!("expected a generation")
        };
        let first = first.prompt.messages().expect("a chat prompt");
        assert!(first
            .iter()
            .any(|m| m.content.contains("What do you like?")));
        let Next::Generate(second) = conv
            .on_generation(gen("GEN-ONE"), &mut system)
            .expect("next")
        else {
            panic!("expected a second generation")
        };
        let second = second.prompt.messages().expect("a chat prompt");
        let all: String = second.iter().map(|m| m.content.as_str()).collect();
        assert!(
            all.contains("REAL-ONE") && all.contains("REPLY-ONE"),
            "{all}"
        );
        assert!(
            !all.contains("GEN-ONE"),
            "the generated turn leaked into the history"
        );
        assert_eq!(
            &second[..first.len()],
            first,
            "the prompt only grows at its end"
        );
        let Next::Done(end) = conv
            .on_generation(gen("GEN-TWO"), &mut system)
            .expect("end")
        else {
            panic!("the dialogue ends on the seeker")
        };
        assert_eq!(end, crate::session::record::EndReason::ReplayEnd);
    }

    #[test]
    fn replayed_turns_take_the_real_intent_unless_pinned() {
        use crate::latent::TurnPlanner;
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/movies");
        let scenario = Scenario::load(&dir).expect("movies scenario");
        let labels: Vec<String> = ["OTH", "IQU"].map(String::from).to_vec();
        let free = Pins::default();
        let t = TurnPlanner::new(&scenario, &free).replayed(&labels);
        assert_eq!(t.intent(), Some("IQU"));
        assert!(t.text.contains_key("intent"), "the instruction is rendered");
        let pinned = Pins::parse(&["turn.intent=REJ".to_string()], &scenario).expect("pin");
        let t = TurnPlanner::new(&scenario, &pinned).replayed(&labels);
        assert_eq!(t.intent(), Some("REJ"), "--set turn.intent wins");
        let t = TurnPlanner::new(&scenario, &free).replayed(&[]);
        assert_eq!(t.intent(), None, "no label, no intent");
    }

    #[test]
    fn primary_intent_passes_over_small_talk() {
        let declared: Vec<String> = ["IQU", "OTH", "REJ"].map(String::from).to_vec();
        let l = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(primary_intent(&l(&["OTH", "IQU"]), &declared), Some("IQU"));
        assert_eq!(primary_intent(&l(&["OTH"]), &declared), Some("OTH"));
        assert_eq!(primary_intent(&l(&["REJ", "IQU"]), &declared), Some("REJ"));
        assert_eq!(primary_intent(&l(&["XYZ", "REJ"]), &declared), Some("REJ"));
        assert_eq!(primary_intent(&l(&["XYZ"]), &declared), None);
        assert_eq!(primary_intent(&[], &declared), None);
    }
}
