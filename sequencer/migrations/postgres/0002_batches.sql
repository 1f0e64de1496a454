-- Batches posted to L1 (Postgres). Keep in step with ../sqlite/0002_batches.sql.
--
-- A batch is recorded (status 'planned', with the exact bytes to post) and its jobs are assigned to it (batch_number,
-- leaf_index) in one transaction BEFORE anything is sent to L1, so a crash between planning and posting re-posts the
-- same bytes. Posting records the L1 batch id, transaction and block ('posted'); finalization sets 'final'.

CREATE TABLE batches (
    number           BIGINT PRIMARY KEY,        -- the sequencer's batch number: 1, 2, ... in posting order
    status           TEXT NOT NULL,             -- planned | posted | final
    batch_root       BYTEA NOT NULL,            -- merkle root over leaf_hashes
    leaf_count       BIGINT NOT NULL,
    leaf_hashes      BYTEA NOT NULL,            -- 32 bytes per leaf, in batch (leaf index) order
    data             BYTEA NOT NULL,            -- encoded batch data (zstd frame): exactly the bytes posted
    da_commitment    BYTEA NOT NULL,            -- keccak256(data)
    raw_bytes        BIGINT NOT NULL,           -- uncompressed layout size
    prev_state_root  BYTEA NOT NULL,            -- expected when planned; the chain's once posted
    state_root       BYTEA NOT NULL,            -- keccak256(prev_state_root ‖ batch_root)
    planned_at       BIGINT NOT NULL,           -- Unix ms
    l1_batch_id      BIGINT UNIQUE,             -- the contract's batch id, once posted
    l1_tx            BYTEA,                     -- postBatch transaction
    l1_block         BIGINT,
    posted_at        BIGINT,                    -- L1 block timestamp (Unix s)
    gas_used         BIGINT,                    -- NULL when the post was recovered from the chain's events
    finalizes_at     BIGINT,                    -- L1 timestamp (Unix s) from which finalize() succeeds
    final_tx         BYTEA,                     -- our finalize transaction (NULL when someone else finalized)
    finalized_at     BIGINT                     -- Unix ms
);

CREATE INDEX batches_status ON batches (status, number);
CREATE INDEX jobs_unbatched ON jobs (executed_at, id) WHERE state = 'executed' AND batch_number IS NULL;
CREATE INDEX jobs_batch ON jobs (batch_number, leaf_index);

-- Positions of L1 event followers (encoded `LogFollower` cursors), by name.
CREATE TABLE l1_cursors (
    name    TEXT PRIMARY KEY,
    encoded BYTEA NOT NULL
);
