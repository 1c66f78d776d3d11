"""The profiling service: a FastAPI app over one model folder (serve.py runs it on uvicorn).

- ``POST /profile`` (multipart ``file``): the record ``infer.py --json`` prints; with
  ``?speakers=auto`` the per-speaker records of the call mode (``caller_channel`` query too).
- ``WS /stream``: a first text message ``{"format": "pcm16" | "mulaw" | "float32",
  "sample_rate": 8000, "channels": 1 | 2, "caller_channel": "right"}``, then binary chunks; after
  each chunk the running per-speaker records (recipes/calls/streaming.py), ``{"final": [...]}``
  after a text message ``"end"``.
- ``GET /health`` (the process answers), ``GET /ready`` (the model is loaded), ``GET /model`` (its
  name, label space, sample rate, checkpoint).

Limits (``ServiceOptions``, hparams/blocks/service.yaml, serve.py flags): upload size and duration,
concurrent streams, a per-request timeout; over a limit: a 4xx with a message. The server writes an
upload to a temporary file of its own (it never opens a path a request names, never unpickles
request content), loads only the folder it was started with, logs no audio and no profile, and with
a token configured (environment ``PROFILER_TOKEN`` or the file named by ``PROFILER_TOKEN_FILE``)
answers 401 to a request without ``Authorization: Bearer <token>``. The model runs in a bounded pool
of ``workers`` threads, so a slow upload does not block the other requests. With ``processes``
above 1, serve.py runs that many server processes (uvicorn workers, each its own model, built by
``app_from_environment``); uvicorn's supervisor restarts one that dies, so a process killed
mid-request fails only the requests it held and the others go on answering.
"""

import asyncio
import concurrent.futures
import dataclasses
import hmac
import json
import os
import tempfile

import numpy as np
import torch

from recipes.inference.records import jsonable

FORMATS = {"pcm16": (np.int16, 32768.0), "float32": (np.float32, 1.0), "mulaw": (np.uint8, None)}


@dataclasses.dataclass
class ServiceOptions:
    max_upload_mb: float = 50.0
    max_duration_seconds: float = 3600.0
    max_streams: int = 4
    request_timeout_seconds: float = 120.0
    workers: int = 2  # threads running the model, per process
    processes: int = 1  # server processes (serve.py; create_app serves one)


SERVICE_ENV = "PROFILER_SERVICE"  # serve.py -> each server process: {"folder": ..., "options": {...}}


def app_from_environment():
    """The app of the folder and options serve.py put in ``SERVICE_ENV`` (the uvicorn factory
    every server process calls when serve.py runs several)."""
    spec = json.loads(os.environ[SERVICE_ENV])
    return create_app(spec["folder"], ServiceOptions(**spec["options"]))


def read_token():
    """The bearer token from PROFILER_TOKEN or the file PROFILER_TOKEN_FILE names (None: no auth)."""
    token = os.environ.get("PROFILER_TOKEN")
    path = os.environ.get("PROFILER_TOKEN_FILE")
    if not token and path:
        with open(path) as f:
            token = f.read().strip()
    return token or None


def decode_chunk(data, fmt, channels):
    """Raw bytes of a stream chunk -> float32 (samples, channels)."""
    dtype, scale = FORMATS[fmt]
    if len(data) % (np.dtype(dtype).itemsize * channels):
        raise ValueError(f"a {fmt} chunk of {len(data)} bytes is not whole frames of {channels} channel(s)")
    x = np.frombuffer(data, dtype=dtype)
    if fmt == "mulaw":
        import torchaudio.functional as AF

        x = AF.mu_law_decoding(torch.from_numpy(x.astype(np.int64)), 256).numpy()
    else:
        x = x.astype(np.float32) / scale
    return x.reshape(-1, channels)


def create_app(model_folder, options=None, device="cpu"):
    from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile, WebSocket, WebSocketDisconnect
    from fastapi.responses import JSONResponse

    from recipes.calls.streaming import StreamingProfiler
    from recipes.data.audio import AudioError, audio_info
    from recipes.inference.interface import SpeakerProfilerInterface
    from recipes.model_folder import best_checkpoint, is_trained

    opts = options or ServiceOptions()
    token = read_token()
    profiler = SpeakerProfilerInterface.from_folder(model_folder, device)
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=max(1, int(opts.workers)))
    state = {"streams": 0}
    app = FastAPI(title="Speaker profiling service",
                  description="Gender and age of the speakers of a recording (docs/deploy.md).")

    @app.middleware("http")
    async def bearer(request: Request, call_next):
        if token and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {token}"):
            return JSONResponse({"detail": "missing or wrong bearer token"}, status_code=401)
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > opts.max_upload_mb * 2 ** 20 + 65536:
            return JSONResponse({"detail": f"upload over the limit of {opts.max_upload_mb:g} MB"}, status_code=413)
        return await call_next(request)

    async def run(fn, *args):
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(pool, fn, *args), opts.request_timeout_seconds)
        except asyncio.TimeoutError:
            raise HTTPException(504, f"profiling took longer than {opts.request_timeout_seconds:g} s") from None

    @app.get("/health")
    def health():
        return {"status": "ok"}

    @app.get("/ready")
    def ready():
        return {"ready": True}

    @app.get("/model")
    def model():
        ls = profiler.label_space
        ckpt = best_checkpoint(model_folder).path.name if is_trained(model_folder) else None
        return {"name": os.path.basename(os.path.normpath(model_folder)), "sample_rate": profiler.sample_rate,
                "label_space": {"gender": list(ls.genders), "age_sup": list(ls.age_sup), "age_sub": list(ls.age_sub)},
                "checkpoint": ckpt}

    @app.post("/profile")
    async def profile(file: UploadFile = File(...), speakers: str = Query(None), caller_channel: str = Query(None)):
        if speakers not in (None, "auto"):
            raise HTTPException(422, "speakers must be auto (or left out)")
        limit = int(opts.max_upload_mb * 2 ** 20)
        with tempfile.NamedTemporaryFile(suffix=".audio") as tmp:  # never a path the request names
            size = 0
            while chunk := await file.read(1 << 20):
                size += len(chunk)
                if size > limit:
                    raise HTTPException(413, f"upload over the limit of {opts.max_upload_mb:g} MB")
                tmp.write(chunk)
            tmp.flush()
            if size == 0:
                raise HTTPException(400, "empty upload")
            try:
                seconds, _, _ = audio_info(tmp.name)
                if seconds > opts.max_duration_seconds:
                    raise HTTPException(413, f"{seconds:.0f} s of audio: over the limit of {opts.max_duration_seconds:g} s")
                if speakers == "auto":
                    records = await run(lambda: profiler.profile_call(tmp.name, caller_channel=caller_channel))
                    return [dict(jsonable(r), file=file.filename) for r in records]
                res = await run(profiler.classify_file, tmp.name)
            except (AudioError, ValueError) as err:
                raise HTTPException(400, str(err).replace(tmp.name, file.filename or "upload")) from None
        return dict(jsonable(res), file=file.filename)

    @app.websocket("/stream")
    async def stream(ws: WebSocket):
        if token and not hmac.compare_digest(ws.headers.get("authorization", ""), f"Bearer {token}"):
            await ws.close(code=1008, reason="missing or wrong bearer token")
            return
        if state["streams"] >= opts.max_streams:
            await ws.close(code=1013, reason=f"{opts.max_streams} streams already open")
            return
        state["streams"] += 1
        try:
            await ws.accept()
            head = json.loads(await ws.receive_text())
            fmt, rate, channels = head.get("format", "pcm16"), int(head.get("sample_rate", 8000)), int(head.get("channels", 1))
            if fmt not in FORMATS or channels not in (1, 2) or not 4000 <= rate <= 48000:
                await ws.send_json({"error": f"format must be one of {sorted(FORMATS)}, channels 1 or 2, "
                                             "sample_rate 4000-48000"})
                await ws.close(code=1003)
                return
            live = StreamingProfiler(profiler, rate, channels, caller_channel=head.get("caller_channel"))
            received = 0.0
            while True:
                msg = await ws.receive()
                if msg.get("type") == "websocket.disconnect":
                    return
                if msg.get("text") == "end":
                    final = await run(live.finish)
                    await ws.send_json({"final": jsonable(final)})
                    await ws.close()
                    return
                data = decode_chunk(msg.get("bytes") or b"", fmt, channels)
                received += len(data) / rate
                if received > opts.max_duration_seconds:
                    await ws.send_json({"error": f"stream over the limit of {opts.max_duration_seconds:g} s"})
                    await ws.close(code=1009)
                    return
                await ws.send_json({"running": jsonable(await run(live.push, data))})
        except WebSocketDisconnect:
            return
        except (ValueError, AudioError, json.JSONDecodeError) as err:
            await ws.send_json({"error": str(err)})
            await ws.close(code=1003)
        finally:
            state["streams"] -= 1

    app.state.pool = pool
    return app
