//! Default topic names (each is configurable per deployment).

/// One record per H.264 access unit, key = camera id.
pub const FRAMES: &str = "framewire.frames";
/// One JSON record per decoded frame, key = camera id.
pub const STATS: &str = "framewire.stats";
/// One JSON record per picture the object detector analysed, key = camera id.
pub const DETECTIONS: &str = "framewire.detections";
/// Compacted camera registry, key = camera id, tombstone = removal.
pub const CONTROL: &str = "framewire.control";
/// Records that could not be processed, with the reason in a header.
pub const DLQ: &str = "framewire.dlq";
