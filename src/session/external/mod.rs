//! Systems under test that answer later ([`SystemAction::Pending`]): an
//! external system over HTTP ([`http`]) or a child process on stdin/stdout
//! ([`stdio`]), both speaking the JSON protocol defined here, and the
//! built-in recommender on an engine of its own ([`BackendSystem`]).
//!
//! The protocol. One request per system turn:
//!
//! ```json
//! {"id":"movies-0-000003","session_index":3,"turn":1,"seed":"1234",
//!  "catalog":"catalog.csv",
//!  "messages":[{"role":"assistant","content":"Hi! What are you in the mood for?"},
//!              {"role":"user","content":"something funny"}],
//!  "latents":{...}}
//! ```
//!
//! `id` is the conversation's record id, `turn` how many answers the
//! system gave in it before, `seed` a decimal string a stochastic system
//! may seed itself with, `messages` everything said so far (`user` is the
//! simulated user, `assistant` the system), `catalog` the file name of the
//! scenario's catalog. `latents` (the session's latent values) is present
//! only with `--system-sees-latents`. The answer:
//!
//! ```json
//! {"id":"movies-0-000003","text":"Try Groundhog Day (1993).","items":["m031"],"end":false}
//! ```
//!
//! `text` is required; `items` (catalog ids recommended; absent: titles are
//! spotted in the text) and `end` (the system ends the conversation) are
//! optional; `id` is required on stdio, where answers come back in any
//! order, and checked when present over HTTP.
//!
//! Invariant: an answer is matched to its conversation by id, never by
//! arrival order, so the records are a function of what each conversation
//! sent whatever the interleaving; anything that breaks the protocol is one
//! error line naming the system (its URL or command).

pub mod http;
pub mod stdio;

use std::time::Duration;

use serde_json::{json, Value};

use crate::backend::http_pool::excerpt;
use crate::backend::{Backend, BackendError};
use crate::chat::Side;
use crate::session::system::{
    LlmRecommender, System, SystemAction, SystemError, SystemReply, SystemTurn,
};

/// What every request of a run shares.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Scenario name (the first part of a conversation id).
    pub scenario: String,
    /// Run seed (the second part).
    pub run_seed: u64,
    /// File name of the scenario's catalog.
    pub catalog: Option<String>,
    /// Send the session's latents.
    pub sees_latents: bool,
}

impl RequestContext {
    /// The record id of conversation `index`.
    pub fn id(&self, index: u64) -> String {
        format!("{}-{}-{index:06}", self.scenario, self.run_seed)
    }

    /// The request body of one system turn.
    pub fn request(&self, turn: &SystemTurn<'_>) -> Value {
        let messages: Vec<Value> = turn
            .history
            .iter()
            .map(|t| {
                json!({
                    "role": match t.side { Side::User => "user", Side::Assistant => "assistant" },
                    "content": t.text,
                })
            })
            .collect();
        let mut body = json!({
            "id": self.id(turn.conversation),
            "session_index": turn.conversation,
            "turn": turn.reply_index,
            "seed": turn.seed.to_string(),
            "catalog": self.catalog,
            "messages": messages,
        });
        if self.sees_latents {
            body["latents"] = json!(turn.latents);
        }
        body
    }
}

/// An answer → [`SystemReply`]; `Err` is what is wrong with it, to be
/// prefixed with the system's name.
pub fn parse_answer(v: &Value) -> Result<SystemReply, String> {
    let bad = |what: &str| format!("expected {what}, got {}", excerpt(&v.to_string()));
    if !v.is_object() {
        return Err(bad("a JSON object"));
    }
    let text = v["text"]
        .as_str()
        .ok_or_else(|| bad("a string \"text\""))?
        .trim()
        .to_string();
    let items = match &v["items"] {
        Value::Null => None,
        Value::Array(a) => Some(
            a.iter()
                .map(|x| match x {
                    Value::String(s) => Ok(s.clone()),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(bad("\"items\" as an array of catalog ids")),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        _ => return Err(bad("\"items\" as an array of catalog ids")),
    };
    let end = match &v["end"] {
        Value::Null => false,
        Value::Bool(b) => *b,
        _ => return Err(bad("\"end\" as true or false")),
    };
    Ok(SystemReply {
        text,
        items,
        end,
        tokens: 0,
    })
}

/// The built-in recommender on an engine of its own (a second model, or an
/// OpenAI-compatible server): its requests go to that engine instead of the
/// users' batch, and its answers are collected by [`System::poll`].
pub struct BackendSystem<'a> {
    inner: LlmRecommender<'a>,
    backend: Box<dyn Backend>,
    name: String,
}

impl<'a> BackendSystem<'a> {
    /// The recommender `inner` generating on `backend`.
    pub fn new(inner: LlmRecommender<'a>, backend: Box<dyn Backend>) -> Self {
        let name = format!("llm-recommender@{}", backend.info().model);
        BackendSystem {
            inner,
            backend,
            name,
        }
    }
}

fn backend_error(e: BackendError) -> SystemError {
    if e.is_input() {
        SystemError::Config(e.to_string())
    } else {
        SystemError::External(e.to_string())
    }
}

impl System for BackendSystem<'_> {
    fn name(&self) -> &str {
        &self.name
    }

    fn opens(&self) -> bool {
        self.inner.opens()
    }

    fn respond(&mut self, turn: &SystemTurn<'_>) -> Result<SystemAction, SystemError> {
        match self.inner.respond(turn)? {
            SystemAction::Generate(req) => {
                self.backend.submit(req).map_err(backend_error)?;
                Ok(SystemAction::Pending)
            }
            other => Ok(other),
        }
    }

    fn poll(&mut self, _wait: Duration) -> Result<Vec<(u64, SystemReply)>, SystemError> {
        if self.backend.in_flight() == 0 {
            return Ok(Vec::new());
        }
        Ok(self
            .backend
            .step()
            .map_err(backend_error)?
            .into_iter()
            .map(|g| {
                (
                    g.conversation,
                    SystemReply {
                        text: g.text,
                        items: None,
                        end: false,
                        tokens: g.completion_tokens,
                    },
                )
            })
            .collect())
    }

    fn pending(&self) -> usize {
        self.backend.in_flight()
    }

    fn release(&mut self, conversation: u64) {
        self.backend.release(conversation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_parse_and_bad_ones_say_what_was_expected() {
        let r =
            parse_answer(&json!({"id":"x","text":" Try Heat. ","items":["m012", 7],"end":true}))
                .unwrap();
        assert_eq!(r.text, "Try Heat.");
        assert_eq!(r.items, Some(vec!["m012".to_string(), "7".to_string()]));
        assert!(r.end);
        let r = parse_answer(&json!({"text":"hi"})).unwrap();
        assert_eq!((r.items, r.end), (None, false));
        for (bad, want) in [
            (json!([1]), "a JSON object"),
            (json!({"txt":"hi"}), "\"text\""),
            (json!({"text":"hi","items":"m1"}), "\"items\""),
            (json!({"text":"hi","end":"yes"}), "\"end\""),
        ] {
            let e = parse_answer(&bad).unwrap_err();
            assert!(e.contains(want), "{e}");
        }
    }
}
