//! [`StateFile`]: the whole state in one JSON file, as the `courier` CLI keeps it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::{DeviceState, StateChange, StateStore};
use crate::error::{ClientError, ClientResult};

const STATE_FILE: &str = "device.json";

/// The state as `device.json` in a directory, written whole and atomically (a temporary file
/// renamed over the old one, readable by the owner only) on every save: fine for one person's
/// device, not for thousands of sessions. It holds private keys in the clear: protecting the
/// directory is the operating system's job, as for any local key store without a hardware
/// keystore. The local history (`history.jsonl`) lives in the same directory.
///
/// [`StateFile::memory`] writes nothing and loads nothing (tests and load agents that never
/// reopen a device; [`super::MemoryStore`] keeps the state for a reopen).
#[derive(Clone, Debug)]
pub struct StateFile {
    dir: Option<PathBuf>,
    /// What the file holds, kept to apply changes to (shared by clones).
    mirror: Arc<Mutex<Option<DeviceState>>>,
}

impl StateFile {
    /// State kept in `dir` (created if missing).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        StateFile {
            dir: Some(dir.into()),
            mirror: Arc::default(),
        }
    }

    /// State kept in memory only: nothing is written or read.
    pub fn memory() -> Self {
        StateFile {
            dir: None,
            mirror: Arc::default(),
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn mirror(&self) -> std::sync::MutexGuard<'_, Option<DeviceState>> {
        // A panic while applying leaves a mirror that is re-read from the file below.
        self.mirror
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads the file (`None` if there is none yet).
    pub fn read(&self) -> ClientResult<Option<DeviceState>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let path = dir.join(STATE_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(storage(&path, error)),
        };
        let mut state: DeviceState = serde_json::from_str(&text)
            .map_err(|e| ClientError::Storage(format!("{}: {e}", path.display())))?;
        state.rebuild_index();
        *self.mirror() = Some(state.clone());
        Ok(Some(state))
    }

    /// Writes the whole state.
    pub fn write(&self, state: &DeviceState) -> ClientResult<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        let json = serde_json::to_vec(state)
            .map_err(|e| ClientError::Storage(format!("cannot encode state: {e}")))?;
        write_atomically(&dir.join(STATE_FILE), &json)?;
        *self.mirror() = Some(state.clone());
        Ok(())
    }

    fn apply(&self, change: &StateChange) -> ClientResult<()> {
        let Some(dir) = &self.dir else {
            return Ok(());
        };
        if self.mirror().is_none() {
            // Saved to before being read by this value: start from the file, if any.
            self.read()?;
        }
        let mut mirror = self.mirror();
        let state = match mirror.as_mut() {
            Some(state) => {
                state.apply(change);
                state
            }
            None => mirror.insert(DeviceState::from_items(change.puts().cloned())?),
        };
        let json = serde_json::to_vec(&*state)
            .map_err(|e| ClientError::Storage(format!("cannot encode state: {e}")))?;
        write_atomically(&dir.join(STATE_FILE), &json)
    }
}

#[async_trait]
impl StateStore for StateFile {
    async fn load(&self) -> ClientResult<Option<DeviceState>> {
        self.read()
    }

    async fn save(&self, change: &StateChange) -> ClientResult<()> {
        // A small file on a local disk: written in place rather than on a blocking thread, as
        // the whole CLI does.
        self.apply(change)
    }
}

fn storage(path: &Path, error: std::io::Error) -> ClientError {
    ClientError::Storage(format!("{}: {error}", path.display()))
}

/// Writes `bytes` to `path` through a temporary file and a rename, owner-readable only.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> ClientResult<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| storage(parent, e))?;
    }
    let temporary = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&temporary)
        .map_err(|e| storage(&temporary, e))?;
    file.write_all(bytes).map_err(|e| storage(&temporary, e))?;
    file.sync_all().map_err(|e| storage(&temporary, e))?;
    std::fs::rename(&temporary, path).map_err(|e| storage(path, e))
}
