"""The repository speaks to its users only: no absolute paths of the machine a result was
produced on, no pointer to folders outside the repository, no words of an issue tracker the
users do not have (a ticket number, or a goal called by a tracker's name: say "goal" and
give the figure)."""

import os
import re
import subprocess

import pytest

from conftest import ROOT

THIS = os.path.relpath(__file__, ROOT)
# absolute paths of a machine (home, scratch and work folders), in committed text and results
MACHINE_PATH = re.compile(r"(?<![\w.~])/(?:work|home|tmp|Users|root|mnt|scratch)/[\w.-]+")
# a folder outside the repository that users do not have (cite papers by title and arXiv id)
OUTSIDE = re.compile(r"\.\./shared/papers")
TRACKER = [re.compile(p, re.IGNORECASE) for p in (
    r"\bissues?\s*#?\d+\b",                                       # a ticket number, with or without #
    r"\b(?:from|in) the issue\b|\bthe issue's\b",                 # "points from the issue"
    r"\btargets?\s+(?:is\s+|was\s+|are\s+)?(?:not\s+)?(?:met|reached)\b",  # a target said to be (not) met
    r"\btargets?\s+[\d.]+\s*x?\s*:",                               # "target 2x: not met"
    r"\b\d{3} target\b",                                            # "the 002 target"
    r"\btarget of (?:paper )?\d{3}\b",                             # "Target of 002"
    r"\b(?:is|was|not) met\b",                                     # "... is met", "not met"
)]
TEXT_EXT = (".md", ".py", ".yaml", ".yml", ".txt", ".csv", ".json", ".cfg", ".toml", ".ini", ".sh", "")


def tracked_text_files():
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as err:
        pytest.skip(f"not a git checkout ({err})")
    for rel in out.splitlines():
        path = os.path.join(ROOT, rel)
        if rel == THIS or not os.path.isfile(path) or os.path.splitext(rel)[1].lower() not in TEXT_EXT:
            continue
        try:
            with open(path, encoding="utf-8") as f:
                yield rel, f.read().splitlines()
        except UnicodeDecodeError:
            continue  # binary


def offending_lines(patterns, only_ext=None):
    hits = []
    for rel, lines in tracked_text_files():
        if only_ext and not rel.endswith(only_ext):
            continue
        for n, line in enumerate(lines, 1):
            for pat in patterns:
                m = pat.search(line)
                if m:
                    hits.append(f"{rel}:{n}: {m.group(0)!r} in {line.strip()[:120]!r}")
                    break
    return hits


def test_no_machine_paths_in_committed_documents():
    hits = offending_lines([MACHINE_PATH], only_ext=".md")
    assert not hits, "absolute machine paths (write paths relative to the repository root):\n" + "\n".join(hits)


def test_no_pointer_outside_the_repository():
    hits = offending_lines([OUTSIDE])
    assert not hits, "links to ../shared/papers (cite title, authors and arXiv id instead):\n" + "\n".join(hits)


def test_no_tracker_words():
    hits = offending_lines(TRACKER)
    assert not hits, "issue-tracker words (say 'goal' and give the figure):\n" + "\n".join(hits)


def test_the_patterns_catch_what_they_should():
    # the tracker phrases are assembled here, so this file itself holds none of them
    issue, target, met = "is" + "sue", "tar" + "get", "m" + "et"
    bad = [f"Targets ({issue} 6):", f"the 1.35x {target} is {met}", f"{target} 2x: not {met}", f"see {issue} #12",
           f"Reference points from the {issue}", f"{target.title()} of 002 for x", f"the 002 {target} (>= 10x"]
    good = ["Goal: under 2 minutes", "target and non-target trials", "the teacher's target is its view",
            "integer targets (batch,)", "a KD target", "def targets(self, batch):",
            "half target (same speaker)", "the goal of paper 002 is not reached"]
    assert all(any(p.search(s) for p in TRACKER) for s in bad)
    assert not any(p.search(s) for p in TRACKER for s in good)
    assert MACHINE_PATH.search("--output_folder=/work/main/results/x")
    assert not MACHINE_PATH.search("results/bench/tmp/x") and not MACHINE_PATH.search("~/tmp/x")


def test_document_links_point_at_files_that_exist():
    docs = [rel for rel, _ in tracked_text_files() if rel.endswith(".md")]
    missing = []
    for rel in docs:
        with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                for target in re.findall(r"\]\(([^)#\s]+)\)", line):
                    if "://" in target:
                        continue
                    if not os.path.exists(os.path.join(ROOT, os.path.dirname(rel), target)):
                        missing.append(f"{rel}:{n}: {target}")
    assert not missing, "links to missing files:\n" + "\n".join(missing)
