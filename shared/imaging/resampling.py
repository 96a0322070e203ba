"""How a decoded image is shrunk to the size we send: the filter per detail, box pre-reduction, JPEG planes.

Why a module of its own: the shrink is most of the CPU a request costs (on a 12 MP photo at ``high``,
two thirds of :func:`shared.imaging.prepare_image`), every choice here trades speed against what the
model sees, and each is measured in ``benchmarks/README.md``. :mod:`shared.imaging.prepare` keeps to checking,
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
* **JPEGs by planes** (:func:`shrink_planes`): nearly every JPEG stores luma and chroma (YCbCr), so
  libjpeg hands over the planes unconverted (:func:`decodes_as_ycbcr`), luma, which carries every
  edge and every letter, gets the detail's filter at full size, chroma is filtered once, straight to
  the resolution the JPEG we send will store it at, and the encoder takes YCbCr back with no
  conversion. 12 MP photos at ``high``, 4:2:0: 4.7x the naive preparation against 3.6x shrinking RGB,
  as faithful (within 0.1 dB of the service's view; benchmarks/README.md).
* **Chroma resolution** (``subsampling``): "4:2:0", half-size chroma, is what JPEGs usually store
  and what we send at ``low`` and ``auto``, where the naive image is itself what the service looks at.
  :mod:`shared.imaging.prepare` asks for "4:4:4" when it sends the service's view at ``high`` instead of an image
  the service would shrink 2x itself: that shrink gives the model full-resolution chroma, and half-size
  chroma alone cost 3 dB of the view on photos and 6 dB on saturated colour.
"""

from __future__ import annotations

from PIL import Image, JpegImagePlugin

RESAMPLE = {"low": Image.Resampling.HAMMING, "auto": Image.Resampling.HAMMING, "high": Image.Resampling.LANCZOS}
REDUCING_GAP = {"low": 2.0, "auto": 1.5, "high": 2.0}
#: The chroma subsamplings :func:`shrink_planes` makes chroma for (Pillow's ``subsampling`` names).
SUBSAMPLINGS = ("4:2:0", "4:4:4")

# Half-size chroma (4:2:0): box-reduced by the whole integer factor first (on a 12 MP photo at "high",
# 3x: 2000 x 1500 to 667 x 500), then LANCZOS on a plane a ninth of the size: as faithful as shrinking
# RGB (36.3 dB either way on saturated colour blocks and coloured text, 41.7 on a photo), where BILINEAR
# cost 1 dB and LANCZOS from the full plane cost as much time as the luma.
_HALF_CHROMA = (Image.Resampling.LANCZOS, 1.0)
# Full-size chroma (4:4:4): box-reduced by the integer factor that lands at most this much under the
# target (2000 x 1500 -> 1000 x 750 for a 1024 x 768 view), then LANCZOS the rest of the way, up or down.
# 2.4% less chroma resolution than the view costs 0.1-0.2 dB of it on photos, and on a 12 MP scene of
# saturated colour blocks and coloured text 4 dB against LANCZOS (48.1 against 52.1, still over the naive
# image's view, 44.1). LANCZOS from the full plane ran the whole preparation at 0.8x the speed, BICUBIC
# from it at 0.95x, 1 dB under LANCZOS.
_FULL_CHROMA_TOLERANCE = 0.05

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
    frame: Image.Image,
    size: tuple[int, int],
    detail: str,
    box: tuple[float, float, float, float] | None = None,
    *,
    subsampling: str = "4:2:0",
) -> Image.Image:
    """``frame`` (L, RGB, RGBA or YCbCr) resized to ``size`` the way ``detail`` asks for.

    ``box`` is the region of ``frame`` that is the whole image (a reduced JPEG decode rounds its
    size up, so the last row or column may be partly padding). ``subsampling`` is the chroma
    resolution the result will be encoded with; only a YCbCr frame's chroma is made for it.
    """
    if frame.mode == "YCbCr":
        return shrink_planes(
            frame, size, RESAMPLE[detail], box=box, reducing_gap=REDUCING_GAP[detail], subsampling=subsampling
        )
    return frame.resize(size, RESAMPLE[detail], box=box, reducing_gap=REDUCING_GAP[detail])


def shrink_planes(
    frame: Image.Image,
    size: tuple[int, int],
    luma_filter: Image.Resampling,
    *,
    box: tuple[float, float, float, float] | None = None,
    reducing_gap: float | None = None,
    subsampling: str = "4:2:0",
) -> Image.Image:
    """A YCbCr ``frame`` resized to ``size``: luma with ``luma_filter``, chroma as ``subsampling`` will keep it.

    At 4:2:0 the chroma planes are shrunk to half ``size`` (rounded up, as libjpeg does) and each
    sample repeated 2x2: the encoder's 2x2 average turns that back into exactly the half-size plane.
    So the full-size filter runs on luma only, a third of the samples, and chroma is resampled once,
    at the resolution it will be stored at, instead of at full size and then averaged by the encoder.
    At 4:4:4 chroma is stored at full size: box-reduced to just under it first (:func:`_full_chroma`).
    """
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {SUBSAMPLINGS}; got {subsampling!r}")
    width, height = size
    luma, blue, red = frame.split()  # one pass; three getchannel calls cost twice as much
    luma = luma.resize(size, luma_filter, box=box, reducing_gap=reducing_gap)
    if subsampling == "4:4:4":
        return Image.merge("YCbCr", (luma, _full_chroma(blue, size, box), _full_chroma(red, size, box)))
    chroma_filter, chroma_gap = _HALF_CHROMA
    half = ((width + 1) // 2, (height + 1) // 2)
    blue, red = (
        plane.resize(half, chroma_filter, box=box, reducing_gap=chroma_gap).resize(
            size, Image.Resampling.NEAREST, box=(0, 0, width / 2, height / 2)
        )
        for plane in (blue, red)
    )
    return Image.merge("YCbCr", (luma, blue, red))


def _full_chroma(
    plane: Image.Image, size: tuple[int, int], box: tuple[float, float, float, float] | None
) -> Image.Image:
    """A chroma plane at ``size``: ``Image.reduce`` by the factor landing at most 5% under it, then LANCZOS."""
    box = box or (0, 0, *plane.size)
    ratio = min((box[2] - box[0]) / size[0], (box[3] - box[1]) / size[1])
    factor = max(1, int(ratio / (1 - _FULL_CHROMA_TOLERANCE)))
    if factor > 1:
        plane, box = plane.reduce(factor), (box[0] / factor, box[1] / factor, box[2] / factor, box[3] / factor)
    return plane.resize(size, Image.Resampling.LANCZOS, box=box)
