//! Bringing an artifact from object storage (a local directory, S3, GCS or
//! Azure) into the node's disk cache: streamed to a temporary file, hashed
//! on the way, fsynced, verified, and only then renamed into place, so a
//! half-written or corrupt file is never visible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use greenthread_core::{ArtifactUri, NodeError, Sha256Digest};
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::embed::pack;

/// A verified file in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: u64,
}

/// What a verified cache file records beside itself, so restarts need not rehash.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
    sha256: String,
}

fn stamp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".verified");
    PathBuf::from(p)
}

fn stamp_of(path: &Path, sha256: &str) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    let mtime_ns = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    Ok(Stamp { size: meta.len(), mtime_ns, sha256: sha256.to_owned() })
}

/// The cache file at `dest`, if a previous fetch verified it and it has not
/// changed since (and it matches `expected`, when given).
pub fn cached(dest: &Path, expected: Option<&Sha256Digest>) -> Option<Verified> {
    let recorded: Stamp = serde_json::from_slice(&std::fs::read(stamp_path(dest)).ok()?).ok()?;
    let now = stamp_of(dest, &recorded.sha256).ok()?;
    let matches_expected = expected.is_none_or(|e| e.as_str() == recorded.sha256);
    (now == recorded && matches_expected).then(|| Verified {
        path: dest.to_path_buf(),
        sha256: recorded.sha256,
        bytes: recorded.size,
    })
}

fn artifact_error(uri: &ArtifactUri, what: impl std::fmt::Display) -> NodeError {
    NodeError::Artifact(format!("artifact {uri}: {what}"))
}

/// Copies `uri` to `dest`, verifying it against `expected` (or just
/// recording its digest when the spec gives none).
///
/// # Errors
/// [`NodeError::Artifact`] when the source cannot be read, the digest does
/// not match, or the cache cannot be written; `dest` is then untouched.
pub async fn fetch(uri: &ArtifactUri, dest: &Path, expected: Option<&Sha256Digest>) -> Result<Verified, NodeError> {
    let (store, location) = store_for(uri)?;
    let tmp = temp_beside(uri, dest, "partial")?;
    let result = copy_and_hash(store.as_ref(), &location, &tmp).await.map_err(|e| artifact_error(uri, e));
    let (sha256, _) = match result {
        Ok(done) => done,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
    };
    if let Err(e) = check_digest(uri, &sha256, expected) {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    place(uri, &tmp, dest, sha256).await
}

/// Whether an artifact names a model directory (Hugging Face layout) rather
/// than one file: a local directory, or an object-store prefix ending in `/`.
pub fn is_directory(uri: &ArtifactUri) -> bool {
    match uri {
        ArtifactUri::File(path) => path.is_dir(),
        ArtifactUri::Object(url) => url.ends_with('/'),
    }
}

/// Copies a model directory to `dest` as one packed file (see
/// [`crate::embed::pack`]). `expected` is the digest of its `model.safetensors`.
///
/// # Errors
/// [`NodeError::Artifact`] when a required file is missing, the digest does
/// not match, or the cache cannot be written; `dest` is then untouched.
pub async fn fetch_directory(
    uri: &ArtifactUri,
    dest: &Path,
    expected: Option<&Sha256Digest>,
) -> Result<Verified, NodeError> {
    let weights = temp_beside(uri, dest, "weights")?;
    let tmp = temp_beside(uri, dest, "partial")?;
    let result = copy_directory(uri, &weights, &tmp, expected).await;
    let _ = tokio::fs::remove_file(&weights).await;
    match result {
        Ok(sha256) => place(uri, &tmp, dest, sha256).await,
        Err(e) => {
            let _ = tokio::fs::remove_file(&tmp).await;
            Err(e)
        }
    }
}

/// Fetches the weights to `weights` and packs them with the small files into `packed`.
async fn copy_directory(
    uri: &ArtifactUri,
    weights: &Path,
    packed: &Path,
    expected: Option<&Sha256Digest>,
) -> Result<String, NodeError> {
    let (store, prefix) = store_for(uri)?;
    let at = |file: &str| object_store::path::Path::from(format!("{prefix}/{file}"));
    let (sha256, _) =
        copy_and_hash(store.as_ref(), &at(pack::WEIGHTS_FILE), weights).await.map_err(|e| artifact_error(uri, e))?;
    check_digest(uri, &sha256, expected)?;
    let mut files = BTreeMap::new();
    for &(name, required) in pack::DIRECTORY_FILES {
        match store.get(&at(name)).await {
            Ok(found) => {
                let bytes = found.bytes().await.map_err(|e| artifact_error(uri, format!("{name}: {e}")))?;
                let text = String::from_utf8(bytes.to_vec())
                    .map_err(|_| artifact_error(uri, format!("{name} is not UTF-8")))?;
                files.insert(name.to_owned(), text);
            }
            Err(object_store::Error::NotFound { .. }) if !required => {}
            Err(e) => return Err(artifact_error(uri, format!("{name}: {e}"))),
        }
    }
    let (weights, packed) = (weights.to_path_buf(), packed.to_path_buf());
    tokio::task::spawn_blocking(move || pack::pack(&weights, &files, &packed))
        .await
        .map_err(|e| artifact_error(uri, e))?
        .map_err(|e| artifact_error(uri, format!("{}: {e}", pack::WEIGHTS_FILE)))?;
    Ok(sha256)
}

fn store_for(uri: &ArtifactUri) -> Result<(Box<dyn ObjectStore>, object_store::path::Path), NodeError> {
    match uri {
        ArtifactUri::File(path) => {
            let location = object_store::path::Path::from_absolute_path(path).map_err(|e| artifact_error(uri, e))?;
            Ok((Box::new(LocalFileSystem::new()), location))
        }
        ArtifactUri::Object(url) => {
            let url = url::Url::parse(url).map_err(|e| artifact_error(uri, e))?;
            object_store::parse_url(&url).map_err(|e| artifact_error(uri, e))
        }
    }
}

/// A temporary file beside `dest`, named for this process.
fn temp_beside(uri: &ArtifactUri, dest: &Path, what: &str) -> Result<PathBuf, NodeError> {
    let dir = dest.parent().ok_or_else(|| artifact_error(uri, "cache path has no directory"))?;
    let name = dest.file_name().map_or_else(|| "artifact".into(), |n| n.to_string_lossy());
    Ok(dir.join(format!(".{name}.{what}-{}", std::process::id())))
}

fn check_digest(uri: &ArtifactUri, sha256: &str, expected: Option<&Sha256Digest>) -> Result<(), NodeError> {
    match expected {
        Some(expected) if expected.as_str() != sha256 => {
            Err(artifact_error(uri, format!("sha256 is {sha256}, but the spec requires {expected}; refused")))
        }
        _ => Ok(()),
    }
}

/// Renames the finished `tmp` into place at `dest` and records it as verified.
async fn place(uri: &ArtifactUri, tmp: &Path, dest: &Path, sha256: String) -> Result<Verified, NodeError> {
    tokio::fs::rename(tmp, dest)
        .await
        .map_err(|e| artifact_error(uri, format!("cannot place it in the cache: {e}")))?;
    // Make the rename itself durable before recording the file as verified.
    if let Some(dir) = dest.parent()
        && let Ok(d) = std::fs::File::open(dir)
    {
        let _ = d.sync_all();
    }
    let stamp = stamp_of(dest, &sha256).map_err(|e| artifact_error(uri, e))?;
    let stamp_json = serde_json::to_vec(&stamp).map_err(|e| artifact_error(uri, e))?;
    tokio::fs::write(stamp_path(dest), stamp_json).await.map_err(|e| artifact_error(uri, e))?;
    Ok(Verified { path: dest.to_path_buf(), sha256, bytes: stamp.size })
}

async fn copy_and_hash(
    store: &dyn ObjectStore,
    location: &object_store::path::Path,
    tmp: &Path,
) -> Result<(String, u64), String> {
    let mut stream = store.get(location).await.map_err(|e| e.to_string())?.into_stream();
    let mut file = tokio::fs::File::create(tmp).await.map_err(|e| e.to_string())?;
    let mut hasher = Sha256::new();
    let mut bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        hasher.update(&chunk);
        bytes += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.sync_all().await.map_err(|e| e.to_string())?;
    Ok((hex::encode(hasher.finalize()), bytes))
}

/// Removes a cache file and its stamp.
pub fn remove(path: &Path) {
    let _ = std::fs::remove_file(stamp_path(path));
    let _ = std::fs::remove_file(path);
}
