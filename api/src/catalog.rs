//! The models this server offers, found by name or alias. Whether a model
//! is awake is the scheduler's business; the catalog only knows specs.

use std::collections::HashMap;
use std::sync::Arc;

use greenthread_core::{ModelSpec, ModelSpecError, validate_model_set};

/// One offered model.
#[derive(Debug)]
pub struct CatalogEntry {
    pub spec: ModelSpec,
    /// Unix seconds when the server started offering it (`created` in `/v1/models`).
    pub created: u64,
}

/// Models by name, and every id (name or alias) to its model.
#[derive(Debug, Default)]
pub struct ModelCatalog {
    models: Vec<Arc<CatalogEntry>>,
    by_id: HashMap<String, usize>,
}

impl ModelCatalog {
    /// # Errors
    /// When two specs share a name or alias.
    pub fn new(specs: &[ModelSpec], created: u64) -> Result<Self, ModelSpecError> {
        validate_model_set(specs)?;
        let mut catalog = Self::default();
        for spec in specs {
            let index = catalog.models.len();
            catalog.by_id.insert(spec.name.to_string(), index);
            for alias in &spec.aliases {
                catalog.by_id.entry(alias.to_string()).or_insert(index);
            }
            catalog.models.push(Arc::new(CatalogEntry { spec: spec.clone(), created }));
        }
        Ok(catalog)
    }

    /// The model a `"model"` value names, by name or alias.
    pub fn resolve(&self, id: &str) -> Option<Arc<CatalogEntry>> {
        self.by_id.get(id).map(|&i| self.models[i].clone())
    }

    /// The model whose name (not alias) is `name`: per-model URLs use names only.
    pub fn by_name(&self, name: &str) -> Option<Arc<CatalogEntry>> {
        self.resolve(name).filter(|m| m.spec.name.as_str() == name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<CatalogEntry>> {
        self.models.iter()
    }

    pub fn specs(&self) -> Vec<ModelSpec> {
        self.models.iter().map(|m| m.spec.clone()).collect()
    }
}
