//! The models this server serves, found by name or alias.

use std::collections::HashMap;
use std::sync::Arc;

use greenthread_core::{ModelSpec, validate_model_set};
use greenthread_node_runtime::{Engine, ModelInstance};

/// One model being served.
pub struct ServedModel {
    pub spec: ModelSpec,
    pub instance: Arc<dyn ModelInstance>,
    /// Unix seconds when it was loaded (`created` in `/v1/models`).
    pub created: u64,
}

/// Models by name, and every id (name or alias) to its model.
#[derive(Default)]
pub struct ModelRegistry {
    models: Vec<Arc<ServedModel>>,
    by_id: HashMap<String, usize>,
}

/// Why the registry could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Spec(#[from] greenthread_core::ModelSpecError),
    #[error("model {name}: {source}")]
    Load { name: String, source: greenthread_node_runtime::Error },
}

impl ModelRegistry {
    /// Loads every spec with `engine`, in order.
    ///
    /// # Errors
    /// When the specs conflict or any model fails to load.
    pub fn load(specs: &[ModelSpec], engine: &dyn Engine, now_unix: u64) -> Result<Self, RegistryError> {
        validate_model_set(specs)?;
        let mut registry = Self::default();
        for spec in specs {
            let instance =
                engine.load(spec).map_err(|source| RegistryError::Load { name: spec.name.to_string(), source })?;
            registry.insert(ServedModel { spec: spec.clone(), instance, created: now_unix });
        }
        Ok(registry)
    }

    /// Adds an already-loaded model. Names and aliases must be unique
    /// (checked by [`validate_model_set`] when loading from specs).
    pub fn insert(&mut self, model: ServedModel) {
        let index = self.models.len();
        self.by_id.insert(model.spec.name.to_string(), index);
        for alias in &model.spec.aliases {
            self.by_id.entry(alias.to_string()).or_insert(index);
        }
        self.models.push(Arc::new(model));
    }

    /// The model a `"model"` value names, by name or alias.
    pub fn resolve(&self, id: &str) -> Option<Arc<ServedModel>> {
        self.by_id.get(id).map(|&i| self.models[i].clone())
    }

    /// The model whose name (not alias) is `name`: per-model URLs use names only.
    pub fn by_name(&self, name: &str) -> Option<Arc<ServedModel>> {
        self.resolve(name).filter(|m| m.spec.name.as_str() == name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<ServedModel>> {
        self.models.iter()
    }

    pub fn len(&self) -> usize {
        self.models.len()
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }
}
