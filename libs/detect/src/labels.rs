//! The 80 COCO class names, in the order of NanoDet's class outputs.
//!
//! NanoDet-g (like most COCO detectors) numbers the 80 "things" of COCO 2017 from 0 without
//! the gaps of COCO's own category ids; this table turns a class index into the name logs,
//! metrics and the sink show. `scripts/model/coco80.txt` holds the same list for Python.

/// COCO-80 class names; index = class number of the model's outputs.
pub const COCO80: [&str; 80] = [
    "person",
    "bicycle",
    "car",
    "motorcycle",
    "airplane",
    "bus",
    "train",
    "truck",
    "boat",
    "traffic light",
    "fire hydrant",
    "stop sign",
    "parking meter",
    "bench",
    "bird",
    "cat",
    "dog",
    "horse",
    "sheep",
    "cow",
    "elephant",
    "bear",
    "zebra",
    "giraffe",
    "backpack",
    "umbrella",
    "handbag",
    "tie",
    "suitcase",
    "frisbee",
    "skis",
    "snowboard",
    "sports ball",
    "kite",
    "baseball bat",
    "baseball glove",
    "skateboard",
    "surfboard",
    "tennis racket",
    "bottle",
    "wine glass",
    "cup",
    "fork",
    "knife",
    "spoon",
    "bowl",
    "banana",
    "apple",
    "sandwich",
    "orange",
    "broccoli",
    "carrot",
    "hot dog",
    "pizza",
    "donut",
    "cake",
    "chair",
    "couch",
    "potted plant",
    "bed",
    "dining table",
    "toilet",
    "tv",
    "laptop",
    "mouse",
    "remote",
    "keyboard",
    "cell phone",
    "microwave",
    "oven",
    "toaster",
    "sink",
    "refrigerator",
    "book",
    "clock",
    "vase",
    "scissors",
    "teddy bear",
    "hair drier",
    "toothbrush",
];

/// The name of class `class`, or `None` beyond the 80 classes.
pub fn label(class: u16) -> Option<&'static str> {
    COCO80.get(usize::from(class)).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_the_standard_order() {
        assert_eq!(label(0), Some("person"));
        assert_eq!(label(2), Some("car"));
        assert_eq!(label(16), Some("dog"));
        assert_eq!(label(79), Some("toothbrush"));
        assert_eq!(label(80), None);
    }

    #[test]
    fn table_is_the_same_as_the_python_one() {
        let python: Vec<&str> = include_str!("../../../scripts/model/coco80.txt")
            .lines()
            .collect();
        assert_eq!(python, COCO80);
    }
}
