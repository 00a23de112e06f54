//! [`ModelRegistry`]: the models this process serves, by the id clients send.
//!
//! Built once at start from the config and never changed afterwards, so lookups need no lock; each
//! [`ServedModel`] shares its engine [`Model`], whose scheduler lets concurrent requests run together.

use std::sync::Arc;

use anyhow::Context;
use llamagate_engine::{Model, ModelOptions, ModelSource};

use crate::config::ModelConfig;
use crate::error::ApiError;
use crate::generation_fields::unix_now;

/// The provider name clients see in `custom_metadata.provider_id`: the models run in this process.
pub const PROVIDER_ID: &str = "llamagate";

/// The provider's type, as `GET /v1/providers` and `GET /v1/inspect/routes` report it.
pub const PROVIDER_TYPE: &str = "inline::llamagate";

/// One model as served: the engine plus what listings and authorization need to know about it.
#[derive(Debug)]
pub struct ServedModel {
    /// The id clients use (may contain `/`).
    pub id: String,
    /// Where the weights came from, reported as `provider_resource_id`.
    pub source: String,
    /// When the model was loaded, as `created` in listings.
    pub created: u64,
    /// The loaded engine.
    pub engine: Model,
}

/// All served models, in config order.
#[derive(Debug, Default)]
pub struct ModelRegistry {
    models: Vec<Arc<ServedModel>>,
}

impl ModelRegistry {
    /// Loads every configured model; a model that fails to load stops the start with its id named.
    pub fn load(configs: &[ModelConfig]) -> anyhow::Result<Self> {
        let mut models = Vec::with_capacity(configs.len());
        for (i, config) in configs.iter().enumerate() {
            let started = std::time::Instant::now();
            let source = ModelSource::parse(&config.source)
                .with_context(|| format!("models[{i}].source: cannot use {}", config.source))?;
            let options = ModelOptions {
                max_context: config.context_length,
                scheduler: config.scheduler(),
                kv_cache_type: config.kv_cache_type.unwrap_or_default(),
                ..Default::default()
            };
            let engine = Model::load(&source, &options)
                .with_context(|| format!("models[{i}] ({}): cannot load {}", config.id, config.source))?;
            tracing::info!(
                model = %config.id,
                context_length = engine.info().context_length,
                max_batch = options.scheduler.max_batch,
                queue_capacity = options.scheduler.queue_capacity,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "model loaded"
            );
            models.push(Arc::new(ServedModel {
                id: config.id.clone(),
                source: config.source.clone(),
                created: unix_now(),
                engine,
            }));
        }
        Ok(Self { models })
    }

    /// Every model, in config order.
    pub fn all(&self) -> &[Arc<ServedModel>] {
        &self.models
    }

    /// The model with this id, or the 404 clients expect.
    pub fn get(&self, id: &str) -> Result<Arc<ServedModel>, ApiError> {
        self.models.iter().find(|m| m.id == id).cloned().ok_or_else(|| ApiError::ModelNotFound(id.to_string()))
    }
}
