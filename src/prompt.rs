//! Prompts: turn latents and conversation history into chat messages for
//! each side.
//!
//! The simulator sees the conversation with roles swapped (the assistant's
//! messages come to it as `user` messages and it writes the `assistant`
//! part) and its persona as the system message. Each turn's instruction is
//! appended to the incoming message it answers, and stays there in later
//! prompts: the prompt only ever grows at its end, so an engine reuses the
//! whole previous prompt and evaluates just the new messages. Removing the
//! previous instruction instead would change the prompt in the middle and
//! force the engine to re-read everything after it, every turn (measured:
//! about three prompt tokens computed per generated token). An instruction
//! still steers one turn: it sits on the message that turn answers. The
//! assistant's per-turn note (retrieved candidates) is kept the same way.
//!
//! In transcript prompting (`user_prompt = "transcript"`) the simulator sees
//! no chat at all: real dialogues from the pool as labelled lines, then the
//! session's profile line and its own conversation, ending on an open
//! seeker line. That prompt too only grows at its end. The built-in
//! recommender can be prompted the same way (`assistant_prompt =
//! "transcript"`), on its own open line.

use serde_json::json;

use crate::chat::{ChatMessage, ChatRole, Side};
use crate::corpus::pool::PoolDialogue;
use crate::corpus::{Speaker, Turn};
use crate::latent::{primary_intent, SessionLatents, TurnLatents};
use crate::scenario::catalog::CatalogItem;
use crate::scenario::{template, Scenario, ScenarioError, TranscriptSpec};

/// A message of the conversation as it happened.
pub struct HistoryTurn<'a> {
    /// Who said it.
    pub side: Side,
    /// What was said.
    pub text: &'a str,
    /// The note its speaker saw on the message before it (the turn
    /// instruction for a user turn, the candidates for an assistant turn).
    pub note: Option<&'a str>,
    /// A user turn's value of the transcript's tag variable.
    pub tag: Option<&'a str>,
}

fn scenario_ctx(s: &Scenario) -> serde_json::Value {
    json!({ "name": s.name, "description": s.description })
}

fn append_note(base: &str, note: &str) -> String {
    let note = note.trim();
    if note.is_empty() {
        base.to_string()
    } else if base.is_empty() {
        note.to_string()
    } else {
        format!("{base}\n\n{note}")
    }
}

/// What the session-level templates see: the scenario and the session's
/// values and their prose.
fn session_ctx(scenario: &Scenario, latents: &SessionLatents) -> serde_json::Value {
    json!({
        "scenario": scenario_ctx(scenario),
        "session": latents.values,
        "text": latents.text,
    })
}

/// The user simulator's persona (its system message).
pub fn user_system_prompt(
    scenario: &Scenario,
    latents: &SessionLatents,
) -> Result<String, ScenarioError> {
    let ctx = session_ctx(scenario, latents);
    Ok(scenario
        .render(template::USER_SYSTEM, &ctx)?
        .trim()
        .to_string())
}

/// The session's profile line of a transcript prompt (empty when the
/// scenario has no `user_profile` template).
pub fn user_profile(
    scenario: &Scenario,
    latents: &SessionLatents,
) -> Result<String, ScenarioError> {
    let ctx = session_ctx(scenario, latents);
    Ok(one_line(&scenario.render(template::USER_PROFILE, &ctx)?))
}

/// Text on one line: a line break inside a turn would end it early (the
/// transcript's turns end at a newline).
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `Seeker:`, `Seeker (rejects):`, or for a seeker's last line with a
/// `closing_tag`, `Seeker (small talk, says goodbye):` / `Seeker (says
/// goodbye):`.
fn seeker_line_label(spec: &TranscriptSpec, tag: Option<&str>, last: bool) -> String {
    let shown = tag.map(|t| spec.tags.get(t).map_or(t, String::as_str));
    let closing = spec.closing_tag.as_deref().filter(|_| last).map(str::trim);
    match (shown, closing) {
        (Some(t), Some(c)) => format!("{} ({t}, {c}):", spec.seeker_label.trim()),
        (Some(t), None) | (None, Some(t)) => format!("{} ({t}):", spec.seeker_label.trim()),
        (None, None) => format!("{}:", spec.seeker_label.trim()),
    }
}

/// `label text` as one transcript line.
fn push_line(out: &mut String, label: &str, text: &str) {
    out.push_str(label);
    out.push(' ');
    out.push_str(&one_line(text));
    out.push('\n');
}

/// The header, then each real dialogue as labelled lines and a blank line:
/// `label` gives a turn's label, told whether it is its dialogue's last
/// seeker line.
fn real_dialogues(
    spec: &TranscriptSpec,
    dialogues: &[&PoolDialogue],
    label: impl Fn(&Turn, bool) -> String,
) -> String {
    let mut out = String::new();
    if !spec.header.trim().is_empty() {
        out.push_str(spec.header.trim());
        out.push_str("\n\n");
    }
    for d in dialogues {
        let last_seeker = d.turns.iter().rposition(|t| t.speaker == Speaker::Seeker);
        for (i, t) in d.turns.iter().enumerate() {
            push_line(&mut out, &label(t, Some(i) == last_seeker), &t.text);
        }
        out.push('\n');
    }
    out
}

/// The session's transcript prefix: the header, the real dialogues (seeker
/// lines tagged with their labels' value of the tag variable, when the
/// scenario declares one) and the session's profile line. Sessions that
/// show the same dialogues share all of it up to the profile, so an engine
/// computes that part once.
pub fn transcript_prefix(
    scenario: &Scenario,
    dialogues: &[&PoolDialogue],
    profile: &str,
) -> String {
    let spec = &scenario.transcript;
    let tag_values = spec
        .tag
        .as_ref()
        .and_then(|t| scenario.turn_var(t))
        .map(|v| v.values.as_slice());
    // Marked only when the session's own last line can be.
    let closing = scenario.conversation.closing_turn;
    let mut out = real_dialogues(spec, dialogues, |t, last_seeker| match t.speaker {
        Speaker::Seeker => seeker_line_label(
            spec,
            tag_values.and_then(|values| primary_intent(&t.labels, values)),
            last_seeker && closing,
        ),
        Speaker::Recommender => format!("{}:", spec.system_label.trim()),
    });
    if !profile.is_empty() {
        out.push_str(profile);
        out.push('\n');
    }
    out
}

/// The simulator's next turn as a transcript: `prefix` (from
/// [`transcript_prefix`]), the conversation so far as labelled lines, and
/// the open seeker line, tagged with the turn's value of the tag variable
/// (and the `closing_tag` when the seeker leaves after it, `last`).
pub fn user_transcript(
    scenario: &Scenario,
    prefix: &str,
    history: &[HistoryTurn<'_>],
    turn: &TurnLatents,
    last: bool,
) -> String {
    let spec = &scenario.transcript;
    let tag = spec.tag.as_ref().and_then(|t| turn.values.get(t));
    let mut out = prefix.to_string();
    for t in history {
        let label = match t.side {
            Side::User => seeker_line_label(spec, t.tag, false),
            Side::Assistant => format!("{}:", spec.system_label.trim()),
        };
        push_line(&mut out, &label, t.text);
    }
    // No space after the colon: the model's first token carries it, as in
    // every line above.
    out.push_str(&seeker_line_label(spec, tag.map(String::as_str), last));
    if let Some(word) = turn.first_word() {
        // The drawn first word (`[first_word]`): the model continues it.
        out.push(' ');
        out.push_str(word);
    }
    out
}

/// `Recommender:`, or `Recommender (suggests Heat, Alien):` for a line
/// that names movies.
fn system_line_label(spec: &TranscriptSpec, titles: &[String]) -> String {
    if titles.is_empty() {
        format!("{}:", spec.system_label.trim())
    } else {
        format!(
            "{} ({} {}):",
            spec.system_label.trim(),
            spec.suggest_tag.trim(),
            titles.join(", ")
        )
    }
}

/// The built-in recommender's transcript prefix (`assistant_prompt =
/// "transcript"`): the header and the real dialogues the seeker sees,
/// recommender lines tagged with the movies their mention markup names,
/// seeker lines untagged (a recommender never learns a seeker's intents)
/// and no profile line (nor any of the session's latents).
pub fn assistant_transcript_prefix(scenario: &Scenario, dialogues: &[&PoolDialogue]) -> String {
    let spec = &scenario.transcript;
    real_dialogues(spec, dialogues, |t, _| match t.speaker {
        Speaker::Seeker => format!("{}:", spec.seeker_label.trim()),
        Speaker::Recommender => system_line_label(spec, &t.mentions),
    })
}

/// The built-in recommender's next line as a transcript: `prefix` (from
/// [`assistant_transcript_prefix`]), the conversation so far (its own lines
/// tagged with the titles `titles_in` finds in them, as the real lines are
/// tagged with theirs), and its open line, tagged with `suggest` when it is
/// to offer those movies.
pub fn assistant_transcript(
    scenario: &Scenario,
    prefix: &str,
    history: &[HistoryTurn<'_>],
    suggest: &[String],
    titles_in: &dyn Fn(&str) -> Vec<String>,
) -> String {
    let spec = &scenario.transcript;
    let mut out = prefix.to_string();
    for t in history {
        let label = match t.side {
            Side::User => format!("{}:", spec.seeker_label.trim()),
            Side::Assistant => system_line_label(spec, &titles_in(t.text)),
        };
        push_line(&mut out, &label, t.text);
    }
    out.push_str(&system_line_label(spec, suggest));
    out
}

/// Messages for the simulator's next turn, and the instruction added for
/// it (the caller keeps it with the turn so later prompts repeat it).
/// `exemplars`: real seeker turns of the turn's intent, for the `user_turn`
/// template; `last_turn`: the seeker leaves after this turn
/// (`conversation.closing_turn`).
pub fn user_messages(
    scenario: &Scenario,
    system_prompt: &str,
    latents: &SessionLatents,
    history: &[HistoryTurn<'_>],
    (turn, exemplars): (&TurnLatents, &[&str]),
    (turn_index, last_turn): (u32, bool),
) -> Result<(Vec<ChatMessage>, String), ScenarioError> {
    let last_assistant = history
        .iter()
        .rev()
        .find(|t| t.side == Side::Assistant)
        .map(|t| t.text);
    let instruction = scenario.render(
        template::USER_TURN,
        &json!({
            "scenario": scenario_ctx(scenario),
            "session": latents.values,
            "text": latents.text,
            "turn": turn.values,
            "turn_text": turn.text,
            "turn_index": turn_index,
            "last_turn": last_turn,
            "assistant_message": last_assistant,
            "exemplars": exemplars,
        }),
    )?;
    let mut msgs = vec![ChatMessage::new(ChatRole::System, system_prompt)];
    if history.first().is_none_or(|t| t.side == Side::User) {
        msgs.push(ChatMessage::new(
            ChatRole::User,
            scenario.conversation.user_opening_cue.clone(),
        ));
    }
    for t in history {
        let role = match t.side {
            Side::User => ChatRole::Assistant,
            Side::Assistant => ChatRole::User,
        };
        if let (Side::User, Some(note), Some(prev)) = (t.side, t.note, msgs.last_mut()) {
            prev.content = append_note(&prev.content, note);
        }
        msgs.push(ChatMessage::new(role, t.text));
    }
    let instruction = instruction.trim().to_string();
    if let Some(last) = msgs.last_mut() {
        last.content = append_note(&last.content, &instruction);
    }
    Ok((msgs, instruction))
}

/// Messages for the assistant's next reply, with this turn's candidates, and
/// the note added for it (kept with the reply, as for user turns).
pub fn assistant_messages(
    scenario: &Scenario,
    history: &[HistoryTurn<'_>],
    candidates: &[&CatalogItem],
    turn_index: u32,
) -> Result<(Vec<ChatMessage>, String), ScenarioError> {
    let sc = scenario_ctx(scenario);
    let system = scenario.render(template::ASSISTANT_SYSTEM, &json!({ "scenario": sc }))?;
    let last_user = history
        .iter()
        .rev()
        .find(|t| t.side == Side::User)
        .map(|t| t.text)
        .unwrap_or_default();
    let cands: Vec<serde_json::Value> = candidates
        .iter()
        .map(|c| json!({"id": c.id, "title": c.title, "year": c.year, "genres": c.genres}))
        .collect();
    let note = scenario.render(
        template::ASSISTANT_TURN,
        &json!({
            "scenario": sc,
            "user_message": last_user,
            "candidates": cands,
            "turn_index": turn_index,
        }),
    )?;
    let mut msgs = vec![ChatMessage::new(ChatRole::System, system.trim())];
    // A conversation the system opens starts, for a chat template, with a
    // user message: the cue, before the opening and every later turn.
    let conv = &scenario.conversation;
    if conv.system_opens > 0.0 && history.first().is_none_or(|t| t.side == Side::Assistant) {
        msgs.push(ChatMessage::new(
            ChatRole::User,
            conv.system_opening_cue.trim(),
        ));
    }
    for t in history {
        let role = match t.side {
            Side::User => ChatRole::User,
            Side::Assistant => ChatRole::Assistant,
        };
        if let (Side::Assistant, Some(note), Some(prev)) = (t.side, t.note, msgs.last_mut()) {
            if prev.role == ChatRole::User {
                prev.content = append_note(&prev.content, note);
            }
        }
        msgs.push(ChatMessage::new(role, t.text));
    }
    let note = note.trim().to_string();
    if let Some(last) = msgs.last_mut().filter(|m| m.role == ChatRole::User) {
        last.content = append_note(&last.content, &note);
    }
    Ok((msgs, note))
}
