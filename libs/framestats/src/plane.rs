//! A borrowed picture plane: samples, visible size and row stride.

use thiserror::Error;

/// One plane of a decoded picture.
#[derive(Debug, Clone, Copy)]
pub struct Plane<'a> {
    data: &'a [u8],
    width: usize,
    height: usize,
    stride: usize,
}

/// The buffer cannot hold a plane of the given geometry.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("plane {width}x{height} with stride {stride} needs {needed} bytes, buffer has {len}")]
pub struct PlaneError {
    width: usize,
    height: usize,
    stride: usize,
    needed: usize,
    len: usize,
}

impl<'a> Plane<'a> {
    /// Wraps `data` as `height` rows of `stride` bytes, of which the first `width` are visible.
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Self, PlaneError> {
        let needed = if height == 0 {
            0
        } else {
            (height - 1) * stride + width
        };
        if stride < width || data.len() < needed {
            return Err(PlaneError {
                width,
                height,
                stride,
                needed,
                len: data.len(),
            });
        }
        Ok(Plane {
            data,
            width,
            height,
            stride,
        })
    }

    /// Visible width in samples.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in rows.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The visible part of each row, top to bottom.
    pub fn rows(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        let (data, width) = (self.data, self.width);
        (0..self.height).map(move |r| &data[r * self.stride..r * self.stride + width])
    }
}
