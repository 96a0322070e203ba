"""How a decoded image is shrunk to the size we send: one filter, run with SIMD, and JPEGs by planes.

Why a module of its own: the shrink was most of the CPU a request cost (on a 12 MP photo at ``high``, two
thirds of :func:`shared.imaging.prepare_image` with Pillow's filters), every choice here trades speed
against what the model sees, and each is measured in ``benchmarks/README.md``. :mod:`shared.imaging.prepare`
keeps to checking, decoding, orienting and encoding.

* **One filter, LANCZOS** (``FILTER``), the one the benchmark's ideal image is made with, for every detail.
  :func:`resize` runs it through fast_image_resize (``cykooz.resizer``): the same kernel with SIMD, on the
  calling thread, 4-7x faster than Pillow's. That made LANCZOS cheaper than the HAMMING (support 1) that
  ``low`` and ``auto`` used to take for speed, at 0.4 dB more from the ideal on photos and softer small
  text, and the box pre-reduction (``Image.reduce`` before the filter, for PNG, WebP and TIFF) that
  traded fidelity for Pillow's speed is gone: the filter always runs from the full decoded image.
* **JPEGs by planes** (:func:`shrink_planes`): nearly every JPEG stores luma and chroma (YCbCr), so
  libjpeg hands over the planes unconverted (:func:`decodes_as_ycbcr`), luma, which carries every edge
  and every letter, and chroma are each filtered once, straight to the resolution the JPEG we send will
  store them at (full size for an odd side, whose last half sample is padding: the encoder averages it),
  and the encoder takes YCbCr back with no conversion. With Pillow's filters, 12 MP photos
  at ``high`` (4:2:0): 4.7x the naive preparation against 3.6x shrinking RGB, as faithful (within 0.1 dB
  of the service's view; benchmarks/README.md).
* **Chroma resolution** (``subsampling``): "4:2:0", half-size chroma, is what JPEGs usually store and
  what we send at ``low`` and ``auto``, where the naive image is itself what the service looks at.
  :mod:`shared.imaging.prepare` asks for "4:4:4" when it sends the service's view at ``high`` instead of an
  image the service would shrink 2x itself: that shrink gives the model full-resolution chroma, and
  half-size chroma alone cost 3 dB of the view on photos and 6 dB on saturated colour.
"""

from __future__ import annotations

import math

from cykooz_resizer import CropBox, FilterType, ResizeAlg, ResizeOptions, Resizer
from PIL import Image, JpegImagePlugin

#: The filter every shrink uses (the benchmark swaps it to compare others).
FILTER = Image.Resampling.LANCZOS
#: The chroma subsamplings :func:`shrink_planes` makes chroma for (Pillow's ``subsampling`` names).
SUBSAMPLINGS = ("4:2:0", "4:4:4")

#: Pillow filters fast_image_resize has with the same kernel: its lanczos3 is Pillow's LANCZOS (support 3,
#: widened by the ratio when shrinking). The modes are those it resizes as Pillow does: RGBA premultiplied
#: by alpha (after flattening on white, within 3 levels of Pillow's).
_FAST_FILTERS = {Image.Resampling.LANCZOS: FilterType.lanczos3}
_FAST_MODES = frozenset({"L", "RGB", "RGBA"})

# libjpeg's component IDs for a JPEG with no JFIF or Adobe marker: 1, 2, 3 say YCbCr, "R", "G", "B" say RGB.
_YCBCR_COMPONENT_IDS = [1, 2, 3]


def resize(
    image: Image.Image,
    size: tuple[int, int],
    resample: Image.Resampling,
    *,
    box: tuple[float, float, float, float] | None = None,
) -> Image.Image:
    """``image.resize(size, resample, box=box)``, by fast_image_resize where it has the filter and the mode.

    Why: Pillow's LANCZOS was the largest CPU cost of a request after the decode. fast_image_resize
    computes the same filter with AVX2 (SSE4.1, Neon), single-threaded and with the GIL released, so
    concurrent requests still each get a core: a 2000 x 1500 plane to 1024 x 768 in ~5 ms against ~26,
    a 12 MP RGB image in ~25 against ~180. On photos its pixels are within 2 levels of Pillow's; at text
    edges they differ by tens of levels at a few pixels (each rounds its first pass to 8 bits, and they
    run the passes in a different order), and against an exact floating-point filter neither is
    consistently closer (benchmarks/README.md).
    """
    whole = (0, 0, *image.size)
    box = tuple(box) if box else whole
    if size == image.size and box == whole:
        return image.copy()
    filter_type = _FAST_FILTERS.get(resample)
    if filter_type is None or image.mode not in _FAST_MODES:
        return image.resize(size, resample, box=box)
    image.load()
    resized = Image.new(image.mode, size)
    crop = CropBox(box[0], box[1], box[2] - box[0], box[3] - box[1])
    options = ResizeOptions(resize_alg=ResizeAlg.convolution(filter_type), crop_box=crop)
    Resizer().resize_pil(image, resized, options)  # one per call (microseconds): a Resizer serialises its callers
    return resized


def resize_rows(frame: Image.Image, box: tuple[float, float, float, float], size: tuple[int, int]) -> Image.Image:
    """``box`` of ``frame`` (any mode :func:`resize` takes, or YCbCr) filtered to ``size`` with ``FILTER``,
    reading only the rows the filter needs: a band of a large decode, sampled (:mod:`shared.imaging.byte_budget`,
    :mod:`shared.imaging.view_check`). YCbCr goes through the filter as if it were RGB (each plane alike), so
    fast_image_resize takes it: Pillow's own filter on YCbCr took ~1.5 ms a band."""
    support = 3 * max(1.0, (box[3] - box[1]) / size[1])  # LANCZOS reads 3 of its scaled taps each side
    top = max(0, math.floor(box[1] - support))
    bottom = min(frame.height, math.ceil(box[3] + support))
    rows = frame.crop((0, top, frame.width, bottom))
    inner = (box[0], box[1] - top, box[2], min(box[3] - top, rows.height))
    if frame.mode != "YCbCr":
        return resize(rows, size, FILTER, box=inner)
    band = resize(Image.frombytes("RGB", rows.size, rows.tobytes()), size, FILTER, box=inner)
    return Image.frombytes("YCbCr", band.size, band.tobytes())


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
    box: tuple[float, float, float, float] | None = None,
    *,
    subsampling: str = "4:2:0",
) -> Image.Image:
    """``frame`` (L, RGB, RGBA or YCbCr) resized to ``size`` with ``FILTER``.

    ``box`` is the region of ``frame`` that is the whole image (a reduced JPEG decode rounds its
    size up, so the last row or column may be partly padding). ``subsampling`` is the chroma
    resolution the result will be encoded with; only a YCbCr frame's chroma is made for it.
    """
    if frame.mode == "YCbCr":
        return shrink_planes(frame, size, FILTER, box=box, subsampling=subsampling)
    return resize(frame, size, FILTER, box=box)


def shrink_planes(
    frame: Image.Image,
    size: tuple[int, int],
    resample: Image.Resampling,
    *,
    box: tuple[float, float, float, float] | None = None,
    subsampling: str = "4:2:0",
) -> Image.Image:
    """A YCbCr ``frame`` resized to ``size``, each plane with ``resample``, chroma as ``subsampling`` keeps it.

    At 4:4:4 every plane goes to ``size``. At 4:2:0 the chroma planes go to half ``size`` and each sample is
    repeated 2x2: the encoder's 2x2 average turns that back into exactly the half-size plane, so chroma is
    resampled once, at the resolution it will be stored at, instead of at full size and then averaged by
    the encoder. Except for an odd side, which ends in half a chroma sample of padding: there the chroma
    stays at full size for the encoder to average, as the naive image's is (the half-size plane stretched
    over the padding was up to a pixel off at the far edge: -0.3 to -0.5 dB on colour).
    """
    if subsampling not in SUBSAMPLINGS:
        raise ValueError(f"subsampling must be one of {SUBSAMPLINGS}; got {subsampling!r}")
    width, height = size
    luma, blue, red = frame.split()  # one pass; three getchannel calls cost twice as much
    luma = resize(luma, size, resample, box=box)
    if subsampling == "4:4:4" or width % 2 or height % 2:  # odd: full-size chroma, for the encoder to average
        return Image.merge("YCbCr", (luma, resize(blue, size, resample, box=box), resize(red, size, resample, box=box)))
    half = (width // 2, height // 2)
    blue, red = (
        resize(plane, half, resample, box=box).resize(size, Image.Resampling.NEAREST) for plane in (blue, red)
    )
    return Image.merge("YCbCr", (luma, blue, red))
