"""Learning-rate schedule of paper 004 (Section 4): x0.8 at epochs 2, 6 and 10, with the
library scheduler (``torch.optim.lr_scheduler.MultiStepLR``, ``lr_schedule`` in YAML).

The scheduler is stepped once per epoch so that its ``last_epoch`` is the (1-based) epoch
being trained: milestones are the epochs from which the lr is multiplied once more by
``gamma``. The brain saves it in the checkpoints, so a resumed run continues at the lr of
its epoch.
"""

import warnings


def step_to_epoch(scheduler, epoch):
    """Step an epoch-wise torch scheduler until its ``last_epoch`` is ``epoch`` (no step
    when it is there already, e.g. resumed mid-epoch from a checkpoint)."""
    with warnings.catch_warnings():  # the first step comes before any optimizer.step()
        warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
        while scheduler.last_epoch < epoch:
            scheduler.step()
    return scheduler.get_last_lr()[0]
