//! Hardware decoding through libavcodec's hwaccel (VAAPI, CUDA/NVDEC).
//!
//! A device context is opened for each decoder and handed to its codec context before it
//! is opened; libavcodec's default format negotiation then decodes on the device when it
//! supports the stream, and in software otherwise. Pictures decoded on the device are
//! downloaded (`av_hwframe_transfer_data`, NV12 or P010) before they are measured.
//!
//! ffmpeg-next has no safe API for either step, so this module is the crate's one place of
//! `unsafe` FFI calls, each with what makes it sound. None of it can run without a GPU: on
//! machines without one (like the project's CI) only [`probe`] failing is exercised.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr;

use ffmpeg_next as av;

use av::ffi;

use crate::HwAccel;

/// Opens a device context of `kind` (`device`: e.g. `/dev/dri/renderD128` for VAAPI, `0` for
/// CUDA; `None`: the library's default device). The caller owns the returned reference.
fn open_device(kind: HwAccel, device: Option<&str>) -> Result<*mut ffi::AVBufferRef, String> {
    let device_type = match kind {
        HwAccel::Vaapi => ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_VAAPI,
        HwAccel::Cuda => ffi::AVHWDeviceType::AV_HWDEVICE_TYPE_CUDA,
        HwAccel::None => return Err("no hardware decoder asked for".into()),
    };
    crate::ffmpeg::init();
    let device = device
        .map(CString::new)
        .transpose()
        .map_err(|_| "the device name contains a NUL byte".to_owned())?;
    let mut device_ref: *mut ffi::AVBufferRef = ptr::null_mut();
    // SAFETY: `device_ref` is a valid out-pointer; the device name (or null) outlives the
    // call; no options dictionary is passed. On failure nothing is allocated.
    let status = unsafe {
        ffi::av_hwdevice_ctx_create(
            &mut device_ref,
            device_type,
            device.as_ref().map_or(ptr::null(), |d| d.as_ptr()),
            ptr::null_mut(),
            0,
        )
    };
    if status < 0 || device_ref.is_null() {
        return Err(av::Error::from(status).to_string());
    }
    Ok(device_ref)
}

/// Whether a device of `kind` can be opened on this machine: the error says why not.
pub fn probe(kind: HwAccel, device: Option<&str>) -> Result<(), String> {
    let mut device_ref = open_device(kind, device)?;
    // SAFETY: `device_ref` is the one reference `open_device` returned; unref frees the
    // device and nulls the pointer.
    unsafe { ffi::av_buffer_unref(&mut device_ref) };
    Ok(())
}

/// Gives the (not yet opened) codec context a device of `kind`; the context owns it from
/// then on (`avcodec_free_context` releases it).
pub fn attach(
    context: &mut av::codec::Context,
    kind: HwAccel,
    device: Option<&str>,
) -> Result<(), String> {
    let device_ref = open_device(kind, device)?;
    // SAFETY: the context is allocated and not opened yet, which is when `hw_device_ctx`
    // may be set; it had none (a fresh context), so no reference leaks.
    unsafe { (*context.as_mut_ptr()).hw_device_ctx = device_ref };
    Ok(())
}

/// Downloads `frame` into `system` when it lives in device memory; `Ok(false)` when it is
/// in system memory already (software decoding, or the device's fallback).
pub fn download(
    frame: &av::frame::Video,
    system: &mut av::frame::Video,
) -> Result<bool, av::Error> {
    // SAFETY: `frame` is a valid frame; a decoded picture on a device has `hw_frames_ctx`.
    let on_device = unsafe { !(*frame.as_ptr()).hw_frames_ctx.is_null() };
    if !on_device {
        return Ok(false);
    }
    // SAFETY: both frames are valid and distinct; `system` is unreferenced first, so the
    // transfer allocates buffers of the device's download format for it.
    let status = unsafe {
        ffi::av_frame_unref(system.as_mut_ptr());
        ffi::av_hwframe_transfer_data(system.as_mut_ptr(), frame.as_ptr(), 0)
    };
    if status < 0 {
        return Err(av::Error::from(status));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_an_error_not_a_crash() {
        // No VAAPI render node and no CUDA driver by these names on any machine.
        let vaapi = probe(HwAccel::Vaapi, Some("/nonexistent/renderD999"));
        assert!(vaapi.is_err(), "{vaapi:?}");
        let cuda = probe(HwAccel::Cuda, Some("99"));
        assert!(cuda.is_err(), "{cuda:?}");
        assert!(probe(HwAccel::None, None).is_err());
    }

    #[test]
    fn a_frame_in_system_memory_is_not_downloaded() {
        let frame = av::frame::Video::new(av::format::Pixel::YUV420P, 16, 16);
        let mut system = av::frame::Video::empty();
        assert_eq!(download(&frame, &mut system), Ok(false));
    }
}
