/**
 * The one error type of the library: a stable `code` (E_...) plus a message that names the file, tensor,
 * field or option concerned and what was expected. Library code throws these and never exits or prints.
 */
export class StreamlineError extends Error {
  /** Stable, documented error code such as `E_SAFETENSORS_OFFSET`. */
  readonly code: string;
  /** The file the error is about, when there is one. */
  readonly file?: string;

  constructor(code: string, message: string, options: { file?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'StreamlineError';
    this.code = code;
    if (options.file !== undefined) this.file = options.file;
  }
}

/** True when `e` is a StreamlineError (optionally with the given code). */
export function isStreamlineError(e: unknown, code?: string): e is StreamlineError {
  return e instanceof StreamlineError && (code === undefined || e.code === code);
}

/** Re-types an error thrown by the addon (which carries `code`) as a StreamlineError. */
export function fromNative(e: unknown, context?: string): StreamlineError {
  if (e instanceof StreamlineError) return e;
  const err = e as { code?: unknown; message?: unknown };
  const code = typeof err?.code === 'string' ? err.code : 'E_NATIVE';
  const msg = typeof err?.message === 'string' ? err.message : String(e);
  return new StreamlineError(code, context ? `${context}: ${msg}` : msg, { cause: e });
}
