//! The words every stage shares: who speaks ([`Side`]) and the chat
//! messages ([`ChatMessage`]) prompts are made of and engines read.
//!
//! A leaf: it imports nothing from the crate, so prompt, backend and session
//! can all name these types without importing each other.

use serde::{Deserialize, Serialize};

/// Which side of a conversation a request generates for. Engines keep one
/// cache per (conversation, side) so each side's growing prompt is reused
/// from turn to turn.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    /// The simulated user.
    User,
    /// The system under test (assistant).
    Assistant,
}

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
