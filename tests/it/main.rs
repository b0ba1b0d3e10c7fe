//! The integration tests, one binary (one link against llama.cpp and
//! candle). Tests on the real model or the embedding model take
//! [`util::heavy`] and so run one at a time (two llama.cpp contexts on two
//! cores slow each other far more than twice); the rest run in parallel.

mod bad_input;
mod bench;
mod best_of;
mod embed;
mod eval;
mod fit;
mod guard;
mod judge;
mod llama_server;
mod models_gemma;
mod openai;
mod packed;
mod replay;
mod scripted;
mod shard_resume;
mod simulate;
mod system;
mod transcript;
mod util;
mod webdriver;
