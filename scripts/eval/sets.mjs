// The evaluation sets (eval/debian-tune, eval/debian-report: BEIR-format man
// pages and questions, built by scripts/eval/build-sets.py) as the scripts read them.
import { readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
/** Both sets, relative to the repository root. */
export const EVAL_SETS = ["eval/debian-tune", "eval/debian-report"];

/** The JSON values of a JSON Lines file, one per non-blank line. */
export function readJsonl(file) {
  return readFileSync(path.resolve(root, file), "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

/** Every man page (`{ _id, title, text }`) and question text of both sets. */
export function manPagesAndQuestions() {
  const pages = [];
  const questions = [];
  for (const set of EVAL_SETS) {
    pages.push(...readJsonl(`${set}/corpus.jsonl`));
    questions.push(...readJsonl(`${set}/queries.jsonl`).map((q) => q.text));
  }
  return { pages, questions };
}
