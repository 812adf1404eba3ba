-- Object detections (framewire.detections): per window the analysed pictures (counted in the
-- window's state beside its frames) and per class label the objects, the most in one
-- picture and the pictures with at least one; appeared/left incidents per class; and each
-- camera's newest analysed picture for the web page.
ALTER TABLE window_summaries ADD COLUMN pictures_analysed INTEGER NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS window_objects (
    camera           TEXT    NOT NULL,
    start_ms         INTEGER NOT NULL,
    end_ms           INTEGER NOT NULL,
    label            TEXT    NOT NULL,
    objects          INTEGER NOT NULL,
    max_per_picture  INTEGER NOT NULL,
    pictures         INTEGER NOT NULL,
    updated_ms       INTEGER NOT NULL,
    PRIMARY KEY (camera, start_ms, label)
);
CREATE INDEX IF NOT EXISTS window_objects_end ON window_objects (end_ms);

CREATE TABLE IF NOT EXISTS latest_pictures (
    camera       TEXT    PRIMARY KEY,
    session      TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    capture_ms   INTEGER NOT NULL,
    detected_ms  INTEGER NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    model        TEXT    NOT NULL,
    objects      TEXT    NOT NULL,
    updated_ms   INTEGER NOT NULL
);

-- Incidents gain the object class ('' for black / frozen / gap), part of the key: two classes
-- can appear in the same picture. SQLite cannot change a primary key in place.
CREATE TABLE events_new (
    camera       TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    label        TEXT    NOT NULL DEFAULT '',
    start_ms     INTEGER NOT NULL,
    end_ms       INTEGER,
    duration_ms  INTEGER NOT NULL,
    frames       INTEGER NOT NULL,
    session      TEXT    NOT NULL,
    updated_ms   INTEGER NOT NULL,
    PRIMARY KEY (camera, kind, label, start_ms)
);
INSERT INTO events_new (camera, kind, label, start_ms, end_ms, duration_ms, frames, session, updated_ms)
    SELECT camera, kind, '', start_ms, end_ms, duration_ms, frames, session, updated_ms FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX IF NOT EXISTS events_camera_start ON events (camera, start_ms);
CREATE INDEX IF NOT EXISTS events_open ON events (camera) WHERE end_ms IS NULL;
CREATE INDEX IF NOT EXISTS events_end ON events (end_ms);
