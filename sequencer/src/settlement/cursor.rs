//! [`DbCursorStore`]: keeps an L1 event follower's position (`l1_contracts::rpc::Cursor`) in the sequencer's
//! database, so finality tracking resumes where it stopped on any replica that becomes leader.

use crate::storage::{SharedStorage, StorageError};
use l1_contracts::rpc::{Cursor, CursorStore};

/// A named cursor in the `l1_cursors` table.
#[derive(Clone)]
pub struct DbCursorStore {
    storage: SharedStorage,
    name: String,
}

impl std::fmt::Debug for DbCursorStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbCursorStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl DbCursorStore {
    /// The cursor `name` in `storage`.
    pub fn new(storage: SharedStorage, name: impl Into<String>) -> Self {
        Self {
            storage,
            name: name.into(),
        }
    }
}

impl CursorStore for DbCursorStore {
    type Error = StorageError;

    async fn load(&mut self) -> Result<Option<Cursor>, StorageError> {
        self.storage
            .load_cursor(&self.name)
            .await?
            .map(|bytes| {
                Cursor::decode(&bytes)
                    .map_err(|e| StorageError::Corrupt(format!("cursor {}: {e}", self.name)))
            })
            .transpose()
    }

    async fn save(&mut self, cursor: &Cursor) -> Result<(), StorageError> {
        self.storage.save_cursor(&self.name, &cursor.encode()).await
    }
}
