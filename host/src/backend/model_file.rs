//! The model file as it was opened: read in pieces, so the host never holds the whole file
//! beside the guest's copy, and hashed, so its snapshot is found by its bytes and a second read
//! refuses bytes changed in between.

use anyhow::{Context, Result, bail};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Bytes handed to the guest per piece. The guest's last piece buffer stays in its memory as
/// freed garbage, which a snapshot carries, so pieces are small.
const PIECE: usize = 1 << 20;

/// An open model file and the digest of its bytes as first read.
pub struct ModelFile {
    path: PathBuf,
    file: File,
    len: u64,
    digest: OnceLock<[u8; 32]>,
    /// The file's stem: the model's name when the file has no `general.name`.
    pub stem: String,
    /// Whether the guest quantizes F32 and F16 weights to Q8_0 as it loads them.
    pub quantize_q8_0: bool,
}

impl ModelFile {
    /// Opens `path`; refuses a file over `max_bytes` before reading anything.
    pub fn open(path: &Path, max_bytes: u64) -> Result<Self> {
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
        Ok(ModelFile { path: path.to_path_buf(), file, len, digest: OnceLock::new(), stem, quantize_q8_0: false })
    }

    /// The same file, loaded with its F32 and F16 weights quantized to Q8_0 when `quantize_q8_0`.
    pub fn quantized(self, quantize_q8_0: bool) -> Self {
        ModelFile { quantize_q8_0, ..self }
    }

    /// Size of the file in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True for an empty file.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The SHA-256 of the bytes as first read, in hex (reading the file when it was not read yet).
    pub fn digest(&self) -> Result<String> {
        if self.digest.get().is_none() {
            self.read_pieces(|_, _| Ok(()))?;
        }
        Ok(self.digest.get().map(|d| d.iter().map(|b| format!("{b:02x}")).collect()).unwrap_or_default())
    }

    /// Reads the whole file through the handle opened at start, handing each piece and its
    /// offset to `piece`. The first read records the bytes' SHA-256; every later read fails
    /// when they no longer hash to it.
    pub fn read_pieces(&self, mut piece: impl FnMut(u64, &[u8]) -> Result<()>) -> Result<()> {
        let mut buffer = vec![0; PIECE.min(self.len as usize)];
        let mut hash = Sha256::new();
        let mut offset = 0;
        while offset < self.len {
            let n = PIECE.min((self.len - offset) as usize);
            self.file
                .read_exact_at(&mut buffer[..n], offset)
                .with_context(|| format!("cannot read model file {}", self.path.display()))?;
            hash.update(&buffer[..n]);
            piece(offset, &buffer[..n])?;
            offset += n as u64;
        }
        let digest: [u8; 32] = hash.finalize().into();
        if *self.digest.get_or_init(|| digest) != digest {
            bail!("model file {} changed since the worker started", self.path.display());
        }
        Ok(())
    }
}
