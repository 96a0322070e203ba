"""Month names as invoices print them, one table per language: data, not scattered regexes.

Each table maps a month's number to the ways it is written: the full name and its usual abbreviations
(lower case; accents as printed, and without, since OCR and old encodings drop them). A name matches
case-insensitively and may end with a dot (``Jan.``, ``févr.``). :mod:`shared.offline.dates` reads
:data:`MONTHS`; add a language by adding a table.
"""

from __future__ import annotations

import re

ENGLISH = {1: ("january", "jan"), 2: ("february", "feb"), 3: ("march", "mar"), 4: ("april", "apr"),
           5: ("may",), 6: ("june", "jun"), 7: ("july", "jul"), 8: ("august", "aug"),
           9: ("september", "sept", "sep"), 10: ("october", "oct"), 11: ("november", "nov"),
           12: ("december", "dec")}
GERMAN = {1: ("januar", "jänner", "jan"), 2: ("februar", "feb"), 3: ("märz", "maerz", "marz", "mär", "mrz"),
          4: ("april", "apr"), 5: ("mai",), 6: ("juni", "jun"), 7: ("juli", "jul"), 8: ("august", "aug"),
          9: ("september", "sept", "sep"), 10: ("oktober", "okt"), 11: ("november", "nov"),
          12: ("dezember", "dez")}
FRENCH = {1: ("janvier", "janv"), 2: ("février", "fevrier", "févr", "fevr", "fév"), 3: ("mars",),
          4: ("avril", "avr"), 5: ("mai",), 6: ("juin",), 7: ("juillet", "juil"), 8: ("août", "aout"),
          9: ("septembre", "sept"), 10: ("octobre", "oct"), 11: ("novembre", "nov"),
          12: ("décembre", "decembre", "déc", "dec")}
DUTCH = {1: ("januari", "jan"), 2: ("februari", "feb"), 3: ("maart", "mrt"), 4: ("april", "apr"), 5: ("mei",),
         6: ("juni", "jun"), 7: ("juli", "jul"), 8: ("augustus", "aug"), 9: ("september", "sept", "sep"),
         10: ("oktober", "okt"), 11: ("november", "nov"), 12: ("december", "dec")}
SPANISH = {1: ("enero", "ene"), 2: ("febrero", "feb"), 3: ("marzo", "mar"), 4: ("abril", "abr"), 5: ("mayo", "may"),
           6: ("junio", "jun"), 7: ("julio", "jul"), 8: ("agosto", "ago"),
           9: ("septiembre", "setiembre", "sept", "sep"),
           10: ("octubre", "oct"), 11: ("noviembre", "nov"), 12: ("diciembre", "dic")}
ITALIAN = {1: ("gennaio", "gen"), 2: ("febbraio", "feb"), 3: ("marzo", "mar"), 4: ("aprile", "apr"),
           5: ("maggio", "mag"), 6: ("giugno", "giu"), 7: ("luglio", "lug"), 8: ("agosto", "ago"),
           9: ("settembre", "set"), 10: ("ottobre", "ott"), 11: ("novembre", "nov"), 12: ("dicembre", "dic")}
MONTHS = {"en": ENGLISH, "de": GERMAN, "fr": FRENCH, "nl": DUTCH, "es": SPANISH, "it": ITALIAN}

#: Every written form -> month number. No form names two months across the languages (checked by a test).
MONTH_NUMBERS = {name: number for table in MONTHS.values() for number, names in table.items() for name in names}
#: One alternation of every form, longest first (``september`` before ``sept`` before ``sep``).
MONTH_PATTERN = "|".join(re.escape(name) for name in sorted(MONTH_NUMBERS, key=len, reverse=True))
