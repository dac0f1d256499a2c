// CLIP's tokenizer, as OpenAI's clip/simple_tokenizer.py + clip.tokenize (openai/CLIP @ d05afc4):
// byte-level BPE over bpe_simple_vocab_16e6.txt.gz (vendored beside this file, unchanged).
//
//   text -> basic_clean (ftfy.fix_text, html.unescape twice, strip) -> whitespace_clean (\s+ -> ' ',
//   strip) -> lower() -> the BPE regex -> each piece's UTF-8 bytes mapped to printable characters
//   (bytes_to_unicode) -> BPE merges by rank, '</w>' marking the end of a word -> ids.
//   tokenize() wraps each text in <|startoftext|> 49406 ... <|endoftext|> 49407, zero-pads to 77.
//
// Text cleaning: `fixText` (ftfy.ts) ports ftfy 6.3.1's whole default `fix_text` pipeline (mojibake
// repair, HTML entities, ligatures, full-width forms, curly quotes, control characters, NFC); see
// its header for what is and is not covered. `html.unescape` is Python's exactly (html.ts). Python's
// whitespace classes are kept apart: str.strip() uses str.isspace(), the `regex` module's \s is the
// Unicode White_Space property (JS's \s differs from both, e.g. on U+FEFF and U+001C..U+001F).
//
// The same class loads a Hugging Face vocabulary (`vocab.json` + `merges.txt`, the
// openai/clip-vit-base-patch32 layout): same algorithm, the ids taken from vocab.json.

import { readFileSync } from 'node:fs';
import { gunzipSync } from 'fflate';
import { fixText } from './ftfy.ts';
import { pyHtmlUnescape } from './html.ts';
import { PY_ISSPACE } from './text-tables.ts';
import { TensorData } from '../../io/tensor.ts';

export const SOT_TOKEN = '<|startoftext|>';
export const EOT_TOKEN = '<|endoftext|>';
/** Ids of <|startoftext|> / <|endoftext|> in the official vocabulary. */
export const SOT_ID = 49406;
export const EOT_ID = 49407;
export const CONTEXT_LENGTH = 77;
/** Merges used from the vocabulary file: lines 1 .. 49152-256-2 (simple_tokenizer.py's slice). */
export const NUM_MERGES = 49152 - 256 - 2;

/** Path of the vendored official vocabulary (sha256 924691ac…6804a). */
export const DEFAULT_BPE_PATH = new URL('./bpe_simple_vocab_16e6.txt.gz', import.meta.url);

// ---------------------------------------------------------------------------------------------
// Cleaning.

const PY_STRIP_CHARS = new Set(PY_ISSPACE);
/** The `regex` module's \s+ (White_Space), as used by whitespace_clean. */
const WS_RUN_RE = /\p{White_Space}+/gu;

/** Python's str.strip() (removes str.isspace() characters). */
export function pyStrip(s: string): string {
  let a = 0;
  let b = s.length;
  while (a < b && PY_STRIP_CHARS.has(s[a]!)) a++;
  while (b > a && PY_STRIP_CHARS.has(s[b - 1]!)) b--;
  return s.slice(a, b);
}

/** simple_tokenizer.basic_clean: ftfy.fix_text, html.unescape twice, strip. */
export function basicClean(text: string): string {
  return pyStrip(pyHtmlUnescape(pyHtmlUnescape(fixText(text))));
}

/** simple_tokenizer.whitespace_clean: every whitespace run becomes one space, then strip. */
export function whitespaceClean(text: string): string {
  return pyStrip(text.replace(WS_RUN_RE, ' '));
}

/** The exact string the BPE regex runs on: whitespace_clean(basic_clean(text)).lower(). */
export function cleanText(text: string): string {
  return whitespaceClean(basicClean(text)).toLowerCase();
}

// The official pattern, compiled with re.IGNORECASE; the `regex` module's \s is \p{White_Space}.
const TOKEN_RE = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\p{White_Space}\p{L}\p{N}]+/giu;

// ---------------------------------------------------------------------------------------------
// Byte <-> printable character table.

/**
 * bytes_to_unicode(): each byte maps to a printable character — the printable Latin-1 bytes
 * ('!'..'~', '¡'..'¬', '®'..'ÿ') to themselves, the other 68 to U+0100 onwards, in byte order.
 */
export function bytesToUnicode(): Map<number, string> {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const cs = [...bs];
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (!bs.includes(b)) { bs.push(b); cs.push(256 + n); n++; }
  }
  return new Map(bs.map((b, i) => [b, String.fromCharCode(cs[i]!)]));
}

const BYTE_ENCODER = bytesToUnicode();
const BYTE_DECODER = new Map<string, number>([...BYTE_ENCODER].map(([b, c]) => [c, b]));
/** Indexed by byte value. */
const BYTE_CHARS: string[] = Array.from({ length: 256 }, (_, b) => BYTE_ENCODER.get(b)!);

// ---------------------------------------------------------------------------------------------
// The tokenizer.

export interface TokenizerSource {
  /** token string -> id */
  encoder: Map<string, number>;
  /** merges in rank order: [first, second] */
  merges: [string, string][];
}

const MAX_CACHE = 100_000;

export class SimpleTokenizer {
  readonly encoder: Map<string, number>;
  readonly decoder: Map<number, string>;
  /** 'first second' -> rank */
  readonly bpeRanks: Map<string, number>;
  readonly sotId: number;
  readonly eotId: number;
  private cache = new Map<string, string>();

  constructor(src: TokenizerSource) {
    this.encoder = src.encoder;
    this.decoder = new Map([...src.encoder].map(([k, v]) => [v, k]));
    this.bpeRanks = new Map(src.merges.map(([a, b], i) => [a + ' ' + b, i]));
    const sot = src.encoder.get(SOT_TOKEN);
    const eot = src.encoder.get(EOT_TOKEN);
    if (sot === undefined || eot === undefined) throw new Error(`CLIP tokenizer: the vocabulary has no ${SOT_TOKEN} / ${EOT_TOKEN}`);
    this.sotId = sot;
    this.eotId = eot;
    this.resetCache();
  }

  /** From the text of bpe_simple_vocab_16e6.txt (OpenAI's layout: a header line, then merges). */
  static fromBpeText(text: string): SimpleTokenizer {
    const lines = text.split('\n').slice(1, NUM_MERGES + 1);
    if (lines.length !== NUM_MERGES) throw new Error(`CLIP tokenizer: expected ${NUM_MERGES} merges, the file has ${lines.length}`);
    const merges = lines.map(parseMerge);
    const base = [...BYTE_ENCODER.values()];
    const vocab = [...base, ...base.map((v) => v + '</w>'), ...merges.map(([a, b]) => a + b), SOT_TOKEN, EOT_TOKEN];
    return new SimpleTokenizer({ encoder: new Map(vocab.map((v, i) => [v, i])), merges });
  }

  /** From the gzipped vocabulary file's bytes. */
  static fromBpeGz(gz: Uint8Array): SimpleTokenizer {
    return SimpleTokenizer.fromBpeText(new TextDecoder('utf-8', { fatal: true }).decode(gunzipSync(gz)));
  }

  /** From a file: `.gz` (OpenAI's) or plain text. */
  static fromFile(path: string | URL): SimpleTokenizer {
    const bytes = readFileSync(path);
    const isGz = bytes[0] === 0x1f && bytes[1] === 0x8b;
    return isGz ? SimpleTokenizer.fromBpeGz(bytes) : SimpleTokenizer.fromBpeText(bytes.toString('utf-8'));
  }

  /**
   * From Hugging Face's files (openai/clip-vit-base-patch32 layout): `vocab.json` (token -> id,
   * as text or parsed) and `merges.txt` ('#version: 0.2' header, then 'first second' per line).
   */
  static fromHuggingFace(vocabJson: string | Record<string, number>, mergesTxt: string): SimpleTokenizer {
    const vocab = typeof vocabJson === 'string' ? (JSON.parse(vocabJson) as Record<string, number>) : vocabJson;
    const lines = mergesTxt.trim().split('\n').slice(1, NUM_MERGES + 1);
    const merges = lines.map(parseMerge);
    return new SimpleTokenizer({ encoder: new Map(Object.entries(vocab)), merges });
  }

  get vocabSize(): number {
    return this.encoder.size;
  }

  private resetCache(): void {
    this.cache = new Map([[SOT_TOKEN, SOT_TOKEN], [EOT_TOKEN, EOT_TOKEN]]);
  }

  /** BPE of one pre-token (already mapped through bytes_to_unicode): space-separated pieces. */
  bpe(token: string): string {
    const hit = this.cache.get(token);
    if (hit !== undefined) return hit;
    const chars = Array.from(token);
    let word = [...chars.slice(0, -1), chars[chars.length - 1] + '</w>'];
    if (word.length < 2) return token + '</w>';

    for (;;) {
      // The adjacent pair with the lowest merge rank.
      let best = -1;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.bpeRanks.get(word[i] + ' ' + word[i + 1]);
        if (r !== undefined && (best < 0 || r < best)) { best = r; first = word[i]!; second = word[i + 1]!; }
      }
      if (best < 0) break;
      const next: string[] = [];
      let i = 0;
      while (i < word.length) {
        const j = word.indexOf(first, i);
        if (j < 0) { next.push(...word.slice(i)); break; }
        next.push(...word.slice(i, j));
        i = j;
        if (i < word.length - 1 && word[i + 1] === second) { next.push(first + second); i += 2; }
        else { next.push(word[i]!); i += 1; }
      }
      word = next;
      if (word.length === 1) break;
    }
    const out = word.join(' ');
    if (this.cache.size >= MAX_CACHE) this.resetCache();
    this.cache.set(token, out);
    return out;
  }

  /** SimpleTokenizer.encode: BPE ids of the cleaned text, without SOT/EOT. */
  encode(text: string): number[] {
    const ids: number[] = [];
    const utf8 = new TextEncoder();
    for (const m of cleanText(text).matchAll(TOKEN_RE)) {
      let mapped = '';
      for (const b of utf8.encode(m[0])) mapped += BYTE_CHARS[b]!;
      for (const piece of this.bpe(mapped).split(' ')) {
        const id = this.encoder.get(piece);
        if (id === undefined) throw new Error(`CLIP tokenizer: '${piece}' is not in the vocabulary`);
        ids.push(id);
      }
    }
    return ids;
  }

  /** SimpleTokenizer.decode: ids back to text ('</w>' becomes a space; bad UTF-8 becomes U+FFFD). */
  decode(ids: Iterable<number>): string {
    let text = '';
    for (const id of ids) {
      const t = this.decoder.get(id);
      if (t === undefined) throw new Error(`CLIP tokenizer: unknown id ${id}`);
      text += t;
    }
    const bytes: number[] = [];
    for (const ch of text) {
      const b = BYTE_DECODER.get(ch);
      if (b === undefined) throw new Error(`CLIP tokenizer: character U+${ch.codePointAt(0)!.toString(16)} is not a byte symbol`);
      bytes.push(b);
    }
    return new TextDecoder('utf-8').decode(Uint8Array.from(bytes)).replaceAll('</w>', ' ');
  }
}

function parseMerge(line: string, i: number): [string, string] {
  // Python's str.split() splits on any whitespace run; the file uses one space.
  const parts = line.split(/\s+/).filter((p) => p.length > 0);
  if (parts.length !== 2) throw new Error(`CLIP tokenizer: merge line ${i + 2} is not 'first second': ${JSON.stringify(line)}`);
  return [parts[0]!, parts[1]!];
}

// ---------------------------------------------------------------------------------------------
// clip.tokenize.

let defaultTok: SimpleTokenizer | null = null;

/** The official tokenizer (vendored vocabulary), loaded once. */
export function defaultTokenizer(): SimpleTokenizer {
  return (defaultTok ??= SimpleTokenizer.fromFile(DEFAULT_BPE_PATH));
}

export interface TokenizeOptions {
  /** 'int32' (what clip.tokenize returns for torch >= 1.8, the default) or 'int64'. */
  dtype?: 'int32' | 'int64';
  /** Defaults to the official vocabulary. */
  tokenizer?: SimpleTokenizer;
}

/** clip.tokenize's rows as plain id arrays: [SOT, ...bpe, EOT], cut (last = EOT) or checked. */
export function tokenRows(texts: string | readonly string[], contextLength = CONTEXT_LENGTH, truncate = false,
  tokenizer: SimpleTokenizer = defaultTokenizer()): number[][] {
  const list = typeof texts === 'string' ? [texts] : texts;
  return list.map((text) => {
    let ids = [tokenizer.sotId, ...tokenizer.encode(text), tokenizer.eotId];
    if (ids.length > contextLength) {
      if (!truncate) throw new Error(`Input ${text} is too long for context length ${contextLength}`);
      ids = ids.slice(0, contextLength);
      ids[contextLength - 1] = tokenizer.eotId;
    }
    return ids;
  });
}

/**
 * clip.tokenize(texts, context_length=77, truncate=False): ids [N, contextLength], zero-padded.
 * A text longer than contextLength tokens (with SOT/EOT) throws unless `truncate`, which cuts the
 * row and forces its last id to EOT.
 */
export function tokenize(texts: string | readonly string[], contextLength?: number, truncate?: boolean,
  opts?: TokenizeOptions & { dtype?: 'int32' }): TensorData<'int32'>;
export function tokenize(texts: string | readonly string[], contextLength: number | undefined, truncate: boolean | undefined,
  opts: TokenizeOptions & { dtype: 'int64' }): TensorData<'int64'>;
export function tokenize(texts: string | readonly string[], contextLength = CONTEXT_LENGTH, truncate = false,
  opts: TokenizeOptions = {}): TensorData<'int32'> | TensorData<'int64'> {
  const rows = tokenRows(texts, contextLength, truncate, opts.tokenizer);
  const n = rows.length;
  if ((opts.dtype ?? 'int32') === 'int64') {
    const data = new BigInt64Array(n * contextLength);
    rows.forEach((r, i) => r.forEach((id, j) => { data[i * contextLength + j] = BigInt(id); }));
    return new TensorData('int64', [n, contextLength], data);
  }
  const data = new Int32Array(n * contextLength);
  rows.forEach((r, i) => data.set(r, i * contextLength));
  return new TensorData('int32', [n, contextLength], data);
}
