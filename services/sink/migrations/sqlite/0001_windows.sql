-- One row per camera and summary window; rewritten whole (absolute values) on every flush.
CREATE TABLE IF NOT EXISTS window_summaries (
    camera          TEXT    NOT NULL,
    start_ms        INTEGER NOT NULL,
    end_ms          INTEGER NOT NULL,
    frames          INTEGER NOT NULL,
    fps             REAL    NOT NULL,
    keyframes       INTEGER NOT NULL,
    y_avg_mean      REAL    NOT NULL,
    y_avg_min       REAL    NOT NULL,
    y_avg_max       REAL    NOT NULL,
    gaps            INTEGER NOT NULL,
    latency_p50_ms  INTEGER NOT NULL,
    latency_p99_ms  INTEGER NOT NULL,
    updated_ms      INTEGER NOT NULL,
    PRIMARY KEY (camera, start_ms)
);

-- Time-range queries across cameras (the camera grid, retention).
CREATE INDEX IF NOT EXISTS window_summaries_start_ms ON window_summaries (start_ms);
