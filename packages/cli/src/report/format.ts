/**
 * Text helpers shared by the charts and the page: HTML escaping and number formatting for display.
 */

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** Escapes text for HTML element content and double- or single-quoted attribute values. */
export function escapeHtml(value: unknown): string {
  return String(value).replace(/[&<>"']/g, (c) => ESCAPES[c]!);
}

/** A window as the docs write it: `[start, end)`. */
export function formatRange(start: number, end: number): string {
  return `[${start}, ${end})`;
}

/**
 * A number for a table cell: integers with thousands separators, other values with up to `digits`
 * significant digits after the point (at least 4 decimals for values under 1), exponent form when tiny or huge,
 * an em dash for null, undefined or non-finite values.
 */
export function formatNumber(value: number | null | undefined, digits = 4): string {
  if (value === null || value === undefined || !Number.isFinite(value)) return '—';
  if (Number.isInteger(value) && Math.abs(value) < 1e15) return value.toLocaleString('en-US');
  const a = Math.abs(value);
  if (a !== 0 && (a < 1e-3 || a >= 1e9)) return value.toExponential(Math.max(0, digits - 1));
  const decimals = a >= 1 ? Math.max(0, digits - 1 - Math.floor(Math.log10(a))) : digits;
  return value.toLocaleString('en-US', { minimumFractionDigits: 0, maximumFractionDigits: Math.min(decimals, 6) });
}
