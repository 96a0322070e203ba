"""Documents as people have them: PDFs and multi-page TIFF scans, read as pages the models can see.

Azure OpenAI's chat API takes images, not PDFs, so every page becomes an image here; a digital PDF's
own text layer is read too (with positions), because it is exact where OCR guesses.

- :mod:`shared.documents.selection`: pure arithmetic: page ranges (``1-3,7``), the limits checked
  before anything is rendered, and the render scale a detail level needs.
- :mod:`shared.documents.reader`: opening a PDF (PDFium, through ``pypdfium2``) or a TIFF (Pillow's
  frames), checking it, and yielding its pages one at a time (bounded memory), each with its text
  layer when it has one.
"""
