-- Token logprobs (SQLite). Keep in step with ../postgres/0003_logprobs.sql.
--
-- logprobs_top: NULL when the request did not ask for logprobs, else the number of alternatives per token (0..=20).
-- logprobs: one record per token of `tokens` (written together with them): the number of alternatives k (1 byte),
-- the token's logprob (f64 bits, LE), then k × (token id u32 LE, logprob f64 bits LE). Not part of any leaf.

ALTER TABLE jobs ADD COLUMN logprobs_top INTEGER;
ALTER TABLE jobs ADD COLUMN logprobs BLOB NOT NULL DEFAULT x'';
