/** The CLI's version (kept equal to the packages' versions). */
export const VERSION = '0.1.0';
