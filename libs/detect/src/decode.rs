//! Decoding: NanoDet's six output tensors into detections on the original picture.
//!
//! NanoDet predicts on three grids (strides 8, 16, 32: 52², 26² and 13² cells at 416). Per
//! cell it gives 80 class probabilities (sigmoid already applied in the graph) and, per
//! side of the box (left, top, right, bottom), a distribution over 11 distances 0..10 in
//! units of the stride (generalised focal loss). A cell becomes a candidate when its best
//! class beats the score threshold; its box is the cell centre `((x + 0.5) * s,
//! (y + 0.5) * s)` minus / plus the expected distance of each side (softmax of the 11
//! logits, `Σ i · p_i · s`). Candidates are mapped out of the letterbox into 0..1 of the
//! picture, then per-class non-maximum suppression keeps the best of overlapping boxes.
//!
//! Outputs come from a model file and a runtime this crate does not control, so anything
//! (NaN, infinities, huge logits) must decode without a panic: a cell with a non-finite
//! score or distance is skipped.

use crate::{BINS, CLASSES, COCO80, Config, DetectError, Letterbox, STRIDES};

/// One detected object.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// COCO-80 class index (0 = person).
    pub class: u16,
    /// COCO-80 class name.
    pub label: &'static str,
    /// Class probability, above the score threshold.
    pub score: f32,
    /// Left edge, 0..1 of the picture width.
    pub x0: f32,
    /// Top edge, 0..1 of the picture height.
    pub y0: f32,
    /// Right edge (> `x0`), 0..1 of the picture width.
    pub x1: f32,
    /// Bottom edge (> `y0`), 0..1 of the picture height.
    pub y1: f32,
}

impl Detection {
    /// Area as a fraction of the picture (0 for an inverted box).
    pub fn area(&self) -> f32 {
        (self.x1 - self.x0).max(0.0) * (self.y1 - self.y0).max(0.0)
    }
}

/// NanoDet's outputs, row-major per cell, level by level (strides 8, 16, 32): `scores[k]`
/// is `[cells_k, 80]` ([`SCORE_OUTPUTS`](crate::SCORE_OUTPUTS)), `boxes[k]` is
/// `[cells_k, 44]` ([`BOX_OUTPUTS`](crate::BOX_OUTPUTS)).
#[derive(Debug, Clone, Copy)]
pub struct Outputs<'a> {
    /// Class probabilities per level.
    pub scores: [&'a [f32]; 3],
    /// Box side distributions (logits) per level.
    pub boxes: [&'a [f32]; 3],
}

/// Intersection over union of two boxes (0 when the union is empty).
pub fn iou(a: &Detection, b: &Detection) -> f32 {
    let w = (a.x1.min(b.x1) - a.x0.max(b.x0)).max(0.0);
    let h = (a.y1.min(b.y1) - a.y0.max(b.y0)).max(0.0);
    let inter = w * h;
    let union = a.area() + b.area() - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Per-class non-maximum suppression, in place: sorts by score (best first, ties in the
/// given order) and keeps a detection only if it overlaps no better kept detection of its
/// class by more than `iou_threshold`; stops after `max` kept.
pub fn nms(detections: &mut Vec<Detection>, iou_threshold: f32, max: usize) {
    detections.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept = 0;
    for i in 0..detections.len() {
        if kept == max {
            break;
        }
        let candidate = detections[i];
        let suppressed = detections[..kept]
            .iter()
            .any(|k| k.class == candidate.class && iou(k, &candidate) > iou_threshold);
        if !suppressed {
            detections.swap(kept, i);
            kept += 1;
        }
    }
    detections.truncate(kept);
}

/// Decodes `outputs` of a picture placed by `letterbox` into `detections` (cleared first;
/// reuse it to avoid allocating): best first, at most `config.max_detections`, boxes clamped
/// to the picture. A box that lies entirely in the padding is dropped.
pub fn decode(
    outputs: &Outputs<'_>,
    letterbox: &Letterbox,
    config: &Config,
    detections: &mut Vec<Detection>,
) -> Result<(), DetectError> {
    detections.clear();
    let size = letterbox.size;
    if size == 0 || !size.is_multiple_of(32) {
        return Err(DetectError::InputSize(size));
    }
    for (level, &stride) in STRIDES.iter().enumerate() {
        let side = (size / stride) as usize;
        let (scores, boxes) = (outputs.scores[level], outputs.boxes[level]);
        check_len(crate::SCORE_OUTPUTS[level], scores, side * side * CLASSES)?;
        check_len(crate::BOX_OUTPUTS[level], boxes, side * side * 4 * BINS)?;
        let cells = scores
            .chunks_exact(CLASSES)
            .zip(boxes.chunks_exact(4 * BINS));
        for (cell, (class_scores, sides)) in cells.enumerate() {
            let Some((class, score)) = best_class(class_scores) else {
                continue;
            };
            if score <= config.score_threshold {
                continue;
            }
            let Some([left, top, right, bottom]) = distances(sides) else {
                continue;
            };
            let s = stride as f32;
            let cx = ((cell % side) as f32 + 0.5) * s;
            let cy = ((cell / side) as f32 + 0.5) * s;
            let (x0, y0) = letterbox.to_picture(cx - left * s, cy - top * s);
            let (x1, y1) = letterbox.to_picture(cx + right * s, cy + bottom * s);
            let (x0, y0, x1, y1) = (
                x0.clamp(0.0, 1.0),
                y0.clamp(0.0, 1.0),
                x1.clamp(0.0, 1.0),
                y1.clamp(0.0, 1.0),
            );
            if x1 > x0 && y1 > y0 {
                detections.push(Detection {
                    class: class as u16,
                    label: COCO80[class],
                    score,
                    x0,
                    y0,
                    x1,
                    y1,
                });
            }
        }
    }
    nms(detections, config.iou_threshold, config.max_detections);
    Ok(())
}

fn check_len(output: &'static str, values: &[f32], expected: usize) -> Result<(), DetectError> {
    if values.len() != expected {
        return Err(DetectError::OutputLength {
            output,
            len: values.len(),
            expected,
        });
    }
    Ok(())
}

/// The best class and its score, or `None` if any score is not finite.
fn best_class(scores: &[f32]) -> Option<(usize, f32)> {
    let mut best = (0, f32::NEG_INFINITY);
    for (class, &score) in scores.iter().enumerate() {
        if !score.is_finite() {
            return None;
        }
        if score > best.1 {
            best = (class, score);
        }
    }
    Some(best)
}

/// The expected distance (in strides) of each side's 11-bin distribution, or `None` if
/// any logit is not finite.
fn distances(sides: &[f32]) -> Option<[f32; 4]> {
    let mut out = [0f32; 4];
    for (d, bins) in out.iter_mut().zip(sides.chunks_exact(BINS)) {
        let max = bins.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if !max.is_finite() || bins.iter().any(|b| !b.is_finite()) {
            return None;
        }
        let (mut sum, mut weighted) = (0f32, 0f32);
        for (i, &logit) in bins.iter().enumerate() {
            let p = (logit - max).exp();
            sum += p;
            weighted += p * i as f32;
        }
        // sum >= 1 (the max bin contributes exp(0)), so this is finite and in 0..=10.
        *d = weighted / sum;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;

    fn det(class: u16, score: f32, x0: f32, y0: f32, x1: f32, y1: f32) -> Detection {
        Detection {
            class,
            label: COCO80[usize::from(class)],
            score,
            x0,
            y0,
            x1,
            y1,
        }
    }

    #[test]
    fn iou_by_hand() {
        let a = det(0, 0.9, 0.0, 0.0, 0.4, 0.4);
        let b = det(0, 0.8, 0.2, 0.2, 0.6, 0.6);
        // Intersection 0.2², union 2 * 0.16 - 0.04.
        assert!((iou(&a, &b) - 0.04 / 0.28).abs() < 1e-6);
        assert_eq!(iou(&a, &a), 1.0);
        assert_eq!(iou(&a, &det(0, 0.5, 0.5, 0.5, 0.6, 0.6)), 0.0);
        assert_eq!(
            iou(
                &det(0, 0.5, 0.3, 0.3, 0.3, 0.3),
                &det(0, 0.5, 0.3, 0.3, 0.3, 0.3)
            ),
            0.0
        );
    }

    #[test]
    fn nms_keeps_the_best_of_overlapping_same_class_boxes() {
        let mut d = vec![
            det(0, 0.6, 0.10, 0.10, 0.50, 0.50), // suppressed by the 0.9 (IoU 0.82)
            det(0, 0.9, 0.12, 0.12, 0.52, 0.52),
            det(2, 0.7, 0.12, 0.12, 0.52, 0.52), // another class: kept
            det(0, 0.8, 0.60, 0.60, 0.90, 0.90), // elsewhere: kept
            det(0, 0.5, 0.30, 0.30, 0.70, 0.70), // IoU 0.18 with the 0.9: kept at 0.5
        ];
        nms(&mut d, 0.5, 100);
        let scores: Vec<f32> = d.iter().map(|d| d.score).collect();
        assert_eq!(scores, [0.9, 0.8, 0.7, 0.5]);

        // A stricter threshold suppresses the 0.5 too; a cap of 2 keeps the best two.
        let mut d2 = vec![
            det(0, 0.9, 0.12, 0.12, 0.52, 0.52),
            det(0, 0.5, 0.30, 0.30, 0.70, 0.70),
        ];
        nms(&mut d2, 0.15, 100);
        assert_eq!(d2.len(), 1);
        nms(&mut d, 0.5, 2);
        assert_eq!(d.iter().map(|d| d.score).collect::<Vec<_>>(), [0.9, 0.8]);
    }

    #[test]
    fn nms_of_nothing_is_nothing() {
        let mut d = Vec::new();
        nms(&mut d, 0.5, 10);
        assert!(d.is_empty());
    }

    /// Outputs for a `size` input, all scores 0 and all distributions flat, editable.
    struct Raw {
        scores: [Vec<f32>; 3],
        boxes: [Vec<f32>; 3],
    }

    impl Raw {
        fn new(size: u32) -> Raw {
            let cells = |s: u32| ((size / s) * (size / s)) as usize;
            Raw {
                scores: STRIDES.map(|s| vec![0.0; cells(s) * CLASSES]),
                boxes: STRIDES.map(|s| vec![0.0; cells(s) * 4 * BINS]),
            }
        }

        fn outputs(&self) -> Outputs<'_> {
            Outputs {
                scores: [&self.scores[0], &self.scores[1], &self.scores[2]],
                boxes: [&self.boxes[0], &self.boxes[1], &self.boxes[2]],
            }
        }

        /// Cell (x, y) of `level` predicts `class` at `score` with sides (in strides) put
        /// as one-hot distributions (logit 30 on the bin, 0 elsewhere: p ≈ 1 - 10 e^-30).
        #[allow(clippy::too_many_arguments)] // a test helper: one cell, spelled out in place
        fn set(
            &mut self,
            level: usize,
            side: usize,
            x: usize,
            y: usize,
            class: usize,
            score: f32,
            sides: [usize; 4],
        ) {
            let cell = y * side + x;
            self.scores[level][cell * CLASSES + class] = score;
            for (k, bin) in sides.iter().enumerate() {
                self.boxes[level][cell * 4 * BINS + k * BINS + bin] = 30.0;
            }
        }
    }

    #[test]
    fn a_synthetic_output_decodes_to_the_known_box() {
        // 416 input, 1920x1080 picture: scaled 416x234 at pad_y 91.
        // Stride-16 cell (x 12, y 12): centre (200, 200); sides l 3, t 2, r 4, b 1 strides
        // → box (152, 168)-(264, 216) in input pixels → x / 416, (y - 91) / 234.
        let config = Config::default();
        let letterbox = Letterbox::new(1920, 1080, 416).unwrap();
        let mut raw = Raw::new(416);
        raw.set(1, 26, 12, 12, 16, 0.8, [3, 2, 4, 1]); // a dog
        let mut d = Vec::new();
        decode(&raw.outputs(), &letterbox, &config, &mut d).unwrap();
        assert_eq!(d.len(), 1, "{d:?}");
        let got = d[0];
        assert_eq!((got.class, got.label, got.score), (16, "dog", 0.8));
        let expected = [
            152.0 / 416.0,
            (168.0 - 91.0) / 234.0,
            264.0 / 416.0,
            (216.0 - 91.0) / 234.0,
        ];
        for (g, e) in [got.x0, got.y0, got.x1, got.y1].iter().zip(expected) {
            assert!((g - e).abs() < 1e-5, "{got:?} vs {expected:?}");
        }
    }

    #[test]
    fn soft_distributions_decode_to_their_expectation() {
        // Logits ln 1 and ln 3 on bins 2 and 4: p = 1/4, 3/4 (others e^-inf ≈ 0 via -100)
        // → distance 0.5 + 3 = 3.5 strides.
        let mut bins = [-100.0f32; 4 * BINS];
        for k in 0..4 {
            bins[k * BINS + 2] = 0.0;
            bins[k * BINS + 4] = 3f32.ln();
        }
        let d = distances(&bins).unwrap();
        assert!(d.iter().all(|&x| (x - 3.5).abs() < 1e-4), "{d:?}");
    }

    #[test]
    fn thresholds_clamping_padding_and_the_cap() {
        let config = Config {
            input_size: 32,
            max_detections: 2,
            ..Config::default()
        };
        let letterbox = Letterbox::new(64, 32, 32).unwrap(); // 32x16 at pad_y 8
        let mut raw = Raw::new(32);
        raw.set(0, 4, 0, 0, 0, 0.35, [0, 0, 1, 1]); // at the threshold: dropped
        raw.set(0, 4, 1, 0, 0, 0.9, [1, 1, 1, 0]); // y -4..4, all in the top padding: dropped
        raw.set(2, 1, 0, 0, 1, 0.5, [10, 10, 10, 10]); // huge: clamped to the picture
        raw.set(0, 4, 2, 2, 2, 0.6, [1, 1, 1, 1]); // (12,12)-(28,28) → y (4..20) / 16
        raw.set(0, 4, 3, 2, 3, 0.4, [0, 0, 1, 1]); // lowest of three: over the cap
        let mut d = Vec::new();
        decode(&raw.outputs(), &letterbox, &config, &mut d).unwrap();
        assert_eq!(
            d.iter().map(|d| d.class).collect::<Vec<_>>(),
            [2, 1],
            "{d:?}"
        );
        assert_eq!(
            (d[0].x0, d[0].y0, d[0].x1, d[0].y1),
            (12.0 / 32.0, 0.25, 28.0 / 32.0, 1.0)
        );
        assert_eq!((d[1].x0, d[1].y0, d[1].x1, d[1].y1), (0.0, 0.0, 1.0, 1.0));
    }

    #[test]
    fn wrong_lengths_are_errors_naming_the_output() {
        let letterbox = Letterbox::new(64, 32, 32).unwrap();
        let mut raw = Raw::new(32);
        raw.boxes[2].pop();
        let mut d = Vec::new();
        let err = decode(&raw.outputs(), &letterbox, &Config::default(), &mut d).unwrap_err();
        assert_eq!(
            err.to_string(),
            "output Identity_5:0 has 43 values, expected 44"
        );
    }

    /// Any f32, weighted towards the awkward ones.
    fn value() -> impl Strategy<Value = f32> {
        prop_oneof![
            4 => -5.0f32..5.0,
            1 => Just(f32::NAN),
            1 => Just(f32::INFINITY),
            1 => Just(f32::NEG_INFINITY),
            1 => any::<f32>(),
            1 => 0.3f32..1.0,
        ]
    }

    fn detection() -> impl Strategy<Value = Detection> {
        (
            0u16..3,
            0.0f32..1.0,
            0.0f32..1.0,
            0.0f32..1.0,
            0.0f32..0.5,
            0.0f32..0.5,
        )
            .prop_map(|(c, s, x, y, w, h)| det(c, s, x, y, x + w, y + h))
    }

    proptest! {
        #[test]
        fn decoding_anything_never_panics_and_stays_in_the_picture(
            values in prop::collection::vec(value(), 21 * (CLASSES + 4 * BINS)),
            w in 1u32..4000, h in 1u32..4000, threshold in -1.0f32..1.0,
        ) {
            // A 32 input has 16 + 4 + 1 = 21 cells.
            let config = Config { input_size: 32, score_threshold: threshold, ..Config::default() };
            let letterbox = Letterbox::new(w, h, 32).unwrap();
            let (scores, boxes) = values.split_at(21 * CLASSES);
            let outputs = Outputs {
                scores: [&scores[..16 * CLASSES], &scores[16 * CLASSES..20 * CLASSES], &scores[20 * CLASSES..]],
                boxes: [&boxes[..16 * 44], &boxes[16 * 44..20 * 44], &boxes[20 * 44..]],
            };
            let mut d = Vec::new();
            decode(&outputs, &letterbox, &config, &mut d).unwrap();
            prop_assert!(d.len() <= config.max_detections);
            for x in &d {
                prop_assert!(x.score.is_finite() && x.score > threshold);
                prop_assert!(0.0 <= x.x0 && x.x0 < x.x1 && x.x1 <= 1.0, "{x:?}");
                prop_assert!(0.0 <= x.y0 && x.y0 < x.y1 && x.y1 <= 1.0, "{x:?}");
                prop_assert_eq!(x.label, COCO80[usize::from(x.class)]);
            }
        }

        #[test]
        fn nms_leaves_no_same_class_pair_above_the_threshold(
            mut d in prop::collection::vec(detection(), 0..60),
            threshold in 0.0f32..1.0, max in 1usize..80,
        ) {
            let before = d.clone();
            nms(&mut d, threshold, max);
            prop_assert!(d.len() <= max);
            for (i, a) in d.iter().enumerate() {
                prop_assert!(before.contains(a));
                for b in &d[i + 1..] {
                    prop_assert!(a.score >= b.score);
                    prop_assert!(a.class != b.class || iou(a, b) <= threshold, "{a:?} {b:?}");
                }
            }
            // The best detection always survives.
            if let Some(best) = before.iter().map(|x| x.score).max_by(f32::total_cmp) {
                prop_assert_eq!(d[0].score, best);
            }
        }
    }
}
