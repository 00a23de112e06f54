//! Where a model comes from: a GGUF file, a checkpoint directory, or a Hugging Face hub id.
//!
//! Hub ids resolve through `hf-hub`'s standard cache (`HF_HOME`, default `~/.cache/huggingface`), so
//! checkpoints downloaded by Python tools are reused. With `HF_HUB_OFFLINE=1` only the cache is read and
//! a missing file is an error that says so; otherwise missing files are downloaded with a progress bar.

use std::path::{Path, PathBuf};

use hf_hub::{Cache, Repo, RepoType};

use crate::error::{EngineError, Result};

/// A model's location, as parsed from a command line or config value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// A single `.gguf` file.
    Gguf(PathBuf),
    /// A directory in Hugging Face layout (`config.json`, `*.safetensors`, `tokenizer.json`).
    HfDir(PathBuf),
    /// `org/name`, optionally at a revision (branch, tag or commit).
    Hub {
        /// `org/name`.
        repo: String,
        /// Branch, tag or commit; `None` is the repository's `main`.
        revision: Option<String>,
    },
}

impl ModelSource {
    /// Reads `spec`: an existing path is a file or directory; `org/name[@revision]` is a hub id.
    pub fn parse(spec: &str) -> Result<Self> {
        let path = Path::new(spec);
        if path.is_file() {
            return Ok(Self::Gguf(path.to_path_buf()));
        }
        if path.is_dir() {
            return Ok(Self::HfDir(path.to_path_buf()));
        }
        let looks_like_path = spec.starts_with('/') || spec.starts_with('.') || spec.ends_with(".gguf");
        let (repo, revision) = match spec.split_once('@') {
            Some((r, rev)) => (r, Some(rev.to_string())),
            None => (spec, None),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if looks_like_path || parts.len() != 2 || parts.iter().any(|p| p.is_empty()) {
            return Err(EngineError::io(path, std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        Ok(Self::Hub { repo: repo.to_string(), revision })
    }
}

/// Files a Llama checkpoint may have; the first two are required.
const REQUIRED: &[&str] = &["config.json", "tokenizer.json"];
const OPTIONAL: &[&str] = &["tokenizer_config.json", "generation_config.json", "chat_template.jinja"];

/// Resolves a hub id to a local snapshot directory holding the checkpoint, downloading what is missing
/// unless `HF_HUB_OFFLINE` is set.
pub fn resolve_hub(repo: &str, revision: Option<&str>) -> Result<PathBuf> {
    let revision = revision.unwrap_or("main").to_string();
    let spec = format!("{repo}@{revision}");
    let offline = std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| !v.is_empty() && v != "0");
    let cache = Cache::from_env();
    let cached = CachedSnapshot::new(&cache, repo, &revision);
    if offline {
        return cached.complete().ok_or_else(|| EngineError::Resolve {
            source_spec: spec,
            reason: format!(
                "HF_HUB_OFFLINE is set and the checkpoint is not complete in the cache at {}",
                cache.path().display()
            ),
        });
    }
    if let Some(dir) = cached.complete() {
        return Ok(dir);
    }
    download(repo, &revision).map_err(|reason| EngineError::Resolve { source_spec: spec, reason })
}

/// A repository's snapshot in the local cache. Looks refs up like hf-hub, and also accepts a commit hash
/// as revision (snapshots are named by commit).
struct CachedSnapshot {
    root: PathBuf,
    revision: String,
}

impl CachedSnapshot {
    fn new(cache: &Cache, repo: &str, revision: &str) -> Self {
        let folder = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()).folder_name();
        Self { root: cache.path().join(folder), revision: revision.to_string() }
    }

    fn snapshot_dir(&self) -> Option<PathBuf> {
        let commit = std::fs::read_to_string(self.root.join("refs").join(&self.revision))
            .map(|c| c.trim().to_string())
            .unwrap_or_else(|_| self.revision.clone());
        let dir = self.root.join("snapshots").join(commit);
        dir.is_dir().then_some(dir)
    }

    /// The snapshot directory if it holds the config, tokenizer and every weight file.
    fn complete(&self) -> Option<PathBuf> {
        let dir = self.snapshot_dir()?;
        let has_weights = dir.join("model.safetensors").exists() || index_complete(&dir);
        (REQUIRED.iter().all(|f| dir.join(f).exists()) && has_weights).then_some(dir)
    }
}

fn index_complete(dir: &Path) -> bool {
    shard_names(&dir.join("model.safetensors.index.json")).is_some_and(|s| s.iter().all(|f| dir.join(f).exists()))
}

fn shard_names(index: &Path) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(index).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let mut names: Vec<String> =
        json.get("weight_map")?.as_object()?.values().filter_map(|v| v.as_str().map(str::to_string)).collect();
    names.sort();
    names.dedup();
    Some(names)
}

fn download(repo: &str, revision: &str) -> std::result::Result<PathBuf, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let api = hf_hub::api::tokio::ApiBuilder::from_env().with_progress(true).build().map_err(|e| e.to_string())?;
        let repo = api.repo(Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string()));
        let mut config = None;
        for file in REQUIRED {
            config = Some(repo.get(file).await.map_err(|e| format!("{file}: {e}"))?);
        }
        for file in OPTIONAL {
            // Optional files are allowed to be absent from the repository.
            let _ = repo.get(file).await;
        }
        match repo.get("model.safetensors.index.json").await {
            Ok(index) => {
                for shard in shard_names(&index).ok_or("model.safetensors.index.json has no weight_map")? {
                    repo.get(&shard).await.map_err(|e| format!("{shard}: {e}"))?;
                }
            }
            Err(_) => {
                repo.get("model.safetensors").await.map_err(|e| format!("model.safetensors: {e}"))?;
            }
        }
        config
            .and_then(|c| c.parent().map(Path::to_path_buf))
            .ok_or_else(|| "the download produced no snapshot directory".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_ids_and_revisions_parse() {
        assert_eq!(
            ModelSource::parse("meta-llama/Llama-3.2-1B-Instruct@abc123").unwrap(),
            ModelSource::Hub { repo: "meta-llama/Llama-3.2-1B-Instruct".into(), revision: Some("abc123".into()) }
        );
        assert!(matches!(ModelSource::parse("org/name").unwrap(), ModelSource::Hub { revision: None, .. }));
    }

    #[test]
    fn missing_paths_are_io_errors_not_hub_ids() {
        assert!(matches!(ModelSource::parse("/no/such/model.gguf"), Err(EngineError::Io { .. })));
        assert!(matches!(ModelSource::parse("model.gguf"), Err(EngineError::Io { .. })));
        assert!(matches!(ModelSource::parse("a/b/c"), Err(EngineError::Io { .. })));
    }
}
