"""The archive job on Ray Data (the only module that imports Ray).

The files still to profile become a Ray dataset (``from_items``, one block per batch of files);
``map_batches`` runs ``ArchiveWorker`` (recipes/archive/rows.py) in a pool of ``workers`` actors,
each holding one model, ``threads`` torch threads and ``threads`` Ray CPUs; the driver streams
the rows back (``iter_batches``), shows a progress bar and writes the parquet parts
(recipes/archive/inputs.py). Without ``address`` Ray starts locally on this machine for the job
and stops after it; with one (``auto``, ``ray://host:10001``) the job joins that cluster.
"""

import logging
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def start_ray(address, workers, threads):
    """ray.init for the job: local (this machine, ``workers * threads`` CPUs, no dashboard,
    quiet) or the cluster at ``address``. The project's folder goes on the workers' path."""
    import ray
    import ray.data

    env = {"PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p),
           "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    common = dict(runtime_env={"env_vars": env}, log_to_driver=False, configure_logging=True)
    if address:
        ray.init(address=address, logging_level=logging.WARNING, **common)
    else:  # a private instance for this job: its start-up notes are not the user's concern
        ray.init(address="local", num_cpus=workers * threads, include_dashboard=False, logging_level=logging.ERROR,
                 **common)
    logging.getLogger("ray.data").setLevel(logging.ERROR)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # the job's own bar counts files
    return ray


def cluster_workers(ray, threads):
    """Default worker count: the CPUs Ray sees (this machine, or the whole cluster) / threads."""
    return max(1, int(ray.cluster_resources().get("CPU", 1) // threads))


def run(items, folder, writer, workers=None, threads=1, address=None, batch_files=8, worker_kwargs=None,
        progress=True):
    """Profiles ``items`` ({"file", "path"}) into ``writer`` (a PartWriter); returns
    (files done, files with an error row, files/s from the first rows to the last: the rate
    once Ray and the models are up, None with a single batch)."""
    import time

    from tqdm import tqdm

    from recipes.archive.rows import ArchiveWorker

    ray = start_ray(address, workers or max(1, (os.cpu_count() or 1) // threads), threads)
    done = errors = 0
    first = None
    try:
        workers = min(workers or cluster_workers(ray, threads), len(items))
        batch_files = max(1, min(batch_files, math.ceil(len(items) / workers)))  # every worker gets a batch
        ds = ray.data.from_items(items, override_num_blocks=math.ceil(len(items) / batch_files))
        ds = ds.map_batches(ArchiveWorker, batch_size=batch_files, batch_format="pyarrow",
                            compute=ray.data.ActorPoolStrategy(size=workers), num_cpus=threads,
                            fn_constructor_kwargs=dict(worker_kwargs or {}, folder=folder, threads=threads))
        with tqdm(total=len(items), unit="file", desc=f"profiling on {workers} worker(s)", file=sys.stderr,
                  disable=not progress, mininterval=1.0) as bar:
            for table in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
                writer.add(table)
                files = set(table.column("file").to_pylist())
                failed = {f for f, e in zip(table.column("file").to_pylist(), table.column("error").to_pylist()) if e}
                done, errors = done + len(files), errors + len(failed)
                first, last = first or (done, time.perf_counter()), time.perf_counter()
                bar.update(len(files))
                bar.set_postfix(errors=errors, refresh=False)
    finally:
        writer.flush()
        ray.shutdown()
    rate = (done - first[0]) / (last - first[1]) if first and done > first[0] else None
    return done, errors, rate
