"""The words invoices label their fields with, one table per language: data, not scattered regexes.

Each entry is a regular-expression fragment, matched case-insensitively at the start of a text box and
not followed by a letter (:func:`label_pattern`). Spaces inside a label are written ``\\s*`` because the
recogniser often drops them (``Rechnungs-Nr.``, ``Factuurnr``, ``N°de facture``). A label that is also
the start of a longer label of another field (``Total`` and ``Total HT``) excludes it with a lookahead,
so a net amount is never read as the grand total.

Add a language by adding a table; :data:`LANGUAGES` is what :mod:`shared.offline.documents` reads.
"""

from __future__ import annotations

import re

#: Words after "total" that make it something other than the grand total, in every language.
_NOT_GRAND = r"(?!\s*(?:tax|vat|net|excl|due|ht\b|hors|netto|excl|exkl|mwst|ust|iva\b|imponibile|btw))"
_NUMBER = r"(?:no\b\.?|nr\b\.?|n[°º]\.?|n\.|number|num\b|#)"

ENGLISH = {
    "invoice_number": [rf"(?:invoice|inv|bill)\.?\s*{_NUMBER}", r"invoice\s*#"],
    "invoice_date": [r"invoice\s*date", r"date\s*of\s*issue", r"issue\s*date", r"date\s*issued",
                     r"date(?!\s*(?:due|of\s*(?:delivery|supply|service|birth)))"],
    "due_date": [r"due\s*date", r"payment\s*due", r"date\s*due", r"due\s*by", r"pay\s*by", r"due"],
    "subtotal": [r"sub\s*-?\s*total", r"net\s*(?:total|amount)", r"total\s*(?:net|excl\w*)"],
    "tax": [r"(?:total\s*)?(?:vat|tax|gst|hst|sales\s*tax)(?!\s*(?:id|no\b|number|reg|#))"],
    "total": [r"grand\s*total", r"total\s*amount", rf"total{_NOT_GRAND}"],
    "amount_due": [r"amount\s*due", r"balance\s*due", r"total\s*due", r"amount\s*payable"],
}
GERMAN = {
    "invoice_number": [r"rechnungs\s*-?\s*(?:nummer|nr\b\.?)", rf"rechnung\s*{_NUMBER}", r"belegnummer",
                       r"beleg\s*-?\s*nr\b\.?", r"bon\s*-?\s*nr\b\.?"],
    "invoice_date": [r"rechnungsdatum", r"belegdatum", r"datum"],
    "due_date": [r"f[äa]llig(?:keitsdatum|\s*am)?", r"zahlbar\s*bis"],
    "subtotal": [r"zwischensumme", r"netto\s*-?\s*betrag", r"summe\s*netto", r"gesamt\s*netto", r"nettosumme"],
    "tax": [r"(?:zzgl\.?\s*)?(?:mwst|ust|mehrwertsteuer|umsatzsteuer)\.?(?!\s*-?\s*(?:id|nr\b))"],
    "total": [r"gesamt\s*-?\s*(?:betrag|summe)", r"brutto\s*-?\s*(?:betrag|summe)?", r"endbetrag",
              r"rechnungsbetrag"],
    "amount_due": [r"zu\s*zahlen(?:der\s*betrag)?", r"zahlbetrag", r"offener\s*betrag"],
}
FRENCH = {
    "invoice_number": [rf"facture\s*{_NUMBER}", r"n[°º]\s*(?:de\s*)?facture", r"num[ée]ro\s*de\s*facture"],
    "invoice_date": [r"date\s*de\s*(?:la\s*)?factur(?:e|ation)", r"date\s*d['’]?\s*[ée]mission"],
    "due_date": [r"date\s*d['’]?\s*[ée]ch[ée]ance", r"[ée]ch[ée]ance"],
    "subtotal": [r"(?:total|montant)\s*h\.?\s*t\.?\b", r"sous\s*-?\s*total"],
    "tax": [r"(?:total\s*|montant\s*)?t\.?\s*v\.?\s*a\.?\b"],
    "total": [r"(?:total|montant)\s*t\.?\s*t\.?\s*c\.?\b"],
    "amount_due": [r"net\s*[àa]\s*payer", r"reste\s*[àa]\s*payer", r"montant\s*d[uû]"],
}
DUTCH = {
    "invoice_number": [r"factuur\s*-?\s*(?:nummer|nr\b\.?)", rf"factuur\s*{_NUMBER}"],
    "invoice_date": [r"factuurdatum", r"datum"],
    "due_date": [r"vervaldatum", r"uiterste\s*betaaldatum"],
    "subtotal": [r"subtotaal", r"totaal\s*excl\w*"],
    "tax": [r"(?:totaal\s*)?btw(?!\s*-?\s*(?:nr\b|nummer|id))"],
    "total": [r"totaal(?:\s*(?:bedrag|incl\w*))?(?!\s*(?:excl|btw))", r"totaalbedrag"],
    "amount_due": [r"te\s*betalen"],
}
SPANISH = {
    "invoice_number": [rf"factura\s*{_NUMBER}", r"n[°º]\s*(?:de\s*)?factura", r"n[úu]mero\s*de\s*factura"],
    "invoice_date": [r"fecha\s*(?:de\s*)?(?:la\s*)?(?:factura|emisi[óo]n)", r"fecha(?!\s*de\s*vencimiento)"],
    "due_date": [r"fecha\s*de\s*vencimiento", r"vencimiento"],
    "subtotal": [r"base\s*imponible", r"subtotal"],
    "tax": [r"(?:total\s*)?i\.?\s*v\.?\s*a\.?\b"],
    "total": [r"importe\s*total", r"total\s*(?:factura|a\s*pagar)"],
    "amount_due": [r"total\s*a\s*pagar", r"importe\s*a\s*pagar"],
}
ITALIAN = {
    "invoice_number": [rf"fattura\s*{_NUMBER}", r"n(?:umero|\.)\s*(?:di\s*)?fattura"],
    "invoice_date": [r"data\s*(?:della\s*)?fattura", r"data\s*(?:di\s*)?emissione", r"data(?!\s*(?:di\s*)?scadenza)"],
    "due_date": [r"(?:data\s*(?:di\s*)?)?scadenza"],
    "subtotal": [r"imponibile", r"subtotale", r"totale\s*imponibile"],
    "tax": [r"(?:totale\s*)?iva(?!\s*(?:n\b|nr|partita))"],
    "total": [r"totale\s*(?:documento|fattura)", r"importo\s*totale", r"totale(?!\s*(?:imponibile|iva))"],
    "amount_due": [r"totale\s*da\s*pagare", r"netto\s*a\s*pagare"],
}
LANGUAGES = {"en": ENGLISH, "de": GERMAN, "fr": FRENCH, "nl": DUTCH, "es": SPANISH, "it": ITALIAN}
FIELDS = ("invoice_number", "invoice_date", "due_date", "subtotal", "tax", "total", "amount_due")


def label_pattern(field: str) -> re.Pattern[str]:
    """Every language's labels of ``field``, longest first (so ``Total HT`` is tried before ``Total``)."""
    fragments = sorted({f for table in LANGUAGES.values() for f in table.get(field, [])}, key=len, reverse=True)
    return re.compile(rf"\s*(?:{'|'.join(fragments)})(?![a-zà-ÿ])", re.I)
