"""The words invoices label their fields with, one table per language: data, not scattered regexes.

Each entry is a regular-expression fragment, matched case-insensitively at the start of a text box and
not followed by a letter unless it ends with ``#``, ``:`` or ``°`` (``Invoice#AB-12``) or a capital follows
a small letter (``FactuurtotaalEUR``: words the recogniser ran together; :func:`label_pattern`). Spaces
inside a label are written ``\\s*`` because the recogniser often drops them (``Rechnungs-Nr.``,
``Factuurnr``, ``N°de facture``). A label that is also the start of a longer label of another field
(``Total`` and ``Total HT``) excludes it with a lookahead, so a net amount is never read as the grand
total.

Each table also names the document itself (``title``: ``Invoice``, ``Rechnung``, ``Factuur``): a column
headed by that word alone holds the document's number.

Add a language by adding a table; :data:`LANGUAGES` is what :mod:`shared.offline.documents` reads.
"""

from __future__ import annotations

import re

#: Words after "total" that make it something other than the grand total, in every language.
_NOT_GRAND = r"(?!\s*(?:tax|vat|net|excl|due|ht\b|hors|netto|excl|exkl|mwst|ust|iva\b|imponibile|btw))"
#: A lower-case letter then a capital: two words the recogniser ran together (``FactuurtotaalEUR``, ``AvoirAV-1``).
_CAMEL = r"(?-i:(?<=[a-zà-ÿ])(?=[A-ZÀ-Þ]))"
_NUMBER = r"(?:no\b\.?|nr\b\.?|n[°º]\.?|n\.|number|num\b|#)"
#: A document's title word directly followed by its code (``Facture FA-2017-0010``, ``Invoice INV/2023/8``):
#: the code has four or more characters, a digit among them, and is not a date.
_TITLE_CODE = r"(?=(?:\s+|(?-i:(?=[A-Z])))(?![\d./-]*\d[./-]\d{1,2}[./-]\d)[A-Z]{0,6}[-/_]?\d[\w/-]{2,}(?:\s|$))"

ENGLISH = {
    "invoice_number": [rf"(?:invoice|inv|bill)\.?\s*{_NUMBER}", r"invoice\s*#", rf"credit\s*note\s*{_NUMBER}",
                       rf"(?:tax\s*)?invoice{_TITLE_CODE}", rf"credit\s*note{_TITLE_CODE}"],
    "invoice_date": [r"invoice\s*date", r"date\s*of\s*issue", r"issue\s*date", r"date\s*issued",
                     r"issued\s*(?:at|on)", r"dated",
                     r"date(?!\s*(?:due|of\s*(?:delivery|supply|service|birth)))"],
    "due_date": [r"due\s*date", r"payment\s*due", r"date\s*due", r"due\s*by", r"pay\s*by", r"due"],
    "subtotal": [r"sub\s*-?\s*total", r"net\s*(?:total|amount)", r"total\s*(?:net|excl\w*)"],
    "tax": [r"(?:total\s*)?(?:vat|tax|gst|hst|sales\s*tax)(?!\s*(?:id|no\b|number|reg|#))"],
    "total": [r"grand\s*total", r"total\s*amount", r"invoice\s*total", rf"total{_NOT_GRAND}"],
    "amount_due": [r"amount\s*due", r"balance\s*due", r"total\s*due", r"amount\s*payable", r"due\s*payable",
                   r"total\s*payable"],
    "currency": [r"currency"],
    "title": [r"(?:tax\s*)?invoice", r"credit\s*note", r"receipt"],
}
GERMAN = {
    "invoice_number": [r"rechnungs\s*-?\s*(?:nummer|nr\b\.?)", rf"[a-zäöü]*rechnung(?:skorrektur)?\s*{_NUMBER}",
                       r"belegnummer", r"beleg\s*-?\s*nr\b\.?", r"(?:kassen)?bon\s*-?\s*nr\b\.?",
                       rf"gutschrift\s*{_NUMBER}", rf"(?:rechnung|gutschrift)(?:\s*f[üu]r)?{_TITLE_CODE}"],
    "invoice_date": [r"rechnungs\s*-?\s*datum", r"beleg\s*-?\s*datum", r"datum"],
    "due_date": [r"f[äa]llig(?:keitsdatum|\s*am)?", r"zahlbar\s*bis"],
    "subtotal": [r"zwischensumme", r"netto\s*-?\s*betrag", r"summe\s*netto", r"gesamt\s*netto", r"nettosumme"],
    "tax": [r"(?:(?:zzgl\.?|zuz[üu]e?glich)\s*)?(?:mwst|ust|mehrwertsteuer|umsatzsteuer)\.?(?!\s*-?\s*(?:id|nr\b))"],
    # "Gesamtbetrag der Zuschläge": the total *of* something, not the document's.
    "total": [r"gesamt\s*-?\s*(?:betrag|summe)(?!\s*der)", r"brutto\s*-?\s*(?:betrag|summe)?", r"endbetrag",
              r"rechnungsbetrag", r"summe(?!\s*(?:netto|der|mwst|ust|steuer))"],
    "amount_due": [r"zu\s*zahlen(?:der\s*betrag)?", r"zahlbetrag", r"offener\s*betrag"],
    "currency": [r"(?:rechnungs)?w[äa]hrung(?!\s*der)"],
    "title": [r"rechnung", r"gutschrift", r"quittung", r"kassenbon"],
}
FRENCH = {
    "invoice_number": [rf"facture\s*{_NUMBER}", r"n[°º]\s*(?:de\s*)?facture", r"num[ée]ro\s*de\s*facture",
                       rf"avoir\s*{_NUMBER}", rf"(?:facture|avoir){_TITLE_CODE}"],
    "invoice_date": [r"date\s*de\s*(?:la\s*)?factur(?:e|ation)", r"date\s*d['’]?\s*[ée]mission"],
    "due_date": [r"date\s*d['’]?\s*[ée]ch[ée]ance", r"[ée]ch[ée]ance", r"date\s*limite(?:\s*de\s*paiement)?"],
    "subtotal": [r"(?:total|montant)\s*h\.?\s*t\.?\b", r"sous\s*-?\s*total"],
    "tax": [r"(?:total\s*|montant\s*)?t\.?\s*v\.?\s*a\.?\b"],
    "total": [r"(?:total|montant)\s*t\.?\s*t\.?\s*c\.?\b"],
    "amount_due": [r"net\s*[àa]\s*payer", r"reste\s*[àa]\s*payer", r"montant\s*d[uû]", r"somme\s*[àa]\s*payer",
                   r"solde\s*[àa]\s*payer"],
    "currency": [r"devise", r"monnaie"],
    "title": [r"facture", r"avoir", r"re[çc]u"],
}
DUTCH = {
    "invoice_number": [r"factuur\s*-?\s*(?:nummer|nr\b\.?)", rf"factuur\s*{_NUMBER}", rf"factuur{_TITLE_CODE}"],
    "invoice_date": [r"factuur\s*-?\s*datum", r"datum"],
    "due_date": [r"vervaldatum", r"uiterste\s*betaaldatum"],
    "subtotal": [r"subtotaal", r"totaal\s*excl\w*"],
    "tax": [r"(?:totaal\s*)?btw(?!\s*-?\s*(?:nr\b|nummer|id))"],
    "total": [r"totaal(?:\s*(?:bedrag|incl\w*))?(?!\s*(?:excl|btw))", r"totaalbedrag", r"factuur\s*totaal"],
    "amount_due": [r"te\s*betalen"],
    "currency": [r"valuta", r"munteenheid"],
    "title": [r"factuur", r"creditnota", r"kassabon"],
}
SPANISH = {
    "invoice_number": [rf"factura\s*{_NUMBER}", r"n[°º]\s*(?:de\s*)?factura", r"n[úu]mero\s*de\s*factura",
                       rf"factura{_TITLE_CODE}"],
    "invoice_date": [r"fecha\s*(?:de\s*)?(?:la\s*)?(?:factura|emisi[óo]n)", r"fecha(?!\s*de\s*vencimiento)"],
    "due_date": [r"fecha\s*de\s*vencimiento", r"vencimiento"],
    "subtotal": [r"base\s*imponible", r"subtotal"],
    "tax": [r"(?:total\s*)?i\.?\s*v\.?\s*a\.?\b"],
    "total": [r"importe\s*total", r"total\s*(?:factura|a\s*pagar)"],
    "amount_due": [r"total\s*a\s*pagar", r"importe\s*a\s*pagar"],
    "currency": [r"moneda", r"divisa"],
    "title": [r"factura", r"recibo"],
}
ITALIAN = {
    "invoice_number": [rf"fattura\s*{_NUMBER}", r"n(?:umero|\.)\s*(?:di\s*)?fattura", rf"fattura{_TITLE_CODE}"],
    "invoice_date": [r"data\s*(?:della\s*)?fattura", r"data\s*(?:di\s*)?emissione", r"data(?!\s*(?:di\s*)?scadenza)"],
    "due_date": [r"(?:data\s*(?:di\s*)?)?scadenza"],
    "subtotal": [r"imponibile", r"subtotale", r"totale\s*imponibile"],
    "tax": [r"(?:totale\s*)?iva(?!\s*(?:n\b|nr|partita))"],
    "total": [r"totale\s*(?:documento|fattura)", r"importo\s*totale", r"totale(?!\s*(?:imponibile|iva))"],
    "amount_due": [r"totale\s*da\s*pagare", r"netto\s*a\s*pagare"],
    "currency": [r"valuta", r"divisa"],
    "title": [r"fattura", r"ricevuta", r"scontrino"],
}
LANGUAGES = {"en": ENGLISH, "de": GERMAN, "fr": FRENCH, "nl": DUTCH, "es": SPANISH, "it": ITALIAN}
FIELDS = ("invoice_number", "invoice_date", "due_date", "subtotal", "tax", "total", "amount_due", "currency")
#: Not a field: the document's own name (``Invoice``, ``Rechnung``), a title or a column header.
TITLE = "title"


def label_pattern(field: str) -> re.Pattern[str]:
    """Every language's labels of ``field``, longest first (so ``Total HT`` is tried before ``Total``)."""
    fragments = sorted({f for table in LANGUAGES.values() for f in table.get(field, [])}, key=len, reverse=True)
    return re.compile(rf"\s*(?:{'|'.join(fragments)})(?:(?<=[#:°º])|{_CAMEL}|(?![a-zà-ÿ]))", re.I)


_LANGUAGE_PATTERNS = {language: re.compile(
    rf"\s*(?:{'|'.join(f for fragments in table.values() for f in fragments)})(?![a-zà-ÿ])", re.I)
    for language, table in LANGUAGES.items()}


def page_language(texts: list[str]) -> str | None:
    """The language whose labels start the most of ``texts`` (None when none does, or two tie)."""
    counts = {language: sum(1 for text in texts if pattern.match(text))
              for language, pattern in _LANGUAGE_PATTERNS.items()}
    ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
    if not ranked[0][1] or ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]
