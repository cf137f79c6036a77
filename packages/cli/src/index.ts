export { buildProgram, main, VERSION } from './program.js';
