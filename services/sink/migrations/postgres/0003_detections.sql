-- Object detections (framewire.detections): per window the analysed pictures (counted in the
-- window's state beside its frames) and per class label the objects, the most in one
-- picture and the pictures with at least one; appeared/left incidents per class; and each
-- camera's newest analysed picture for the web page.
ALTER TABLE window_summaries ADD COLUMN IF NOT EXISTS pictures_analysed BIGINT NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS window_objects (
    camera           TEXT   NOT NULL,
    start_ms         BIGINT NOT NULL,
    end_ms           BIGINT NOT NULL,
    label            TEXT   NOT NULL,
    objects          BIGINT NOT NULL,
    max_per_picture  BIGINT NOT NULL,
    pictures         BIGINT NOT NULL,
    updated_ms       BIGINT NOT NULL,
    PRIMARY KEY (camera, start_ms, label)
);
CREATE INDEX IF NOT EXISTS window_objects_end ON window_objects (end_ms);

CREATE TABLE IF NOT EXISTS latest_pictures (
    camera       TEXT   PRIMARY KEY,
    session      TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    capture_ms   BIGINT NOT NULL,
    detected_ms  BIGINT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    model        TEXT   NOT NULL,
    objects      TEXT   NOT NULL,
    updated_ms   BIGINT NOT NULL
);

-- Incidents gain the object class ('' for black / frozen / gap), part of the key: two classes
-- can appear in the same picture.
ALTER TABLE events ADD COLUMN IF NOT EXISTS label TEXT NOT NULL DEFAULT '';
ALTER TABLE events DROP CONSTRAINT IF EXISTS events_pkey;
ALTER TABLE events ADD PRIMARY KEY (camera, kind, label, start_ms);
