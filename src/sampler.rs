//! stub
use serde::{Deserialize, Serialize};
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SamplingParams { pub temperature: f32, pub top_k: u32, pub top_p: f32, pub min_p: f32, pub repeat_penalty: f32, pub repeat_last_n: u32, pub max_tokens: u32, pub stop: Vec<String> }
impl Default for SamplingParams { fn default() -> Self { SamplingParams { temperature: 0.8, top_k: 40, top_p: 0.95, min_p: 0.05, repeat_penalty: 1.1, repeat_last_n: 64, max_tokens: 96, stop: vec![] } } }
#[derive(Debug, thiserror::Error)] pub enum SamplingError { #[error("x")] X }
impl SamplingParams { pub fn validate(&self) -> Result<(), SamplingError> { Ok(()) } }
pub struct Sampler;
impl Sampler { pub fn new(_n: usize) -> Self { Sampler } pub fn sample(&mut self, l: &[f32], _p: &SamplingParams, _r: &[i32], _rng: &mut rand_chacha::ChaCha8Rng) -> i32 { l.iter().enumerate().max_by(|a,b| a.1.total_cmp(b.1)).map(|x| x.0 as i32).unwrap_or(0) } }
pub struct StopMatcher { t: String }
pub enum StopState { Continue, Stopped { visible_len: usize } }
impl StopMatcher { pub fn new(_s: &[String]) -> Self { StopMatcher { t: String::new() } } pub fn push(&mut self, p: &str) -> StopState { self.t.push_str(p); StopState::Continue } pub fn text(&self) -> &str { &self.t } }
