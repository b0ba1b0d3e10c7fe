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

use serde_json::json;

use crate::chat::{ChatMessage, ChatRole, Side};
use crate::latent::{SessionLatents, TurnLatents};
use crate::scenario::catalog::CatalogItem;
use crate::scenario::{template, Scenario, ScenarioError};

/// A message of the conversation as it happened.
pub struct HistoryTurn<'a> {
    /// Who said it.
    pub side: Side,
    /// What was said.
    pub text: &'a str,
    /// The note its speaker saw on the message before it (the turn
    /// instruction for a user turn, the candidates for an assistant turn).
    pub note: Option<&'a str>,
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

/// The user simulator's persona (its system message).
pub fn user_system_prompt(
    scenario: &Scenario,
    latents: &SessionLatents,
) -> Result<String, ScenarioError> {
    let ctx = json!({
        "scenario": scenario_ctx(scenario),
        "session": latents.values,
        "text": latents.text,
    });
    Ok(scenario
        .render(template::USER_SYSTEM, &ctx)?
        .trim()
        .to_string())
}

/// Messages for the simulator's next turn, and the instruction added for
/// it (the caller keeps it with the turn so later prompts repeat it).
pub fn user_messages(
    scenario: &Scenario,
    system_prompt: &str,
    latents: &SessionLatents,
    history: &[HistoryTurn<'_>],
    turn: &TurnLatents,
    turn_index: u32,
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
            "assistant_message": last_assistant,
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
