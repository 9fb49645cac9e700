//! Where a local model's file comes from: a path, or `ORG/NAME:FILE` on Hugging Face, taken
//! from the Hugging Face cache (`$HF_HOME/hub`, else `~/.cache/huggingface/hub`) and
//! downloaded into it once, with a progress bar, when it is not there. After that first run
//! everything works offline. Machines without a model hub get the same files into the same
//! cache layout some other way (this project's CI assembles them from registry packages),
//! and the same code finds them. `HF_ENDPOINT` names a mirror, as for Hugging Face's tools.

use std::path::{Path, PathBuf};

/// Why a model file could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ModelFileError {
    /// A path that does not exist.
    #[error("the model file {0} does not exist")]
    Missing(PathBuf),
    /// The download failed.
    #[error("cannot fetch {file} from huggingface.co/{repo} (not in the cache {cache}): {message}")]
    Download {
        /// The repository.
        repo: String,
        /// The file.
        file: String,
        /// Where it was looked for.
        cache: PathBuf,
        /// Why.
        message: String,
    },
}

/// A model named in the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSpec {
    /// A file on this machine.
    Path(PathBuf),
    /// A file of a Hugging Face model repository.
    Hub {
        /// `ORG/NAME`.
        repo: String,
        /// The file in it.
        file: String,
    },
}

impl ModelSpec {
    /// Reads `ORG/NAME:FILE` as a hub file, anything else as a path.
    pub fn parse(spec: &str) -> Self {
        match spec.split_once(':') {
            Some((repo, file))
                if repo.matches('/').count() == 1
                    && !repo.starts_with('/')
                    && !repo.starts_with('.')
                    && !file.is_empty()
                    && !Path::new(spec).exists() =>
            {
                ModelSpec::Hub {
                    repo: repo.to_string(),
                    file: file.to_string(),
                }
            }
            _ => ModelSpec::Path(PathBuf::from(spec)),
        }
    }
}

/// The file of `spec` on this machine, fetched into the Hugging Face cache first if need be.
pub fn resolve(spec: &ModelSpec) -> Result<PathBuf, ModelFileError> {
    resolve_in(spec, hf_hub::Cache::from_env())
}

/// Like [`resolve`], with the cache at hand.
pub fn resolve_in(spec: &ModelSpec, cache: hf_hub::Cache) -> Result<PathBuf, ModelFileError> {
    match spec {
        ModelSpec::Path(path) if path.exists() => Ok(path.clone()),
        ModelSpec::Path(path) => Err(ModelFileError::Missing(path.clone())),
        ModelSpec::Hub { repo, file } => {
            if let Some(path) = cache.model(repo.clone()).get(file) {
                return Ok(path);
            }
            download(cache, repo, file)
        }
    }
}

fn download(cache: hf_hub::Cache, repo: &str, file: &str) -> Result<PathBuf, ModelFileError> {
    let failed = |message: String| ModelFileError::Download {
        repo: repo.to_string(),
        file: file.to_string(),
        cache: cache.path().clone(),
        message,
    };
    eprintln!(
        "Fetching the model {file} from huggingface.co/{repo} into {} (once; the progress \
         bar shows its size; later runs work offline).",
        cache.path().display()
    );
    let mut builder = hf_hub::api::sync::ApiBuilder::from_cache(cache.clone()).with_progress(true);
    // A mirror, as the Hugging Face tools read it.
    if let Ok(endpoint) = std::env::var("HF_ENDPOINT") {
        builder = builder.with_endpoint(endpoint);
    }
    let api = builder.build().map_err(|e| failed(e.to_string()))?;
    api.model(repo.to_string())
        .get(file)
        .map_err(|e| failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hub_files_and_paths_are_told_apart() {
        assert_eq!(
            ModelSpec::parse("Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF:model.gguf"),
            ModelSpec::Hub {
                repo: "Qwen/Qwen2.5-Coder-1.5B-Instruct-GGUF".into(),
                file: "model.gguf".into()
            }
        );
        assert_eq!(
            ModelSpec::parse("models/qwen.gguf"),
            ModelSpec::Path("models/qwen.gguf".into())
        );
        assert_eq!(
            ModelSpec::parse("/abs/dir/model.gguf"),
            ModelSpec::Path("/abs/dir/model.gguf".into())
        );
    }

    #[test]
    fn a_cached_hub_file_is_found_without_a_network() {
        let home = tempfile::tempdir().unwrap();
        let repo = home.path().join("models--org--name");
        let snapshot = repo.join("snapshots").join("abc123");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), "abc123").unwrap();
        std::fs::write(snapshot.join("m.gguf"), b"GGUF").unwrap();
        let spec = ModelSpec::parse("org/name:m.gguf");
        let cache = hf_hub::Cache::new(home.path().to_path_buf());
        assert_eq!(resolve_in(&spec, cache).unwrap(), snapshot.join("m.gguf"));
    }
}
