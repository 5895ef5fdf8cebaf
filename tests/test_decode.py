"""Decoding what users send: photos become upright RGB arrays, everything else a typed refusal."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pillow_heif
import pytest
from PIL import ExifTags, Image
from PIL.TiffImagePlugin import IFDRational

from engine.config import DecodeConfig
from engine.decode import decode_file, decode_image, read_exif, read_exif_gps
from engine.errors import (
    AnimatedImage,
    EmptyImage,
    FileTooLarge,
    NotAnImage,
    TooManyPixels,
    TruncatedImage,
)
from engine.results import LatLon

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
CONFIG = DecodeConfig()
RED, BLUE = (220, 20, 20), (20, 20, 220)


def encode(image: Image.Image, fmt: str = "JPEG", **save_args: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save_args)
    return buffer.getvalue()


def red_left_blue_right(width: int = 40, height: int = 20) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def noise_jpeg() -> bytes:
    return encode(Image.effect_noise((320, 240), 60).convert("RGB"), quality=90)


def gps_exif(
    lat: object = (IFDRational(33), IFDRational(52), IFDRational(1234567, 100000)),
    lat_ref: object = "S",
    lon: object = (151.0, 12.0, 30.5),
    lon_ref: object = "W",
    **extra_gps: object,
) -> Image.Exif:
    exif = Image.Exif()
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    for tag, value in (
        (ExifTags.GPS.GPSLatitude, lat),
        (ExifTags.GPS.GPSLatitudeRef, lat_ref),
        (ExifTags.GPS.GPSLongitude, lon),
        (ExifTags.GPS.GPSLongitudeRef, lon_ref),
    ):
        if value is not None:
            gps[tag] = value
    for name, value in extra_gps.items():
        gps[ExifTags.GPS[name]] = value
    return exif


EXPECTED_LAT = -(33 + 52 / 60 + 12.34567 / 3600)
EXPECTED_LON = -(151 + 12 / 60 + 30.5 / 3600)


def near(gps: LatLon | None, lat: float, lon: float, tolerance: float = 1e-6) -> bool:
    return gps is not None and abs(gps.lat - lat) <= tolerance and abs(gps.lon - lon) <= tolerance


# --- photos that decode ---------------------------------------------------------------------


def test_jpeg_decodes_to_an_rgb_uint8_array():
    decoded = decode_image(encode(red_left_blue_right(), quality=95), CONFIG)

    assert decoded.format == "JPEG"
    assert decoded.rgb.shape == (20, 40, 3)
    assert decoded.rgb.dtype == np.uint8
    assert np.abs(decoded.rgb[10, 5].astype(int) - RED).max() < 12
    assert np.abs(decoded.rgb[10, 35].astype(int) - BLUE).max() < 12
    assert decoded.exif_gps is None


@pytest.mark.parametrize("fmt, name", [("PNG", "PNG"), ("WEBP", "WEBP")])
def test_lossless_formats_decode_exactly(fmt, name):
    image = red_left_blue_right()
    save_args = {"lossless": True} if fmt == "WEBP" else {}

    decoded = decode_image(encode(image, fmt, **save_args), CONFIG)

    assert decoded.format == name
    np.testing.assert_array_equal(decoded.rgb, np.asarray(image))


def test_heic_round_trips_with_its_gps():
    if not pillow_heif.libheif_info().get("HEIF"):
        pytest.skip("this libheif has no HEVC encoder: cannot build a HEIC to decode")
    data = encode(red_left_blue_right(64, 32), "HEIF", quality=95, exif=gps_exif())

    decoded = decode_image(data, CONFIG)

    assert decoded.format == "HEIF"
    assert decoded.rgb.shape == (32, 64, 3)
    assert np.abs(decoded.rgb[16, 8].astype(int) - RED).max() < 25
    assert near(decoded.exif_gps, EXPECTED_LAT, EXPECTED_LON)


def test_exif_orientation_is_applied_so_the_photo_is_upright():
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6  # stored sideways: display rotated 90 degrees clockwise

    decoded = decode_image(encode(red_left_blue_right(), quality=95, exif=exif), CONFIG)

    assert decoded.rgb.shape == (40, 20, 3)
    # The stored left (red) half ends up on top after the clockwise turn.
    assert np.abs(decoded.rgb[5, 10].astype(int) - RED).max() < 12
    assert np.abs(decoded.rgb[35, 10].astype(int) - BLUE).max() < 12


def test_jpeg_with_an_embedded_preview_is_a_still_photo_not_an_animation():
    # Many cameras write MPO: a JPEG followed by a second, smaller picture.
    image = red_left_blue_right()
    data = encode(image, "MPO", save_all=True, append_images=[image.resize((10, 5))])

    decoded = decode_image(data, CONFIG)

    assert decoded.format == "JPEG"
    assert decoded.rgb.shape == (20, 40, 3)


# --- modes ----------------------------------------------------------------------------------


def test_transparent_pixels_become_white_and_opaque_ones_keep_their_colour():
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    rgba.putpixel((0, 0), (*RED, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 128))

    rgb = decode_image(encode(rgba, "PNG"), CONFIG).rgb

    assert rgb.shape == (2, 4, 3)
    assert tuple(rgb[0, 0]) == RED
    assert tuple(rgb[1, 3]) == (255, 255, 255)
    assert 120 <= rgb[0, 1, 0] <= 135  # half-transparent black over white is mid grey


def test_palette_image_with_a_transparent_index_becomes_white_there():
    palette = Image.new("P", (4, 4), 0)
    palette.putpalette([0, 0, 0, *BLUE])
    palette.putpixel((2, 2), 1)

    rgb = decode_image(encode(palette, "PNG", transparency=0), CONFIG).rgb

    assert tuple(rgb[0, 0]) == (255, 255, 255)
    assert tuple(rgb[2, 2]) == BLUE


def test_greyscale_with_alpha_is_composited_on_white():
    grey_alpha = Image.new("LA", (2, 1), (50, 255))
    grey_alpha.putpixel((1, 0), (50, 0))

    rgb = decode_image(encode(grey_alpha, "PNG"), CONFIG).rgb

    assert rgb[0, 0].tolist() == [50, 50, 50]
    assert rgb[0, 1].tolist() == [255, 255, 255]


def test_cmyk_jpeg_is_converted_to_rgb():
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # no cyan, full magenta and yellow: red

    rgb = decode_image(encode(cmyk, quality=95), CONFIG).rgb

    assert rgb.shape == (8, 8, 3)
    assert rgb[4, 4, 0] > 240 and rgb[4, 4, 1] < 15 and rgb[4, 4, 2] < 15


def test_sixteen_bit_greyscale_is_scaled_to_eight_bits_not_clipped():
    levels = np.array([[0, 257 * 64, 257 * 128, 65535]], dtype=np.uint16)

    rgb = decode_image(encode(Image.fromarray(levels), "PNG"), CONFIG).rgb

    assert rgb.shape == (1, 4, 3)
    assert rgb[0, :, 0].tolist() == [0, 64, 128, 255]
    assert (rgb[..., 0] == rgb[..., 2]).all()


def test_greyscale_is_replicated_to_three_channels():
    rgb = decode_image(encode(Image.new("L", (3, 3), 77), "PNG"), CONFIG).rgb

    assert rgb.shape == (3, 3, 3)
    assert (rgb == 77).all()


# --- EXIF -----------------------------------------------------------------------------------


def test_exif_gps_heading_and_time_round_trip():
    exif = gps_exif(GPSImgDirection=IFDRational(2705, 10), GPSImgDirectionRef="T")
    exif_ifd = exif.get_ifd(ExifTags.IFD.Exif)
    exif_ifd[ExifTags.Base.DateTimeOriginal] = "2021:05:06 07:08:09"
    exif_ifd[ExifTags.Base.OffsetTimeOriginal] = "+02:00"

    decoded = decode_image(encode(red_left_blue_right(), exif=exif), CONFIG)

    assert decoded.exif_gps is not None
    assert decoded.exif_gps.lat == pytest.approx(EXPECTED_LAT, abs=1e-6)
    assert decoded.exif_gps.lon == pytest.approx(EXPECTED_LON, abs=1e-6)
    assert decoded.exif_heading_deg == pytest.approx(270.5)
    assert decoded.exif_captured_at == "2021-05-06T07:08:09+02:00"


def test_decimal_degree_gps_written_as_one_rational_is_understood():
    exif = gps_exif(lat=IFDRational(556981, 10000), lat_ref="N", lon=13.1954, lon_ref="E")

    gps = decode_image(encode(red_left_blue_right(), exif=exif), CONFIG).exif_gps

    assert near(gps, 55.6981, 13.1954)


@pytest.mark.parametrize(
    "gps_tags, why",
    [
        ({"lat": (0.0, 0.0, 0.0), "lon": (0.0, 0.0, 0.0)}, "zero is a receiver without a fix"),
        ({"lat": (95.0, 0.0, 0.0)}, "latitude beyond the pole"),
        ({"lon": (190.0, 0.0, 0.0)}, "longitude beyond the antimeridian"),
        ({"lat": (55.0, 75.0, 0.0)}, "75 minutes"),
        ({"lat_ref": None}, "no hemisphere: the sign is unknown"),
        ({"lon_ref": "X"}, "an invalid hemisphere"),
        ({"lat": (IFDRational(55, 0), 1.0, 2.0)}, "a zero denominator"),
        ({"lon": None}, "no longitude"),
        ({"GPSStatus": "V"}, "the receiver marked the fix void"),
    ],
)
def test_unusable_exif_gps_is_reported_as_none(gps_tags, why):
    data = encode(red_left_blue_right(), exif=gps_exif(**gps_tags))

    assert decode_image(data, CONFIG).exif_gps is None, why


def test_placeholder_capture_time_is_reported_as_none():
    exif = Image.Exif()
    exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.DateTimeOriginal] = "0000:00:00 00:00:00"

    decoded = decode_image(encode(red_left_blue_right(), exif=exif), CONFIG)

    assert decoded.exif_captured_at is None
    assert decoded.rgb.shape == (20, 40, 3)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_malformed_exif_does_not_cost_the_user_the_photo():
    junk_exif = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"

    decoded = decode_image(encode(red_left_blue_right(), exif=junk_exif), CONFIG)

    assert decoded.rgb.shape == (20, 40, 3)
    assert decoded.exif_gps is None


def test_read_exif_gps_reads_the_header_only_so_corrupt_pixels_do_not_matter():
    data = encode(Image.effect_noise((320, 240), 60).convert("RGB"), exif=gps_exif())
    cut = data[: len(data) // 2]
    with pytest.raises(TruncatedImage):
        decode_image(cut, CONFIG)

    gps = read_exif_gps(cut)

    assert near(gps, EXPECTED_LAT, EXPECTED_LON)


def test_read_exif_accepts_a_path_and_reports_none_without_gps(tmp_path):
    with_gps, without = tmp_path / "with.jpg", tmp_path / "without.jpg"
    with_gps.write_bytes(encode(red_left_blue_right(), exif=gps_exif(GPSImgDirection=90.0)))
    without.write_bytes(encode(red_left_blue_right()))

    info = read_exif(with_gps)

    assert near(info.gps, EXPECTED_LAT, EXPECTED_LON)
    assert info.heading_deg == pytest.approx(90.0)
    assert read_exif_gps(str(without)) is None


def test_read_exif_gps_refuses_a_file_that_is_not_an_image(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("meet at the station at noon\n")

    with pytest.raises(NotAnImage, match="looks like text"):
        read_exif_gps(notes)


# --- refusals -------------------------------------------------------------------------------


def test_empty_bytes_are_refused_as_empty():
    with pytest.raises(EmptyImage, match=r"empty\. Send the photo again"):
        decode_image(b"", CONFIG)


def test_file_over_the_byte_limit_is_refused_before_it_is_decoded():
    # Not even an image: the size check must come first.
    with pytest.raises(FileTooLarge, match=r"limit is 0\.0 MB\. Send a smaller") as caught:
        decode_image(b"x" * 1001, DecodeConfig(max_bytes=1000))

    assert (caught.value.size_bytes, caught.value.limit_bytes) == (1001, 1000)


@pytest.mark.parametrize(
    "data, kind",
    [
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "PDF document"),
        (b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom", "MP4/MOV video"),
        (b"\x00\x00\x00\x14ftypqt  \x00\x00\x00\x00qt  ", "MP4/MOV video"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01", "WebM/MKV video"),
        (b"PK\x03\x04\x14\x00\x06\x00", "ZIP archive or an Office document"),
        (b"<!DOCTYPE html><html><head><title>Photo</title>", "HTML web page"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg">', "SVG drawing"),
        (b"meet at the station at noon\n", "text"),
        (bytes(range(256)), "unrecognised binary data"),
    ],
)
def test_files_that_are_not_images_are_refused_saying_what_they_look_like(data, kind):
    with pytest.raises(NotAnImage, match=re.escape(kind)) as caught:
        decode_image(data, CONFIG)

    assert "Send a JPEG, PNG, WebP or HEIC photo" in str(caught.value)


def test_truncated_jpeg_is_refused_with_reason():
    data = noise_jpeg()

    with pytest.raises(TruncatedImage, match=r"truncated or corrupt\. Send the original file"):
        decode_image(data[: len(data) // 2], CONFIG)


def test_jpeg_cut_inside_its_header_is_truncated_not_an_unknown_file():
    with pytest.raises(TruncatedImage):
        decode_image(noise_jpeg()[:20], CONFIG)


def test_png_with_damaged_pixel_data_is_refused_as_corrupt():
    data = bytearray(encode(Image.effect_noise((100, 100), 40), "PNG"))
    pixels_at = data.find(b"IDAT") + 20
    data[pixels_at : pixels_at + 20] = bytes(20)

    with pytest.raises(TruncatedImage):
        decode_image(bytes(data), CONFIG)


def animation(fmt: str) -> bytes:
    frames = [Image.new("RGB", (16, 16), colour) for colour in (RED, BLUE, (0, 200, 0))]
    return encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])
def test_animations_are_refused_naming_the_frame_count(fmt):
    with pytest.raises(AnimatedImage, match=r"animated \(3 frames\)\. Send a single still") as e:
        decode_image(animation(fmt), CONFIG)

    assert e.value.frames == 3


def test_single_frame_gif_is_accepted():
    decoded = decode_image(encode(red_left_blue_right(), "GIF"), CONFIG)

    assert decoded.format == "GIF"
    assert decoded.rgb.shape == (20, 40, 3)


def test_pixel_cap_is_checked_from_the_header_before_decoding():
    # 8000 x 8000 one-bit PNG: a few KB of file, 64 megapixels once decoded. Cut after its
    # header: were the pixels decoded first, this would be refused as truncated instead.
    header_only = encode(Image.new("1", (8000, 8000)), "PNG")[:200]

    with pytest.raises(TooManyPixels, match=r"64 megapixels; the limit is 50\. Send a downscaled"):
        decode_image(header_only, CONFIG)


def test_small_pixel_cap_from_config_is_honoured():
    with pytest.raises(TooManyPixels) as caught:
        decode_image(encode(red_left_blue_right(), "PNG"), DecodeConfig(max_pixels=799))

    assert (caught.value.pixels, caught.value.limit) == (800, 799)


def test_decompression_bomb_beyond_pillows_own_ceiling_is_refused_as_too_many_pixels():
    bomb = encode(Image.new("1", (20000, 20000)), "PNG")  # ~50 KB, 400 megapixels

    with pytest.raises(TooManyPixels) as caught:
        decode_image(bomb, CONFIG)

    assert caught.value.pixels == 400_000_000


# --- files ----------------------------------------------------------------------------------


def test_decode_file_reads_a_photo_from_disk(tmp_path):
    path = tmp_path / "photo.webp"
    path.write_bytes(encode(red_left_blue_right(), "WEBP", lossless=True))

    assert decode_file(path, CONFIG).rgb.shape == (20, 40, 3)


def test_decode_file_names_a_missing_path(tmp_path):
    missing = tmp_path / "nowhere.jpg"

    with pytest.raises(NotAnImage, match=f"there is no file at {missing}"):
        decode_file(missing, CONFIG)


def test_decode_file_refuses_a_folder(tmp_path):
    with pytest.raises(NotAnImage, match="is a folder"):
        decode_file(tmp_path, CONFIG)


def test_decode_file_refuses_an_oversized_file_by_its_size(tmp_path):
    path = tmp_path / "huge.jpg"
    path.write_bytes(noise_jpeg())

    with pytest.raises(FileTooLarge) as caught:
        decode_file(path, DecodeConfig(max_bytes=1000))

    assert caught.value.size_bytes == path.stat().st_size


def test_decode_file_refuses_an_empty_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.touch()

    with pytest.raises(EmptyImage):
        decode_file(path, CONFIG)


# --- real photos ----------------------------------------------------------------------------


@pytest.mark.real_data
def test_real_street_photo_decodes_with_its_exif_gps():
    photo = SHARED_DATA / "lund" / "01.jpg"
    if not photo.exists():
        pytest.skip("../shared/data is absent: real photos not available")

    decoded = decode_file(photo, CONFIG)

    assert decoded.format == "JPEG"
    assert decoded.rgb.shape == (768, 1024, 3)
    assert near(decoded.exif_gps, 55.698167, 13.195389, tolerance=1e-5)
    assert read_exif_gps(photo) == decoded.exif_gps
