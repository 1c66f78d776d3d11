"""Label spaces for speaker profiling: gender, age sub-groups and their super-groups.

Everything here is configured from YAML, never hard-coded: the gender labels, the age
sub-group bins (name + inclusive age range) and the sub-to-super hierarchy.

Example (YAML)::

    label_space: !new:recipes.labels.LabelSpace
        genders: [f, m]
        age_bins:
            child: [6, 9]
            teen: [10, 19]
            young_adult: [20, 24]
            adult: [25, 120]
        hierarchy:
            minor: [child, teen]
            adult: [young_adult, adult]
"""

import torch

# the classification tasks of every label space, in head order; the two age tasks are ordered
# groups (MACE is defined on them)
TASKS = ("gender", "age_sup", "age_sub")
AGE_TASKS = ("age_sup", "age_sub")
MISSING = -1  # class index of a label the utterance's corpus does not have: no loss, not scored


class LabelError(ValueError):
    """A label that does not fit the configured label space."""


class LabelSpace:
    """Maps raw labels (gender string, age in years or age-group name) to class indices.

    Arguments
    ---------
    genders : list of str
        Gender class names, in index order (e.g. ``[f, m]``).
    age_bins : dict
        Sub-group name -> ``[min_age, max_age]`` (inclusive, years). Order = index order.
    hierarchy : dict
        Super-group name -> list of sub-group names. Every sub-group must belong to
        exactly one super-group.
    gender_aliases : dict, optional
        Extra spellings mapped onto a gender name (e.g. ``{female: f, male: m}``).
    """

    def __init__(self, genders, age_bins, hierarchy, gender_aliases=None):
        self.genders = [str(g) for g in genders]
        self.age_sub = [str(k) for k in age_bins]
        self.age_bins = {str(k): (float(v[0]), float(v[1])) for k, v in age_bins.items()}
        self.age_sup = [str(k) for k in hierarchy]
        aliases = {"female": "f", "male": "m", "woman": "f", "man": "m"}
        aliases.update(gender_aliases or {})
        self.gender_aliases = {str(k).lower(): str(v) for k, v in aliases.items()}
        self.sub_to_sup = {}
        for sup, subs in hierarchy.items():
            for sub in subs:
                if str(sub) not in self.age_bins:
                    raise LabelError(f"hierarchy: super-group {sup!r} lists unknown age bin {sub!r}")
                if str(sub) in self.sub_to_sup:
                    raise LabelError(f"hierarchy: age bin {sub!r} is in two super-groups")
                self.sub_to_sup[str(sub)] = str(sup)
        missing = [s for s in self.age_sub if s not in self.sub_to_sup]
        if missing:
            raise LabelError(f"hierarchy: age bins {missing} belong to no super-group")
        ranges = sorted(self.age_bins.values())
        for (lo1, hi1), (lo2, hi2) in zip(ranges, ranges[1:]):
            if lo2 <= hi1:
                raise LabelError(f"age_bins overlap: [{lo1}, {hi1}] and [{lo2}, {hi2}]")

    # ---- sizes and the hierarchy matrix -------------------------------------------
    @property
    def n_gender(self):
        return len(self.genders)

    @property
    def n_sub(self):
        return len(self.age_sub)

    @property
    def n_sup(self):
        return len(self.age_sup)

    def parent_index(self):
        """LongTensor (n_sub,): index of the super-group of each sub-group."""
        return torch.tensor(
            [self.age_sup.index(self.sub_to_sup[s]) for s in self.age_sub], dtype=torch.long
        )

    # ---- raw label -> index --------------------------------------------------------
    def gender_index(self, value):
        g = str(value).strip()
        g = self.gender_aliases.get(g.lower(), g)
        if g not in self.genders:
            low = g.lower()
            if low in self.genders:
                g = low
            else:
                raise LabelError(f"unknown gender label {value!r} (expected one of {self.genders})")
        return self.genders.index(g)

    def sub_index_from_age(self, age):
        a = float(age)
        for i, name in enumerate(self.age_sub):
            lo, hi = self.age_bins[name]
            if lo <= a <= hi:
                return i
        raise LabelError(f"age {age} is outside every age bin {self.age_bins}")

    def sub_index(self, age=None, age_group=None):
        """Sub-group index from an age in years, or else from an age-group name."""
        if age not in (None, ""):
            try:
                float(age)
            except ValueError:
                raise LabelError(f"age {age!r} is not a number")
            return self.sub_index_from_age(age)
        if age_group not in (None, ""):
            if str(age_group) not in self.age_sub:
                raise LabelError(f"unknown age group {age_group!r} (expected one of {self.age_sub})")
            return self.age_sub.index(str(age_group))
        raise LabelError("neither age nor age_group is given")

    def sup_index(self, sub_index):
        return self.age_sup.index(self.sub_to_sup[self.age_sub[sub_index]])

    def sub_map_to(self, other):
        """For each age sub-group here, the index of ``other``'s sub-group that holds the middle
        of its bin (scores a model in another label space, e.g. child and teen -> teens). Lossy
        from wide bins to narrow ones: teens [0, 18] has its middle at 9, so it goes to child."""
        return [other.sub_index_from_age(sum(self.age_bins[name]) / 2) for name in self.age_sub]

    def to_space(self, other, gender, sub):
        """(gender, sup, sub) indices in ``other`` of gender and sub-group indices here
        (LongTensors): gender by name, sub-group by ``sub_map_to``, super-group its parent there."""
        genders = torch.tensor([other.gender_index(g) for g in self.genders])
        new_sub = torch.tensor(self.sub_map_to(other))[sub]
        return genders[gender], other.parent_index()[new_sub], new_sub

    def to_dict(self):
        """A plain description, saved with a trained model (inference needs no YAML)."""
        return {
            "genders": self.genders,
            "age_bins": {k: list(v) for k, v in self.age_bins.items()},
            "hierarchy": {s: [b for b in self.age_sub if self.sub_to_sup[b] == s] for s in self.age_sup},
        }

    @classmethod
    def from_dict(cls, d):
        return cls(d["genders"], d["age_bins"], d["hierarchy"])
