#!/usr/bin/env python3
"""Generates src/nets/clip/text-tables.ts: the character data that CLIP's text cleaning needs.

    python3 src/nets/clip/gen-text-tables.py > src/nets/clip/text-tables.ts

Everything here comes from Python's standard library (html.entities.html5, html._invalid_charrefs,
html._invalid_codepoints, the codecs of the single-byte encodings ftfy tries, str.isspace), except
BADNESS_CATEGORIES: the character classes of ftfy 6.3.1's mojibake heuristic (ftfy/badness.py,
MOJIBAKE_CATEGORIES), written here by Unicode name and turned into code points by unicodedata.
The TypeScript side (ftfy.ts, html.ts) holds the algorithms; this file only holds data.
"""
import html
import html.entities
import json
import sys
import unicodedata

N = unicodedata.lookup


def names(*ns):
    return ''.join(N(n) for n in ns)


def rng(a, b):
    return N(a) + '-' + N(b)


# ftfy 6.3.1 badness.MOJIBAKE_CATEGORIES. Strings are regex character-class bodies ('-' = range).
BADNESS_CATEGORIES = {
    'common': names('NO-BREAK SPACE', 'SOFT HYPHEN', 'MIDDLE DOT', 'ACUTE ACCENT', 'EN DASH', 'EM DASH',
                    'HORIZONTAL BAR', 'HORIZONTAL ELLIPSIS', 'RIGHT SINGLE QUOTATION MARK'),
    'c1': '\x80-\x9f',
    'bad': names('BROKEN BAR', 'CURRENCY SIGN', 'DIAERESIS', 'NOT SIGN', 'MACRON', 'CEDILLA',
                 'LATIN SMALL LETTER F WITH HOOK', 'MODIFIER LETTER CIRCUMFLEX ACCENT', 'CARON', 'BREVE',
                 'OGONEK', 'SMALL TILDE', 'DAGGER', 'DOUBLE DAGGER', 'PER MILLE SIGN', 'REVERSED NOT SIGN',
                 'LOZENGE') + '\ufffd' + names('FEMININE ORDINAL INDICATOR', 'MASCULINE ORDINAL INDICATOR'),
    'law': names('PILCROW SIGN', 'SECTION SIGN'),
    'currency': names('CENT SIGN', 'POUND SIGN', 'YEN SIGN', 'PESETA SIGN', 'EURO SIGN'),
    'start_punctuation': names('INVERTED EXCLAMATION MARK', 'LEFT-POINTING DOUBLE ANGLE QUOTATION MARK',
                               'INVERTED QUESTION MARK', 'COPYRIGHT SIGN', 'GREEK TONOS', 'GREEK DIALYTIKA TONOS',
                               'LEFT SINGLE QUOTATION MARK', 'SINGLE LOW-9 QUOTATION MARK',
                               'LEFT DOUBLE QUOTATION MARK', 'DOUBLE LOW-9 QUOTATION MARK', 'BULLET',
                               'SINGLE LEFT-POINTING ANGLE QUOTATION MARK') + '\uf8ff',
    'end_punctuation': names('REGISTERED SIGN', 'RIGHT-POINTING DOUBLE ANGLE QUOTATION MARK', 'DOUBLE ACUTE ACCENT',
                             'RIGHT DOUBLE QUOTATION MARK', 'SINGLE RIGHT-POINTING ANGLE QUOTATION MARK',
                             'TRADE MARK SIGN'),
    'numeric': names('SUPERSCRIPT TWO', 'SUPERSCRIPT THREE', 'SUPERSCRIPT ONE', 'PLUS-MINUS SIGN',
                     'VULGAR FRACTION ONE QUARTER', 'VULGAR FRACTION ONE HALF', 'VULGAR FRACTION THREE QUARTERS',
                     'MULTIPLICATION SIGN', 'MICRO SIGN', 'DIVISION SIGN', 'FRACTION SLASH', 'PARTIAL DIFFERENTIAL',
                     'INCREMENT', 'N-ARY PRODUCT', 'N-ARY SUMMATION', 'SQUARE ROOT', 'INFINITY', 'INTERSECTION',
                     'INTEGRAL', 'ALMOST EQUAL TO', 'NOT EQUAL TO', 'IDENTICAL TO', 'LESS-THAN OR EQUAL TO',
                     'GREATER-THAN OR EQUAL TO', 'NUMERO SIGN'),
    'kaomoji': 'Ò-ÖÙ-Üò-öø-ü' + names('LATIN CAPITAL LETTER O WITH DOUBLE ACUTE', 'LATIN CAPITAL LETTER O WITH MACRON',
                                        'LATIN CAPITAL LETTER U WITH MACRON', 'LATIN CAPITAL LETTER U WITH OGONEK',
                                        'DEGREE SIGN'),
    'upper_accented': '\xc0-\xd1' + names(
        'LATIN CAPITAL LETTER O WITH STROKE', 'LATIN CAPITAL LETTER U WITH DIAERESIS', 'LATIN CAPITAL LETTER Y WITH ACUTE',
        'LATIN CAPITAL LETTER A WITH BREVE', 'LATIN CAPITAL LETTER A WITH MACRON', 'LATIN CAPITAL LETTER A WITH OGONEK',
        'LATIN CAPITAL LETTER C WITH ACUTE', 'LATIN CAPITAL LETTER C WITH CARON', 'LATIN CAPITAL LETTER D WITH CARON',
        'LATIN CAPITAL LETTER D WITH STROKE', 'LATIN CAPITAL LETTER E WITH OGONEK', 'LATIN CAPITAL LETTER E WITH CARON',
        'LATIN CAPITAL LETTER E WITH MACRON', 'LATIN CAPITAL LETTER E WITH DOT ABOVE', 'LATIN CAPITAL LETTER G WITH BREVE',
        'LATIN CAPITAL LETTER G WITH CEDILLA', 'LATIN CAPITAL LETTER I WITH DOT ABOVE', 'LATIN CAPITAL LETTER I WITH MACRON',
        'LATIN CAPITAL LETTER K WITH CEDILLA', 'LATIN CAPITAL LETTER L WITH ACUTE', 'LATIN CAPITAL LETTER L WITH CARON',
        'LATIN CAPITAL LETTER L WITH STROKE', 'LATIN CAPITAL LETTER L WITH CEDILLA', 'LATIN CAPITAL LETTER N WITH ACUTE',
        'LATIN CAPITAL LETTER N WITH CARON', 'LATIN CAPITAL LETTER N WITH CEDILLA', 'LATIN CAPITAL LIGATURE OE',
        'LATIN CAPITAL LETTER R WITH CARON', 'LATIN CAPITAL LETTER S WITH ACUTE', 'LATIN CAPITAL LETTER S WITH CEDILLA',
        'LATIN CAPITAL LETTER S WITH CARON', 'LATIN CAPITAL LETTER T WITH CEDILLA', 'LATIN CAPITAL LETTER T WITH CARON',
        'LATIN CAPITAL LETTER U WITH RING ABOVE', 'LATIN CAPITAL LETTER U WITH DOUBLE ACUTE',
        'LATIN CAPITAL LETTER Y WITH DIAERESIS', 'LATIN CAPITAL LETTER Z WITH ACUTE', 'LATIN CAPITAL LETTER Z WITH DOT ABOVE',
        'LATIN CAPITAL LETTER Z WITH CARON', 'CYRILLIC CAPITAL LETTER GHE WITH UPTURN'),
    'lower_accented': N('LATIN SMALL LETTER SHARP S') + '\xe0-\xf1' + names(
        'LATIN SMALL LETTER A WITH BREVE', 'LATIN SMALL LETTER A WITH OGONEK', 'LATIN SMALL LETTER A WITH MACRON',
        'LATIN SMALL LETTER C WITH ACUTE', 'LATIN SMALL LETTER C WITH CARON', 'LATIN SMALL LETTER D WITH CARON',
        'LATIN SMALL LETTER D WITH STROKE', 'LATIN SMALL LETTER E WITH OGONEK', 'LATIN SMALL LETTER E WITH CARON',
        'LATIN SMALL LETTER E WITH MACRON', 'LATIN SMALL LETTER E WITH DOT ABOVE', 'LATIN SMALL LETTER G WITH BREVE',
        'LATIN SMALL LETTER G WITH CEDILLA', 'LATIN SMALL LETTER I WITH OGONEK', 'LATIN SMALL LETTER I WITH MACRON',
        'LATIN SMALL LETTER K WITH CEDILLA', 'LATIN SMALL LETTER L WITH ACUTE', 'LATIN SMALL LETTER L WITH CARON',
        'LATIN SMALL LETTER L WITH STROKE', 'LATIN SMALL LETTER L WITH CEDILLA', 'LATIN SMALL LIGATURE OE',
        'LATIN SMALL LETTER R WITH ACUTE', 'LATIN SMALL LETTER S WITH ACUTE', 'LATIN SMALL LETTER S WITH CEDILLA',
        'LATIN SMALL LETTER S WITH CARON', 'LATIN SMALL LETTER T WITH CARON', 'LATIN SMALL LETTER U WITH DIAERESIS',
        'LATIN SMALL LETTER Z WITH ACUTE', 'LATIN SMALL LETTER Z WITH DOT ABOVE', 'LATIN SMALL LETTER Z WITH CARON',
        'CYRILLIC SMALL LETTER GHE WITH UPTURN', 'LATIN SMALL LIGATURE FI', 'LATIN SMALL LIGATURE FL'),
    'upper_common': N('LATIN CAPITAL LETTER THORN') + rng('GREEK CAPITAL LETTER ALPHA', 'GREEK CAPITAL LETTER OMEGA') + names(
        'GREEK CAPITAL LETTER ALPHA WITH TONOS', 'GREEK CAPITAL LETTER EPSILON WITH TONOS',
        'GREEK CAPITAL LETTER ETA WITH TONOS', 'GREEK CAPITAL LETTER IOTA WITH TONOS',
        'GREEK CAPITAL LETTER OMICRON WITH TONOS', 'GREEK CAPITAL LETTER UPSILON WITH TONOS',
        'GREEK CAPITAL LETTER OMEGA WITH TONOS', 'GREEK CAPITAL LETTER IOTA WITH DIALYTIKA',
        'GREEK CAPITAL LETTER UPSILON WITH DIALYTIKA') + rng('CYRILLIC CAPITAL LETTER IO', 'CYRILLIC CAPITAL LETTER YA'),
    'lower_common': rng('GREEK SMALL LETTER ALPHA', 'GREEK SMALL LETTER OMEGA') + names(
        'GREEK SMALL LETTER ALPHA WITH TONOS', 'GREEK SMALL LETTER EPSILON WITH TONOS', 'GREEK SMALL LETTER ETA WITH TONOS',
        'GREEK SMALL LETTER IOTA WITH TONOS', 'GREEK SMALL LETTER UPSILON WITH DIALYTIKA AND TONOS') +
        rng('CYRILLIC SMALL LETTER A', 'CYRILLIC SMALL LETTER DZHE'),
    'box': '│┌┐┘├┤┬┼' + rng('BOX DRAWINGS DOUBLE HORIZONTAL', 'BOX DRAWINGS DOUBLE VERTICAL AND HORIZONTAL') + '▀▄█▌▐░▒▓',
}

# Decoding tables of bytes 0x80..0xFF ('\ufffd' where the codec leaves a byte undefined).
CODECS = ['windows-1250', 'windows-1251', 'windows-1252', 'windows-1253', 'windows-1254', 'windows-1257',
          'iso-8859-2', 'mac-roman', 'cp437']


def table(enc):
    for b in range(0x80):
        assert bytes([b]).decode(enc) == chr(b), (enc, b)  # ASCII half is the identity
    return bytes(range(0x80, 0x100)).decode(enc, errors='replace')


def js(v):
    return json.dumps(v, ensure_ascii=True)


out = sys.stdout
out.write('// GENERATED by gen-text-tables.py (Python %s, unicodedata %s) — do not edit.\n'
          % (sys.version.split()[0], unicodedata.unidata_version))
out.write('// Character data for the CLIP text cleaning (html.ts, ftfy.ts); see that script for sources.\n\n')
out.write('/** The characters Python\'s str.isspace() accepts (str.strip() removes them). */\n')
out.write('export const PY_ISSPACE = %s;\n\n' % js(''.join(chr(c) for c in range(0x110000) if chr(c).isspace())))
out.write('/** html.entities.html5 in Python\'s order: [name, value] (names with and without \';\'). */\n')
out.write('export const HTML5_ENTITIES: ReadonlyArray<readonly [string, string]> = [\n')
for k, v in html.entities.html5.items():
    out.write('  [%s, %s],\n' % (js(k), js(v)))
out.write('];\n\n')
out.write('/** html._invalid_charrefs: numeric references the HTML5 parser remaps. */\n')
out.write('export const HTML_INVALID_CHARREFS: ReadonlyArray<readonly [number, string]> = %s;\n\n'
          % js(sorted(html._invalid_charrefs.items())))
out.write('/** html._invalid_codepoints: numeric references that decode to nothing. */\n')
out.write('export const HTML_INVALID_CODEPOINTS: readonly number[] = %s;\n\n' % js(sorted(html._invalid_codepoints)))
out.write('/** Decoding of bytes 0x80..0xFF (bytes 0..0x7F are ASCII in all of them); U+FFFD = undefined byte. */\n')
out.write('export const CODEC_HIGH_HALF: Readonly<Record<string, string>> = {\n')
for enc in CODECS:
    out.write('  %s: %s,\n' % (js(enc), js(table(enc))))
out.write('};\n\n')
out.write('/** ftfy 6.3.1 badness.MOJIBAKE_CATEGORIES (regex character-class bodies). */\n')
out.write('export const BADNESS_CATEGORIES = {\n')
for k, v in BADNESS_CATEGORIES.items():
    out.write('  %s: %s,\n' % (k, js(v)))
out.write('} as const;\n')
