// The evaluation sets (BEIR format, built by scripts/eval/build-sets.py from
// Debian packages) as the scripts read them: the man-page sets
// (eval/debian-tune, eval/debian-report), the Debian FAQ (eval/debian-faq) and
// Docker's documentation (eval/docker-docs).
import { readFileSync } from "node:fs";
import path from "node:path";

const root = path.resolve(import.meta.dirname, "../..");
/** The two man-page sets (tune on the first, report on the second), relative to the repository root. */
export const MAN_PAGE_SETS = ["eval/debian-tune", "eval/debian-report"];
/** Every set, relative to the repository root, with its kind: sets of one kind are never held out from each other. */
export const SET_KINDS = {
  "eval/debian-tune": "man pages",
  "eval/debian-report": "man pages",
  "eval/debian-faq": "FAQ",
  "eval/docker-docs": "documentation sections",
};
/** Every set: the man-page sets, then the other kinds. */
export const EVAL_SETS = Object.keys(SET_KINDS);

/** The kind of corpus `set` (a path relative to the root) is; an unlisted set is its own kind. */
export function kindOf(set) {
  return SET_KINDS[set] ?? set;
}

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
