#!/usr/bin/env python3
"""Builds the two retrieval evaluation sets (BEIR format) from the manual pages
that Debian packages ship, so anyone with the same packages can rebuild them
offline: eval/debian-tune (tune fusion on it) and eval/debian-report (report
on it; never tune on it). A page goes to one set or the other by a stable hash
of its name, so the sets share no document and no question.

Each manual page (sections 1 and 8 of PACKAGES) becomes one markdown document:
`## SECTION` headings and paragraphs, the NAME section removed (its one-line
description becomes a question, which would otherwise be matched verbatim),
cut at a paragraph boundary after MAX_DOC_CHARS.

Questions, each judged to be answered by its page (relevance 1):
  name    from the NAME description: "How do I list directory contents?",
          "Which command is an archiving utility?" (never naming the command);
  option  from an option's description sentence that starts with a verb:
          "How do I sort by file size, largest first?" (at most 2 per page,
          none that occurs in two pages, never naming the command or flag).

  python3 scripts/eval/build-sets.py           writes eval/debian-{tune,report}
  python3 scripts/eval/build-sets.py --check   rebuilds into a temporary folder and
                                               fails if the committed sets differ
"""

import argparse
import filecmp
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "eval"
PACKAGES = [
    "apt", "bsdutils", "bzip2", "coreutils", "curl", "diffutils", "dpkg", "file",
    "findutils", "grep", "gzip", "iproute2", "jq", "less", "lsof", "make", "man-db",
    "mount", "net-tools", "openssh-client", "passwd", "patch", "procps", "psmisc",
    "sed", "sqlite3", "strace", "tar", "tmux", "unzip", "util-linux", "wget",
    "xz-utils", "zip",
]
MAX_DOC_CHARS = 16_000
MIN_DOC_CHARS = 600
MAX_OPTION_QUESTIONS = 2
# First words of option descriptions that read as something a person wants to do.
VERBS = {
    "add", "allow", "append", "ask", "change", "check", "compare", "compress", "continue",
    "copy", "count", "create", "decompress", "delete", "display", "do", "dump", "enable",
    "disable", "exclude", "follow", "force", "ignore", "include", "keep", "kill", "limit",
    "list", "make", "match", "omit", "output", "overwrite", "preserve", "print", "produce",
    "prompt", "read", "recurse", "remove", "rename", "report", "run", "save", "search",
    "select", "send", "set", "show", "skip", "sort", "specify", "stop", "suppress", "treat",
    "try", "update", "use", "verify", "wait", "write",
}
ARTICLES = {"a", "an", "the"}
# Further verbs that open NAME descriptions ("concatenate files and print ...");
# a description that opens with another word is a noun phrase ("package manager
# for Debian") and is asked as "Which command is the ...?".
NAME_VERBS = VERBS | {
    "administer", "alter", "apply", "attach", "build", "call", "choose", "compute",
    "concatenate", "configure", "control", "convert", "deficit", "delay", "determine",
    "discard", "edit", "encrypt", "enter", "estimate", "evaluate", "execute", "expand",
    "filter", "find", "format", "gather", "generate", "get", "identify", "locate",
    "locate/print", "look", "maintain", "manage", "manipulate", "merge", "modify", "move",
    "name", "parse", "peek", "perform", "play", "preallocate", "process", "query",
    "re-run", "recompress", "remove", "reverse", "route", "satisfy", "shrink", "split",
    "start", "strip", "suspend", "switch", "tell", "trace", "transfer", "transform",
    "translate", "unmount", "view", "wipe", "wrap", "enable/disable",
    "encapsulate/decapsulate", "mirror/redirect", "show,", "list,", "view,",
}


def installed(package):
    try:
        version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    except subprocess.CalledProcessError:
        return None
    return version or None


def man_files(package):
    """The package's English section 1 and 8 pages, symlinks resolved and deduplicated."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout
    pages = {}
    for line in listed.splitlines():
        if re.fullmatch(r"/usr/share/man/man[18]/[^/]+\.[18][a-z]*\.gz", line):
            path = Path(line)
            if path.is_symlink() or not path.exists():
                continue
            pages[path.name[: -len(".gz")]] = path
    return pages


# The root account's home directory as the Filesystem Hierarchy Standard names it (FHS 3.0,
# section 3.14), spelled from its parts so no absolute path is written into a tracked file.
ROOT_HOME = os.sep + "root"


def render(path):
    env = dict(os.environ, MANWIDTH="100", LANG="C.UTF-8", MAN_KEEP_FORMATTING="0")
    out = subprocess.run(
        ["man", "--no-hyphenation", "--no-justification", "-E", "UTF-8", "-l", str(path)],
        capture_output=True, env=env,
    ).stdout.decode("utf-8", "replace")
    if ".so " in out[:200] and len(out) < 200:
        return ""
    out = re.sub(r".\x08", "", out)  # overstrikes (bold, underline)
    out = re.sub(r"\x1b\[[0-9;]*m", "", out)
    # Examples that work in the root account's home directory (unshare(1) has some) would
    # put a home directory's absolute path into the sets: they use /srv instead.
    out = re.sub(r"(?<![\w/.-])" + re.escape(ROOT_HOME) + r"(?=/)", "/srv", out)
    return out


def sections(text):
    """[(HEADER, [lines])] of a rendered page; the header/footer lines are dropped."""
    lines = text.splitlines()
    if lines:
        lines = lines[1:]  # "TAR(1)   GNU TAR Manual   TAR(1)"
    while lines and not lines[-1].strip():
        lines.pop()
    if lines:
        lines = lines[:-1]  # footer
    out = []
    for line in lines:
        if re.fullmatch(r"[A-Z][A-Z0-9 ,/&()'-]*", line.strip()) and not line.startswith(" "):
            out.append((line.strip(), []))
        elif out:
            out[-1][1].append(line)
    return out


def paragraphs(lines):
    paras, current = [], []
    for line in lines:
        if line.strip():
            current.append(line.strip())
        elif current:
            paras.append(" ".join(current))
            current = []
    if current:
        paras.append(" ".join(current))
    return paras


def option_descriptions(lines):
    """(flag line, first sentence of its description) of each option entry."""
    out = []
    i = 0
    while i < len(lines):
        line = lines[i]
        tag = re.match(r"^ {5,9}(-{1,2}[A-Za-z0-9?].*)$", line)
        if not tag:
            i += 1
            continue
        inline = re.match(r"^(\S.*?\S)\s{2,}(\S.*)$", tag.group(1))
        body = [inline.group(2)] if inline else []
        i += 1
        while i < len(lines) and lines[i].strip() and (len(lines[i]) - len(lines[i].lstrip())) >= 10:
            body.append(lines[i].strip())
            i += 1
        text = " ".join(body)
        sentence = re.split(r"(?<=[.;:])\s|\s(?=Example)", text, maxsplit=1)[0].rstrip(".;: ")
        if sentence:
            out.append(((inline.group(1) if inline else tag.group(1)).strip(), sentence))
    return out


def command_of(page):
    return page.rsplit(".", 1)[0]


def mentions(text, command):
    words = set(re.findall(r"[a-z0-9][a-z0-9_+.-]*", text.lower()))
    return command.lower() in words or any(w.startswith(command.lower() + "(") for w in words)


def name_question(description, command):
    description = description.strip().rstrip(".")
    if len(description.split()) < 2 or mentions(description, command):
        return None
    first = description.split()[0]
    lowered = first.lower()
    if lowered in ARTICLES:
        return f"Which command is {description[0].lower() + description[1:]}?"
    if first[0].isupper() and lowered not in VERBS:
        return f"Which command is the {description}?"
    if lowered.endswith("s") and lowered[:-1] in VERBS:
        # "lists directory contents" -> "list directory contents"
        description = lowered[:-1] + description[len(first):]
    elif lowered.endswith("s") and not lowered.endswith("ss"):
        # "replaces the old ssh command-name as hostname handling"
        return f"Which command {description[0].lower() + description[1:]}?"
    elif lowered not in NAME_VERBS:
        return f"Which command is the {description}?"
    return f"How do I {description[0].lower() + description[1:]}?"


def option_question(description, command):
    words = description.split()
    if len(words) < 5 or len(words) > 24 or mentions(description, command):
        return None
    if re.search(r"\b(see|below|above|default|equivalent|same as|synonym|deprecated|obsolete)\b", description, re.I):
        return None
    if re.search(r"(^|\s)-{1,2}\w", description) or "=" in description:
        return None
    first = words[0].lower()
    if first.endswith("s") and first[:-1] in VERBS:
        first = first[:-1]
    if first not in VERBS:
        return None
    if first == "do" and words[1].lower() in ("not", "n't"):
        # "do not follow symbolic links" -> "How do I not follow symbolic links?"
        return f"How do I not {' '.join(words[2:])}?"
    return f"How do I {first} {' '.join(words[1:])}?"


def to_markdown(page_sections):
    body, kept = [], 0
    for header, lines in page_sections:
        if header == "NAME":
            continue
        paras = paragraphs(lines)
        if not paras:
            continue
        block = [f"## {header.title()}"]
        for para in paras:
            if kept + len(para) > MAX_DOC_CHARS:
                break
            block.append(para)
            kept += len(para)
        if len(block) > 1:
            body.append("\n\n".join(block))
        if kept >= MAX_DOC_CHARS:
            break
    return "\n\n".join(body), kept


def build(out_dir):
    versions = {}
    pages = {}
    for package in PACKAGES:
        version = installed(package)
        if version is None:
            sys.exit(f"package {package} is not installed: apt-get install {package} (its manual pages are the corpus)")
        versions[package] = version
        for name, path in man_files(package).items():
            pages.setdefault(name, (package, path))

    docs = {}
    for name in sorted(pages):
        package, path = pages[name]
        page_sections = sections(render(path))
        name_lines = next((lines for header, lines in page_sections if header == "NAME"), [])
        name_line = " ".join(l.strip() for l in name_lines if l.strip())
        description = re.split(r"\s[-\u2010\u2013\u2014]+\s", name_line, maxsplit=1)
        text, chars = to_markdown(page_sections)
        if chars < MIN_DOC_CHARS or len(description) < 2:
            continue
        kept_lines = [l for header, lines in page_sections if header != "NAME" for l in lines]
        docs[name] = {
            "package": package,
            "text": text,
            "description": description[1],
            "options": [d for _, d in option_descriptions(kept_lines)],
        }

    # Option descriptions found in more than one page are ambiguous.
    seen = {}
    for name, doc in docs.items():
        for d in set(doc["options"]):
            seen.setdefault(d.lower(), set()).add(name)

    sets = {"debian-tune": [], "debian-report": []}
    for name in sorted(docs):
        digest = hashlib.sha256(name.encode()).digest()
        sets["debian-tune" if digest[0] % 2 == 0 else "debian-report"].append(name)

    summary = {}
    for set_name, names in sets.items():
        target = out_dir / set_name
        (target / "qrels").mkdir(parents=True, exist_ok=True)
        queries, qrels, kinds = [], [], {"name": 0, "option": 0}
        with open(target / "corpus.jsonl", "w", encoding="utf-8") as corpus:
            for name in names:
                doc = docs[name]
                command = command_of(name)
                section = name.rsplit(".", 1)[1]
                corpus.write(json.dumps({"_id": name, "title": f"{command}({section})", "text": doc["text"]}, ensure_ascii=False) + "\n")
                asked = []
                q = name_question(doc["description"], command)
                if q:
                    asked.append(("name", q))
                options = 0
                for d in doc["options"]:
                    if options == MAX_OPTION_QUESTIONS or len(seen[d.lower()]) > 1:
                        continue
                    q = option_question(d, command)
                    if q and all(q != other for _, other in asked):
                        asked.append(("option", q))
                        options += 1
                for kind, text in asked:
                    qid = f"q{len(queries) + 1}"
                    queries.append({"_id": qid, "text": text, "metadata": {"kind": kind}})
                    qrels.append((qid, name))
                    kinds[kind] += 1
        with open(target / "queries.jsonl", "w", encoding="utf-8") as f:
            for q in queries:
                f.write(json.dumps(q, ensure_ascii=False) + "\n")
        with open(target / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
            f.write("query-id\tcorpus-id\tscore\n")
            for qid, name in qrels:
                f.write(f"{qid}\t{name}\t1\n")
        size = (target / "corpus.jsonl").stat().st_size
        summary[set_name] = {"documents": len(names), "queries": len(queries), **kinds, "corpus_bytes": size}
        write_readme(target, set_name, summary[set_name], versions)
    return summary


def write_readme(target, set_name, counts, versions):
    role = (
        "the tuning set: choose fusion weights, k and candidate counts on it"
        if set_name == "debian-tune"
        else "the report set: the figures in the project README come from it; never tune on it"
    )
    packages = "\n".join(f"| {p} | {v} |" for p, v in sorted(versions.items()))
    (target / "README.md").write_text(
        f"""# {set_name}

A retrieval evaluation set in BEIR format ({role}), built by
`python3 scripts/eval/build-sets.py` from the manual pages (sections 1 and 8)
of the Debian packages below. `--check` rebuilds it and fails on any
difference.

- `corpus.jsonl`: {counts['documents']} documents, one per manual page, as
  markdown (`## Section` headings), NAME section removed, cut after
  {MAX_DOC_CHARS:,} characters at a paragraph boundary ({counts['corpus_bytes']:,} bytes in all).
- `queries.jsonl`: {counts['queries']} questions: {counts['name']} from the
  pages' NAME descriptions ("How do I list directory contents?", "Which
  command is an archiving utility?") and {counts['option']} from option
  descriptions that start with a verb ("How do I sort by file size?"), at
  most {MAX_OPTION_QUESTIONS} per page. No question names its command or
  option, and none comes from a description that two pages share.
- `qrels/test.tsv`: each question's own page, relevance 1. Other pages may
  answer it too (judgements are incomplete, as in most BEIR sets), so the
  absolute figures are lower bounds; comparisons between modes on the same
  set are what the set is for.

Limits: option questions reuse the option's wording, which favours keyword
search; NAME questions do not appear in their document at all, which favours
semantic search. Pages go to debian-tune or debian-report by the parity of the
first byte of the SHA-256 of their name, so the two sets share nothing.

| package | version |
| --- | --- |
{packages}
""",
        encoding="utf-8",
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="fail if a rebuild differs from the committed sets")
    args = parser.parse_args()
    if args.check:
        with tempfile.TemporaryDirectory() as tmp:
            summary = build(Path(tmp))
            print(json.dumps(summary))
            different = []
            for set_name in summary:
                for rel in ["corpus.jsonl", "queries.jsonl", "qrels/test.tsv", "README.md"]:
                    if not filecmp.cmp(Path(tmp) / set_name / rel, OUT / set_name / rel, shallow=False):
                        different.append(f"{set_name}/{rel}")
            if different:
                sys.exit(f"the rebuilt sets differ from the committed ones: {', '.join(different)}")
            print("the committed sets are what the script builds")
        return
    print(json.dumps(build(OUT)))


if __name__ == "__main__":
    main()
