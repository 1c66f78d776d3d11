"""Task heads: one dense block per task (Linear, BatchNorm, LeakyReLU, Dropout), then a
classifier, for gender, age super-group and age sub-group (paper 004, Section 4)."""

import torch


class TaskHead(torch.nn.Module):
    """Dense block + linear classifier. ``hidden`` is the probing "heads" layer."""

    def __init__(self, input_size, n_classes, hidden_size=256, dropout=0.2):
        super().__init__()
        self.hidden = torch.nn.Sequential(
            torch.nn.Linear(input_size, hidden_size),
            torch.nn.BatchNorm1d(hidden_size),
            torch.nn.LeakyReLU(),
            torch.nn.Dropout(dropout),
        )
        self.classifier = torch.nn.Linear(hidden_size, n_classes)

    def forward(self, x):
        return self.classifier(self.hidden(x))


class ProfilingHeads(torch.nn.Module):
    """The three heads on a shared embedding; class counts come from the LabelSpace."""

    tasks = ("gender", "age_sup", "age_sub")

    def __init__(self, input_size, label_space, hidden_size=256, dropout=0.2):
        super().__init__()
        sizes = {"gender": label_space.n_gender, "age_sup": label_space.n_sup,
                 "age_sub": label_space.n_sub}
        self.heads = torch.nn.ModuleDict(
            {t: TaskHead(input_size, sizes[t], hidden_size, dropout) for t in self.tasks})

    def forward(self, emb):
        """emb (batch, input_size) -> dict task -> logits (batch, n_classes)."""
        return {t: self.heads[t](emb) for t in self.tasks}
