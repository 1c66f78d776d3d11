"""Linear probes with elastic-net penalties (paper 001, Eq. 1), vectorised in torch.

L = CE + lambda1 * ||W||_1 + lambda2 * ||W||_2^2, trained with Adam on standardised
features (paper 001: Adam, 20 epochs, batch 128, lambda = 1e-5).
"""

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import accuracy_score, f1_score


class ElasticNetProbe:
    def __init__(self, l1=1e-5, l2=1e-5, epochs=20, batch_size=128, lr=1e-3, seed=0, min_steps=500):
        """min_steps: train for more epochs when the data set is small (20 epochs of a few
        hundred utterances are only a few dozen Adam steps)."""
        self.l1, self.l2, self.epochs, self.bs, self.lr, self.seed = l1, l2, epochs, batch_size, lr, seed
        self.min_steps = min_steps

    def fit(self, x, y, n_classes=None):
        g = torch.Generator().manual_seed(self.seed)
        x = torch.as_tensor(x, dtype=torch.float32)
        y = torch.as_tensor(y, dtype=torch.long)
        self.mu, self.sd = x.mean(0), x.std(0).clamp(min=1e-6)
        x = (x - self.mu) / self.sd
        k = n_classes or int(y.max()) + 1
        self.W = torch.zeros(k, x.shape[1], requires_grad=True)
        self.b = torch.zeros(k, requires_grad=True)
        opt = torch.optim.Adam([self.W, self.b], lr=self.lr)
        per_epoch = -(-len(y) // self.bs)
        for _ in range(max(self.epochs, -(-self.min_steps // per_epoch))):
            perm = torch.randperm(len(y), generator=g)
            for i in range(0, len(y), self.bs):
                idx = perm[i:i + self.bs]
                loss = F.cross_entropy(x[idx] @ self.W.T + self.b, y[idx])
                loss = loss + self.l1 * self.W.abs().sum() + self.l2 * self.W.pow(2).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
        return self

    def weights(self):
        """(n_classes, n_neurons) weights, in the standardised feature space."""
        return self.W.detach().numpy()

    @torch.no_grad()
    def predict(self, x, keep=None):
        """keep: optional neuron indices; every other neuron's activation is set to zero
        (paper 001 masking: zero in the standardised space = the training mean)."""
        x = (torch.as_tensor(x, dtype=torch.float32) - self.mu) / self.sd
        if keep is not None:
            mask = torch.zeros(x.shape[1])
            mask[torch.as_tensor(keep, dtype=torch.long)] = 1.0
            x = x * mask
        return (x @ self.W.T + self.b).argmax(-1).numpy()

    def score(self, x, y, keep=None):
        p = self.predict(x, keep)
        return {"accuracy": float(accuracy_score(y, p)),
                "f1": float(f1_score(y, p, average="macro", zero_division=0))}


def majority_baseline(y_train, y_test):
    values, counts = np.unique(y_train, return_counts=True)
    return float(np.mean(np.asarray(y_test) == values[counts.argmax()]))


def shuffled_labels(y, seed=0):
    """Control task (paper 001 selectivity): labels re-assigned at random in the training
    set, keeping the class distribution."""
    return np.random.default_rng(seed).permutation(np.asarray(y))
