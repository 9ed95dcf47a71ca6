//! Which artifacts a model created through the API may name. A key that
//! may manage a project must not be able to make the server open any file
//! it can read: local artifacts must lie under one of the operator's
//! artifact directories. Object-store URIs are allowed (the node's
//! credentials decide what they reach); other schemes never parse.

use std::path::{Component, Path, PathBuf};

use greenthread_core::ArtifactUri;
use greenthread_node_runtime::embed::pack;

/// The directories local artifacts may come from.
#[derive(Debug, Clone, Default)]
pub struct ArtifactPolicy {
    roots: Vec<PathBuf>,
}

impl ArtifactPolicy {
    /// Allows files under `roots` (those that exist; symlinks resolved).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        Self { roots: roots.into_iter().filter_map(|r| r.canonicalize().ok()).collect() }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// # Errors
    /// A message safe to show, naming the allowed directories' count, not their paths.
    pub fn check(&self, artifact: &ArtifactUri) -> Result<(), String> {
        let Some(path) = artifact.local_path() else { return Ok(()) };
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err("artifact paths may not contain `..`".into());
        }
        // A file that does not exist yet is judged by its directory.
        let resolved = path.canonicalize().or_else(|_| {
            let parent = path.parent().unwrap_or(Path::new("/")).canonicalize()?;
            Ok::<_, std::io::Error>(parent.join(path.file_name().unwrap_or_default()))
        });
        let inside = |p: &Path| self.roots.iter().any(|r| p.starts_with(r));
        // A model directory's files may be links: each must resolve inside too.
        if path.is_dir() {
            let files = pack::DIRECTORY_FILES.iter().map(|(f, _)| *f).chain([pack::WEIGHTS_FILE]);
            for file in files {
                if let Ok(target) = path.join(file).canonicalize()
                    && !inside(&target)
                {
                    return Err(format!(
                        "{file} in artifact {} leads outside the artifact directories",
                        path.display()
                    ));
                }
            }
        }
        match resolved {
            Ok(p) if inside(&p) => Ok(()),
            _ => Err(format!(
                "artifact {} is outside the server's artifact directories (--artifact-dir); \
                 put the file there or use an object-store URI",
                path.display()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(unix)]
    fn a_model_directory_passes_unless_a_file_in_it_links_out() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let model = root.path().join("bert");
        std::fs::create_dir(&model).unwrap();
        std::fs::write(model.join("config.json"), b"{}").unwrap();
        let policy = ArtifactPolicy::new([root.path().canonicalize().unwrap()]);
        assert!(policy.check(&ArtifactUri::File(model.clone())).is_ok());
        std::fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), model.join("tokenizer.json")).unwrap();
        let err = policy.check(&ArtifactUri::File(model)).unwrap_err();
        assert!(err.contains("tokenizer.json"), "{err}");
    }

    #[test]
    fn only_files_under_the_roots_pass() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("m.gguf"), b"x").unwrap();
        std::fs::write(outside.path().join("m.gguf"), b"x").unwrap();
        let policy = ArtifactPolicy::new([root.path().to_path_buf()]);
        let file = |p: PathBuf| ArtifactUri::File(p);
        assert!(policy.check(&file(root.path().join("m.gguf"))).is_ok());
        assert!(policy.check(&file(root.path().join("not-yet.gguf"))).is_ok());
        assert!(policy.check(&file(outside.path().join("m.gguf"))).is_err());
        assert!(policy.check(&file(root.path().join("../etc/passwd"))).is_err());
        assert!(policy.check(&file("/etc/passwd".into())).is_err());
        assert!(policy.check(&ArtifactUri::Object("s3://bucket/m.gguf".into())).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_out_of_the_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.path().join("link.gguf")).unwrap();
        let policy = ArtifactPolicy::new([root.path().to_path_buf()]);
        assert!(policy.check(&ArtifactUri::File(root.path().join("link.gguf"))).is_err());
    }
}
