-- Window summaries gain the remaining statistics and the mergeable state they are computed
-- from (counted sequence numbers, sums, latency histogram: see src/state.rs), so a window
-- can be continued exactly after it was written and after a restart.
ALTER TABLE window_summaries ADD COLUMN y_dif_mean     REAL    NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN sharpness_mean REAL    NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN black_frames   INTEGER NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN frozen_frames  INTEGER NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN scene_cuts     INTEGER NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN decode_errors  INTEGER NOT NULL DEFAULT 0;
-- '' = written before states existed: continued from empty.
ALTER TABLE window_summaries ADD COLUMN state          TEXT    NOT NULL DEFAULT '';

-- One row per camera: when it was seen, its clock (newest capture time: the watermark
-- survives restarts), picture size, and its incident tracker (src/incidents.rs).
CREATE TABLE IF NOT EXISTS cameras (
    id               TEXT    PRIMARY KEY,
    first_seen_ms    INTEGER NOT NULL,
    last_seen_ms     INTEGER NOT NULL,
    last_capture_ms  INTEGER NOT NULL,
    width            INTEGER NOT NULL,
    height           INTEGER NOT NULL,
    session          TEXT    NOT NULL,
    tracker          TEXT    NOT NULL,
    updated_ms       INTEGER NOT NULL
);

-- Black / frozen / gap intervals; end_ms NULL while one goes on.
CREATE TABLE IF NOT EXISTS events (
    camera       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    start_ms     INTEGER NOT NULL,
    end_ms       INTEGER,
    duration_ms  INTEGER NOT NULL,
    frames       INTEGER NOT NULL,
    session      TEXT    NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (camera, kind, start_ms)
);
CREATE INDEX IF NOT EXISTS events_camera_start ON events (camera, start_ms);
CREATE INDEX IF NOT EXISTS events_open ON events (camera) WHERE end_ms IS NULL;
CREATE INDEX IF NOT EXISTS events_end ON events (end_ms);
