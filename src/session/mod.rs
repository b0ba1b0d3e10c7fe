//! One conversation: [`conversation`] is its state machine (whose turn,
//! which latents, when it ends), [`guard`] the role guard on its seeker
//! turns, [`style`] the seeded typing-style rewrite of them, [`best_of`]
//! the choice among a turn's candidates by a realism critic, [`system`]
//! the other side it talks to, [`external`] the systems under test that
//! answer later (HTTP, stdio, the recommender on its own engine),
//! [`replay`] the real dialogues a session can follow instead, and
//! [`record`] what a finished session writes.
//!
//! Nothing here schedules or decodes: a session only turns generations into
//! its next request, so it can be driven by any [`crate::backend::Backend`].

pub mod best_of;
pub mod conversation;
pub mod external;
pub mod guard;
pub mod record;
pub mod replay;
pub mod style;
pub mod system;
