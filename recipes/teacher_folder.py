"""Where an MKD student's teacher lives, and its embedding size.

The teacher is a train.py output folder. A student run stores a copy of what inference needs
of it (``inference.yaml`` + its best checkpoint) in ``<student folder>/teacher``, so the
student folder is self-contained: it resumes, profiles and exports wherever it is moved, and
the YAML's ``teacher_folder`` (relative to the working directory) is only needed once.
The size of the teacher's embedding is read from the teacher, never written by hand.
"""

import functools
import os
import shutil

TEACHER_DIR = "teacher"


def resolve_teacher_folder(teacher_folder, model_folder=None):
    """The teacher of the model in ``model_folder``: its stored copy when there is one, else
    ``teacher_folder`` (relative to ``model_folder`` if it is a folder there, else as given)."""
    if model_folder:
        stored = os.path.join(model_folder, TEACHER_DIR)
        if os.path.isfile(os.path.join(stored, "inference.yaml")):
            return stored
        if teacher_folder and not os.path.isabs(str(teacher_folder)):
            inside = os.path.join(model_folder, str(teacher_folder))
            if os.path.isfile(os.path.join(inside, "inference.yaml")):
                return inside
    return teacher_folder


@functools.lru_cache(maxsize=8)
def _emb_dim(yaml_path, mtime):
    from hyperpyyaml import load_hyperpyyaml

    with open(yaml_path) as f:
        return int(load_hyperpyyaml(f)["encoder"].emb_dim)


def teacher_emb_dim(teacher_folder, mkd=True, default=0, model_folder=None):
    """Embedding size of the teacher's encoder (``default`` when ``mkd`` is off)."""
    if not mkd:
        return int(default)
    folder = resolve_teacher_folder(teacher_folder, model_folder)
    yaml_path = os.path.join(str(folder), "inference.yaml")
    if not os.path.isfile(yaml_path):
        raise FileNotFoundError(
            f"teacher_folder {folder}: no inference.yaml there. Train the teacher first (train.py on the "
            "corpus recipe) and pass its output folder as --teacher_folder=<folder>")
    return _emb_dim(yaml_path, os.path.getmtime(yaml_path))


def head_input_size(emb_dim, teacher_folder, mkd, concat_teacher, model_folder=None):
    """Input size of the heads: the student's embedding, plus the teacher's with Z = [student;
    teacher] (paper 004)."""
    extra = teacher_emb_dim(teacher_folder, model_folder=model_folder) if mkd and concat_teacher else 0
    return int(emb_dim) + extra


def store_teacher(teacher_folder, model_folder):
    """Copy the teacher's inference.yaml and best checkpoint (and its re-estimated feature
    statistics, if any) into ``<model_folder>/teacher``, atomically; a no-op when stored."""
    from recipes.interface import best_checkpoint

    dest = os.path.join(model_folder, TEACHER_DIR)
    if os.path.isfile(os.path.join(dest, "inference.yaml")):
        return dest
    ckpt = best_checkpoint(teacher_folder)
    tmp = f"{dest}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(ckpt.path, os.path.join(tmp, "save", ckpt.path.name))
    shutil.copyfile(os.path.join(teacher_folder, "inference.yaml"), os.path.join(tmp, "inference.yaml"))
    os.replace(tmp, dest)
    return dest
