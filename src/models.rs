//! stub
use std::path::{Path, PathBuf};
#[derive(Debug, thiserror::Error)] pub enum ModelError { #[error("x")] X }
#[derive(Debug, Clone, serde::Serialize)] pub enum ModelKind { Generator }
pub struct ModelEntry { pub name: String, pub description: String, pub kind: ModelKind, pub sha256: Option<String>, pub chat_template: Option<String> }
pub struct Registry { pub default: String, pub models: Vec<ModelEntry> }
impl Registry { pub fn load(_p: &Path) -> Result<Registry, ModelError> { Err(ModelError::X) } pub fn builtin() -> Result<Registry, ModelError> { Err(ModelError::X) } pub fn get(&self, _n: &str) -> Result<&ModelEntry, ModelError> { Err(ModelError::X) } }
#[derive(Default)] pub struct FetchOptions { pub progress: bool, pub offline: bool }
pub fn resolve(_e: &ModelEntry, _o: &FetchOptions) -> Result<PathBuf, ModelError> { Err(ModelError::X) }
pub fn cached_path(_e: &ModelEntry) -> Option<PathBuf> { None }
pub fn local_file_check(_p: &Path) -> Result<(), ModelError> { Ok(()) }
pub fn file_sha256(_p: &Path) -> Result<String, ModelError> { Ok(String::new()) }
