/**
 * @streamline/core: depth pruning with layer replacement for Hugging Face decoder-only models.
 * See the package README and docs/ for the method and notation (h[k] enters layer k; ranges are [start, end)).
 */
export { StreamlineError, isStreamlineError } from './errors.js';
export { runtimeInfo } from './runtime.js';
// Path checks for tools that write files (the CLI's output options use them).
export { folderProblem, isInside, nearestExisting } from './fs-paths.js';
export type { RuntimeInfo } from './runtime.js';
export { resolveDevice, checkDeviceOption, cudaMissingPiece, gpuMemory, DEVICE_OPTIONS } from './device.js';
export type { Device, DeviceOption, DeviceOptions, DeviceMessage, ResolvedDevice, GpuMemory } from './device.js';

export { DTYPES, dtypeSize, isDType, isFloatDType, toSafetensorsDType, fromSafetensorsDType } from './dtype.js';
export type { DType } from './dtype.js';
export { Tensor, shapeNumel } from './tensor.js';
export type { TypedArrayOf } from './tensor.js';

export { parseSafetensorsHeader, MAX_HEADER_BYTES } from './safetensors/header.js';
export type { ParsedHeader, TensorEntry } from './safetensors/header.js';
export { openSafetensors, SafetensorsFile } from './safetensors/reader.js';
export type { TensorInfo } from './safetensors/reader.js';
export { openCheckpoint, SAFE_WEIGHTS_NAME, SAFE_WEIGHTS_INDEX_NAME } from './safetensors/checkpoint.js';
export type { Checkpoint, OpenCheckpointOptions } from './safetensors/checkpoint.js';
export { writeSafetensors, writeSafetensorsFile, encodeHeader } from './safetensors/writer.js';
export type { LazyTensorEntry, WriteEntry, WriteOptions, WriteProgress, WriteResult } from './safetensors/writer.js';

export { parseModelConfig, loadModelConfig } from './config.js';
export type { ModelConfig, ModelType, Activation, RopeConfig, RopeScaling, OptConfig } from './config.js';
export { getAdapter, SUPPORTED_MODEL_TYPES, llama, mistral, qwen2, qwen3, phi3, gemma, gemma3, opt, LAYER_ROLES, GLOBAL_ROLES } from './arch/index.js';
export type { ArchAdapter, ArchSpec, ArchTraits, ExpectedTensor, GlobalRole, LayerRole, NamingOptions, TensorRole } from './arch/index.js';

export { openModelDir } from './model-dir.js';
export type { ModelDir } from './model-dir.js';
export { inspect, modelProblems, assertModelValid } from './inspect.js';
export type { ModelReport, FileReport, DTypeHistogram, MissingTensor, WrongShapeTensor } from './inspect.js';

export { loadTokenizer } from './tokenizer.js';
export type { LoadedTokenizer, EncodeOptions } from './tokenizer.js';
export * from './data/index.js';

export { loadModel, modelFromDescription, forwardDescription } from './model.js';
export type { LoadedModel, ForwardOptions, ForwardResult } from './model.js';
export { describeModel } from './engine/describe.js';
export type { ModelDescription, LayerSource, LayerSemantics, WeightView } from './engine/description.js';
export { layerRope } from './engine/description.js';
export { makeTokenBatch } from './engine/batch.js';
export type { TokenBatch, HiddenBatch } from './engine/batch.js';
export { embed, runLayer, runLayers, head, tokenLogprobs } from './engine/forward.js';
export type { RunLayersOptions, HeadOptions, LogprobOptions, LayerCaptures } from './engine/forward.js';
export { ropeFrequencies } from './engine/rope.js';
export { nativeLayerSpec } from './engine/spec.js';
export { CudaEngine, cudaUnsupported } from './engine/cuda.js';
export type { CudaLoadOptions, CudaRunOptions } from './engine/cuda.js';
export type { RopeParams } from './engine/rope.js';
export { scoreLayers } from './scoring/score.js';
export type { ScoreMetric, ScoreOptions, ScoreResult, WindowScore } from './scoring/score.js';
export { nForSparsity, paramBudget, removedParams, replacementParams } from './scoring/sparsity.js';
export type { ParamBudget, ReplacementKind } from './scoring/sparsity.js';
export { runScore, calibrationBlocks, resolveN } from './scoring/run.js';
export type { RunScoreOptions, RunScoreResult, CalibrationOptions, WindowChoice } from './scoring/run.js';
export { prune, TOOL_VERSION } from './prune/run.js';
export type { PruneOptions, PrunePlan, PruneResult, TrainingOptions } from './prune/run.js';
export { exportPruned } from './prune/export.js';
export type { ExportOptions, ExportResult, ExportReplacement, ExportSource } from './prune/export.js';
export { prunedDescription, f32View } from './prune/pruned-model.js';
export type { InMemoryReplacement } from './prune/pruned-model.js';
export { fitLinear } from './prune/linear.js';
export { pruneConfig, keptLayers } from './prune/config-edit.js';
export { PairCache } from './train/pair-cache.js';
export type { CacheDtype, PairCacheOptions } from './train/pair-cache.js';
export { trainReplacement } from './train/trainer.js';
export type { TrainOptions, TrainResult, StepRecord, LmTail } from './train/trainer.js';
export { nextTokenTargets } from './train/trainer.js';
export { learningRate } from './train/schedule.js';
