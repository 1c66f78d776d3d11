"""Learning-rate schedule of paper 004 (Section 4): step decay from a given epoch."""


class StepDecayFrom:
    """lr(epoch) = lr0 * factor ** (number of decay epochs <= epoch).

    Decay epochs are ``start, start + every, ...`` up to ``last`` (paper 004: x0.8 every
    4 epochs from the 2nd to the 10th epoch -> decays at epochs 2, 6 and 10). Epochs are
    1-based, as SpeechBrain's EpochCounter. Stateless: resuming needs only the epoch.
    """

    def __init__(self, lr0, factor=0.8, every=4, start=2, last=None):
        self.lr0, self.factor, self.every, self.start, self.last = lr0, factor, every, start, last

    def __call__(self, epoch):
        n = 0
        e = self.start
        while e <= epoch and (self.last is None or e <= self.last):
            n += 1
            e += self.every
        return self.lr0 * self.factor ** n
