export { buildProgram, main, VERSION } from './program.js';
export { cliReference } from './docs.js';
export { demoPaths } from './demo/paths.js';
export type { DemoPaths } from './demo/paths.js';
