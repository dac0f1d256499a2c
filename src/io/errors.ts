// Error types of the file readers.
//
// Every reader in src/io throws one of these for malformed, truncated, hostile or unsupported
// input, and nothing else: a caller (the CLI, the weights cache, the server) can tell "this file
// is bad" from a bug by `instanceof IoError`. The messages name the offending input — the
// global, the tensor key, the zip entry, the byte offset — and, when the reader was given a
// path, the file.

/** Base class: the input is not a valid file of the expected kind. */
export class IoError extends Error {
  override name = 'IoError';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }

  /** The same error (same class) with `prefix: ` in front of the message, e.g. the file path. */
  withPrefix(prefix: string): this {
    const Ctor = this.constructor as new (message: string, options?: { cause?: unknown }) => this;
    const e = new Ctor(`${prefix}: ${this.message}`, { cause: this.cause });
    e.stack = this.stack;
    return e;
  }
}

/** A pickle stream is malformed, or asks for a global outside the allow-list. */
export class UnpicklingError extends IoError {
  override name = 'UnpicklingError';
}

/** A zip archive is malformed (central directory, local headers, sizes). */
export class ZipError extends IoError {
  override name = 'ZipError';
}

/** A PyTorch checkpoint (zip, legacy or TorchScript) is malformed or inconsistent. */
export class CheckpointError extends IoError {
  override name = 'CheckpointError';
}

/** A safetensors file is malformed (header, offsets, dtypes). */
export class SafetensorsError extends IoError {
  override name = 'SafetensorsError';
}

/** An image could not be decoded or encoded. */
export class ImageError extends IoError {
  override name = 'ImageError';
}

/** A name taken from a file, safe to put in a message: control characters escaped, length capped. */
export function printable(s: string, max = 120): string {
  // eslint-disable-next-line no-control-regex
  const t = s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`).replace(/\ufffd/g, '?');
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

/** Re-throws `e` with the file path in its message when it is one of ours; anything else as is. */
export function rethrowWithPath(e: unknown, path: string): never {
  if (e instanceof IoError) throw e.withPrefix(path);
  throw e;
}
