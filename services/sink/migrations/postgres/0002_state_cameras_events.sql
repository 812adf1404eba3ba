-- Window summaries gain the remaining statistics and the mergeable state they are computed
-- from (counted sequence numbers, sums, latency histogram: see src/state.rs), so a window
-- can be continued exactly after it was written, after a restart, by another replica.
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS y_dif_mean     DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS sharpness_mean DOUBLE PRECISION NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS black_frames   BIGINT           NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS frozen_frames  BIGINT           NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS scene_cuts     BIGINT           NOT NULL DEFAULT 0;
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS decode_errors  BIGINT           NOT NULL DEFAULT 0;
-- '' = written before states existed: continued from empty.
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS state          TEXT             NOT NULL DEFAULT '';

-- One row per camera: when it was seen, its clock (newest capture time: the watermark
-- survives restarts), picture size, and its incident tracker (src/incidents.rs).
CREATE TABLE IF NOT EXISTS cameras (
    id               TEXT   PRIMARY KEY,
    first_seen_ms    BIGINT NOT NULL,
    last_seen_ms     BIGINT NOT NULL,
    last_capture_ms  BIGINT NOT NULL,
    width            BIGINT NOT NULL,
    height           BIGINT NOT NULL,
    session          TEXT   NOT NULL,
    tracker          TEXT   NOT NULL,
    updated_ms       BIGINT NOT NULL
);

-- Black / frozen / gap intervals; end_ms NULL while one goes on.
CREATE TABLE IF NOT EXISTS events (
    camera       TEXT   NOT NULL,
    kind         TEXT   NOT NULL,
    start_ms     BIGINT NOT NULL,
    end_ms       BIGINT,
    duration_ms  BIGINT NOT NULL,
    frames       BIGINT NOT NULL,
    session      TEXT   NOT NULL,
    updated_ms   BIGINT NOT NULL,
    PRIMARY KEY (camera, kind, start_ms)
);
CREATE INDEX IF NOT EXISTS events_camera_start ON events (camera, start_ms);
CREATE INDEX IF NOT EXISTS events_open ON events (camera) WHERE end_ms IS NULL;
CREATE INDEX IF NOT EXISTS events_end ON events (end_ms);
