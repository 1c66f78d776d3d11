"""Speaker verification per layer (paper 000): length-normalised embeddings, cosine scores,
same-gender trials balanced between target and non-target, EER (SpeechBrain's EER)."""

import numpy as np
import torch
from speechbrain.utils.metric_stats import EER


def make_trials(speakers, genders, n_trials=2000, seed=0):
    """(i, j, is_target) pairs: half target (same speaker), half non-target (another
    speaker of the same gender)."""
    rng = np.random.default_rng(seed)
    speakers, genders = np.asarray(speakers), np.asarray(genders)
    by_spk = {s: np.flatnonzero(speakers == s) for s in np.unique(speakers)}
    multi = [s for s, idx in by_spk.items() if len(idx) >= 2]
    trials = []
    while len(trials) < n_trials // 2:
        s = multi[rng.integers(len(multi))]
        i, j = rng.choice(by_spk[s], 2, replace=False)
        trials.append((int(i), int(j), 1))
    for _ in range(10 * n_trials):
        if len(trials) >= n_trials:
            break
        i = int(rng.integers(len(speakers)))
        same_g = np.flatnonzero((genders == genders[i]) & (speakers != speakers[i]))
        if len(same_g):
            trials.append((i, int(rng.choice(same_g)), 0))
    return np.array(trials, dtype=int)


def eer(x, trials):
    """EER (0..1) of cosine scoring of the rows of x over the trials."""
    x = torch.as_tensor(np.asarray(x), dtype=torch.float32)
    x = x - x.mean(0)
    x = torch.nn.functional.normalize(x, dim=1)
    t = torch.as_tensor(trials)
    scores = (x[t[:, 0]] * x[t[:, 1]]).sum(1)
    pos, neg = scores[t[:, 2] == 1], scores[t[:, 2] == 0]
    return float(EER(pos, neg)[0])
