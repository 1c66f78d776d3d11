"""Loading a trained core-recipe folder as a frozen teacher (MKD, logit KD, LCMR), and sizing
a student's modules from it when training starts (never while the YAML loads)."""

from speechbrain.utils.distributed import ddp_barrier, if_main_process

from recipes.inference.model import ProfilerModel
from recipes.model_folder import resolve_teacher_folder, store_teacher


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


def stored_teacher(teacher_folder, output_folder):
    """The teacher of a student run: copied once into <output_folder>/teacher by the main
    process (the student folder is then self-contained), that copy from then on."""
    if if_main_process():
        store_teacher(resolve_teacher_folder(teacher_folder, output_folder), output_folder)
    ddp_barrier()
    return resolve_teacher_folder(teacher_folder, output_folder)


def size_student_for_teacher(hparams, modules, teacher_dim):
    """Paper 004: the feature-KD projection maps the student's embedding to the teacher's size
    (Eq. 2); with ``concat_teacher`` the heads read Z = [student; teacher]."""
    if modules.get("projector") is not None:
        modules["projector"].set_out_dim(teacher_dim)
    if hparams["concat_teacher"]:
        hparams["heads"].set_input_size(int(hparams["emb_dim"]) + int(teacher_dim))
