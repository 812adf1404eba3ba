//! What `/cameras` shows about each camera: its state, last error and session.
//! Counters are not kept here: they are read from the camera's metrics.

use std::sync::Mutex;

use serde::Serialize;

/// Where a camera is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// DESCRIBE/SETUP/PLAY in progress.
    Connecting,
    /// Frames are flowing.
    Streaming,
    /// The last session failed with a transient error; waiting to reconnect.
    BackingOff,
    /// The last session failed with an error that needs a person (bad credentials, no
    /// H.264 video, a bad spec); still retried at the longest backoff.
    Failed,
    /// Registered but `enabled = false`.
    Disabled,
    /// The control topic's latest record for the camera is not a valid spec and there is
    /// no earlier good spec to run: not running until a good record or a tombstone.
    Invalid,
}

impl State {
    /// Every state, for the state gauge.
    pub const ALL: [State; 6] = [
        State::Connecting,
        State::Streaming,
        State::BackingOff,
        State::Failed,
        State::Disabled,
        State::Invalid,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Streaming => "streaming",
            State::BackingOff => "backing_off",
            State::Failed => "failed",
            State::Disabled => "disabled",
            State::Invalid => "invalid",
        }
    }
}

/// The last error of a camera.
#[derive(Debug, Clone, Serialize)]
pub struct LastError {
    /// Short kind (the `kind` label of `framewire_ingest_session_errors_total`).
    pub kind: &'static str,
    /// What went wrong, never with credentials.
    pub message: String,
    /// When, ms since the epoch.
    pub at_ms: i64,
}

/// A control record for a camera that is not a valid spec (`spec_error` on `/cameras`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpecError {
    /// Why the record was refused, one line naming the camera.
    pub message: String,
    /// The record's partition in the control topic.
    pub partition: i32,
    /// The record's offset.
    pub offset: i64,
}

/// A camera's live status.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// Current state.
    pub state: State,
    /// Last error, if any session failed.
    pub last_error: Option<LastError>,
    /// Current RTSP session id (`fw-session`), while streaming.
    pub session: Option<String>,
}

/// Shared between a camera's task and the admin API.
#[derive(Debug)]
pub struct CameraStatus(Mutex<Snapshot>);

impl Snapshot {
    /// The status of a camera that runs no task (state `invalid`).
    pub fn idle(state: State) -> Self {
        Snapshot {
            state,
            last_error: None,
            session: None,
        }
    }
}

impl CameraStatus {
    /// A camera that is about to connect (or is disabled).
    pub fn new(state: State) -> Self {
        CameraStatus(Mutex::new(Snapshot {
            state,
            last_error: None,
            session: None,
        }))
    }

    fn with<R>(&self, f: impl FnOnce(&mut Snapshot) -> R) -> R {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// The current status.
    pub fn snapshot(&self) -> Snapshot {
        self.with(|s| s.clone())
    }

    /// Sets the state (and clears the session unless streaming).
    pub fn set_state(&self, state: State) {
        self.with(|s| {
            s.state = state;
            if state != State::Streaming {
                s.session = None;
            }
        });
    }

    /// Streaming in `session`.
    pub fn streaming(&self, session: &str) {
        self.with(|s| {
            s.state = State::Streaming;
            s.session = Some(session.to_owned());
        });
    }

    /// Records a failed session and the state it leads to.
    pub fn failed(&self, state: State, error: LastError) {
        self.with(|s| {
            s.state = state;
            s.session = None;
            s.last_error = Some(error);
        });
    }
}
