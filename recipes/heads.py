"""Task heads: one dense block per task (Linear, BatchNorm, LeakyReLU, Dropout), then a
classifier, for gender, age super-group and age sub-group (paper 004, Section 4); optionally
an age-in-years regression head beside them (recipes/age.py)."""

import torch

from recipes.age import AGE_KEY, AGE_LOSSES
from recipes.labels import TASKS
from recipes.config.choices import check_choice
from recipes.ordinal import DECODES


class TaskHead(torch.nn.Module):
    """Dense block + linear classifier. ``hidden`` is the probing "heads" layer.

    ``layer_norm: True`` puts a LayerNorm (paper 002 Eq. 1, Section II-A) in place of the
    BatchNorm before the non-linearity; False (default) keeps the checkpoint layout.
    """

    def __init__(self, input_size, n_classes, hidden_size=256, dropout=0.2, layer_norm=False):
        super().__init__()
        norm = torch.nn.LayerNorm(hidden_size) if layer_norm else torch.nn.BatchNorm1d(hidden_size)
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(input_size, hidden_size),
            norm,
            torch.nn.LeakyReLU(),
            torch.nn.Dropout(dropout),
        )
        self.classifier = torch.nn.Linear(hidden_size, n_classes)

    def forward(self, x):
        return self.classifier(self.hidden(x))


class AgeHead(TaskHead):
    """Age in years (recipes/age.py): a TaskHead with 1 output, ``center + scale * z`` years
    (the output starts near ``center``), or with ``predict_sigma`` 2: years and sigma =
    ``scale * softplus(z2) + min_sigma`` years."""

    def __init__(self, input_size, hidden_size=256, dropout=0.2, layer_norm=False, predict_sigma=False,
                 center=40.0, scale=20.0, min_sigma=1.0):
        super().__init__(input_size, 2 if predict_sigma else 1, hidden_size, dropout, layer_norm)
        self.center, self.scale, self.min_sigma = float(center), float(scale), float(min_sigma)
        self.predict_sigma = bool(predict_sigma)

    def forward(self, x):
        z = super().forward(x)
        years = self.center + self.scale * z[:, :1]
        if not self.predict_sigma:
            return years
        sigma = self.scale * torch.nn.functional.softplus(z[:, 1:]) + self.min_sigma
        return torch.cat([years, sigma], dim=1)


class ProfilingHeads(torch.nn.Module):
    """The three heads on a shared embedding; class counts come from the LabelSpace.

    ``age_regression: True`` adds ``age`` (AgeHead: years, and sigma with
    ``age_loss: gaussian_nll``); off, the module and its state dict are the three heads only
    (older checkpoints load).

    ``age_sub_decode`` (``argmax`` | ``median``, recipes/ordinal.py) is how the age sub-group
    head's probabilities become one group; it is a setting, not a weight (``decode``: task ->
    how), kept in inference.yaml with the heads, so evaluation and inference decode alike."""

    tasks = TASKS

    def __init__(self, input_size, label_space, hidden_size=256, dropout=0.2, layer_norm=False,
                 age_regression=False, age_loss="l1", age_center=40.0, age_scale=20.0, age_min_sigma=1.0,
                 age_sub_decode="argmax"):
        super().__init__()
        self.decode = {"gender": "argmax", "age_sup": "argmax",
                       "age_sub": check_choice("age_sub_decode", age_sub_decode, DECODES)}
        self.input_size = int(input_size)
        sizes = {"gender": label_space.n_gender, "age_sup": label_space.n_sup,
                 "age_sub": label_space.n_sub}
        self.heads = torch.nn.ModuleDict(
            {t: TaskHead(input_size, sizes[t], hidden_size, dropout, layer_norm) for t in self.tasks})
        check_choice("age_loss", age_loss, AGE_LOSSES)
        self.age = (AgeHead(input_size, hidden_size, dropout, layer_norm, age_loss == "gaussian_nll",
                            age_center, age_scale, age_min_sigma) if age_regression else None)

    def set_input_size(self, input_size):
        """Rebuild the first layer of every head for inputs of ``input_size`` (an MKD student
        whose heads read [student; teacher], sized when its teacher is known); a no-op when
        the size is already that."""
        if int(input_size) == self.input_size:
            return
        self.input_size = int(input_size)
        for head in [*self.heads.values(), *([self.age] if self.age is not None else [])]:
            head.hidden[0] = torch.nn.Linear(self.input_size, head.hidden[0].out_features)

    def forward(self, emb):
        """emb (batch, input_size) -> dict task -> logits (batch, n_classes); with the age
        head also ``age_years`` -> (batch, 1 or 2): years [and sigma]."""
        out = {t: self.heads[t](emb) for t in self.tasks}
        if self.age is not None:
            out[AGE_KEY] = self.age(emb)
        return out

    def replacing_groups(self):
        """Module replacing (paper 003): each task head is one replaceable module."""
        return [[f"heads.{t}"] for t in self.tasks] + ([["age"]] if self.age is not None else [])
