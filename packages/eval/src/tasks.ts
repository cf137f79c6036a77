/**
 * Multiple-choice task loaders from local JSONL / Parquet files (no downloads). The task name selects the schema
 * and the zero-shot prompt of lm-evaluation-harness's task YAML; any other name reads the generic schema
 * `{ "context": str, "choices": [str], "gold": int }` (context used as is).
 *
 * | name | fields | context | choices | gold |
 * |---|---|---|---|---|
 * | piqa | goal, sol1, sol2, label | "Question: {goal}\nAnswer:" | [sol1, sol2] | label |
 * | hellaswag | activity_label, ctx_a, ctx_b, endings, label | preprocess(activity_label + ": " + ctx_a + " " + capitalize(ctx_b)) | preprocess(endings) | int(label) |
 * | arc_easy, arc_challenge | question, choices{text,label}, answerKey (or AI2's question{stem,choices[{text,label}]}) | "Question: {question}\nAnswer:" | choices.text | choices.label.index(answerKey) |
 * | boolq | passage, question, label (or answer: bool) | "{passage}\nQuestion: {question}?\nAnswer:" | ["no", "yes"] | label |
 * | openbookqa | question_stem, choices{text,label}, answerKey (or AI2's question{stem,choices}) | question_stem | choices.text | choices.label.index(answerKey.lstrip()) |
 * | winogrande | sentence, option1, option2, answer ("1"/"2") | sentence[:i] + option (i = index of "_"), one per option | (multiple inputs) | answer − 1 |
 * | mmlu, mmlu_* | question, choices[4], answer (0-3 or "A"-"D") | "{question.strip()}\nA. {c0}\nB. {c1}\nC. {c2}\nD. {c3}\nAnswer:" | ["A", "B", "C", "D"] | answer |
 *
 * Every continuation is target_delimiter " " + choice; winogrande's shared continuation is
 * " " + sentence[i+1:].strip(). hellaswag's preprocess: strip, " [title]" → ". ", remove "[...]" (non-greedy),
 * replace "  " with " " (one pass); capitalize is Python's (first character upper, the rest lower).
 */
import { readRecords, StreamlineError } from '@streamline/core';
import type { McItem } from './multiple-choice.js';

/** A loaded task. */
export interface LoadedTask {
  name: string;
  /** The schema used: one of the named tasks above or `generic`. */
  schema: string;
  file: string;
  items: McItem[];
}

type Rec = Record<string, unknown>;
type Builder = (r: Rec, where: string) => McItem;

/** Python str.capitalize(): first character upper-cased, the rest lower-cased. */
export function pyCapitalize(s: string): string {
  const first = s.codePointAt(0);
  if (first === undefined) return s;
  const head = String.fromCodePoint(first);
  return head.toUpperCase() + s.slice(head.length).toLowerCase();
}

/** lm-eval hellaswag `preprocess`. */
export function hellaswagPreprocess(text: string): string {
  text = text.trim();
  text = text.replaceAll(' [title]', '. ');
  text = text.replace(/\[.*?\]/g, '');
  text = text.replaceAll('  ', ' ');
  return text;
}

function fail(where: string, msg: string): never {
  throw new StreamlineError('E_TASK_FORMAT', `${where}: ${msg}`);
}
function str(r: Rec, key: string, where: string): string {
  const v = r[key];
  if (typeof v !== 'string') fail(where, `field "${key}" ${v === undefined ? 'is missing' : 'is not a string'}`);
  return v;
}
function strList(v: unknown, what: string, where: string): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) fail(where, `${what} must be a list of strings`);
  return v as string[];
}
function intIn(v: unknown, n: number, what: string, where: string): number {
  const x = typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v.trim()) : v;
  if (typeof x !== 'number' || !Number.isInteger(x) || x < 0 || x >= n) fail(where, `${what} must be an integer in [0, ${n - 1}], got ${JSON.stringify(v)}`);
  return x;
}

function standard(context: string, choices: string[], gold: number): McItem {
  return { requests: choices.map((c) => ({ context, continuation: ' ' + c })), choices, gold };
}

/** ARC / OpenBookQA choice lists in the HF shape (choices{text,label}) or AI2's (question{stem,choices[]}). */
function labelledChoices(r: Rec, stemKey: string, where: string): { stem: string; text: string[]; label: string[] } {
  const q = r.question;
  if (q && typeof q === 'object' && !Array.isArray(q)) {
    const qq = q as Rec;
    const list = qq.choices;
    if (!Array.isArray(list)) fail(where, 'question.choices must be a list of {text, label}');
    return { stem: str(qq, 'stem', where), text: list.map((c) => str(c as Rec, 'text', where)), label: list.map((c) => str(c as Rec, 'label', where)) };
  }
  const c = r.choices as Rec | undefined;
  if (!c || typeof c !== 'object') fail(where, 'field "choices" must be {text: [...], label: [...]}');
  return { stem: str(r, stemKey, where), text: strList(c.text, 'choices.text', where), label: strList(c.label, 'choices.label', where) };
}

function answerIndex(labels: string[], key: string, where: string): number {
  const i = labels.indexOf(key);
  if (i < 0) fail(where, `answerKey ${JSON.stringify(key)} is not one of the labels ${JSON.stringify(labels)}`);
  return i;
}

const BUILDERS: Record<string, Builder> = {
  generic(r, where) {
    if (typeof r.context !== 'string') fail(where, 'field "context" must be a string (generic schema {context, choices, gold})');
    const choices = strList(r.choices, 'field "choices"', where);
    return standard(r.context, choices, intIn(r.gold, choices.length, 'field "gold"', where));
  },
  piqa(r, where) {
    const choices = [str(r, 'sol1', where), str(r, 'sol2', where)];
    return standard(`Question: ${str(r, 'goal', where)}\nAnswer:`, choices, intIn(r.label, 2, 'field "label"', where));
  },
  hellaswag(r, where) {
    const ctx = str(r, 'ctx_a', where) + ' ' + pyCapitalize(str(r, 'ctx_b', where));
    const query = hellaswagPreprocess(str(r, 'activity_label', where) + ': ' + ctx);
    const choices = strList(r.endings, 'field "endings"', where).map(hellaswagPreprocess);
    return standard(query, choices, intIn(r.label, choices.length, 'field "label"', where));
  },
  arc(r, where) {
    const c = labelledChoices(r, 'question', where);
    return standard(`Question: ${c.stem}\nAnswer:`, c.text, answerIndex(c.label, str(r, 'answerKey', where), where));
  },
  boolq(r, where) {
    const label = r.label !== undefined ? r.label : typeof r.answer === 'boolean' ? Number(r.answer) : undefined;
    return standard(`${str(r, 'passage', where)}\nQuestion: ${str(r, 'question', where)}?\nAnswer:`, ['no', 'yes'], intIn(label, 2, 'field "label" (or boolean "answer")', where));
  },
  openbookqa(r, where) {
    const c = labelledChoices(r, 'question_stem', where);
    return standard(c.stem, c.text, answerIndex(c.label, str(r, 'answerKey', where).trimStart(), where));
  },
  winogrande(r, where) {
    const sentence = str(r, 'sentence', where);
    const idx = sentence.indexOf('_');
    if (idx < 0) fail(where, 'field "sentence" has no "_" blank');
    const options = [str(r, 'option1', where), str(r, 'option2', where)];
    const contexts = options.map((o) => sentence.slice(0, idx) + o);
    const continuation = ' ' + sentence.slice(idx + 1).trim();
    const answer = String(r.answer);
    if (answer !== '1' && answer !== '2') fail(where, `field "answer" must be "1" or "2", got ${JSON.stringify(r.answer)}`);
    return { requests: contexts.map((context) => ({ context, continuation })), choices: contexts, gold: Number(answer) - 1, multipleInputs: true };
  },
  mmlu(r, where) {
    const c = strList(r.choices, 'field "choices"', where);
    if (c.length !== 4) fail(where, `mmlu needs 4 choices, got ${c.length}`);
    const letters = ['A', 'B', 'C', 'D'];
    const a = typeof r.answer === 'string' && letters.includes(r.answer.trim()) ? letters.indexOf(r.answer.trim()) : r.answer;
    const context = `${str(r, 'question', where).trim()}\nA. ${c[0]}\nB. ${c[1]}\nC. ${c[2]}\nD. ${c[3]}\nAnswer:`;
    return standard(context, letters, intIn(a, 4, 'field "answer"', where));
  },
};

/** The schema a task name selects (`generic` for unknown names). */
export function schemaFor(name: string): string {
  if (name === 'arc_easy' || name === 'arc_challenge') return 'arc';
  if (name === 'mmlu' || name.startsWith('mmlu_')) return 'mmlu';
  return name in BUILDERS ? name : 'generic';
}

/**
 * Builds scoring items from records with the schema `name` selects.
 * @throws StreamlineError E_TASK_FORMAT naming `file` and the 1-based record number for a record that does not fit.
 */
export function buildTaskItems(name: string, records: Rec[], file = name): McItem[] {
  const build = BUILDERS[schemaFor(name)]!;
  return records.map((r, i) => build(r, `${file} (record ${i + 1}, task ${name})`));
}

/**
 * Loads a task from a JSONL or Parquet file: `--task piqa=./piqa/validation.jsonl`.
 * `limit` keeps the first N records (like lm-eval's --limit).
 * @throws StreamlineError E_TASK_FORMAT, and core's E_DATA_FORMAT / E_DATA_MISSING for unreadable files.
 */
export async function loadTask(name: string, file: string, limit?: number): Promise<LoadedTask> {
  let records = await readRecords(file);
  // No items would give accuracies of 0/0, written as null in JSON, under exit status 0.
  if (records.length === 0) throw new StreamlineError('E_TASK_FORMAT', `${file} (task ${name}) holds no records`, { file });
  if (limit !== undefined) records = records.slice(0, limit);
  return { name, schema: schemaFor(name), file, items: buildTaskItems(name, records, file) };
}
