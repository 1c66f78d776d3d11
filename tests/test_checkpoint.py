import torch

from recipes.checkpoint import AtomicCheckpointer


class Exploding(torch.nn.Module):
    """A recoverable whose save fails half-way through a checkpoint."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.fail = False


def test_interrupted_save_keeps_last_good_checkpoint(tmp_path):
    model, bomb = torch.nn.Linear(2, 2), Exploding()
    ck = AtomicCheckpointer(tmp_path / "save", recoverables={"model": model})

    def save_hook(obj, path):
        if obj.fail:
            raise KeyboardInterrupt("killed while saving")
        torch.save(obj.state_dict(), path)

    ck.add_recoverable("bomb", bomb, custom_save_hook=save_hook,
                       custom_load_hook=lambda o, p, *a, **k: None)
    good = ck.save_checkpoint(meta={"step": 1})
    assert good.path.exists() and (good.path / "model.ckpt").exists()
    bomb.fail = True
    try:
        ck.save_checkpoint(meta={"step": 2})
    except KeyboardInterrupt:
        pass
    ckpts = ck.list_checkpoints()
    assert len(ckpts) == 1 and ckpts[0].meta["step"] == 1
    assert ck.find_checkpoint().path == good.path
    # the next save works and becomes the latest
    bomb.fail = False
    ck.save_checkpoint(meta={"step": 3})
    assert ck.find_checkpoint().meta["step"] == 3


def test_saves_within_one_second_keep_both(tmp_path):
    # SpeechBrain names checkpoints by the second; fast epochs (the demo, torchrun tests) must
    # not replace the previous epoch's checkpoint with one of the same name
    model = torch.nn.Linear(2, 2)
    ck = AtomicCheckpointer(tmp_path / "save", recoverables={"model": model})
    saved = [ck.save_checkpoint(meta={"step": i}) for i in range(3)]
    assert len({c.path for c in saved}) == 3 and all(c.path.exists() for c in saved)
    assert sorted(c.meta["step"] for c in ck.list_checkpoints()) == [0, 1, 2]
