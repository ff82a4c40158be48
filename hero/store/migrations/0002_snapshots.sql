-- Snapshots of folded state (hero/store/snapshots.py): the newest few per name, each with
-- the last position folded into it and its state's format version.
CREATE TABLE snapshots (
    name           TEXT NOT NULL,
    position       BIGINT NOT NULL,
    schema_version INTEGER NOT NULL,
    body           BYTEA NOT NULL,
    PRIMARY KEY (name, position)
);
