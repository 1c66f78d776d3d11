"""Audio screening for corpus preparation: duration filter and bad-file detection.

Too short / too long utterances are filtered with a count. Missing, unreadable,
truncated, empty, non-finite (NaN/inf) or speechless audio is an error naming the file
and the input row, unless ``skip_bad=True``, which drops those rows and reports them.
"Speechless" is the one definition of recipes/data/speech.py (fewer than
``min_speech_seconds`` of frames above the thresholds), the same that training crops use.
Every dropped row, with its reason, can be collected (``dropped`` list) and written next
to the manifests (``write_dropped``: dropped.csv).
"""

import csv
import logging
import os

from recipes.data.audio import AudioError, audio_info, load_audio, wav_truncated
from recipes.data.manifest import ManifestError
from recipes.data.speech import NonFiniteAudio, SpeechConfig, speech_problem

logger = logging.getLogger(__name__)
BAD_REASONS = ("missing", "unreadable", "truncated", "non_finite", "silent")
DROPPED_COLUMNS = ("source", "row", "ID", "wav", "reason", "detail")


def screen_row(row, min_duration, max_duration, check_silence=True, speech=None, sample_rate=None):
    """(reason, detail) why a row is dropped, or (None, duration_seconds)."""
    path = row["wav"]
    if not os.path.isfile(path):
        return "missing", f"audio file not found: {path}"
    trunc = wav_truncated(path)
    if trunc:
        return "truncated", trunc
    try:
        dur, sr, _ = audio_info(path)
    except AudioError as err:
        return "unreadable", str(err)
    if dur <= 0:
        return "unreadable", f"empty audio {path}"
    if dur < min_duration:
        return "too_short", f"{dur:.3f} s < {min_duration} s: {path}"
    if dur > max_duration:
        return "too_long", f"{dur:.3f} s > {max_duration} s: {path}"
    if not check_silence:
        return None, dur
    rate = sample_rate or sr
    try:
        wav = load_audio(path, rate)
        problem = speech_problem(wav, rate, speech, name=path)
    except NonFiniteAudio as err:
        return "non_finite", str(err)
    except AudioError as err:
        return ("non_finite" if "non-finite" in str(err) else "unreadable"), str(err)
    if problem:
        return "silent", problem
    return None, wav.numel() / float(rate)


def screen_rows(rows, min_duration=1.0, max_duration=20.0, skip_bad=False, source="input",
                check_silence=True, speech=None, sample_rate=None, dropped=None):
    """rows: list of (row_number, dict with 'wav' and optionally '_source', the input file
    that row_number refers to, else ``source``). Fills 'duration'; returns kept rows.

    speech: SpeechConfig / dict (None: defaults); sample_rate: rate the speech decision is
    made at (None: the file's). dropped: optional list, extended with one dict per dropped
    row (DROPPED_COLUMNS). Returns (kept, report); report counts kept, too_short,
    too_long, bad and each bad reason.
    """
    speech = SpeechConfig.coerce(speech)
    kept, bad, lost = [], [], []
    report = {"too_short": 0, "too_long": 0, "bad": 0, **{r: 0 for r in BAD_REASONS}}
    for n, row in rows:
        src = row.pop("_source", None) or source  # a row may name its own input file
        reason, detail = screen_row(row, min_duration, max_duration, check_silence, speech, sample_rate)
        if reason is None:
            row["duration"] = f"{detail:.3f}"
            kept.append(row)
            continue
        report[reason] += 1
        lost.append({"source": src, "row": n, "ID": row.get("ID", ""), "wav": row["wav"],
                     "reason": reason, "detail": detail})
        if reason in BAD_REASONS:
            bad.append(f"{src}, row {n}: {detail}")
    report["bad"] = len(bad)
    report["kept"] = len(kept)
    if bad and not skip_bad:
        extra = f"\n... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ManifestError(f"{len(bad)} unusable audio file(s) (use skip_bad to drop them):\n"
                            + "\n".join(bad[:20]) + extra)
    if dropped is not None:
        dropped.extend(lost)
    for line in bad:
        logger.warning("dropped: %s", line)
    logger.info("%s: kept %d, filtered %d too short (< %.1f s), %d too long (> %.1f s), dropped %d bad %s",
                source, report["kept"], report["too_short"], min_duration, report["too_long"],
                max_duration, report["bad"], {r: report[r] for r in BAD_REASONS if report[r]})
    return kept, report


def write_dropped(save_folder, dropped):
    """save_folder/dropped.csv: every row left out of the manifests and why; returns its path."""
    path = os.path.join(save_folder, "dropped.csv")
    os.makedirs(save_folder, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=DROPPED_COLUMNS, extrasaction="ignore")
        w.writeheader()
        for d in dropped:
            w.writerow({c: d.get(c, "") for c in DROPPED_COLUMNS})
    os.replace(tmp, path)
    if dropped:
        logger.info("%d dropped row(s) listed in %s", len(dropped), path)
    return path


def add_screening_args(ap):
    """The command-line options every local/ preparation script shares (argparse parser)."""
    ap.add_argument("save_folder")
    ap.add_argument("--min-duration", type=float, default=1.0)
    ap.add_argument("--max-duration", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--skip-bad", action="store_true",
                    help="drop unusable audio (missing, unreadable, truncated, speechless) instead of failing")
    ap.add_argument("--speech-floor-dbfs", type=float, default=SpeechConfig.floor_dbfs,
                    help="a frame below this RMS level is non-speech (recipes/data/speech.py)")
    ap.add_argument("--speech-threshold-db", type=float, default=SpeechConfig.threshold_db,
                    help="a frame this many dB below the file's loudest frame is non-speech")
    ap.add_argument("--min-speech-seconds", type=float, default=SpeechConfig.min_speech_seconds,
                    help="a file with less speech than this is dropped")
    return ap


def speech_from_args(args):
    """The SpeechConfig given by the options of add_screening_args."""
    return SpeechConfig(floor_dbfs=args.speech_floor_dbfs, threshold_db=args.speech_threshold_db,
                        min_speech_seconds=args.min_speech_seconds)
