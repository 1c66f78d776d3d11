"""Speaker-disjoint splits, stratified so every (gender, age) cell reaches every split."""

import random
from collections import defaultdict

from recipes.data.manifest import ManifestError


def speaker_split(rows, ratios=(0.8, 0.1, 0.1), names=("train", "valid", "test"), seed=1234,
                  strat_key=None):
    """Assign whole speakers to splits. Returns dict split name -> list of rows.

    strat_key(row) -> hashable: speakers are shuffled and dealt per stratum, so each
    stratum with at least len(ratios) speakers has one in every split. A split that the
    strata leave empty (small strata round to 0) gets one speaker from the largest split;
    fewer speakers than splits is a ManifestError saying how many are needed.
    """
    assert abs(sum(ratios) - 1.0) < 1e-6, "split ratios must sum to 1"
    by_spk = defaultdict(list)
    for row in rows:
        by_spk[row["spk_id"]].append(row)
    strata = defaultdict(list)
    for spk, spk_rows in sorted(by_spk.items()):
        try:
            key = strat_key(spk_rows[0]) if strat_key else 0
        except (ValueError, TypeError, KeyError) as err:
            raise ValueError(f"stratification of speaker {spk!r} (utterance {spk_rows[0].get('ID')!r}, "
                             f"{spk_rows[0].get('wav')}): {err}") from None
        strata[key].append(spk)
    rng = random.Random(seed)
    out = {name: [] for name in names}
    for key in sorted(strata, key=str):
        spks = strata[key]
        rng.shuffle(spks)
        counts = [int(round(r * len(spks))) for r in ratios]
        if len(spks) >= len(ratios):  # at least one speaker per split
            for i in range(1, len(counts)):
                counts[i] = max(counts[i], 1)
        counts[0] = len(spks) - sum(counts[1:])
        start = 0
        for name, c in zip(names, counts):
            for spk in spks[start:start + c]:
                out[name].extend(by_spk[spk])
            start += c
    wanted = [name for name, r in zip(names, ratios) if r > 0]
    if len(by_spk) < len(wanted):
        raise ManifestError(f"{len(by_spk)} speaker(s) cannot fill the {len(wanted)} speaker-disjoint splits "
                            f"{wanted} (ratios {list(ratios)}): at least {len(wanted)} speakers are needed, "
                            f"and about {min_speakers(ratios)} for every split to get its share")
    for name in wanted:
        if not out[name]:  # every stratum rounded this split's share to 0 speakers
            donor = max(names, key=lambda n: len({r["spk_id"] for r in out[n]}))
            spk = sorted({r["spk_id"] for r in out[donor]})[-1]
            out[name] = [r for r in out[donor] if r["spk_id"] == spk]
            out[donor] = [r for r in out[donor] if r["spk_id"] != spk]
    return out


def min_speakers(ratios):
    """Speakers for the smallest non-zero ratio to round to at least one speaker."""
    smallest = min(r for r in ratios if r > 0)
    return max(len([r for r in ratios if r > 0]), int(0.5 / smallest + 0.999))
