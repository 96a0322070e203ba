"""The offline engine: OCR and image facts (:mod:`.engine`), invoices and tables (:mod:`.documents`), any JSON
Schema (:mod:`.forms`), dates and amounts (:mod:`.values`) and the plain-text report (:mod:`.report`)."""
