"""Images, from upload bytes to the JPEG the model is sent.

Why a package: preparing an image is one concern in nine steps, each a module of its own, each pure
(bytes or Pillow images in and out, nothing global touched):

* :mod:`~shared.imaging.formats`: which format the bytes are, by their magic numbers alone (no Pillow);
* :mod:`~shared.imaging.pillow_errors`: Pillow's exceptions from broken or hostile input as our errors,
  for every module that decodes with Pillow (the offline engine and the document reader too);
* :mod:`~shared.imaging.resampling`: how a decoded image is shrunk (filters, box reduction, JPEG planes);
* :mod:`~shared.imaging.modes`: any Pillow mode as 8-bit RGB (alpha on white, 16-bit scaled), for every reader;
* :mod:`~shared.imaging.content`: whether a decoded image is a page (text, line art) or a photo, and grainy;
* :mod:`~shared.imaging.encoding`: how the JPEG sent is quantised (the caller's quality, or the view's tables);
* :mod:`~shared.imaging.byte_budget`: the naive image's bytes, estimated from a sample of the decode, which
  the view's tables are fitted to, image by image;
* :mod:`~shared.imaging.view_check`: whether the view, encoded, is as faithful as the naive image once the
  service has shrunk it, measured on a sample where the shrink is small;
* :mod:`~shared.imaging.prepare`: checking, decoding, orienting, shrinking to what the service will look
  at, and encoding; its public names are this package's.
"""

from shared.imaging.encoding import VIEW_ENCODING, VIEW_MIN_SHRINK, JpegEncoding, view_encoding
from shared.imaging.modes import to_rgb
from shared.imaging.prepare import (
    DEFAULT_JPEG_QUALITY,
    DEFAULT_MAX_PIXELS,
    DETAIL_MAX_SIDE,
    DRAFT_TOLERANCE,
    HIGH_DETAIL_ABOVE,
    HIGH_DRAFT_HEADROOM,
    LOW_DETAIL_BELOW,
    PreparedImage,
    image_size,
    prepare_image,
    select_detail_level,
    target_size,
)

__all__ = [
    "DEFAULT_JPEG_QUALITY", "DEFAULT_MAX_PIXELS", "DETAIL_MAX_SIDE", "DRAFT_TOLERANCE", "HIGH_DETAIL_ABOVE",
    "HIGH_DRAFT_HEADROOM", "LOW_DETAIL_BELOW", "VIEW_ENCODING", "VIEW_MIN_SHRINK", "JpegEncoding", "PreparedImage",
    "image_size", "prepare_image", "select_detail_level", "target_size", "to_rgb", "view_encoding",
]
