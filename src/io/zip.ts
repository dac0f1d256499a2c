// A zip reader that returns entries as views of the archive's bytes.
//
// torch.save and torch.jit.save write uncompressed ("stored") entries whose data start on
// 64-byte boundaries, so reading a 350 MB checkpoint costs no copy at all: each storage is a
// subarray of the file. (fflate's unzipSync would copy every entry.) Deflated entries are
// inflated with fflate, into a buffer of the declared size only. Zip64 sizes and offsets are
// understood. CRCs are not checked (PyTorch's own reader does not either by default); sizes and
// offsets are, against the archive's length, before anything is read.

import { inflateSync } from 'fflate';
import { ZipError } from './errors.ts';

export interface ZipEntry {
  name: string;
  /** 0 = stored, 8 = deflate */
  method: number;
  compressedSize: number;
  size: number;
  /** Offset of the local file header. */
  headerOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const CDIR_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;

const NAME_DECODER = new TextDecoder('utf-8');

export function isZip(bytes: Uint8Array): boolean {
  return bytes.length >= 4 && bytes[0] === 0x50 && bytes[1] === 0x4b && bytes[2] === 0x03 && bytes[3] === 0x04;
}

export class ZipArchive {
  readonly entries: ReadonlyMap<string, ZipEntry>;
  private readonly view: DataView;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.entries = this.readCentralDirectory();
  }

  get names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  /** The entry's uncompressed bytes: a view into the archive when stored. */
  read(name: string): Uint8Array {
    const e = this.entries.get(name);
    if (!e) throw new ZipError(`no entry '${name}' in the archive`);
    const start = this.dataStart(e);
    if (e.compressedSize > this.bytes.length - start) {
      throw new ZipError(`entry '${name}': ${e.compressedSize} bytes of data at offset ${start} run past the end of the archive (${this.bytes.length} bytes)`);
    }
    const raw = this.bytes.subarray(start, start + e.compressedSize);
    if (e.method === 0) {
      if (e.size !== e.compressedSize) throw new ZipError(`stored entry '${name}': size ${e.size} != compressed size ${e.compressedSize}`);
      return raw;
    }
    if (e.method === 8) {
      // deflate expands at most ~1032x; anything claiming more is lying
      if (e.size > raw.length * 1032 + 64) throw new ZipError(`deflated entry '${name}' claims an impossible size ${e.size}`);
      let out: Uint8Array;
      try {
        out = inflateSync(raw, { out: new Uint8Array(e.size) });
      } catch (err) {
        throw new ZipError(`entry '${name}': corrupt deflate data (${(err as Error).message})`, { cause: err });
      }
      if (out.length !== e.size) throw new ZipError(`entry '${name}': inflated to ${out.length} bytes, expected ${e.size}`);
      return out;
    }
    throw new ZipError(`entry '${name}': unsupported compression method ${e.method}`);
  }

  private u16(off: number): number { return this.view.getUint16(off, true); }
  private u32(off: number): number { return this.view.getUint32(off, true); }
  private u64(off: number): number {
    return this.u32(off + 4) * 2 ** 32 + this.u32(off); // exact below 2^53: files are smaller
  }

  private dataStart(e: ZipEntry): number {
    const h = e.headerOffset;
    if (h > this.bytes.length - 30) throw new ZipError(`entry '${e.name}': local header offset ${h} is past the end of the archive`);
    if (this.u32(h) !== LOCAL_SIG) throw new ZipError(`entry '${e.name}': no local header at offset ${h}`);
    const start = h + 30 + this.u16(h + 26) + this.u16(h + 28);
    if (start > this.bytes.length) throw new ZipError(`entry '${e.name}': local header at ${h} runs past the end of the archive`);
    return start;
  }

  private findEocd(): number {
    const b = this.bytes;
    if (b.length < 22) throw new ZipError(`not a zip archive: ${b.length} bytes is too short`);
    // The EOCD record is the last 22 bytes plus a comment of up to 65535 bytes.
    const lowest = Math.max(0, b.length - 22 - 0xffff);
    for (let i = b.length - 22; i >= lowest; i--) {
      if (b[i] === 0x50 && b[i + 1] === 0x4b && this.u32(i) === EOCD_SIG) return i;
    }
    throw new ZipError('not a zip archive (no end-of-central-directory record; truncated file?)');
  }

  private readCentralDirectory(): Map<string, ZipEntry> {
    const eocd = this.findEocd();
    let count = this.u16(eocd + 10);
    let cdSize = this.u32(eocd + 12);
    let cdOffset = this.u32(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      // zip64: the locator sits right before the EOCD and points at the zip64 EOCD record
      const loc = eocd - 20;
      if (loc < 0 || this.u32(loc) !== ZIP64_LOCATOR_SIG) throw new ZipError('zip64 archive without a zip64 locator');
      const rec = this.u64(loc + 8);
      if (rec > this.bytes.length - 56 || this.u32(rec) !== ZIP64_EOCD_SIG) throw new ZipError(`bad zip64 end-of-central-directory offset ${rec}`);
      count = this.u64(rec + 32);
      cdSize = this.u64(rec + 40);
      cdOffset = this.u64(rec + 48);
    }
    if (cdOffset > this.bytes.length || cdSize > this.bytes.length - cdOffset) {
      throw new ZipError(`central directory (offset ${cdOffset}, ${cdSize} bytes) lies outside the archive (${this.bytes.length} bytes)`);
    }
    // every record is at least 46 bytes: a lying count cannot make us loop or allocate much
    if (count > cdSize / 46) throw new ZipError(`central directory of ${cdSize} bytes cannot hold ${count} entries`);
    const entries = new Map<string, ZipEntry>();
    let p = cdOffset;
    const end = cdOffset + cdSize;
    for (let i = 0; i < count; i++) {
      if (p + 46 > end) throw new ZipError(`central directory record ${i} runs past the directory's end`);
      if (this.u32(p) !== CDIR_SIG) throw new ZipError(`bad central directory record ${i} at offset ${p}`);
      const flags = this.u16(p + 8);
      const method = this.u16(p + 10);
      let compressedSize = this.u32(p + 20);
      let size = this.u32(p + 24);
      const nameLen = this.u16(p + 28);
      const extraLen = this.u16(p + 30);
      const commentLen = this.u16(p + 32);
      let headerOffset = this.u32(p + 42);
      const next = p + 46 + nameLen + extraLen + commentLen;
      if (next > end) throw new ZipError(`central directory record ${i} runs past the directory's end`);
      if (flags & 1) throw new ZipError('encrypted zip entries are not supported');
      const name = NAME_DECODER.decode(this.bytes.subarray(p + 46, p + 46 + nameLen));
      // zip64 extra field (id 1): the 64-bit values, in this order, for the fields that are 0xffffffff
      let x = p + 46 + nameLen;
      const xEnd = x + extraLen;
      while (x + 4 <= xEnd) {
        const id = this.u16(x);
        const len = this.u16(x + 2);
        if (x + 4 + len > xEnd) break;
        if (id === 1) {
          let q = x + 4;
          const take = (): number => {
            if (q + 8 > x + 4 + len) throw new ZipError(`entry '${name}': short zip64 extra field`);
            const v = this.u64(q);
            q += 8;
            return v;
          };
          if (size === 0xffffffff) size = take();
          if (compressedSize === 0xffffffff) compressedSize = take();
          if (headerOffset === 0xffffffff) headerOffset = take();
        }
        x += 4 + len;
      }
      if (headerOffset > this.bytes.length) throw new ZipError(`entry '${name}': header offset ${headerOffset} is past the end of the archive`);
      if (compressedSize > this.bytes.length) throw new ZipError(`entry '${name}': compressed size ${compressedSize} exceeds the archive's size`);
      if (entries.has(name)) throw new ZipError(`duplicate entry '${name}'`);
      entries.set(name, { name, method, compressedSize, size, headerOffset });
      p = next;
    }
    return entries;
  }
}
