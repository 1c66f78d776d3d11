"""Loading a trained core-recipe folder as a frozen teacher (MKD, logit KD, LCMR)."""

from recipes.inference.model import ProfilerModel


def check_same_labels(student_space, teacher_space, teacher_folder):
    """Soft targets and module replacing only make sense over the same classes, in order."""
    for attr in ("genders", "age_sup", "age_sub"):
        if list(getattr(student_space, attr)) != list(getattr(teacher_space, attr)):
            raise ValueError(f"teacher {teacher_folder}: its {attr} classes {getattr(teacher_space, attr)} "
                             f"differ from the student's {getattr(student_space, attr)}")


def frozen_teacher(folder, device="cpu", label_space=None):
    """The ProfilerModel of ``folder`` in eval mode without gradients; with ``label_space``,
    its classes must be the student's."""
    teacher = ProfilerModel.from_folder(folder, device=device)
    if label_space is not None:
        check_same_labels(label_space, teacher.label_space, folder)
    return teacher.eval().requires_grad_(False)
