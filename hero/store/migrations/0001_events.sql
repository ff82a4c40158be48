-- The event log, the streams' versions, the commands' results, the skipped rows and the
-- relay's checkpoints: the same tables as the SQLite store.
CREATE TABLE events (
    position BIGINT PRIMARY KEY,
    stream   TEXT NOT NULL,
    version  BIGINT NOT NULL,
    id       TEXT NOT NULL UNIQUE,
    type     TEXT NOT NULL,
    topic    TEXT NOT NULL,
    envelope TEXT NOT NULL,
    UNIQUE (stream, version)
);
CREATE TABLE streams (
    stream  TEXT PRIMARY KEY,
    version BIGINT NOT NULL
);
CREATE TABLE commands (
    stream         TEXT NOT NULL,
    command_id     TEXT NOT NULL,
    first_version  BIGINT NOT NULL,
    last_version   BIGINT NOT NULL,
    first_position BIGINT NOT NULL,
    last_position  BIGINT NOT NULL,
    event_ids      TEXT NOT NULL,
    PRIMARY KEY (stream, command_id)
);
CREATE TABLE skipped (
    source     TEXT NOT NULL,
    position   BIGINT NOT NULL,
    stream     TEXT NOT NULL,
    type       TEXT NOT NULL,
    reason     TEXT NOT NULL,
    detail     TEXT NOT NULL,
    skipped_at TEXT NOT NULL,
    PRIMARY KEY (source, position)
);
CREATE TABLE checkpoints (
    name     TEXT PRIMARY KEY,
    position BIGINT NOT NULL
);
-- The log's head: the last position handed out. One row, locked by every append (see
-- hero/store/postgres.py for why a lock and not a sequence).
CREATE TABLE log_head (
    only_row BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (only_row),
    position BIGINT NOT NULL
);
INSERT INTO log_head (only_row, position) VALUES (TRUE, 0);
