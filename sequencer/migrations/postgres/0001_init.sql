-- verinfer sequencer schema (Postgres). Times are Unix milliseconds (BIGINT); hashes and ids are raw bytes;
-- token lists are u32 little-endian byte strings. Keep in step with ../sqlite/0001_init.sql.

CREATE TABLE api_keys (
    id          BIGSERIAL PRIMARY KEY,
    key_hash    BYTEA NOT NULL UNIQUE,          -- sha256 of the key; the key itself is never stored
    prefix      TEXT NOT NULL,                  -- first characters of the key, for display
    name        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT,
    rpm_limit   BIGINT,                         -- requests per minute; NULL = unlimited
    tpm_limit   BIGINT                          -- prompt + max_tokens per minute; NULL = unlimited
);

CREATE TABLE key_usage (
    key_id             BIGINT PRIMARY KEY REFERENCES api_keys (id),
    requests           BIGINT NOT NULL DEFAULT 0,
    prompt_tokens      BIGINT NOT NULL DEFAULT 0,
    completion_tokens  BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE requests (
    id            BYTEA PRIMARY KEY,            -- 32-byte request id (the leaf's requestId)
    kind          TEXT NOT NULL,                -- 'chat' | 'completion'
    model         TEXT NOT NULL,
    model_root    BYTEA NOT NULL,
    key_id        BIGINT REFERENCES api_keys (id),
    created_at    BIGINT NOT NULL,
    prompt_tokens BYTEA NOT NULL,
    prompt_len    BIGINT NOT NULL,
    prompt_root   BYTEA NOT NULL,
    n             BIGINT NOT NULL,
    options       TEXT NOT NULL                 -- JSON: response options (stop strings, stream, ...)
);

CREATE TABLE jobs (
    id                BIGSERIAL PRIMARY KEY,
    request_id        BYTEA NOT NULL REFERENCES requests (id),
    choice_index      BIGINT NOT NULL,
    max_tokens        BIGINT NOT NULL,
    temperature_milli BIGINT NOT NULL,
    top_p_milli       BIGINT NOT NULL,
    seed              BIGINT NOT NULL,          -- u64 stored as its i64 bit pattern
    state             TEXT NOT NULL,            -- queued | leased | executed | posted | final | invalid
    executor          TEXT,
    lease_expires_at  BIGINT,
    attempt           BIGINT NOT NULL DEFAULT 0,
    tokens            BYTEA NOT NULL,           -- tokens streamed so far (the output once executed)
    finish_reason     BIGINT,
    trace_root        BYTEA,
    op_count          BIGINT,
    executor_address  BYTEA,
    signature         BYTEA,
    output_hash       BYTEA,
    leaf_hash         BYTEA,
    executed_at       BIGINT,
    batch_number      BIGINT,
    leaf_index        BIGINT,
    l1_tx             BYTEA,
    updated_at        BIGINT NOT NULL,
    UNIQUE (request_id, choice_index)
);

CREATE INDEX jobs_pending ON jobs (id) WHERE state IN ('queued', 'leased');
CREATE INDEX jobs_state ON jobs (state);
