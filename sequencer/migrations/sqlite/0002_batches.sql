-- Batches posted to L1 (SQLite). Keep in step with ../postgres/0002_batches.sql.
--
-- A batch is recorded (status 'planned', with the exact bytes to post) and its jobs are assigned to it (batch_number,
-- leaf_index) in one transaction BEFORE anything is sent to L1, so a crash between planning and posting re-posts the
-- same bytes. Posting records the L1 batch id, transaction and block ('posted'); finalization sets 'final'.

CREATE TABLE batches (
    number           INTEGER PRIMARY KEY,        -- the sequencer's batch number: 1, 2, ... in posting order
    status           TEXT NOT NULL,             -- planned | posted | final
    batch_root       BLOB NOT NULL,            -- merkle root over leaf_hashes
    leaf_count       INTEGER NOT NULL,
    leaf_hashes      BLOB NOT NULL,            -- 32 bytes per leaf, in batch (leaf index) order
    data             BLOB NOT NULL,            -- encoded batch data (zstd frame): exactly the bytes posted
    da_commitment    BLOB NOT NULL,            -- keccak256(data)
    raw_bytes        INTEGER NOT NULL,           -- uncompressed layout size
    prev_state_root  BLOB NOT NULL,            -- expected when planned; the chain's once posted
    state_root       BLOB NOT NULL,            -- keccak256(prev_state_root ‖ batch_root)
    planned_at       INTEGER NOT NULL,           -- Unix ms
    l1_batch_id      INTEGER UNIQUE,             -- the contract's batch id, once posted
    l1_tx            BLOB,                     -- postBatch transaction
    l1_block         INTEGER,
    posted_at        INTEGER,                    -- L1 block timestamp (Unix s)
    gas_used         INTEGER,                    -- NULL when the post was recovered from the chain's events
    finalizes_at     INTEGER,                    -- L1 timestamp (Unix s) from which finalize() succeeds
    final_tx         BLOB,                     -- our finalize transaction (NULL when someone else finalized)
    finalized_at     INTEGER                     -- Unix ms
);

CREATE INDEX batches_status ON batches (status, number);
CREATE INDEX jobs_unbatched ON jobs (executed_at, id) WHERE state = 'executed' AND batch_number IS NULL;
CREATE INDEX jobs_batch ON jobs (batch_number, leaf_index);

-- Positions of L1 event followers (encoded `LogFollower` cursors), by name.
CREATE TABLE l1_cursors (
    name    TEXT PRIMARY KEY,
    encoded BLOB NOT NULL
);
