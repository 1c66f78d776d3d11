"""Module replacing (paper 003, LCMR): teacher and student modules in matching pairs, the
teacher's modules replaced by the student's at random (Eq. 1-2), and the replacement-rate
schedulers (constant, linear, logarithmic Eq. 5, exponential).

Progress ``t`` of the schedulers counts epochs (fractional: optimizer steps / steps per
epoch), so the YAML values do not depend on the corpus size; 003 counts steps, i.e. its
k is ours divided by the number of steps per epoch.
"""

import math

import torch


# ---- replacement-rate schedulers -------------------------------------------------------
class ConstantScheduler:
    """p_t = p (the constant rate of BERT-of-Theseus, 003's "Constant")."""

    def __init__(self, p):
        self.p = p

    def __call__(self, t):
        return min(self.p, 1.0)


class LinearScheduler:
    """p_t = min(k t + b, 1) (BERT-of-Theseus' linear curriculum, 003's "Linear")."""

    def __init__(self, k, b):
        self.k, self.b = k, b

    def __call__(self, t):
        return min(self.k * t + self.b, 1.0)


class LogarithmicScheduler:
    """p_t = min(log_B(k t + b), 1), paper 003 Eq. 5: log_B(b) is the basic rate p_0."""

    def __init__(self, k, b, base=10.0):
        if b < 1 or base <= 1:
            raise ValueError(f"logarithmic scheduler needs b >= 1 and base > 1 (p_0 = log_B b >= 0), got b={b}, base={base}")
        self.k, self.b, self.base = k, b, base

    def __call__(self, t):
        return min(math.log(self.k * t + self.b, self.base), 1.0)  # Eq. 5


class ExponentialScheduler:
    """p_t = min(b B^(k t), 1): 003's "Exponential" (slow start, fast end; the mirror of
    Eq. 5), with basic rate b = p_0 > 0."""

    def __init__(self, k, b, base=10.0):
        if b <= 0 or base <= 1:
            raise ValueError(f"exponential scheduler needs b = p_0 > 0 and base > 1, got b={b}, base={base}")
        self.k, self.b, self.base = k, b, base

    def __call__(self, t):
        return min(self.b * self.base ** (self.k * t), 1.0)


def make_scheduler(kind, p0, t_one, base=10.0):
    """The scheduler of ``kind`` (constant | linear | log | exp) with p(0) = p0 that reaches
    p = 1 at t = t_one (constant: p0 throughout)."""
    if kind == "constant":
        return ConstantScheduler(p0)
    if t_one <= 0:
        raise ValueError(f"replacement scheduler: t_one must be > 0, got {t_one}")
    if kind == "linear":
        return LinearScheduler(k=(1.0 - p0) / t_one, b=p0)
    if kind == "log":
        b = base ** p0  # log_B b = p0
        return LogarithmicScheduler(k=(base - b) / t_one, b=b, base=base)  # log_B(k t_one + b) = 1
    if kind == "exp":
        if p0 <= 0:
            raise ValueError(f"exponential scheduler: p0 must be > 0 (p_t = p0 B^(k t)), got {p0}")
        return ExponentialScheduler(k=math.log(1.0 / p0, base) / t_one, b=p0, base=base)  # b B^(k t_one) = 1
    raise ValueError(f"unknown replacement scheduler {kind!r}: use constant, linear, log or exp")


class ReplacementSchedule:
    """The rate of the whole run: the scheduler during the ``replacing_epochs`` of module
    replacing, then p = 1 (003: fine-tuning of the student alone)."""

    def __init__(self, scheduler, replacing_epochs):
        self.scheduler, self.replacing_epochs = scheduler, replacing_epochs

    def __call__(self, t):
        return 1.0 if t >= self.replacing_epochs else max(0.0, self.scheduler(t))


# ---- the paired model ------------------------------------------------------------------
class ModuleReplacing(torch.nn.Module):
    """Teacher and student of the same class, split into matching modules (groups of
    sub-module paths, by default ``student.replacing_groups()``). In training, each group
    is replaced by the student's with probability ``p`` at every forward, independently
    (Eq. 1: r_i ~ Bernoulli(p); Eq. 2: the group's output is the student's when r_i = 1),
    by running the teacher's forward with the chosen student sub-modules swapped in.
    In evaluation every group is the student's (r_i = 1): the model evaluated is the one
    extracted for deployment (003 deploys the student alone after extraction), and the best
    checkpoint is the best student.

    ``strategy``: 1 = the teacher is trained jointly (003 Strategy 1); 2 = it is frozen
    (Strategy 2: no gradients, kept in eval mode, so its BatchNorm statistics stay).
    The draws use their own generator (``seed``), so dropout and other random streams are
    the same whatever p is. When the trainer sets ``step`` (ints, e.g. (epoch, batch index),
    the same on every torchrun rank and restored on resume), a draw is a function of (seed, step):
    all ranks replace the same modules (DDP needs the same parameters in every backward) and
    a resumed run draws what the uninterrupted run would have drawn.
    """

    def __init__(self, teacher, student, strategy=2, groups=None, seed=0):
        super().__init__()
        if strategy not in (1, 2):
            raise ValueError(f"LCMR strategy must be 1 (teacher trained jointly) or 2 (teacher frozen), got {strategy}")
        self.student, self.strategy = student, strategy
        self.groups = [list(g) for g in (groups or student.replacing_groups())]
        self.p = 0.0
        self.seed, self.step = seed, None
        self.generator = torch.Generator().manual_seed(seed)
        self.shapes_checked = False
        self.teacher = None
        if teacher is not None:
            self.set_teacher(teacher)

    def set_teacher(self, teacher):
        """The teacher's module (LCMRBrain: the teacher folder's, when training starts)."""
        if type(teacher) is not type(self.student):
            raise TypeError(f"module replacing needs a teacher and a student of one class, got "
                            f"{type(teacher).__name__} and {type(self.student).__name__}")
        self.teacher = teacher
        self._check_coverage()
        self.shapes_checked = False
        if self.strategy == 2:
            self.teacher.requires_grad_(False)

    def _check_coverage(self):
        """Every student tensor lies in a group (else the extracted student would hold
        untrained weights) and every path exists in both models."""
        for group in self.groups:
            for path in group:
                for who, model in (("teacher", self.teacher), ("student", self.student)):
                    try:
                        model.get_submodule(path)
                    except AttributeError as err:
                        raise ValueError(f"replacing group path {path!r} is not a module of the {who}") from err
        prefixes = tuple(p + "." for g in self.groups for p in g)
        names = [n for n, _ in self.student.named_parameters()] + [n for n, _ in self.student.named_buffers()]
        missing = [n for n in names if not n.startswith(prefixes)]
        if missing:
            raise ValueError(f"student tensors outside every replacing group: {missing[:5]}...")

    @torch.no_grad()
    def init_student(self):
        """Copies every teacher tensor whose name and shape the student shares (e.g. the
        first blocks of each ResNet stage, the ECAPA TDNN block, the heads); returns
        (copied, student tensors)."""
        src, dst = self.teacher.state_dict(), self.student.state_dict()
        same = {k: v for k, v in src.items() if k in dst and dst[k].shape == v.shape}
        self.student.load_state_dict(same, strict=False)
        return len(same), len(dst)

    def train(self, mode=True):
        super().train(mode)
        if self.strategy == 2:
            self.teacher.eval()
        return self

    def draw(self):
        """r_i ~ Bernoulli(p) per group (Eq. 1); all ones in evaluation."""
        if not self.training:
            return [True] * len(self.groups)
        gen = self.generator
        if self.step is not None:  # (seed, step) -> draw: identical across ranks and resumes
            gen = torch.Generator().manual_seed(hash((self.seed, self.step)) & 0x7FFFFFFFFFFFFFFF)
        r = torch.rand(len(self.groups), generator=gen) < self.p
        return r.tolist()

    def forward(self, *args, **kwargs):
        if not self.shapes_checked:
            self.check_shapes(*args, **kwargs)
        return self.run(self.draw(), *args, **kwargs)

    def run(self, replace, *args, **kwargs):
        """The teacher's forward with the student's modules of the groups where replace[i]
        (Eq. 2); the teacher's module tree is restored afterwards."""
        saved = []
        try:
            for group, r in zip(self.groups, replace):
                if r:
                    for path in group:
                        parent, _, name = path.rpartition(".")
                        holder = self.teacher.get_submodule(parent) if parent else self.teacher
                        saved.append((holder, name, holder._modules[name]))
                        holder._modules[name] = self.student.get_submodule(path)
            return self.teacher(*args, **kwargs)
        finally:
            for holder, name, module in reversed(saved):
                holder._modules[name] = module

    @torch.no_grad()
    def check_shapes(self, *args, **kwargs):
        """Once: each student group takes and gives the shapes of the teacher's (a group's
        input is its first module's first input; its output, its last module's output)."""
        shapes = {}

        def record(key, tensor):  # returns None: the hooks must not change what they see
            shapes.setdefault(key, tuple(tensor.shape))

        for who, model in (("teacher", self.teacher), ("student", self.student)):
            hooks = []
            for i, group in enumerate(self.groups):
                first, last = model.get_submodule(group[0]), model.get_submodule(group[-1])
                hooks.append(first.register_forward_pre_hook(
                    lambda m, a, i=i, w=who: record((w, i, "in"), a[0])))
                hooks.append(last.register_forward_hook(
                    lambda m, a, o, i=i, w=who: record((w, i, "out"), o)))
            mode = model.training
            try:
                model.eval()(*args, **kwargs)
            finally:
                model.train(mode)
                for h in hooks:
                    h.remove()
        for i, group in enumerate(self.groups):
            for end in ("in", "out"):
                if shapes.get(("teacher", i, end)) != shapes.get(("student", i, end)):
                    raise ValueError(f"module replacing: student group {group} {end}put shape "
                                     f"{shapes.get(('student', i, end))} differs from the teacher's "
                                     f"{shapes.get(('teacher', i, end))}: the student must keep the "
                                     "teacher's channels at every group boundary")
        self.shapes_checked = True
