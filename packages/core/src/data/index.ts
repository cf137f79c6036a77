/** Calibration and evaluation text data: readers, the seeded sampler and calibration packing. */
export { listDataFiles, readDocuments, readTextDocuments, readRecords, dataFileKind } from './readers.js';
export type { DataFileKind, SourceDocument, ReadDocumentsOptions } from './readers.js';
export { SplitMix64, sampleWithoutReplacement, shuffledIndices } from './prng.js';
export { packCalibration } from './pack.js';
export type { PackOptions, PackProgress, PackTokenizer, PackedCalibration } from './pack.js';
