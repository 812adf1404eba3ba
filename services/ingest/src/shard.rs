//! Which ingest replica owns which camera.
//!
//! Rendezvous (highest-random-weight) hashing: replica `s` of `n` owns camera `id` when
//! `score(id, s)` is the highest of all `n` scores, with
//! `score(id, s) = mix(fnv1a64(id) ^ mix(s))` and `mix` = splitmix64's finaliser.
//! Every replica computes the same answer from the id alone (no coordination), each
//! camera has exactly one owner, and changing `n` moves only about 1/n of the cameras.

/// This replica's place among the ingest replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Shard {
    /// This replica's index, `0..count`.
    pub index: u32,
    /// Number of replicas.
    pub count: u32,
}

impl Shard {
    /// Whether this replica owns `camera`.
    pub fn owns(&self, camera: &str) -> bool {
        owner(camera, self.count) == self.index
    }
}

/// The replica (of `count`) that owns `camera`.
pub fn owner(camera: &str, count: u32) -> u32 {
    let h = fnv1a64(camera.as_bytes());
    (0..count.max(1))
        .max_by_key(|&s| mix(h ^ mix(u64::from(s))))
        .unwrap_or(0)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The ordinal at the end of a StatefulSet pod name (`framewire-ingest-3` → 3).
pub fn ordinal_from_hostname(hostname: &str) -> Option<u32> {
    hostname.rsplit_once('-').and_then(|(_, n)| n.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("camera-{i}")).collect()
    }

    #[test]
    fn every_camera_has_exactly_one_owner() {
        for count in 1..6 {
            for id in ids(200) {
                let owners = (0..count)
                    .filter(|&s| Shard { index: s, count }.owns(&id))
                    .count();
                assert_eq!(owners, 1, "{id} with {count} replicas");
            }
        }
    }

    #[test]
    fn load_is_even_and_resizing_moves_few() {
        let all = ids(10_000);
        let mut per = [0usize; 4];
        for id in &all {
            per[owner(id, 4) as usize] += 1;
        }
        for n in per {
            assert!((2_250..=2_750).contains(&n), "{per:?}");
        }
        let moved = all.iter().filter(|id| owner(id, 4) != owner(id, 5)).count();
        // Ideal is 1/5 of the cameras; modulo hashing would move 4/5.
        assert!(
            (1_700..=2_300).contains(&moved),
            "{moved} of 10000 moved from 4 to 5 replicas"
        );
    }

    #[test]
    fn owner_is_stable_across_releases() {
        // Pinned values: a change here re-shards every fleet on upgrade.
        assert_eq!(owner("gate-1", 2), owner("gate-1", 2));
        let pinned: Vec<u32> = ["gate-1", "lobby", "cam-042", "x"]
            .iter()
            .map(|id| owner(id, 3))
            .collect();
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u32; 4] = [0, 0, 1, 2];

    #[test]
    fn ordinals() {
        assert_eq!(ordinal_from_hostname("framewire-ingest-3"), Some(3));
        assert_eq!(ordinal_from_hostname("ingest"), None);
        assert_eq!(ordinal_from_hostname("a-b"), None);
    }
}
