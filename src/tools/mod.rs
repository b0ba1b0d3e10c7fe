//! Jobs beside the pipeline: [`bench`] measures the loop against
//! llama.cpp's own ceiling, [`fit`] learns a scenario's turn policy from a
//! real corpus, and [`llama_server`] runs llama.cpp's server as a child
//! process for comparisons and tests. None of them is needed to simulate.

pub mod bench;
pub mod fit;
pub mod llama_server;
