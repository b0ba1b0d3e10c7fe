//! stub
use std::path::Path;
#[derive(Debug, thiserror::Error)]
pub enum CatalogError { #[error("x")] X }
#[derive(Debug, Clone)]
pub struct CatalogItem { pub id: String, pub title: String, pub year: Option<u16>, pub genres: Vec<String>, pub keywords: Vec<String> }
pub struct Catalog { items: Vec<CatalogItem> }
impl Catalog {
    pub fn load_csv(_p: &Path) -> Result<Catalog, CatalogError> { Err(CatalogError::X) }
    pub fn items(&self) -> &[CatalogItem] { &self.items }
    pub fn len(&self) -> usize { self.items.len() }
    pub fn is_empty(&self) -> bool { self.items.is_empty() }
    pub fn items_with_genre(&self, _g: &str) -> Vec<usize> { vec![] }
    pub fn retrieve(&self, _q: &str, _e: &[usize], _k: usize) -> Vec<usize> { vec![] }
    pub fn mentioned_items(&self, _t: &str) -> Vec<usize> { vec![] }
}
