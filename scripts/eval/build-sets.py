#!/usr/bin/env python3
"""Builds the retrieval evaluation sets (BEIR format) from what Debian packages
ship, so anyone with the same packages can rebuild them offline. Four sets of
three kinds, so that defaults can be chosen on some kinds and checked on another:

  eval/debian-tune, eval/debian-report   manual pages (tune on the first, report
                                         on the second)
  eval/debian-faq                        the Debian FAQ: users' questions, answers
  eval/docker-docs                       Docker's reference documentation in
                                         markdown, asked for by section headings

Manual pages (sections 1 and 8 of PACKAGES). A page goes to debian-tune or
debian-report by a stable hash of its name, so the sets share no document and no
question. Each page becomes one markdown document: `## SECTION` headings and
paragraphs, the NAME section removed (its one-line description becomes a
question, which would otherwise be matched verbatim), cut at a paragraph
boundary after MAX_DOC_CHARS. Questions, each judged to be answered by its page
(relevance 1):
  name    from the NAME description: "How do I list directory contents?",
          "Which command is an archiving utility?" (never naming the command);
  option  from an option's description sentence that starts with a verb:
          "How do I sort by file size, largest first?" (at most 2 per page,
          none that occurs in two pages, never naming the command or flag).

The FAQ (debian-faq, its HTML: one file per chapter). Each section whose
heading asks something (one of its sentences ends with "?") is a document: its
answer as markdown without the heading, with the sections under it that ask
nothing as `##` headings; a section under it that asks is its own document.
Sections that ask nothing and are under no question are documents without a
question. Title: the chapter's title. Answers under FAQ_MIN_DOC_CHARS are left
out, long ones cut at a block boundary after FAQ_MAX_DOC_CHARS. Questions:
  faq     the heading, without its number, judged answered by its section.

Docker's documentation (docker-doc, its markdown pages; the Engine API's
versioned references, near-copies of one text, left out). Front matter, HTML
comments, Liquid tags and kramdown attribute lines are removed. A page is
split at its #, ## and ### headings outside code blocks; each section (the
text before the first heading too) of at least DOCKER_MIN_DOC_CHARS is a
document without its heading line, cut at a block boundary after
DOCKER_MAX_DOC_CHARS; title: the page's (front matter or first # heading). Id:
the page's path and the section's number in it. Questions:
  heading the section's heading, links, markup, numbering ("Task 1.") and
          trailing parentheses ("(--format)") removed, read as a question:
          - a heading that ends with "?" stays as it is;
          - "How to X" -> "How do I X?"; other what/where/when/if headings
            are skipped;
          - an instruction (its first word a verb of HEADING_VERBS, or that
            verb's -ing form) -> "How do I <verb> ...?": "Tag an image" ->
            "How do I tag an image?", "Using ARG variables" -> "How do I use
            ARG variables?", "Do not X" -> "How do I not X?";
          - anything else is a noun phrase -> "What is the ...?", or "What are
            the ...?" when its head (its last word before a preposition) ends
            in "s": "Overlay network limitations" -> "What are the overlay
            network limitations?";
          skipped: headings of fewer than two words, starting with a flag or a
          path, made only of GENERIC_WORDS ("Examples", "Related commands",
          "Known issues"), and every question two sections would ask (in one
          page or two). At most MAX_QUESTIONS questions and MAX_DOCUMENTS
          documents (the smallest SHA-256 of their ids if there were more).

In the FAQ and Docker sets, host names of package archives and registries
(ARCHIVE_HOST) become hosts under example.org, and paths in root's home
directory /srv (ROOT_PATH), so neither is tracked.

  python3 scripts/eval/build-sets.py           writes the sets into eval/
  python3 scripts/eval/build-sets.py --check   rebuilds into a temporary folder and
                                               fails if the committed sets differ
"""

import argparse
import filecmp
import gzip
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
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


# Where Debian packages install their manual pages and their documentation (FHS 3.0,
# sections 4.11.6 and 4.11.4; Debian Policy 12.1 and 12.3), spelled from their parts
# like ROOT_HOME below, so no absolute path is written into a tracked file.
MAN_DIR = os.path.join(os.sep, "usr", "share", "man")
DOC_DIR = os.path.join(os.sep, "usr", "share", "doc")


def man_files(package):
    """The package's English section 1 and 8 pages, symlinks resolved and deduplicated."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout
    pages = {}
    for line in listed.splitlines():
        if re.fullmatch(re.escape(MAN_DIR) + r"/man[18]/[^/]+\.[18][a-z]*\.gz", line):
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
    """Builds every set into out_dir; {set name: counts}."""
    missing = [p for p in PACKAGES + [FAQ_PACKAGE, DOCKER_PACKAGE] if installed(p) is None]
    if missing:
        sys.exit(
            f"packages not installed: {' '.join(missing)}; run apt-get install -y {' '.join(missing)}"
            " (their manual pages and documentation are the corpora)"
        )
    summary = build_man_pages(out_dir)
    summary["debian-faq"] = build_faq(out_dir)
    summary["docker-docs"] = build_docker_docs(out_dir)
    return summary


def build_man_pages(out_dir):
    versions = {}
    pages = {}
    for package in PACKAGES:
        version = installed(package)
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
        text = ARCHIVE_HOST.sub("archive.example.org", text)
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


# --- shared by the FAQ and documentation sets ---

# Package archives and registries are named by host in the upstream texts (Debian's
# archive mirrors in the FAQ, container registries in Docker's pages); the sets name
# none: a host whose first label is one of these, under Debian's domains, and Docker's
# registry hosts become a host under example.org (RFC 2606), so the text still reads
# as a host name.
ARCHIVE_HOST = re.compile(
    r"(?<![\w.-])(?:(?:cdn|deb|ftp|http|httpredir|incoming|security|snapshot)"
    r"(?:\.[a-z]{2})?\.debian\.(?:net|org)"
    r"|(?:[a-z0-9-]+\.)*docker\.io|(?:hub|registry|store)\.docker\.com"
    r"|mcr\.microsoft\.com)(?![\w-])",
    re.I,
)
# Paths in the root account's home directory (ROOT_HOME, e.g. its ".docker" folder or
# a HOME set to it) become /srv, as in the man-page sets, so no home directory's absolute path is tracked; so
# does a top-level "work" directory (one `docker cp` example copies into one), a name
# that workspaces take. Both spelled from their parts, like ROOT_HOME.
ROOT_PATH = re.compile(r"(?<![\w/.-])(?:" + re.escape(ROOT_HOME) + "|" + re.escape(os.sep + "work") + r")(?![\w.-])")


def scrub(text):
    """The text with registry hosts and root's home directory replaced (see above)."""
    text = ARCHIVE_HOST.sub(lambda m: "archive.example.org" if "debian" in m.group(0).lower() else "registry.example.org", text)
    return ROOT_PATH.sub("/srv", text)


def cut_blocks(blocks, max_chars):
    """The markdown blocks joined by blank lines, cut at a block boundary so that they
    hold at most max_chars characters; a cut never leaves a heading last."""
    kept, total = [], 0
    for block in blocks:
        if total + len(block) > max_chars:
            break
        kept.append(block)
        total += len(block)
    while kept and kept[-1].startswith("#"):
        kept.pop()
    return "\n\n".join(kept)


def package_files(package, pattern):
    """The package's regular files (symlinks left out) whose path matches pattern."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True).stdout
    out = []
    for line in listed.splitlines():
        path = Path(line)
        if re.fullmatch(pattern, line) and not path.is_symlink() and path.is_file():
            out.append(path)
    return sorted(out)


def stable_subset(items, limit, key):
    """At most limit items: those with the smallest SHA-256 of key(item), in their
    original order."""
    if len(items) <= limit:
        return items
    chosen = set(sorted(range(len(items)), key=lambda i: hashlib.sha256(key(items[i]).encode()).hexdigest())[:limit])
    return [item for i, item in enumerate(items) if i in chosen]


def write_set(target, docs, questions):
    """Writes corpus.jsonl, queries.jsonl and qrels/test.tsv: docs are
    (id, title, text), questions (kind, text, document id) in the order given;
    question ids are q1, q2, ... in that order. Returns the counts."""
    (target / "qrels").mkdir(parents=True, exist_ok=True)
    ids = [doc_id for doc_id, _, _ in docs]
    assert len(set(ids)) == len(ids), "duplicate document id"
    texts = [text.lower() for _, text, _ in questions]
    assert len(set(texts)) == len(texts), "duplicate question"
    assert all(doc_id in set(ids) for _, _, doc_id in questions), "question without its document"
    with open(target / "corpus.jsonl", "w", encoding="utf-8") as corpus:
        for doc_id, title, text in docs:
            corpus.write(json.dumps({"_id": doc_id, "title": title, "text": text}, ensure_ascii=False) + "\n")
    kinds = {}
    with open(target / "queries.jsonl", "w", encoding="utf-8") as f:
        for i, (kind, text, _) in enumerate(questions, 1):
            f.write(json.dumps({"_id": f"q{i}", "text": text, "metadata": {"kind": kind}}, ensure_ascii=False) + "\n")
            kinds[kind] = kinds.get(kind, 0) + 1
    with open(target / "qrels" / "test.tsv", "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i, (_, _, doc_id) in enumerate(questions, 1):
            f.write(f"q{i}\t{doc_id}\t1\n")
    size = (target / "corpus.jsonl").stat().st_size
    return {"documents": len(docs), "queries": len(questions), **kinds, "corpus_bytes": size}


# --- eval/debian-faq: the Debian FAQ's questions and answers ---

FAQ_PACKAGE = "debian-faq"
FAQ_MIN_DOC_CHARS = 200
FAQ_MAX_DOC_CHARS = 8_000


def is_question(heading):
    """Whether a heading asks something: one of its sentences ends with "?"
    ("... what is Linux?!" and "Why ...? I thought ...!" do)."""
    return re.search(r"\?(?=\s|!|$)", heading) is not None


class FaqChapter(HTMLParser):
    """One chapter of the FAQ as the DocBook XSL stylesheets render it in HTML:
    `title` (its h1) and `sections`, [(level, number, heading, [markdown blocks])]
    in document order, level 2 for h2. Navigation, the table of contents and
    footnotes are left out; a cross reference keeps only its "Section 8.5" (its
    text also quotes the target's question, which would put questions verbatim
    into other answers); a link becomes `[text](address)` outside code, its text
    inside."""

    SKIPPED_CLASSES = {"navheader", "navfooter", "toc", "footnotes", "footnote"}
    VOID = {"br", "hr", "img", "meta", "link", "input", "col", "area", "base"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.title = ""
        self.sections = []
        self.blocks = []  # the current section's (text before the first h2 is dropped)
        self.stack = []  # (tag, skipped)
        self.heading = None
        self.pre = None
        self.inline = []
        self.prefix = ""
        self.xref = None
        self.ulink = None
        self.code = 0  # depth of open code elements: one pair of backticks for the outermost

    def skipping(self):
        return bool(self.stack) and self.stack[-1][1]

    def flush(self):
        text = " ".join("".join(self.inline).split())
        self.inline = []
        if text:
            self.blocks.append(self.prefix + text)
            self.prefix = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        classes = set((attrs.get("class") or "").split())
        skipped = self.skipping() or tag in ("head", "script", "style") or bool(classes & self.SKIPPED_CLASSES)
        if tag not in self.VOID:
            self.stack.append((tag, skipped))
        if skipped:
            return
        if tag in ("h1", "h2", "h3", "h4", "h5"):
            self.flush()
            self.heading = []
        elif tag in ("p", "dt", "dd", "ul", "ol", "div", "table", "tr"):
            self.flush()
        elif tag == "li":
            self.flush()
            self.prefix = "- "
        elif tag == "pre":
            self.flush()
            self.pre = []
        elif tag == "br":
            self.data(" ")
        elif tag == "code" and self.pre is None:
            self.code += 1
            if self.code == 1:
                self.data("`")
        elif tag == "a" and "xref" in classes:
            self.xref = len(self.inline)
        elif tag == "a" and "ulink" in classes and attrs.get("href", "").startswith(("http://", "https://", "ftp://")):
            self.ulink = (len(self.inline), attrs["href"])

    def handle_endtag(self, tag):
        if tag in self.VOID or not self.stack:
            return
        skipped = False
        while self.stack:
            open_tag, skipped = self.stack.pop()
            if open_tag == tag:
                break
        if skipped:
            return
        if tag == "h1":
            self.title = " ".join("".join(self.heading).split())
            self.heading = None
        elif tag in ("h2", "h3", "h4", "h5"):
            text = " ".join("".join(self.heading).split())
            self.heading = None
            m = re.match(r"(\d+(?:\.\d+)*)\.\s+(.*)", text)
            number, heading = (m.group(1), m.group(2)) if m else ("", text)
            self.blocks = []
            self.sections.append((int(tag[1]), number, heading, self.blocks))
        elif tag in ("p", "dt", "dd", "li", "div", "table", "tr"):
            self.flush()
        elif tag == "pre":
            code = "".join(self.pre).strip("\n")
            self.pre = None
            if code.strip():
                self.blocks.append(f"```\n{code}\n```")
        elif tag == "code" and self.pre is None:
            self.code -= 1
            if self.code == 0:
                self.data("`")
        elif tag == "a" and self.xref is not None:
            text = "".join(self.inline[self.xref:])
            m = re.match(r"\s*((?:Section|Chapter|Appendix)\s+[\w.]+)", text)
            if m:
                self.inline[self.xref:] = [m.group(1)]
            self.xref = None
        elif tag == "a" and self.ulink is not None:
            start, href = self.ulink
            text = " ".join("".join(self.inline[start:]).split())
            if text and text != href and not self.code:
                self.inline[start:] = [f"[{text}]({href})"]
            self.ulink = None

    def data(self, text):
        if self.heading is not None:
            self.heading.append(text)
        elif self.pre is not None:
            self.pre.append(text)
        else:
            self.inline.append(text)

    def handle_data(self, data):
        if not self.skipping():
            self.data(data)


def faq_documents(path):
    """[(id, title, text, question or None)] of one chapter file: a section whose
    heading asks a question is one document, its text the answer without the
    heading, with the sections under it that ask none (as `##` headings); a
    section under a question is its own document when it asks one too. Sections
    that ask nothing and are under no question are documents without a question."""
    chapter = FaqChapter()
    chapter.feed(path.read_text(encoding="utf-8"))
    chapter.close()
    title = re.sub(r"^(Chapter|Appendix)\s+\w+\.\s*", "", chapter.title)
    stem = path.name.split(".")[0]
    owners, stack = [], []
    for level, number, heading, blocks in chapter.sections:
        while stack and stack[-1][0] >= level:
            stack.pop()
        if is_question(heading) or not stack:
            owners.append({"level": level, "number": number, "heading": heading, "blocks": list(blocks)})
            stack.append((level, len(owners) - 1))
        else:
            owner = owners[stack[-1][1]]
            depth = min(level - owner["level"] + 1, 4)
            owner["blocks"] += ["#" * depth + " " + heading] + blocks
            stack.append((level, stack[-1][1]))
    out = []
    for owner in owners:
        text = scrub(cut_blocks(owner["blocks"], FAQ_MAX_DOC_CHARS))
        if len(text) < FAQ_MIN_DOC_CHARS:
            continue
        question = owner["heading"] if is_question(owner["heading"]) else None
        out.append((f"{stem}/{owner['number']}", title, text, question))
    return out


def build_faq(out_dir):
    version = installed(FAQ_PACKAGE)
    chapters = []
    for path in package_files(FAQ_PACKAGE, re.escape(DOC_DIR) + r"/debian/FAQ/[a-z-]+\.en\.html"):
        if path.name.startswith("index."):
            continue
        head = path.read_text(encoding="utf-8")[:4000]
        m = re.search(r"<title>(?:Chapter|Appendix)\s+(\w+)\.", head)
        if m:
            chapters.append((int(m.group(1)) if m.group(1).isdigit() else 1000 + ord(m.group(1)[0]), path))
    docs, questions = [], []
    for _, path in sorted(chapters):
        for doc_id, title, text, question in faq_documents(path):
            docs.append((doc_id, title, text))
            if question:
                questions.append(("faq", question, doc_id))
    # A question asked twice (none is in this version) would have two answers: dropped.
    counts = {}
    for _, text, _ in questions:
        counts[text.lower()] = counts.get(text.lower(), 0) + 1
    questions = [q for q in questions if counts[q[1].lower()] == 1]
    target = out_dir / "debian-faq"
    summary = write_set(target, docs, questions)
    write_faq_readme(target, summary, version)
    return summary


def write_faq_readme(target, counts, version):
    (target / "README.md").write_text(
        f"""# debian-faq

A retrieval evaluation set in BEIR format of another kind than the man-page
sets: users' frequently asked questions, as the FAQ's authors put them,
with their answers. Built by
`python3 scripts/eval/build-sets.py` from the Debian GNU/Linux FAQ as the
`{FAQ_PACKAGE}` package ships it in HTML (one file per chapter). `--check`
rebuilds it and fails on any difference.

- `corpus.jsonl`: {counts['documents']} documents, one per FAQ section: the
  answer as markdown (paragraphs, `- ` lists, fenced examples, links) without
  its question heading; sections under it that ask nothing ("8.1.1. dpkg")
  stay in it as `##` headings, sections that ask a question are documents of
  their own. The title is the chapter's ("The Debian package management
  tools"), never the question. Answers shorter than {FAQ_MIN_DOC_CHARS} characters are left out;
  long ones are cut after {FAQ_MAX_DOC_CHARS:,} characters at a block boundary
  ({counts['corpus_bytes']:,} bytes in all). Sections that ask no question
  and are under none ("Authors", "Hardening the system") are documents
  without a question.
- `queries.jsonl`: {counts['queries']} questions (`metadata.kind` "faq"), the
  section headings that ask something (a sentence ending in "?") without their
  number: "How can I find out what package produced a particular file?".
- `qrels/test.tsv`: each question's own section, relevance 1.

Limits: the questions are the FAQ authors' wording, written next to their
answers, so they share the answers' vocabulary more than questions from
users would; several are two questions in one heading, some lean on their
chapter ("What does the unstable distribution contain?" among six questions
about the distributions) and neighbouring answers may answer them too
(judgements are incomplete, so the absolute figures are lower bounds).
Cross references keep only their section number ("see Section 12.1"), since
their text quotes the target's question. Host names of package archives
become hosts under example.org. The set is small: use it to compare modes
and to check that defaults chosen elsewhere hold on it, not to tune on.

| package | version |
| --- | --- |
| {FAQ_PACKAGE} | {version} |
""",
        encoding="utf-8",
    )


# --- eval/docker-docs: Docker's reference documentation, heading questions ---

DOCKER_PACKAGE = "docker-doc"
DOCKER_MIN_DOC_CHARS = 300
DOCKER_MAX_DOC_CHARS = 6_000
MAX_DOCUMENTS = 1_500
MAX_QUESTIONS = 400
# Headings whose words are all of these ("Examples", "Related commands", "Known
# issues", "Default output") have no one answer.
GENERIC_WORDS = {
    "a", "about", "all", "also", "an", "and", "basic", "changelog", "code", "command",
    "commands", "default", "defaults", "description", "details", "example", "examples",
    "exit", "first", "form", "format", "formatting", "general", "get", "go", "guide", "how",
    "information", "introduction", "issues", "known", "limitations", "more", "next", "note",
    "notes", "of", "option", "options", "other", "output", "overview", "prerequisites",
    "readme", "reference", "related", "return", "see", "show", "started", "status", "steps",
    "summary", "the", "this", "tip", "tips", "to", "usage", "use", "values", "what", "where",
}
# Verbs of headings that are instructions ("Tag an image", "Using ARG variables").
HEADING_VERBS = VERBS | {
    "access", "assign", "attach", "attempt", "build", "call", "cancel", "capture", "cherry-pick",
    "clean", "clone", "commit", "configure", "connect", "create", "customize", "debug",
    "deploy", "detach", "develop", "extract", "find", "force-remove", "fork", "format",
    "generate", "get", "import", "initialize", "inspect", "install", "interact", "join",
    "load", "login", "manage", "mount", "override", "perform", "provide", "prune",
    "publish", "pull", "push", "restart", "retrieve", "revoke", "roll", "scale",
    "sign", "squash", "start", "tag", "test", "troubleshoot", "understand", "upgrade",
    "view", "work",
}
# Names kept capitalised at the start of a noun phrase.
PROPER_WORDS = {
    "docker", "dockerfile", "git", "github", "kubernetes", "linux", "moby", "notary",
    "swarm", "windows",
}
# Words after which the head noun of a noun phrase has ended ("Limitations of ...").
PHRASE_BREAKS = {
    "about", "across", "as", "at", "behind", "between", "by", "for", "from", "in", "into",
    "on", "per", "to", "under", "using", "via", "vs", "when", "with", "without",
}
SINGULAR_S = {"aws", "dns", "kubernetes", "status", "windows", "https", "plus", "tls"}


def front_matter(text):
    """(its title or None, the text after it)."""
    m = re.match(r"---\n(.*?)\n---[ \t]*\n", text, re.S)
    if not m:
        return None, text
    title = re.search(r"^title:\s*(.+?)\s*$", m.group(1), re.M)
    return (title.group(1).strip("\"' ") if title else None), text[m.end():]


def markdown_blocks(lines):
    """Paragraphs (and lists, tables) separated by blank lines; a fenced code block is
    one block whatever blank lines it holds."""
    blocks, current, fence = [], [], None
    for line in lines:
        line = line.rstrip()
        marker = re.match(r"\s*(`{3,}|~{3,})", line)
        if fence is None and marker:
            fence = marker.group(1)[0]
        elif fence is not None and marker and marker.group(1)[0] == fence:
            fence = None
        elif fence is None and not line.strip():
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def docker_sections(raw):
    """(page title, [(heading or None, [markdown blocks])]) of one page: front matter,
    HTML comments, Liquid tags ({% raw %}) and kramdown attribute lines ({:.warning})
    removed; sections split at #, ## and ### headings outside code blocks; the
    page's first # heading, or a heading it opens with, is its title (unless the
    front matter names one) and no section. `{{ ... }}` stays: on these pages it is
    the Go template syntax of --format examples, not a site template."""
    title, text = front_matter(raw.replace("\r\n", "\n"))
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    text = re.sub(r"\{%.*?%\}", "", text, flags=re.S)
    text = re.sub(r"<a name=\"[^\"]*\">\s*</a>\s*", "", text)
    lines = [l for l in text.split("\n") if not re.fullmatch(r"\s*\{:[^}]*\}\s*", l)]
    sections = [[None, []]]
    fence, seen_h1, seen_text = None, False, False
    for line in lines:
        marker = re.match(r"\s*(`{3,}|~{3,})", line)
        if marker and fence is None:
            fence = marker.group(1)[0]
        elif marker and marker.group(1)[0] == fence:
            fence = None
        heading = re.fullmatch(r"(#{1,3})\s+(.+?)\s*#*\s*", line) if fence is None else None
        if heading:
            level, words = len(heading.group(1)), heading.group(2)
            if level == 1 and not seen_h1:
                seen_h1 = True
                title = title or words
                continue
            if title is None and not seen_text:
                title = words
                continue
            sections.append([words, []])
            continue
        if line.strip():
            seen_text = True
        sections[-1][1].append(line)
    return title, [(heading, markdown_blocks(body)) for heading, body in sections]


def clean_heading(heading):
    """The heading's words: links, markup, numbering ("Task 1.", "2.") and trailing
    parentheses ("(--format)", "(experimental)") removed."""
    h = re.sub(r"<[^>]+>", "", heading)
    h = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", h)
    h = h.replace("`", "").replace("*", "").replace("\\", "")
    h = re.sub(r"^(?:Task\s+)?\d+(?:\.\d+)*\.?\s+|^Example:\s*", "", h)
    while True:
        shorter = re.sub(r"\s*\([^()]*\)\s*$", "", h)
        if shorter == h:
            break
        h = shorter
    return " ".join(h.split()).rstrip(":.").strip()


def base_verb(word):
    """The verb of an instruction's first word ("tag", "using" -> "use"), or None."""
    w = word.lower()
    if w in HEADING_VERBS:
        return w
    if w.endswith("ing") and len(w) > 4:
        stem = w[:-3]
        for candidate in (stem, stem + "e", stem[:-1] if stem[-1] == stem[-2] else ""):
            if candidate in HEADING_VERBS:
                return candidate
    return None


def heading_question(heading):
    """The question a section heading asks, or None (see the module's docstring)."""
    h = clean_heading(heading)
    words = h.split()
    if len(words) < 2 or not h[0].isalpha() or not re.search(r"\w", words[-1]):
        return None
    if all(w.lower().strip(",;:'\"?") in GENERIC_WORDS for w in words):
        return None
    if h.endswith("?"):
        return re.sub(r"\s+\?$", "?", h)
    first = words[0].lower()
    if first in ("how", "what", "when", "where", "which", "who", "why", "if"):
        if first == "how" and words[1].lower() == "to" and len(words) > 2:
            return f"How do I {' '.join(words[2:])}?"
        return None
    if first == "do" and words[1].lower() == "not" and len(words) > 2:
        return f"How do I not {' '.join(words[2:])}?"
    verb = base_verb(words[0])
    rest = words[1:]
    if verb is None and first.endswith("ly") and base_verb(words[1]):
        verb, rest = f"{first} {base_verb(words[1])}", words[2:]
    if verb is not None and rest and rest[0].lower() not in ("cases", "of"):
        if len(rest) > 1 and rest[0].lower() in ("and", "or") and rest[1].lower().endswith("ing") and base_verb(rest[1]):
            rest = [rest[0], base_verb(rest[1])] + rest[2:]
        return f"How do I {verb} {' '.join(rest)}?"
    # A noun phrase: its head noun is its last word before a preposition.
    head = words[-1]
    for i, w in enumerate(words[1:], 1):
        if w.lower() in PHRASE_BREAKS:
            head = words[i - 1]
            break
    lead = words[0]
    if lead in ("A", "An", "The") or (lead[:1].isupper() and lead[1:].islower() and lead.lower() not in PROPER_WORDS):
        lead = lead.lower()
    phrase = " ".join([lead] + words[1:])
    plural = head.lower().endswith("s") and not head.lower().endswith(("ss", "us", "is")) and head.lower() not in SINGULAR_S
    if first in ("a", "an", "the"):
        return f"What {'are' if plural else 'is'} {phrase}?"
    return f"What {'are' if plural else 'is'} the {phrase}?"


def build_docker_docs(out_dir):
    version = installed(DOCKER_PACKAGE)
    base = os.path.join(DOC_DIR, DOCKER_PACKAGE) + os.sep
    sections = []  # (doc id, page, title, heading, text)
    pages = package_files(DOCKER_PACKAGE, re.escape(base) + r".+\.md(\.gz)?")
    for path in pages:
        page = str(path)[len(base):]
        page = re.sub(r"\.md(\.gz)?$", "", page)
        # The Engine API's versioned references are seven near-copies of one text.
        if re.fullmatch(r"api/v1\.\d+", page):
            continue
        raw = gzip.open(path, "rt", encoding="utf-8").read() if path.suffix == ".gz" else path.read_text(encoding="utf-8")
        title, page_sections = docker_sections(raw)
        title = clean_heading(title or path.name.split(".")[0])
        for n, (heading, blocks) in enumerate(page_sections):
            text = scrub(cut_blocks(blocks, DOCKER_MAX_DOC_CHARS))
            sections.append((f"{page}/{n}", page, title, heading, text))

    # A question that two sections ask (in one page or two) has no one answer.
    asked = {}
    for doc_id, page, _, heading, _ in sections:
        q = heading_question(heading) if heading else None
        if q:
            asked.setdefault(q.lower(), []).append(doc_id)
    docs, questions = [], []
    for doc_id, page, title, heading, text in sections:
        if len(text) < DOCKER_MIN_DOC_CHARS:
            continue
        docs.append((doc_id, title, text))
        q = heading_question(heading) if heading else None
        if q and len(asked[q.lower()]) == 1:
            questions.append(("heading", q, doc_id))
    questions = stable_subset(questions, MAX_QUESTIONS, lambda q: q[2])
    answered = {doc_id for _, _, doc_id in questions}
    others = stable_subset([d for d in docs if d[0] not in answered], max(0, MAX_DOCUMENTS - len(answered)), lambda d: d[0])
    kept = answered | {d[0] for d in others}
    docs = [d for d in docs if d[0] in kept]
    target = out_dir / "docker-docs"
    summary = write_set(target, docs, questions)
    write_docker_readme(target, summary, version)
    return summary


def write_docker_readme(target, counts, version):
    (target / "README.md").write_text(
        f"""# docker-docs

A retrieval evaluation set in BEIR format of another kind than the man-page
sets: sections of product documentation in markdown, asked for by their
headings. Built by `python3 scripts/eval/build-sets.py` from the markdown
pages of Docker's reference documentation (the command line, the Dockerfile
and `docker run` references, the plugin API, deprecated features, the
glossary, the contributor guide) as the `{DOCKER_PACKAGE}` package ships
them. `--check` rebuilds it and fails on any difference.

- `corpus.jsonl`: {counts['documents']} documents, one per section of a page:
  pages are split at their `#`, `##` and `###` headings outside code blocks
  (the text before the first one is a section too); a document's text is the
  section's markdown without its heading line (deeper headings stay), its
  title the page's (`run`, `Dockerfile reference`), never the section's.
  Front matter, HTML comments, Liquid tags and kramdown attribute lines are
  removed; sections shorter than {DOCKER_MIN_DOC_CHARS} characters are left out, long ones cut
  after {DOCKER_MAX_DOC_CHARS:,} characters at a block boundary ({counts['corpus_bytes']:,} bytes in all).
  The Engine API's versioned references (`api/v1.18` to `v1.24`, seven
  near-copies of one text) are left out. Ids are the page's path and the
  section's number in it (`reference/commandline/logs/3`).
- `queries.jsonl`: {counts['queries']} questions (`metadata.kind` "heading"), one per
  section heading that reads as one, judged answered by that section
  (relevance 1): an instruction becomes "How do I ...?" ("Tag an image for
  a private repository", "Using ARG variables" -> "How do I use ARG
  variables?"), a noun phrase "What is the ...?" or, when plural, "What are
  the ...?" ("Overlay network limitations"); a heading that already asks
  keeps its words. Trailing parentheses ("(--format)") and numbering are
  removed. Headings without one answer are skipped: generic ones
  ("Examples", "Related commands", "Known issues"), those of fewer than two
  words or starting with a flag or path, "What/Where/When ..." phrases, and
  every question that two sections would ask. At most {MAX_QUESTIONS} questions and
  {MAX_DOCUMENTS:,} documents (a subset by SHA-256 of the id if there were more).
- `qrels/test.tsv`: each question's own section, relevance 1.

Limits: the questions come from the headings above the answers, so they
share their words with the answer's neighbourhood and with the page's
other sections; a question about one command's option may be answered by
another page too (`run` and `create` share many options; judgements are
incomplete, so the absolute figures are lower bounds). The rules are
mechanical: some questions read awkwardly ("How do I clean up?"), and the
noun-phrase rule only guesses plurals from a final "s". One page (the
Engine API's version history) gives a run of questions that only a version
number tells apart ("What are the v1.41 API changes?"). Host names of
container registries become hosts under example.org, and paths in root's
home directory (and one example's top-level `work` directory) `/srv`, as in
the man-page sets.

| package | version |
| --- | --- |
| {DOCKER_PACKAGE} | {version} |
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
                    committed = OUT / set_name / rel
                    if not committed.is_file() or not filecmp.cmp(Path(tmp) / set_name / rel, committed, shallow=False):
                        different.append(f"{set_name}/{rel}")
            if different:
                sys.exit(f"the rebuilt sets differ from the committed ones: {', '.join(different)}")
            print("the committed sets are what the script builds")
        return
    print(json.dumps(build(OUT)))


if __name__ == "__main__":
    main()
