// The CLIP tokenizer against golden outputs of openai/CLIP's own tokenizer (test/fixtures/clip/
// tokens.json, copied from shared/fixtures/clip: clip.tokenize rows, SimpleTokenizer.encode ids
// and the cleaned text, ftfy 6.3.1), through both vocabulary layouts (OpenAI's gz, Hugging Face's).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { gunzipSync } from 'fflate';
import {
  SimpleTokenizer, tokenize, tokenRows, cleanText, defaultTokenizer, bytesToUnicode, pyStrip,
  DEFAULT_BPE_PATH, SOT_ID, EOT_ID, NUM_MERGES,
} from './tokenizer.ts';
import { fixText, isBad } from './ftfy.ts';
import { pyHtmlUnescape, ftfyUnescapeHtml } from './html.ts';

interface Row { text: string; truncate: boolean; ids: number[]; bpe: number[]; n_bpe: number; cleaned: string }
const FIX = JSON.parse(readFileSync(new URL('../../../test/fixtures/clip/tokens.json', import.meta.url), 'utf-8')) as {
  context_length: number; sot: number; eot: number; items: Row[];
};

test('vendored vocabulary is the official file', () => {
  const sha = createHash('sha256').update(readFileSync(DEFAULT_BPE_PATH)).digest('hex');
  assert.equal(sha, '924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a');
  const tok = defaultTokenizer();
  assert.equal(tok.vocabSize, 49408);
  assert.equal(tok.sotId, SOT_ID);
  assert.equal(tok.eotId, EOT_ID);
  assert.equal(FIX.sot, SOT_ID);
  assert.equal(FIX.eot, EOT_ID);
});

test('bytes_to_unicode', () => {
  const m = bytesToUnicode();
  assert.equal(m.size, 256);
  assert.equal(m.get(0x21), '!');
  assert.equal(m.get(0xff), 'ÿ');
  assert.equal(m.get(0x00), '\u0100');
  assert.equal(m.get(0x20), '\u0120'); // 'Ġ'
  assert.equal(new Set(m.values()).size, 256);
});

test(`all ${FIX.items.length} fixture prompts: cleaned text, BPE ids and clip.tokenize rows`, () => {
  assert.equal(FIX.items.length, 107);
  const tok = defaultTokenizer();
  const failures: string[] = [];
  for (const r of FIX.items) {
    const cleaned = cleanText(r.text);
    if (cleaned !== r.cleaned) { failures.push(`cleaned ${JSON.stringify(r.text)}: ${JSON.stringify(cleaned)} != ${JSON.stringify(r.cleaned)}`); continue; }
    const bpe = tok.encode(r.text);
    if (JSON.stringify(bpe) !== JSON.stringify(r.bpe) || bpe.length !== r.n_bpe) { failures.push(`bpe ${JSON.stringify(r.text)}: ${bpe} != ${r.bpe}`); continue; }
    const row = tokenize(r.text, FIX.context_length, r.truncate);
    assert.deepEqual(row.shape, [1, 77]);
    if (JSON.stringify([...row.data]) !== JSON.stringify(r.ids)) failures.push(`ids ${JSON.stringify(r.text)}: ${[...row.data]} != ${r.ids}`);
  }
  assert.deepEqual(failures, []);
});

test('too long: throws without truncate, cut with EOT last with truncate', () => {
  const long = FIX.items.find((r) => r.truncate)!;
  assert.ok(long.n_bpe + 2 > 77);
  assert.throws(() => tokenize(long.text), /is too long for context length 77/);
  const t = tokenize(long.text, 77, true);
  assert.equal(t.data[0], SOT_ID);
  assert.equal(t.data[76], EOT_ID);
  assert.deepEqual([...t.data.slice(1, 76)], long.bpe.slice(0, 75));
});

test('batch, int64 and short context', () => {
  const texts = ['a photo of a cat', 'afro hairstyle', 'red hair'];
  const t32 = tokenize(texts);
  assert.equal(t32.dtype, 'int32');
  assert.deepEqual(t32.shape, [3, 77]);
  const t64 = tokenize(texts, 77, false, { dtype: 'int64' });
  assert.equal(t64.dtype, 'int64');
  assert.deepEqual([...t64.data].map(Number), [...t32.data]);
  // io.safetensors text_tokens of shared/fixtures/clip (the README's tiny CLIP inputs).
  const byText = new Map(FIX.items.map((r) => [r.text, r.ids]));
  assert.deepEqual([...t32.data.slice(77, 154)], byText.get('afro hairstyle'));
  assert.deepEqual([...t32.data.slice(154, 231)], byText.get('red hair'));
  assert.deepEqual(tokenRows('red hair', 4, true), [[SOT_ID, byText.get('red hair')![1]!, byText.get('red hair')![2]!, EOT_ID]]);
  assert.throws(() => tokenRows('red hair', 3), /too long/);
  assert.deepEqual(tokenRows([], 77), []);
});

test('decode inverts encode (up to the word-end spaces)', () => {
  const tok = defaultTokenizer();
  for (const r of FIX.items) assert.equal(tok.decode(r.bpe).replace(/ /g, ''), r.cleaned.replace(/ /g, ''), r.text);
  assert.equal(tok.decode(tok.encode('Afro hairstyle')), 'afro hairstyle ');
});

test('Hugging Face vocab.json + merges.txt (derived from the gz) give identical ids', () => {
  const text = new TextDecoder().decode(gunzipSync(readFileSync(DEFAULT_BPE_PATH)));
  const official = SimpleTokenizer.fromBpeText(text);
  // The HF files for openai/clip-vit-base-patch32 carry the same vocabulary: vocab.json is the
  // encoder (token -> id), merges.txt a '#version: 0.2' header and the 48894 merges.
  const vocabJson = JSON.stringify(Object.fromEntries(official.encoder));
  const mergeLines = text.split('\n').slice(1, NUM_MERGES + 1);
  const mergesTxt = ['#version: 0.2', ...mergeLines].join('\n') + '\n';
  const hf = SimpleTokenizer.fromHuggingFace(vocabJson, mergesTxt);
  assert.equal(hf.vocabSize, 49408);
  assert.equal(hf.sotId, SOT_ID);
  assert.equal(hf.eotId, EOT_ID);
  for (const r of FIX.items) {
    assert.deepEqual(hf.encode(r.text), r.bpe, r.text);
    assert.deepEqual([...tokenize(r.text, 77, r.truncate, { tokenizer: hf }).data], r.ids, r.text);
  }
  // A shuffled id assignment must flow through (ids come from vocab.json, not from positions).
  const shifted = Object.fromEntries([...official.encoder].map(([k, v]) => [k, v === SOT_ID ? 5 : v === 5 ? SOT_ID : v]));
  const hf2 = SimpleTokenizer.fromHuggingFace(shifted, mergesTxt);
  assert.equal(hf2.sotId, 5);
  assert.throws(() => SimpleTokenizer.fromHuggingFace({ a: 0 }, mergesTxt), /no <\|startoftext\|>/);
});

test('text cleaning pieces behave like Python', () => {
  // html.unescape
  assert.equal(pyHtmlUnescape('&amp;amp;'), '&amp;');
  assert.equal(pyHtmlUnescape('&ampx &notit; &#128; &#x110000; &#0; &#65'), '&x ¬it; € \ufffd \ufffd A');
  assert.equal(pyHtmlUnescape('&#xd800;&#1;'), '\ufffd');
  // ftfy's stricter unescape: ';' required, all-caps Latin names
  assert.equal(ftfyUnescapeHtml('P&EACUTE;REZ &ntilde; &NTILDE; &nTILDE; &amp'), 'PÉREZ ñ Ñ &nTILDE; &amp');
  // str.strip() vs JS trim(): U+001C..U+001F are Python whitespace, U+FEFF is not
  assert.equal(pyStrip('\x1c a \x1f'), 'a');
  assert.equal(pyStrip('\ufeffa'), '\ufeffa');
  // ftfy examples from its documentation
  assert.equal(fixText('âœ” No problems'), '✔ No problems');
  assert.equal(fixText('&macr;\\_(ã\x83\x84)_/&macr;'), '¯\\_(ツ)_/¯');
  assert.equal(fixText('it&#x2019;s ﬂubberiﬁc!'), "it's flubberific!");
  assert.equal(fixText('ＬＯＵＤ　ＮＯＩＳＥＳ'), 'LOUD NOISES');
  assert.equal(fixText('Ｕﾀｰﾝ'), 'Uターン');
  assert.equal(fixText('sÃ³'), 'só');
  assert.equal(fixText('voilÃ le travail'), 'voilà le travail');
  assert.equal(fixText('schÃ¶n'), 'schön');
  assert.equal(fixText('This text was never UTF-8 at all\x85'), 'This text was never UTF-8 at all…');
  assert.equal(fixText('\x1b[36;44mI\'m blue\x1b[0m'), "I'm blue");
  assert.equal(fixText('a\r\nb\u2028c'), 'a\nb\nc');
  assert.equal(fixText('<b>&amp;</b>'), '<b>&amp;</b>'); // 'auto': HTML left alone once '<' is seen
  assert.equal(isBad('naïve café'), false);
  assert.equal(isBad('cafÃ©'), true);
});
