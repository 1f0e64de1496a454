-- verinfer sequencer schema (SQLite). Times are Unix milliseconds; hashes and ids are raw bytes; token lists are
-- u32 little-endian byte strings. Keep in step with ../postgres/0001_init.sql.

CREATE TABLE api_keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    key_hash    BLOB NOT NULL UNIQUE,
    prefix      TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER,
    rpm_limit   INTEGER,
    tpm_limit   INTEGER
);

CREATE TABLE key_usage (
    key_id             INTEGER PRIMARY KEY REFERENCES api_keys (id),
    requests           INTEGER NOT NULL DEFAULT 0,
    prompt_tokens      INTEGER NOT NULL DEFAULT 0,
    completion_tokens  INTEGER NOT NULL DEFAULT 0
);

CREATE TABLE requests (
    id            BLOB PRIMARY KEY,
    kind          TEXT NOT NULL,
    model         TEXT NOT NULL,
    model_root    BLOB NOT NULL,
    key_id        INTEGER REFERENCES api_keys (id),
    created_at    INTEGER NOT NULL,
    prompt_tokens BLOB NOT NULL,
    prompt_len    INTEGER NOT NULL,
    prompt_root   BLOB NOT NULL,
    n             INTEGER NOT NULL,
    options       TEXT NOT NULL
);

CREATE TABLE jobs (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    request_id        BLOB NOT NULL REFERENCES requests (id),
    choice_index      INTEGER NOT NULL,
    max_tokens        INTEGER NOT NULL,
    temperature_milli INTEGER NOT NULL,
    top_p_milli       INTEGER NOT NULL,
    seed              INTEGER NOT NULL,
    state             TEXT NOT NULL,
    executor          TEXT,
    lease_expires_at  INTEGER,
    attempt           INTEGER NOT NULL DEFAULT 0,
    tokens            BLOB NOT NULL,
    finish_reason     INTEGER,
    trace_root        BLOB,
    op_count          INTEGER,
    executor_address  BLOB,
    signature         BLOB,
    output_hash       BLOB,
    leaf_hash         BLOB,
    executed_at       INTEGER,
    batch_number      INTEGER,
    leaf_index        INTEGER,
    l1_tx             BLOB,
    updated_at        INTEGER NOT NULL,
    UNIQUE (request_id, choice_index)
);

CREATE INDEX jobs_pending ON jobs (id) WHERE state IN ('queued', 'leased');
CREATE INDEX jobs_state ON jobs (state);
