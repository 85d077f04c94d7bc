//! The model file as it was at start: held open and hashed, so a guest rebuilt later loads the
//! same bytes even after the path was removed or replaced, and refuses bytes changed in place.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// An open model file and the digest of its bytes at start.
pub struct ModelFile {
    path: PathBuf,
    file: File,
    len: u64,
    digest: [u8; 32],
    /// The file's stem: the model's name when the file has no `general.name`.
    pub stem: String,
}

impl ModelFile {
    /// Opens `path` and reads it once; refuses a file over `max_bytes` before reading it.
    /// Returns the handle and the bytes read.
    pub fn open(path: &Path, max_bytes: u64) -> Result<(Self, Vec<u8>)> {
        let file = File::open(path).with_context(|| format!("cannot read model file {}", path.display()))?;
        let metadata = file.metadata()?;
        if !metadata.is_file() {
            bail!("model file {} is not a regular file", path.display());
        }
        let len = metadata.len();
        if len > max_bytes {
            bail!("no memory for a {len}-byte model file: the guest may use {max_bytes} bytes (--max-memory-mb)");
        }
        let stem = path.file_stem().map_or_else(|| "model".to_string(), |s| s.to_string_lossy().into_owned());
        let mut model = ModelFile { path: path.to_path_buf(), file, len, digest: [0; 32], stem };
        let bytes = model.read_all()?;
        model.digest = Sha256::digest(&bytes).into();
        Ok((model, bytes))
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes again, through the handle opened at start; fails when they no longer hash to
    /// what was read then.
    pub fn reread(&self) -> Result<Vec<u8>> {
        let bytes = self.read_all()?;
        if <[u8; 32]>::from(Sha256::digest(&bytes)) != self.digest {
            bail!("model file {} changed since the worker started", self.path.display());
        }
        Ok(bytes)
    }

    fn read_all(&self) -> Result<Vec<u8>> {
        let len = usize::try_from(self.len).context("the model file does not fit in memory")?;
        let mut bytes = Vec::new();
        bytes.try_reserve_exact(len).with_context(|| format!("no memory to read a {len}-byte model file"))?;
        bytes.resize(len, 0);
        self.file
            .read_exact_at(&mut bytes, 0)
            .with_context(|| format!("cannot read model file {}", self.path.display()))?;
        Ok(bytes)
    }
}
