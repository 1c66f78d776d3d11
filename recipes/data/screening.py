"""Audio screening for corpus preparation: duration filter and bad-file detection.

Too short / too long utterances are filtered with a count. Missing, unreadable, empty
or all-silent audio is an error naming the file and the input row, unless
``skip_bad=True``, which drops those rows and reports them.
"""

import logging

from recipes.data.audio import AudioError, audio_info, check_signal, load_audio
from recipes.data.manifest import ManifestError

logger = logging.getLogger(__name__)


def screen_rows(rows, min_duration=1.0, max_duration=20.0, skip_bad=False, source="input",
                check_silence=True):
    """rows: list of (row_number, dict with 'wav'). Fills 'duration'; returns kept rows.

    Returns (kept, report) with report counts: kept, too_short, too_long, bad.
    """
    kept, bad = [], []
    report = {"too_short": 0, "too_long": 0, "bad": 0}
    for n, row in rows:
        try:
            dur, sr, _ = audio_info(row["wav"])
            if dur <= 0:
                raise AudioError(f"empty audio {row['wav']}")
            if check_silence:
                check_signal(load_audio(row["wav"], sr), row["wav"])
        except AudioError as err:
            bad.append(f"{source}, row {n}: {err}")
            continue
        if dur < min_duration:
            report["too_short"] += 1
            continue
        if dur > max_duration:
            report["too_long"] += 1
            continue
        row["duration"] = f"{dur:.3f}"
        kept.append(row)
    report["bad"] = len(bad)
    report["kept"] = len(kept)
    if bad and not skip_bad:
        extra = f"\n... and {len(bad) - 20} more" if len(bad) > 20 else ""
        raise ManifestError(f"{len(bad)} unusable audio file(s) (use skip_bad to drop them):\n"
                            + "\n".join(bad[:20]) + extra)
    for line in bad:
        logger.warning("dropped: %s", line)
    logger.info("%s: kept %d, filtered %d too short (< %.1f s), %d too long (> %.1f s), dropped %d bad",
                source, report["kept"], report["too_short"], min_duration, report["too_long"],
                max_duration, report["bad"])
    return kept, report


def add_screening_args(ap):
    """The command-line options every local/ preparation script shares (argparse parser)."""
    ap.add_argument("save_folder")
    ap.add_argument("--min-duration", type=float, default=1.0)
    ap.add_argument("--max-duration", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--skip-bad", action="store_true", help="drop unusable audio instead of failing")
    return ap
