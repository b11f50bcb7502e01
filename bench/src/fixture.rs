//! The data every subject works on: one shared directory, built once per run, with the
//! same files for the backends and for the host baselines.
//!
//! Layout of the shared directory:
//! - `meta/f000000` ...: `files` empty files (LOOKUP+GETATTR, READDIRPLUS);
//! - `big.dat`: `big_file` bytes of a checkable pattern (random and sequential READ, DAX);
//! - `seqwrite.dat`: the target of the sequential WRITE figure;
//! - `create/`: one fresh subdirectory per create sample, removed after it.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{BenchError, Result};
use crate::sys;

/// Sizes of the workloads.
#[derive(Clone, Debug)]
pub struct Scale {
    pub name: &'static str,
    /// Files in `meta/` (metadata, READDIRPLUS) and files created per create sample.
    pub files: usize,
    /// Size of `big.dat`.
    pub big_file: u64,
    /// 4 KiB random READs per sample.
    pub rand_reads: usize,
    /// Bytes read with 1 MiB sequential READs per sample (from the start of `big.dat`).
    pub seq_read: u64,
    /// Bytes written with 1 MiB sequential WRITEs per sample.
    pub seq_write: u64,
    /// Bytes of `big.dat` mapped and read through the DAX window per sample.
    pub dax_read: u64,
    /// SETUPMAPPING+REMOVEMAPPING cycles per sample.
    pub dax_cycles: usize,
    pub warmup: usize,
    pub rounds: usize,
}

impl Scale {
    /// The default run: the sizes docs/performance.md reports; about a minute on 2 quiet cores, under 3 busy.
    pub fn full() -> Self {
        Scale {
            name: "default",
            files: 10_000,
            big_file: 1 << 30,
            rand_reads: 40_000,
            seq_read: 1 << 30,
            seq_write: 512 << 20,
            dax_read: 256 << 20,
            dax_cycles: 2_000,
            warmup: 1,
            rounds: 7,
        }
    }

    /// `--short`: everything small, one round; seconds. Keeps the benchmark working in CI.
    pub fn short() -> Self {
        Scale {
            name: "short",
            files: 300,
            big_file: 16 << 20,
            rand_reads: 1_000,
            seq_read: 16 << 20,
            seq_write: 8 << 20,
            dax_read: 8 << 20,
            dax_cycles: 50,
            warmup: 1,
            rounds: 1,
        }
    }
}

/// The 8-byte word stored at offset `off` of `big.dat` (every 8-byte-aligned offset holds
/// its own pattern word, so any aligned read can be checked by its first word).
pub fn pattern_word(off: u64) -> u64 {
    off ^ 0x5a5a_0f0f_c3c3_9696
}

/// Fills `buf` with the pattern for file offset `off` (8-byte aligned).
pub fn fill_pattern(buf: &mut [u8], off: u64) {
    for (i, chunk) in buf.chunks_exact_mut(8).enumerate() {
        chunk.copy_from_slice(&pattern_word(off + 8 * i as u64).to_le_bytes());
    }
}

/// Checks that `first8` is the pattern word of offset `off`.
pub fn check_word(first8: &[u8], off: u64, who: &str) -> Result<()> {
    let got = first8
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    if got != Some(pattern_word(off)) {
        return Err(BenchError::Check(format!(
            "{who}: data at offset {off} is not what the file holds (wrong bytes returned)"
        )));
    }
    Ok(())
}

/// Name of the i-th file in `meta/`.
pub fn meta_name(i: usize) -> String {
    format!("f{i:06}")
}

/// The built shared directory.
#[derive(Debug)]
pub struct Fixture {
    pub root: PathBuf,
    pub scale: Scale,
    /// NUL-terminated names of the files in `meta/`, for fstatat.
    pub meta_names: Vec<CString>,
}

pub const META_DIR: &str = "meta";
pub const BIG_FILE: &str = "big.dat";
pub const WRITE_FILE: &str = "seqwrite.dat";
pub const CREATE_DIR: &str = "create";

impl Fixture {
    /// Builds the shared directory under `root`. A previous fixture there (`--work-dir`) is
    /// reused where it fits: `meta/` when it holds exactly the right files, `big.dat` when it
    /// has the right size (it is renamed into place only once fully written).
    pub fn build(root: &Path, scale: &Scale, mut progress: impl FnMut(&str)) -> Result<Self> {
        let meta = root.join(META_DIR);
        let fits = std::fs::read_dir(&meta)
            .map(|d| d.count() == scale.files)
            .unwrap_or(false);
        if !fits && meta.exists() {
            std::fs::remove_dir_all(&meta).map_err(|e| BenchError::io("remove", &meta, e))?;
        }
        std::fs::create_dir_all(&meta).map_err(|e| BenchError::io("mkdir", &meta, e))?;
        let create = root.join(CREATE_DIR);
        if create.exists() {
            std::fs::remove_dir_all(&create).map_err(|e| BenchError::io("remove", &create, e))?;
        }
        std::fs::create_dir_all(&create).map_err(|e| BenchError::io("mkdir", &create, e))?;

        progress(&format!("creating {} files", scale.files));
        let mut meta_names = Vec::with_capacity(scale.files);
        for i in 0..scale.files {
            let name = meta_name(i);
            let p = meta.join(&name);
            if !p.exists() {
                File::create(&p).map_err(|e| BenchError::io("create", &p, e))?;
            }
            meta_names
                .push(CString::new(name).map_err(|_| BenchError::Check("NUL in a name".into()))?);
        }

        let big = root.join(BIG_FILE);
        let have = std::fs::metadata(&big).map(|m| m.len()).unwrap_or(0);
        if have != scale.big_file {
            progress(&format!("writing {} MiB test file", scale.big_file >> 20));
            write_pattern_file(&big, scale.big_file)?;
        }
        let wf = root.join(WRITE_FILE);
        let f = File::create(&wf).map_err(|e| BenchError::io("create", &wf, e))?;
        sys::fallocate(&f, scale.seq_write).map_err(|e| BenchError::io("fallocate", &wf, e))?;
        f.set_len(scale.seq_write)
            .map_err(|e| BenchError::io("truncate", &wf, e))?;
        Ok(Fixture {
            root: root.to_path_buf(),
            scale: scale.clone(),
            meta_names,
        })
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Opens a file or directory of the fixture read-only.
    pub fn open(&self, rel: &str) -> Result<File> {
        let p = self.path(rel);
        File::open(&p).map_err(|e| BenchError::io("open", &p, e))
    }

    /// A fresh, empty directory `create/<name>` for one create sample.
    pub fn fresh_create_dir(&self, name: &str) -> Result<PathBuf> {
        let p = self.root.join(CREATE_DIR).join(name);
        if p.exists() {
            std::fs::remove_dir_all(&p).map_err(|e| BenchError::io("remove", &p, e))?;
        }
        std::fs::create_dir(&p).map_err(|e| BenchError::io("mkdir", &p, e))?;
        Ok(p)
    }
}

/// Writes `len` bytes of the pattern to `path` (fallocate first, through a temporary name),
/// then flushes them to disk so that background writeback does not run during the
/// measurements.
fn write_pattern_file(path: &Path, len: u64) -> Result<()> {
    let tmp = path.with_extension("partial");
    let mut f = File::create(&tmp).map_err(|e| BenchError::io("create", &tmp, e))?;
    sys::fallocate(&f, len).map_err(|e| BenchError::io("fallocate", path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(buf.len() as u64) as usize;
        fill_pattern(&mut buf[..n], off);
        f.write_all_at(&buf[..n], off)
            .map_err(|e| BenchError::io("write", path, e))?;
        off += n as u64;
    }
    f.flush().map_err(|e| BenchError::io("write", path, e))?;
    f.sync_data()
        .map_err(|e| BenchError::io("fdatasync", path, e))?;
    std::fs::rename(&tmp, path).map_err(|e| BenchError::io("rename", &tmp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_checks() {
        let mut b = vec![0u8; 64];
        fill_pattern(&mut b, 4096);
        assert!(check_word(&b, 4096, "t").is_ok());
        assert!(check_word(&b[8..], 4104, "t").is_ok());
        assert!(check_word(&b, 0, "t").is_err());
        assert!(check_word(&b[..4], 4096, "t").is_err());
    }
}
