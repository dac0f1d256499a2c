// HTML character references, decoded exactly as Python does it:
//   - `pyHtmlUnescape`   = Python's `html.unescape` (HTML5 rules: named references with and without
//                          ';', the longest-prefix rule, numeric references with the HTML5 remapping
//                          of invalid code points). CLIP's `basic_clean` runs it twice.
//   - `ftfyUnescapeHtml` = ftfy 6.3.1 `fixes.unescape_html` (only references ending in ';', plus
//                          all-caps spellings of the lower-case names, e.g. `&EACUTE;` -> `É`).
// The entity table is Python's `html.entities.html5` (text-tables.ts, generated).

import { HTML5_ENTITIES, HTML_INVALID_CHARREFS, HTML_INVALID_CODEPOINTS } from './text-tables.ts';

const HTML5 = new Map<string, string>(HTML5_ENTITIES);
const INVALID_CHARREFS = new Map<number, string>(HTML_INVALID_CHARREFS);
const INVALID_CODEPOINTS = new Set<number>(HTML_INVALID_CODEPOINTS);

// html._charref: '&' then a decimal / hex reference or up to 32 name characters, optional ';'.
const CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

function parseIntLoose(digits: string, radix: number): number {
  // Python int() is exact for any length; a float is enough here because everything above
  // 0x10FFFF maps to U+FFFD (parseInt of a huge number is a huge float or Infinity).
  return parseInt(digits, radix);
}

function replaceCharref(s: string): string {
  if (s[0] === '#') {
    const hex = s[1] === 'x' || s[1] === 'X';
    const body = (hex ? s.slice(2) : s.slice(1)).replace(/;+$/, '');
    const num = parseIntLoose(body, hex ? 16 : 10);
    const remapped = INVALID_CHARREFS.get(num);
    if (remapped !== undefined) return remapped;
    if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\ufffd';
    if (INVALID_CODEPOINTS.has(num)) return '';
    return String.fromCodePoint(num);
  }
  const direct = HTML5.get(s);
  if (direct !== undefined) return direct;
  // The longest prefix that is a known name (as the standard defines it), in code points.
  const cps = Array.from(s);
  for (let x = cps.length - 1; x > 1; x--) {
    const prefix = cps.slice(0, x).join('');
    const v = HTML5.get(prefix);
    if (v !== undefined) return v + cps.slice(x).join('');
  }
  return '&' + s;
}

/** Python's `html.unescape(s)`. */
export function pyHtmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(CHARREF_RE, (_m, g1: string) => replaceCharref(g1));
}

// ftfy's HTML_ENTITIES: every html5 name ending in ';' as '&name;', plus, for all-lower-case
// names whose upper-cased spelling is not itself a reference, '&NAME;' -> value.toUpperCase().
// Built in html5's order so that later names win exactly as in the Python dict.
let ftfyEntities: Map<string, string> | null = null;
function ftfyEntityTable(): Map<string, string> {
  if (ftfyEntities) return ftfyEntities;
  const m = new Map<string, string>();
  for (const [name, char] of HTML5_ENTITIES) {
    if (!name.endsWith(';')) continue;
    m.set('&' + name, char);
    if (name === name.toLowerCase()) {
      const upper = '&' + name.toUpperCase();
      if (pyHtmlUnescape(upper) === upper) m.set(upper, char.toUpperCase());
    }
  }
  return (ftfyEntities = m);
}

const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;

/** ftfy 6.3.1 `fixes.unescape_html`. */
export function ftfyUnescapeHtml(text: string): string {
  const table = ftfyEntityTable();
  return text.replace(FTFY_ENTITY_RE, (m) => {
    const v = table.get(m);
    if (v !== undefined) return v;
    if (m.startsWith('&#')) {
      const u = pyHtmlUnescape(m);
      return u.includes(';') ? m : u;
    }
    return m;
  });
}
