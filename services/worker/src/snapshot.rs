//! Pictures for people: the latest decoded frame of a camera, on request.
//!
//! Copying and encoding every picture would cost decode time nobody asked for, so a
//! decoder thread copies a picture only while someone waits for its camera (one atomic
//! load per picture otherwise). The copy is handed to the waiters and encoded to JPEG on
//! their side, off the decoder threads.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use framewire_framestats::Picture;
use tokio::sync::oneshot;

/// A copy of one decoded picture, planes packed without padding.
#[derive(Debug)]
pub struct Snapshot {
    /// Luma, `width × height`.
    pub y: Vec<u8>,
    /// Cb, `(width+1)/2 × (height+1)/2`.
    pub u: Vec<u8>,
    /// Cr, same size as `u`.
    pub v: Vec<u8>,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The frame's `fw-seq`.
    pub seq: u64,
    /// The frame's capture time (ms since the epoch).
    pub capture_ms: i64,
}

impl Snapshot {
    /// Copies a decoded picture.
    pub fn copy(pic: &Picture<'_>, seq: u64, capture_ms: i64) -> Self {
        let pack = |p: &framewire_framestats::Plane<'_>| {
            let mut out = Vec::with_capacity(p.width() * p.height());
            p.rows().for_each(|r| out.extend_from_slice(r));
            out
        };
        Snapshot {
            y: pack(&pic.y),
            u: pack(&pic.u),
            v: pack(&pic.v),
            width: pic.y.width() as u32,
            height: pic.y.height() as u32,
            seq,
            capture_ms,
        }
    }

    /// Encodes the picture as a JPEG at most `max_width` wide.
    pub fn to_jpeg(
        &self,
        max_width: u32,
        quality: u8,
    ) -> Result<Vec<u8>, framewire_thumbnail::ThumbnailError> {
        let cw = self.width.div_ceil(2) as usize;
        framewire_thumbnail::jpeg_from_yuv420(
            &self.y,
            self.width as usize,
            &self.u,
            cw,
            &self.v,
            cw,
            self.width,
            self.height,
            max_width,
            quality,
        )
    }
}

/// Who waits for which camera's next picture.
#[derive(Debug, Default)]
pub struct Watchers {
    waiting: AtomicUsize,
    by_camera: Mutex<HashMap<String, Vec<oneshot::Sender<Arc<Snapshot>>>>>,
}

impl Watchers {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Vec<oneshot::Sender<Arc<Snapshot>>>>> {
        self.by_camera.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True when someone waits for `camera`'s next picture (cheap when nobody waits).
    pub fn wants(&self, camera: &str) -> bool {
        self.waiting.load(Ordering::Relaxed) > 0 && self.lock().contains_key(camera)
    }

    /// Hands a picture to everyone waiting for `camera`.
    pub fn deliver(&self, camera: &str, snapshot: Snapshot) {
        let waiters = {
            let mut map = self.lock();
            let waiters = map.remove(camera).unwrap_or_default();
            self.waiting.fetch_sub(waiters.len(), Ordering::Relaxed);
            waiters
        };
        let snapshot = Arc::new(snapshot);
        for w in waiters {
            let _ = w.send(snapshot.clone());
        }
    }

    /// Waits up to `timeout` for `camera`'s next decoded picture.
    pub async fn next(&self, camera: &str, timeout: Duration) -> Option<Arc<Snapshot>> {
        let (tx, rx) = oneshot::channel();
        {
            let mut map = self.lock();
            map.entry(camera.to_owned()).or_default().push(tx);
            self.waiting.fetch_add(1, Ordering::Relaxed);
        }
        let got = tokio::time::timeout(timeout, rx)
            .await
            .ok()
            .and_then(Result::ok);
        if got.is_none() {
            // Timed out: drop our (and any other dead) sender so the camera is not copied for nobody.
            let mut map = self.lock();
            if let Some(list) = map.get_mut(camera) {
                let before = list.len();
                list.retain(|s| !s.is_closed());
                self.waiting
                    .fetch_sub(before - list.len(), Ordering::Relaxed);
                if list.is_empty() {
                    map.remove(camera);
                }
            }
        }
        got
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use framewire_framestats::Plane;

    #[tokio::test]
    async fn a_waiter_gets_the_next_picture_and_nobody_waits_after() {
        let w = Arc::new(Watchers::default());
        assert!(!w.wants("cam"));
        let waiter = {
            let w = w.clone();
            tokio::spawn(async move { w.next("cam", Duration::from_secs(5)).await })
        };
        while !w.wants("cam") {
            tokio::task::yield_now().await;
        }
        assert!(!w.wants("other"));
        let (y, c) = (vec![200u8; 8 * 4], vec![128u8; 4 * 2]);
        let pic = Picture {
            y: Plane::new(&y, 8, 4, 8).unwrap(),
            u: Plane::new(&c, 4, 2, 4).unwrap(),
            v: Plane::new(&c, 4, 2, 4).unwrap(),
        };
        w.deliver("cam", Snapshot::copy(&pic, 7, 1_000));
        let got = waiter.await.unwrap().expect("a picture");
        assert_eq!((got.seq, got.width, got.height, got.y[0]), (7, 8, 4, 200));
        assert!(!w.wants("cam"));
        let jpeg = got.to_jpeg(8, 80).unwrap();
        assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    }

    #[tokio::test]
    async fn a_waiter_that_times_out_is_removed() {
        let w = Watchers::default();
        assert!(w.next("cam", Duration::from_millis(20)).await.is_none());
        assert!(!w.wants("cam"));
        assert_eq!(w.waiting.load(Ordering::Relaxed), 0);
    }
}
