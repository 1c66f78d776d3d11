#!/usr/bin/env python3
"""Serve a trained or exported folder over HTTP and WebSocket (FastAPI on uvicorn).

    python serve.py results/demo/1234 [--host 127.0.0.1] [--port 8000] [--workers 2] [--processes 2]
    PROFILER_TOKEN=secret python serve.py MODEL            # every request needs Authorization: Bearer secret

Endpoints (OpenAPI docs at /docs): POST /profile (multipart file; ?speakers=auto for calls),
WS /stream (live audio), GET /health, /ready, /model. Limits: --max-upload-mb, --max-duration,
--max-streams, --timeout (or a YAML file of ServiceOptions keys: --config). --processes N: N server
processes, each with the model; one that dies (killed, out of memory) fails only its own requests
and is restarted while the others answer. See docs/deploy.md.
"""

import argparse
import dataclasses
import json
import os
import sys

from recipes.service.app import SERVICE_ENV, ServiceOptions, create_app


def parse_args(argv):
    defaults = ServiceOptions()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", help="a train.py output folder or an export.py folder")
    ap.add_argument("--host", default="127.0.0.1", help="address to bind (default: this machine only)")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--workers", type=int, default=defaults.workers, help="threads running the model (per process)")
    ap.add_argument("--processes", type=int, default=defaults.processes,
                    help="server processes, each with the model; a dead one is restarted (default 1)")
    ap.add_argument("--max-upload-mb", type=float, default=defaults.max_upload_mb)
    ap.add_argument("--max-duration", type=float, default=defaults.max_duration_seconds, help="seconds of audio")
    ap.add_argument("--max-streams", type=int, default=defaults.max_streams)
    ap.add_argument("--timeout", type=float, default=defaults.request_timeout_seconds, help="seconds per request")
    ap.add_argument("--config", default=None, help="a YAML file of service options (the flags above win)")
    return ap.parse_args(argv)


def options_from(args):
    values = {}
    if args.config:
        import ruamel.yaml

        with open(args.config) as f:
            values = dict(ruamel.yaml.YAML(typ="safe").load(f) or {})
        unknown = set(values) - {f.name for f in dataclasses.fields(ServiceOptions)}
        if unknown:
            sys.exit(f"error: {args.config}: unknown service options {sorted(unknown)}")
    flags = {"workers": args.workers, "processes": args.processes, "max_upload_mb": args.max_upload_mb, "max_duration_seconds": args.max_duration,
             "max_streams": args.max_streams, "request_timeout_seconds": args.timeout}
    defaults = dataclasses.asdict(ServiceOptions())
    values.update({k: v for k, v in flags.items() if v != defaults[k] or k not in values})
    return ServiceOptions(**values)


def main(argv=None):
    args = parse_args(argv)
    import uvicorn

    opts = options_from(args)
    if opts.processes > 1:  # uvicorn's supervisor: each process builds the app, a dead one is replaced
        from recipes.model_folder import pretrained_source

        try:
            pretrained_source(args.folder)  # the folder's error here, and its pretrained/ refreshed once
        except FileNotFoundError as err:
            sys.exit(f"error: {err}")
        os.environ[SERVICE_ENV] = json.dumps({"folder": os.path.abspath(args.folder), "options": dataclasses.asdict(opts)})
        uvicorn.run("recipes.service.app:app_from_environment", factory=True, workers=opts.processes, host=args.host,
                    port=args.port, log_level="warning", access_log=False)
        return 0
    try:
        app = create_app(args.folder, opts)
    except FileNotFoundError as err:
        sys.exit(f"error: {err}")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
