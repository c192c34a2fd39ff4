// The evaluation sets (BEIR format, built by scripts/eval/build-sets.py from
// Debian packages) as the scripts read them: the man-page sets
// (eval/debian-tune, eval/debian-report), the Debian FAQ (eval/debian-faq) and
// Docker's documentation (eval/docker-docs).
import { readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
/** The two man-page sets (tune on the first, report on the second), relative to the repository root. */
export const MAN_PAGE_SETS = ["eval/debian-tune", "eval/debian-report"];
/** Every set, relative to the repository root: the man-page sets, then the other kinds. */
export const EVAL_SETS = [...MAN_PAGE_SETS, "eval/debian-faq", "eval/docker-docs"];

/** The JSON values of a JSON Lines file, one per non-blank line. */
export function readJsonl(file) {
  return readFileSync(path.resolve(root, file), "utf8")
    .split("\n")
    .filter((line) => line.trim())
    .map((line) => JSON.parse(line));
}

/** Every man page (`{ _id, title, text }`) and question text of both man-page sets. */
export function manPagesAndQuestions() {
  const pages = [];
  const questions = [];
  for (const set of MAN_PAGE_SETS) {
    pages.push(...readJsonl(`${set}/corpus.jsonl`));
    questions.push(...readJsonl(`${set}/queries.jsonl`).map((q) => q.text));
  }
  return { pages, questions };
}
