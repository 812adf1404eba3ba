-- One row per camera and summary window; rewritten whole (absolute values) on every flush.
CREATE TABLE IF NOT EXISTS window_summaries (
    camera          TEXT             NOT NULL,
    start_ms        BIGINT           NOT NULL,
    end_ms          BIGINT           NOT NULL,
    frames          BIGINT           NOT NULL,
    fps             DOUBLE PRECISION NOT NULL,
    keyframes       BIGINT           NOT NULL,
    y_avg_mean      DOUBLE PRECISION NOT NULL,
    y_avg_min       DOUBLE PRECISION NOT NULL,
    y_avg_max       DOUBLE PRECISION NOT NULL,
    gaps            BIGINT           NOT NULL,
    latency_p50_ms  BIGINT           NOT NULL,
    latency_p99_ms  BIGINT           NOT NULL,
    updated_ms      BIGINT           NOT NULL,
    PRIMARY KEY (camera, start_ms)
);

-- Time-range queries across cameras (the camera grid, retention).
CREATE INDEX IF NOT EXISTS window_summaries_start_ms ON window_summaries (start_ms);
