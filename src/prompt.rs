//! Prompts: turn latents and conversation history into chat messages for
//! each side.
//!
//! The simulator sees the conversation with roles swapped (the assistant's
//! messages come to it as `user` messages and it writes the `assistant`
//! part), its persona as the system message, and the turn instruction
//! appended to the latest incoming message only. Instructions of earlier
//! turns are not kept, so a turn latent steers exactly one turn, and the
//! history stays a stable prefix that engines can reuse from turn to turn.

use serde::Serialize;
use serde_json::json;

use crate::backend::Side;
use crate::catalog::CatalogItem;
use crate::latent::{SessionLatents, TurnLatents};
use crate::scenario::{template, Scenario, ScenarioError};

/// Role of a chat message, as chat templates name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    /// Instructions.
    System,
    /// The other party.
    User,
    /// The generating party.
    Assistant,
}

impl ChatRole {
    /// The role's name in chat templates.
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::System => "system",
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// One chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// Role.
    pub role: ChatRole,
    /// Text.
    pub content: String,
}

impl ChatMessage {
    /// A message.
    pub fn new(role: ChatRole, content: impl Into<String>) -> Self {
        ChatMessage {
            role,
            content: content.into(),
        }
    }
}

/// A message of the conversation as it happened.
pub struct HistoryTurn<'a> {
    /// Who said it.
    pub side: Side,
    /// What was said.
    pub text: &'a str,
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

/// Messages for the simulator's next turn.
pub fn user_messages(
    scenario: &Scenario,
    system_prompt: &str,
    latents: &SessionLatents,
    history: &[HistoryTurn<'_>],
    turn: &TurnLatents,
    turn_index: u32,
) -> Result<Vec<ChatMessage>, ScenarioError> {
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
        msgs.push(ChatMessage::new(role, t.text));
    }
    if let Some(last) = msgs.last_mut() {
        last.content = append_note(&last.content, &instruction);
    }
    Ok(msgs)
}

/// Messages for the assistant's next reply, with this turn's candidates.
pub fn assistant_messages(
    scenario: &Scenario,
    history: &[HistoryTurn<'_>],
    candidates: &[&CatalogItem],
    turn_index: u32,
) -> Result<Vec<ChatMessage>, ScenarioError> {
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
        msgs.push(ChatMessage::new(role, t.text));
    }
    if let Some(last) = msgs.last_mut().filter(|m| m.role == ChatRole::User) {
        last.content = append_note(&last.content, &note);
    }
    Ok(msgs)
}
