"""How a decoded image is shrunk to the size we send: the filter per detail, box pre-reduction, JPEG planes.

Why a module of its own: the shrink is most of the CPU a request costs (on a 12 MP photo at ``high``,
two thirds of :func:`shared.imaging.prepare_image`), every choice here trades speed against what the
model sees, and each is measured in ``benchmarks/README.md``. :mod:`shared.imaging` keeps to checking,
decoding, orienting and encoding.

* **One filter per detail** (``RESAMPLE``): ``high`` (text and tables, what the caller pays extra for)
  keeps LANCZOS, so it matches a full-decode LANCZOS resize. ``low`` and ``auto`` take HAMMING
  (support 1) at under half LANCZOS's cost: on 12 MP photos 0.4 dB PSNR further from the ideal than
  the naive path, whose q85 encode alone costs ~34 dB; small text comes out visibly softer, and
  BICUBIC is the middle ground.
* **Box pre-reduction** (``REDUCING_GAP``) for formats Pillow cannot decode reduced (PNG, WebP,
  TIFF...): ``Image.reduce`` averages by an integer factor first, leaving the filter this much to do.
  At ``auto`` 1.5: a 12 MP image going to 1024 x 768 (ratio 3.9) is box-reduced 2x first instead of
  filtered from full size, resize 97 -> 63 ms, at most 0.11 dB off the ideal view. ``high`` keeps 2.0
  (1.2-1.3x faster at 1.5 on photos, but a PNG text page lost 1.6 dB); ``low`` (ratio 7.8: reduced
  3x either way) gained nothing. JPEG's reduced decode leaves under 2x: both reduce nothing there.
* **JPEGs by planes** (:func:`shrink_planes`): nearly every JPEG stores luma and chroma (YCbCr), and
  the JPEG we send stores chroma at half resolution (``CHROMA_SUBSAMPLING``, 4:2:0). So libjpeg hands
  over the planes unconverted (:func:`decodes_as_ycbcr`), luma, which carries every edge and every
  letter, gets the detail's filter at full size, and chroma is filtered once, on a plane a ninth of the
  size, straight to the half size the encoder keeps; the encoder takes YCbCr back with no conversion.
  A 12 MP photo at ``high``: 4.5x the naive preparation instead of 3.7x, as faithful as shrinking RGB
  (within 0.1 dB of the service's view on photos, on text and on saturated colour; benchmarks/README.md).
"""

from __future__ import annotations

from PIL import Image, JpegImagePlugin

RESAMPLE = {"low": Image.Resampling.HAMMING, "auto": Image.Resampling.HAMMING, "high": Image.Resampling.LANCZOS}
REDUCING_GAP = {"low": 2.0, "auto": 1.5, "high": 2.0}
#: The chroma subsampling of every JPEG we send (Pillow's default for RGB too, said out loud because
#: :func:`shrink_planes` relies on it: its chroma is made for exactly this).
CHROMA_SUBSAMPLING = "4:2:0"

# Chroma is box-reduced by the whole integer factor first (on a 12 MP photo at "high", 3x: 2000 x 1500
# to 667 x 500), then LANCZOS does the rest on a plane a ninth of the size: as faithful as shrinking
# RGB (36.3 dB either way on saturated colour blocks and coloured text, 41.7 on a photo), where
# BILINEAR cost 1 dB and LANCZOS from the full plane cost as much time as the luma.
_CHROMA_FILTER = Image.Resampling.LANCZOS
_CHROMA_REDUCING_GAP = 1.0

# libjpeg's component IDs for a JPEG with no JFIF or Adobe marker: 1, 2, 3 say YCbCr, "R", "G", "B" say RGB.
_YCBCR_COMPONENT_IDS = [1, 2, 3]


def decodes_as_ycbcr(image: Image.Image) -> bool:
    """Whether libjpeg will decode this opened JPEG's three components as YCbCr planes.

    Why it matters: asking for YCbCr output from a JPEG stored as RGB is an error in libjpeg, so the
    plane path must only be taken when the file says YCbCr. The rule is libjpeg's own, read
    conservatively: a JFIF marker means YCbCr, an Adobe marker says so with transform 1, and with
    neither the component IDs must be 1, 2, 3 (camera photos: Exif, no JFIF). Anything else keeps RGB.
    """
    if not isinstance(image, JpegImagePlugin.JpegImageFile) or image.mode != "RGB" or len(image.layer) != 3:
        return False
    if "jfif" in image.info:
        return True
    if "adobe_transform" in image.info:
        return image.info["adobe_transform"] == 1
    return [component[0] for component in image.layer] == _YCBCR_COMPONENT_IDS


def shrink(
    frame: Image.Image, size: tuple[int, int], detail: str, box: tuple[float, float, float, float] | None = None
) -> Image.Image:
    """``frame`` (L, RGB, RGBA or YCbCr) resized to ``size`` the way ``detail`` asks for.

    ``box`` is the region of ``frame`` that is the whole image (a reduced JPEG decode rounds its
    size up, so the last row or column may be partly padding).
    """
    if frame.mode == "YCbCr":
        return shrink_planes(frame, size, RESAMPLE[detail], box=box, reducing_gap=REDUCING_GAP[detail])
    return frame.resize(size, RESAMPLE[detail], box=box, reducing_gap=REDUCING_GAP[detail])


def shrink_planes(
    frame: Image.Image,
    size: tuple[int, int],
    luma_filter: Image.Resampling,
    *,
    box: tuple[float, float, float, float] | None = None,
    reducing_gap: float | None = None,
) -> Image.Image:
    """A YCbCr ``frame`` resized to ``size``: luma with ``luma_filter``, chroma as 4:2:0 will keep it.

    The chroma planes are shrunk to half ``size`` (rounded up, as libjpeg does) and each sample
    repeated 2x2: the encoder's 2x2 average at 4:2:0 turns that back into exactly the half-size plane.
    So the full-size filter runs on luma only, a third of the samples, and chroma is resampled once,
    at the resolution it will be stored at, instead of at full size and then averaged by the encoder.
    """
    width, height = size
    luma, blue, red = frame.split()  # one pass; three getchannel calls cost twice as much
    luma = luma.resize(size, luma_filter, box=box, reducing_gap=reducing_gap)
    half = ((width + 1) // 2, (height + 1) // 2)
    blue, red = (
        plane.resize(half, _CHROMA_FILTER, box=box, reducing_gap=_CHROMA_REDUCING_GAP).resize(
            size, Image.Resampling.NEAREST, box=(0, 0, width / 2, height / 2)
        )
        for plane in (blue, red)
    )
    return Image.merge("YCbCr", (luma, blue, red))
