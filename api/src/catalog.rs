//! The models this server offers, found by name or alias. Whether a model
//! is awake is the scheduler's business; the catalog only knows specs. A
//! node's catalog fills as its scheduler sends it specs.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use greenthread_core::{ModelSpec, ModelSpecError, validate_model_set};

/// One offered model.
#[derive(Debug)]
pub struct CatalogEntry {
    pub spec: ModelSpec,
    /// Unix seconds when the server started offering it (`created` in `/v1/models`).
    pub created: u64,
}

#[derive(Debug, Default)]
struct Index {
    models: Vec<Arc<CatalogEntry>>,
    by_id: HashMap<String, usize>,
}

/// Models by name, and every id (name or alias) to its model.
#[derive(Debug, Default)]
pub struct ModelCatalog {
    index: RwLock<Index>,
}

impl ModelCatalog {
    /// # Errors
    /// When two specs share a name or alias.
    pub fn new(specs: &[ModelSpec], created: u64) -> Result<Self, ModelSpecError> {
        validate_model_set(specs)?;
        let catalog = Self::default();
        for spec in specs {
            catalog.put(spec.clone(), created);
        }
        Ok(catalog)
    }

    /// Adds a model, or replaces the one of the same name.
    pub fn put(&self, spec: ModelSpec, created: u64) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let entry = Arc::new(CatalogEntry { spec, created });
        let position = index.models.iter().position(|m| m.spec.name == entry.spec.name);
        let slot = match position {
            Some(i) => {
                index.by_id.retain(|_, v| *v != i);
                index.models[i] = entry.clone();
                i
            }
            None => {
                index.models.push(entry.clone());
                index.models.len() - 1
            }
        };
        index.by_id.insert(entry.spec.name.to_string(), slot);
        for alias in &entry.spec.aliases {
            index.by_id.entry(alias.to_string()).or_insert(slot);
        }
    }

    /// Stops offering a model.
    pub fn remove(&self, name: &greenthread_core::ModelName) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let Some(i) = index.models.iter().position(|m| m.spec.name == *name) else { return };
        index.models.remove(i);
        let rebuilt: Vec<Arc<CatalogEntry>> = std::mem::take(&mut index.models);
        index.by_id.clear();
        for entry in rebuilt {
            let slot = index.models.len();
            index.by_id.insert(entry.spec.name.to_string(), slot);
            for alias in &entry.spec.aliases {
                index.by_id.entry(alias.to_string()).or_insert(slot);
            }
            index.models.push(entry);
        }
    }

    /// The model a `"model"` value names, by name or alias.
    pub fn resolve(&self, id: &str) -> Option<Arc<CatalogEntry>> {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        index.by_id.get(id).map(|&i| index.models[i].clone())
    }

    /// The model whose name (not alias) is `name`: per-model URLs use names only.
    pub fn by_name(&self, name: &str) -> Option<Arc<CatalogEntry>> {
        self.resolve(name).filter(|m| m.spec.name.as_str() == name)
    }

    pub fn all(&self) -> Vec<Arc<CatalogEntry>> {
        self.index.read().unwrap_or_else(PoisonError::into_inner).models.clone()
    }

    pub fn specs(&self) -> Vec<ModelSpec> {
        self.all().iter().map(|m| m.spec.clone()).collect()
    }
}
