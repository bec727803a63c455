//! The hand-over: QR codes of the activation code (PNG and SVG) and the one-tap install links.
//!
//! `qrcode` (without its `image` feature) builds the module matrix and the SVG; the PNG is
//! written from that matrix by the small `png` encoder as a 1-bit greyscale image, so the
//! service does not pull in the whole `image` crate for one black-and-white picture.

use esim_domain::ActivationCode;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcode::{Color, EcLevel, QrCode};

use crate::error::{ProvisioningError, Result};

/// Default and allowed PNG sizes (pixels).
pub const DEFAULT_SIZE: u32 = 512;
/// Smallest PNG edge accepted.
pub const MIN_SIZE: u32 = 128;
/// Largest PNG edge accepted.
pub const MAX_SIZE: u32 = 2048;

/// The quiet zone the QR specification asks for, in modules.
const QUIET_ZONE: usize = 4;

/// Everything but RFC 3986 unreserved characters is escaped (`$` and `:` included).
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn qr(code: &ActivationCode) -> Result<QrCode> {
    // Level M: the usual choice for printed or displayed eSIM codes.
    QrCode::with_error_correction_level(code.expose().as_bytes(), EcLevel::M)
        .map_err(|e| ProvisioningError::Internal(format!("QR encoding failed: {e}")))
}

/// The QR code of `code` as a PNG of `size` × `size` pixels (larger only if the code needs
/// more than one pixel per module).
pub fn png(code: &ActivationCode, size: u32) -> Result<Vec<u8>> {
    let qr = qr(code)?;
    let modules = qr.width();
    let colors = qr.to_colors();
    let total = modules + 2 * QUIET_ZONE;
    let size = usize::try_from(size).unwrap_or(usize::MAX);
    let scale = (size / total).max(1);
    let edge = size.max(scale * total);
    // White border that centres the code in the requested size.
    let offset = (edge - scale * total) / 2 + QUIET_ZONE * scale;
    let dark = |x: usize, y: usize| -> bool {
        let (Some(mx), Some(my)) = (x.checked_sub(offset), y.checked_sub(offset)) else {
            return false;
        };
        let (mx, my) = (mx / scale, my / scale);
        mx < modules && my < modules && colors[my * modules + mx] == Color::Dark
    };
    let row_bytes = edge.div_ceil(8);
    let mut data = vec![0u8; row_bytes * edge];
    for y in 0..edge {
        for x in 0..edge {
            // 1-bit greyscale: 1 is white.
            if !dark(x, y) {
                data[y * row_bytes + x / 8] |= 0x80 >> (x % 8);
            }
        }
    }
    let edge32 = u32::try_from(edge).map_err(|_| ProvisioningError::Internal("QR too large".into()))?;
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, edge32, edge32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::One);
    let png_err = |e: png::EncodingError| ProvisioningError::Internal(format!("PNG encoding failed: {e}"));
    let mut writer = encoder.write_header().map_err(png_err)?;
    writer.write_image_data(&data).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// The QR code of `code` as an SVG document.
pub fn svg(code: &ActivationCode) -> Result<String> {
    Ok(qr(code)?
        .render::<qrcode::render::svg::Color<'_>>()
        .min_dimensions(256, 256)
        .dark_color(qrcode::render::svg::Color("#000000"))
        .light_color(qrcode::render::svg::Color("#ffffff"))
        .build())
}

/// The iOS 17.4+ one-tap install link.
pub fn ios_install_url(code: &ActivationCode) -> String {
    install_url("esimsetup.apple.com", code)
}

/// The Android one-tap install link: the same path and query on `esimsetup.android.com`.
pub fn android_install_url(code: &ActivationCode) -> String {
    install_url("esimsetup.android.com", code)
}

fn install_url(host: &str, code: &ActivationCode) -> String {
    format!(
        "https://{host}/esim_qrcode_provisioning?carddata={}",
        utf8_percent_encode(code.expose(), QUERY_VALUE)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code() -> ActivationCode {
        "LPA:1$rsp.example.com$ABC-123".parse().unwrap()
    }

    #[test]
    fn install_links_escape_the_code() {
        assert_eq!(
            ios_install_url(&code()),
            "https://esimsetup.apple.com/esim_qrcode_provisioning?carddata=LPA%3A1%24rsp.example.com%24ABC-123"
        );
        assert_eq!(
            android_install_url(&code()),
            "https://esimsetup.android.com/esim_qrcode_provisioning?carddata=LPA%3A1%24rsp.example.com%24ABC-123"
        );
    }

    #[test]
    fn png_has_the_requested_size_and_svg_is_svg() {
        let png = png(&code(), 300).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let decoder = png::Decoder::new(std::io::Cursor::new(png));
        let reader = decoder.read_info().unwrap();
        assert_eq!((reader.info().width, reader.info().height), (300, 300));
        let svg = svg(&code()).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
    }
}
