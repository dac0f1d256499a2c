// `fixText`: a port of `ftfy.fix_text(text)` (ftfy 6.3.1, default TextFixerConfig), the first step of
// CLIP's text cleaning (`basic_clean` in openai/CLIP simple_tokenizer.py).
//
// Ported: the whole default pipeline, applied per line segment and repeated until nothing changes —
//   unescape_html ('auto': off once a segment holding '<' is seen), fix_encoding (the mojibake
//   detector `is_bad` = badness.BADNESS_RE, re-decoding through latin-1, sloppy-windows-1252/1251/
//   1250/1253/1254/1257, iso-8859-2, macroman and cp437 into utf-8 / utf-8-variants (CESU-8, Java's
//   C0 80), restore_byte_a0, replace_lossy_sequences, decode_inconsistent_utf8, the latin-1 ->
//   windows-1252 step, fix_c1_controls), fix_c1_controls, fix_latin_ligatures, fix_character_width,
//   uncurl_quotes, fix_line_breaks, fix_surrogates, remove_terminal_escapes, remove_control_chars
//   and NFC normalisation.
// Not ported: explanations/plans, non-default configurations, guess_bytes and the file helpers.
// Known differences: JavaScript's Unicode tables (NFC/NFKC, \p{...}) are those of the running ICU
// (Unicode 15 in Node 20) while Python 3.11's unicodedata is Unicode 14; lengths are counted in
// code points as Python does. Character data: text-tables.ts (generated from Python's stdlib + the
// ftfy badness categories).
//
// Everything works on JS strings; byte strings are "binary strings" (one char per byte, U+0000..U+00FF)
// so that ftfy's byte regexes can be written as ordinary regexes.

import { BADNESS_CATEGORIES as C, CODEC_HIGH_HALF, PY_ISSPACE } from './text-tables.ts';
import { ftfyUnescapeHtml } from './html.ts';

// ---------------------------------------------------------------------------------------------
// Single-byte codecs (Python's, and ftfy's "sloppy" variants).

interface Codec { decode: string[]; encode: Map<string, number>; charset: Set<string> }

function latin1Table(): string[] {
  return Array.from({ length: 256 }, (_, i) => String.fromCharCode(i));
}

/** A charmap codec from the decoding of bytes 0x80..0xFF (0..0x7F are ASCII). */
function makeCodec(high: string, sloppy: boolean): Codec {
  const decode = latin1Table();
  for (let i = 0; i < 128; i++) {
    const ch = high[i]!;
    if (ch !== '\ufffd') decode[0x80 + i] = ch;
    else if (!sloppy) decode[0x80 + i] = ''; // undefined byte: decoding fails
  }
  // ftfy's sloppy codecs decode byte 1A as U+FFFD (and so encode U+FFFD as 1A).
  if (sloppy) decode[0x1a] = '\ufffd';
  const encode = new Map<string, number>();
  for (let b = 0; b < 256; b++) if (decode[b] !== '') encode.set(decode[b]!, b);
  // chardata.ENCODING_REGEXES: \x00-\x19, \x1b-\x7f, and whatever bytes 0x80..0xFF and 0x1A decode to.
  const charset = new Set<string>();
  for (let b = 0; b < 0x80; b++) if (b !== 0x1a) charset.add(String.fromCharCode(b));
  for (let b = 0x80; b < 0x100; b++) if (decode[b] !== '') charset.add(decode[b]!);
  charset.add(decode[0x1a]!);
  return { decode, encode, charset };
}

const CODECS: Record<string, Codec> = {
  'latin-1': makeCodec(latin1Table().slice(128).join(''), false),
  'windows-1252': makeCodec(CODEC_HIGH_HALF['windows-1252']!, false),
  'sloppy-windows-1252': makeCodec(CODEC_HIGH_HALF['windows-1252']!, true),
  'sloppy-windows-1251': makeCodec(CODEC_HIGH_HALF['windows-1251']!, true),
  'sloppy-windows-1250': makeCodec(CODEC_HIGH_HALF['windows-1250']!, true),
  'sloppy-windows-1253': makeCodec(CODEC_HIGH_HALF['windows-1253']!, true),
  'sloppy-windows-1254': makeCodec(CODEC_HIGH_HALF['windows-1254']!, true),
  'sloppy-windows-1257': makeCodec(CODEC_HIGH_HALF['windows-1257']!, true),
  'iso-8859-2': makeCodec(CODEC_HIGH_HALF['iso-8859-2']!, false),
  macroman: makeCodec(CODEC_HIGH_HALF['mac-roman']!, false),
  cp437: makeCodec(CODEC_HIGH_HALF['cp437']!, false),
};

/** chardata.CHARMAP_ENCODINGS, in the order ftfy tries them. */
const CHARMAP_ENCODINGS = [
  'latin-1', 'sloppy-windows-1252', 'sloppy-windows-1251', 'sloppy-windows-1250', 'sloppy-windows-1253',
  'sloppy-windows-1254', 'sloppy-windows-1257', 'iso-8859-2', 'macroman', 'cp437',
] as const;

function possibleEncoding(text: string, enc: string): boolean {
  const set = CODECS[enc]!.charset;
  for (const ch of text) if (!set.has(ch)) return false;
  return true;
}

/** text.encode(enc) as a binary string; null if a character is not in the codec. */
function encodeCharmap(text: string, enc: string): string | null {
  const map = CODECS[enc]!.encode;
  let out = '';
  for (const ch of text) {
    const b = map.get(ch);
    if (b === undefined) return null;
    out += String.fromCharCode(b);
  }
  return out;
}

/** bytes.decode(enc) of a binary string; null on an undefined byte. */
function decodeCharmap(bytes: string, enc: string): string | null {
  const table = CODECS[enc]!.decode;
  let out = '';
  for (let i = 0; i < bytes.length; i++) {
    const ch = table[bytes.charCodeAt(i)]!;
    if (ch === '') return null;
    out += ch;
  }
  return out;
}

/**
 * Strict UTF-8 decoding of a binary string (Python's 'utf-8' codec: no overlongs, no surrogates,
 * nothing above U+10FFFF, no truncation); with `variants`, ftfy's 'utf-8-variants' also accepts
 * CESU-8 surrogate pairs (ED A0-AF 80-BF ED B0-BF 80-BF) and Java's C0 80 for U+0000.
 * Returns null where Python raises UnicodeDecodeError.
 */
function decodeUtf8(bytes: string, variants: boolean): string | null {
  const n = bytes.length;
  const b = (i: number) => (i < n ? bytes.charCodeAt(i) : -1);
  const cont = (i: number) => { const x = b(i); return x >= 0x80 && x <= 0xbf; };
  const cps: number[] = [];
  let i = 0;
  while (i < n) {
    const c = b(i);
    if (c < 0x80) { cps.push(c); i += 1; continue; }
    if (variants && c === 0xc0 && b(i + 1) === 0x80) { cps.push(0); i += 2; continue; }
    if (variants && c === 0xed && b(i + 1) >= 0xa0 && b(i + 1) <= 0xaf && cont(i + 2) && b(i + 3) === 0xed
        && b(i + 4) >= 0xb0 && b(i + 4) <= 0xbf && cont(i + 5)) {
      cps.push(0x10000 + ((b(i + 1) & 0x0f) << 16) + ((b(i + 2) & 0x3f) << 10) + ((b(i + 4) & 0x0f) << 6) + (b(i + 5) & 0x3f));
      i += 6;
      continue;
    }
    if (c >= 0xc2 && c <= 0xdf) {
      if (!cont(i + 1)) return null;
      cps.push(((c & 0x1f) << 6) | (b(i + 1) & 0x3f));
      i += 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      const c1 = b(i + 1);
      const lo = c === 0xe0 ? 0xa0 : 0x80;
      const hi = c === 0xed ? 0x9f : 0xbf;
      if (c1 < lo || c1 > hi || !cont(i + 2)) return null;
      cps.push(((c & 0x0f) << 12) | ((c1 & 0x3f) << 6) | (b(i + 2) & 0x3f));
      i += 3;
    } else if (c >= 0xf0 && c <= 0xf4) {
      const c1 = b(i + 1);
      const lo = c === 0xf0 ? 0x90 : 0x80;
      const hi = c === 0xf4 ? 0x8f : 0xbf;
      if (c1 < lo || c1 > hi || !cont(i + 2) || !cont(i + 3)) return null;
      cps.push(((c & 0x07) << 18) | ((c1 & 0x3f) << 12) | ((b(i + 2) & 0x3f) << 6) | (b(i + 3) & 0x3f));
      i += 4;
    } else {
      return null;
    }
  }
  let out = '';
  for (let k = 0; k < cps.length; k += 4096) out += String.fromCodePoint(...cps.slice(k, k + 4096));
  return out;
}

// ---------------------------------------------------------------------------------------------
// badness.is_bad: BADNESS_RE (ftfy 6.3.1), alternatives in the original order.

/** Python's \s (str.isspace) and \w (letters, numbers, '_') as JS class bodies. */
const PY_S = '[' + escapeClass(PY_ISSPACE) + ']';
const PY_W = '[\\p{L}\\p{N}_]';

function escapeClass(s: string): string {
  return s.replace(/[\\\]\[^-]/g, (m) => '\\' + m);
}

const cls = (...bodies: string[]) => '[' + bodies.join('') + ']';
const {
  common, c1, bad, law, currency, start_punctuation: sp, end_punctuation: ep, numeric, kaomoji,
  upper_accented: ua, lower_accented: la, upper_common: uc, lower_common: lc, box,
} = C;

const BADNESS_RE = new RegExp([
  cls(c1),
  cls(bad, la, ua, box, sp, ep, currency, numeric, law) + cls(bad),
  '[a-zA-Z]' + cls(lc, uc) + cls(bad),
  cls(bad) + cls(la, ua, box, sp, ep, currency, numeric, law),
  cls(la, lc, box, ep, currency, numeric) + cls(ua),
  cls(box, ep, currency, numeric) + cls(la),
  cls(la, box, ep) + cls(currency),
  PY_S + cls(ua) + cls(currency),
  cls(ua, box) + cls(numeric, law),
  cls(la, ua, box, currency, ep) + cls(sp) + cls(numeric),
  cls(la, ua, currency, numeric, box, law) + cls(ep) + cls(sp),
  cls(currency, numeric, box) + cls(sp),
  '[a-z]' + cls(ua) + cls(sp, currency),
  cls(box) + cls(kaomoji),
  cls(la, ua, currency, numeric, sp, ep, law) + cls(box),
  cls(box) + cls(ep),
  cls(la, ua) + cls(sp, ep) + PY_W,
  // The ligature œ when not followed by an unaccented Latin letter
  '[Œœ][^A-Za-z]',
  // Degree signs after capital letters
  cls(ua) + '°',
  // Common Windows-1252 2-character mojibake that isn't covered by the cases above
  '[ÂÃÎÐ]' + cls('€œŠš¢£Ÿž\\xa0\\xad®©°·»', sp, ep, '–—´'),
  '×[²³]',
  // Windows-1252 mojibake of Arabic words (four characters)
  '[ØÙ]' + cls(common, currency, bad, numeric, sp, 'ŸŠ®°µ»') + '[ØÙ]' + cls(common, currency, bad, numeric, sp, 'ŸŠ®°µ»'),
  // Windows-1252 mojibake that starts 3-character sequences for some South Asian alphabets
  'à[²µ¹¼½¾]',
  // MacRoman mojibake that isn't covered by the cases above
  '√[±∂†≠®™´≤≥¥µø]',
  '≈[°¢]',
  '‚Ä[ìîïòôúùû†°¢π]',
  '‚[âó][àä°ê]',
  // Windows-1251 mojibake of characters in the U+2000 range
  'вЂ',
  // Windows-1251 mojibake of Latin-1 characters and/or the Cyrillic alphabet
  '[ВГРС]' + cls(c1, bad, sp, ep, currency, '°µ') + '[ВГРС]',
  'ГўВЂВ[^\\n][A-Za-z ]',
  // Windows-1252 encodings of 'à' and 'á', as well as \xa0 itself
  'Ã[\\xa0¡]',
  '[a-z]' + PY_S + '?[ÃÂ][ ]',
  '^[ÃÂ][ ]',
  // Cases where Â precedes a character as an encoding of exactly the same character
  cls('a-z.,?!', ep) + 'Â' + cls(' ', sp, ep),
  // Windows-1253 mojibake of characters in the U+2000 range
  'β€[™\\xa0Ά\\xad®°]',
  // Windows-1253 mojibake of Latin-1 characters and/or the Greek alphabet
  '[ΒΓΞΟ]' + cls(c1, bad, sp, ep, currency, '°') + '[ΒΓΞΟ]',
  // Windows-1257 mojibake of characters in the U+2000 range
  'ā€',
].join('|'), 'u');

/** ftfy.badness.is_bad: does the text look like it contains mojibake? */
export function isBad(text: string): boolean {
  return BADNESS_RE.test(text);
}

// ---------------------------------------------------------------------------------------------
// chardata regexes.

// UTF8_CLUES: what the lead / continuation bytes of UTF-8 look like when decoded with any of the
// Latin-1-like encodings ftfy fixes (latin-1, windows-1250/1251/1252/1253/1254/1257).
function clueSet(bytes: number[]): string {
  const set = new Set<string>();
  for (const enc of ['latin-1', 'sloppy-windows-1252', 'sloppy-windows-1251', 'sloppy-windows-1250',
    'sloppy-windows-1253', 'sloppy-windows-1254', 'sloppy-windows-1257']) {
    for (const b of bytes) set.add(CODECS[enc]!.decode[b]!);
  }
  return [...set].sort().join('');
}
const range = (a: number, b: number) => Array.from({ length: b - a + 1 }, (_, i) => a + i);
const NOT_STRICT = ' \u2013\u2014\u2015\u2018\u2019\u201a\u201c\u201d\u201e\u2022\u2026';
const UTF8_FIRST_OF_2 = clueSet(range(0xc2, 0xdf));
const UTF8_FIRST_OF_3 = clueSet(range(0xe0, 0xef));
const UTF8_FIRST_OF_4 = clueSet([0xf0, 0xf3]);
const UTF8_CONTINUATION = clueSet(range(0x80, 0xbf)) + ' ';
const UTF8_CONTINUATION_STRICT = [...UTF8_CONTINUATION].filter((ch) => !NOT_STRICT.includes(ch)).join('');

const UTF8_DETECTOR_RE = (() => {
  const k = (s: string) => '[' + escapeClass(s) + ']';
  return new RegExp(
    `(?<!${k(UTF8_CONTINUATION_STRICT)})(?:${k(UTF8_FIRST_OF_2)}${k(UTF8_CONTINUATION)}` +
    `|${k(UTF8_FIRST_OF_3)}${k(UTF8_CONTINUATION)}{2}|${k(UTF8_FIRST_OF_4)}${k(UTF8_CONTINUATION)}{3})+`, 'gu');
})();

const ALTERED_UTF8_RE = /[\xc2\xc3\xc5\xce\xd0\xd9] |[\xe2\xe3] [\x80-\x84\x86-\x9f\xa1-\xbf]|[\xe0-\xe3][\x80-\x84\x86-\x9f\xa1-\xbf] |\xf0 [\x80-\xbf][\x80-\xbf]|\xf0[\x80-\xbf] [\x80-\xbf]|\xf0[\x80-\xbf][\x80-\xbf] /g;
const LOSSY_UTF8_RE = /[\xc2-\xdf]\x1a|[\xc2-\xc3]\?|\xed[\xa0-\xaf][\x1a?]\xed[\xb0-\xbf][\x1a?\x80-\xbf]|\xed[\xa0-\xaf][\x1a?\x80-\xbf]\xed[\xb0-\xbf][\x1a?]|[\xe0-\xef][\x1a?][\x1a\x80-\xbf]|[\xe0-\xef][\x1a\x80-\xbf][\x1a?]|[\xf0-\xf4][\x1a?][\x1a\x80-\xbf][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a?][\x1a\x80-\xbf]|[\xf0-\xf4][\x1a\x80-\xbf][\x1a\x80-\xbf][\x1a?]|\x1a/g;
const A_GRAVE_WORD_RE = /\xc3 (?! |quele|quela|quilo|s )/g;
const C1_CONTROL_RE = /[\x80-\x9f]/g;
// Non-global twins for plain tests (a global regex's test() is stateful).
const ALTERED_UTF8_TEST = new RegExp(ALTERED_UTF8_RE.source);
const UTF8_DETECTOR_TEST = new RegExp(UTF8_DETECTOR_RE.source, 'u');

// ---------------------------------------------------------------------------------------------
// fixes.

function restoreByteA0(bytes: string): string {
  return bytes.replace(A_GRAVE_WORD_RE, '\xc3\xa0 ').replace(ALTERED_UTF8_RE, (m) => m.replace(/ /g, '\xa0'));
}

function replaceLossySequences(bytes: string): string {
  return bytes.replace(LOSSY_UTF8_RE, '\xef\xbf\xbd');
}

function cpLength(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

function decodeInconsistentUtf8(text: string): string {
  const len = cpLength(text);
  return text.replace(UTF8_DETECTOR_RE, (sub) => (cpLength(sub) < len && isBad(sub) ? fixEncoding(sub) : sub));
}

/** fixes.fix_c1_controls: C1 controls read as their Windows-1252 characters. */
export function fixC1Controls(text: string): string {
  return text.replace(C1_CONTROL_RE, (m) => CODECS['sloppy-windows-1252']!.decode[m.charCodeAt(0)]!);
}

const LIGATURES: Record<string, string> = {
  'Ĳ': 'IJ', 'ĳ': 'ij', 'ŉ': 'ʼn', 'Ǳ': 'DZ', 'ǲ': 'Dz', 'ǳ': 'dz', 'Ǆ': 'DŽ', 'ǅ': 'Dž', 'ǆ': 'dž',
  'Ǉ': 'LJ', 'ǈ': 'Lj', 'ǉ': 'lj', 'Ǌ': 'NJ', 'ǋ': 'Nj', 'ǌ': 'nj',
  'ﬀ': 'ff', 'ﬁ': 'fi', 'ﬂ': 'fl', 'ﬃ': 'ffi', 'ﬄ': 'ffl', 'ﬅ': 'ſt', 'ﬆ': 'st',
};
const LIGATURE_RE = new RegExp('[' + Object.keys(LIGATURES).join('') + ']', 'gu');

export function fixLatinLigatures(text: string): string {
  return text.replace(LIGATURE_RE, (m) => LIGATURES[m]!);
}

// chardata.WIDTH_MAP: U+3000 -> ' ', and U+FF01..U+FFEF -> their NFKC forms where those differ.
const WIDTH_MAP = (() => {
  const m = new Map<string, string>([['\u3000', ' ']]);
  for (let i = 0xff01; i < 0xfff0; i++) {
    const ch = String.fromCharCode(i);
    const alt = ch.normalize('NFKC');
    if (alt !== ch) m.set(ch, alt);
  }
  return m;
})();

export function fixCharacterWidth(text: string): string {
  return text.replace(/[\u3000\uff01-\uffef]/g, (m) => WIDTH_MAP.get(m) ?? m);
}

export function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

export function fixLineBreaks(text: string): string {
  return text.replace(/\r\n/g, '\n').replace(/\r/g, '\n').replace(/\u2028/g, '\n').replace(/\u2029/g, '\n')
    .replace(/\u0085/g, '\n');
}

/** Lone UTF-16 surrogates become U+FFFD (paired ones already are one character in JS). */
export function fixSurrogates(text: string): string {
  return text.replace(/[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '\ufffd');
}

export function removeTerminalEscapes(text: string): string {
  return text.replace(/\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu, '');
}

export function removeControlChars(text: string): string {
  return text.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, '');
}

// ---------------------------------------------------------------------------------------------
// fix_encoding.

function fixEncodingOneStep(text: string): string {
  if (text.length === 0) return text;
  if (/^[\x00-\x7f]*$/.test(text) || !isBad(text)) return text;

  const possible: string[] = [];
  for (const enc of CHARMAP_ENCODINGS) {
    if (!possibleEncoding(text, enc)) continue;
    possible.push(enc);
    let bytes = encodeCharmap(text, enc)!;
    if (enc !== 'macroman' && ALTERED_UTF8_TEST.test(bytes)) bytes = restoreByteA0(bytes);
    if (enc.startsWith('sloppy')) bytes = replaceLossySequences(bytes);
    const variants = bytes.includes('\xed') || bytes.includes('\xc0');
    const fixed = decodeUtf8(bytes, variants);
    if (fixed !== null) return fixed;
  }

  if (UTF8_DETECTOR_TEST.test(text)) {
    const fixed = decodeInconsistentUtf8(text);
    if (fixed !== text) return fixed;
  }

  if (possible.includes('latin-1')) {
    // ftfy checks for 'windows-1252' in a list that only ever holds 'sloppy-windows-1252', so
    // this branch always tries the strict latin-1 -> windows-1252 re-decoding.
    if (possible.includes('windows-1252')) return text;
    const fixed = decodeCharmap(encodeCharmap(text, 'latin-1')!, 'windows-1252');
    if (fixed !== null && fixed !== text) return fixed;
  }

  if (/[\x80-\x9f]/.test(text)) return fixC1Controls(text);
  return text;
}

/** ftfy.fix_encoding(text): undo mojibake, repeatedly, until the text stops changing. */
export function fixEncoding(text: string): string {
  for (;;) {
    const prev = text;
    text = fixEncodingOneStep(text);
    if (text === prev) return text;
  }
}

// ---------------------------------------------------------------------------------------------
// fix_text.

function fixSegment(text: string, unescapeHtml: boolean): string {
  for (;;) {
    const orig = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    text = fixEncoding(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === orig) return text;
  }
}

const MAX_DECODE_LENGTH = 1_000_000;

/** `ftfy.fix_text(text)` with ftfy 6.3.1's default configuration (see the header for the scope). */
export function fixText(text: string): string {
  let unescapeHtml = true; // 'auto'
  const out: string[] = [];
  let pos = 0;
  while (pos < text.length) {
    let brk = text.indexOf('\n', pos) + 1;
    if (brk === 0) brk = text.length;
    if (brk - pos > MAX_DECODE_LENGTH) {
      brk = pos + MAX_DECODE_LENGTH;
      const c = text.charCodeAt(brk - 1);
      if (c >= 0xd800 && c <= 0xdbff) brk++; // never split a surrogate pair
    }
    const segment = text.slice(pos, brk);
    if (unescapeHtml && segment.includes('<')) unescapeHtml = false;
    out.push(fixSegment(segment, unescapeHtml));
    pos = brk;
  }
  return out.join('');
}
