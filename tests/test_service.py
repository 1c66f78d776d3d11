"""The profiling service with a real uvicorn server on 127.0.0.1 (a free port), real HTTP and
WebSocket clients and the tiny demo model: a file, a stream whose final answer equals the
file's, limits, bad uploads, the token, a client that leaves mid-stream."""

import json
import os
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, free_port

httpx = pytest.importorskip("httpx")


class Server:
    def __init__(self, folder, options=None, token=None):
        import uvicorn

        from recipes.service.app import create_app

        if token:
            os.environ["PROFILER_TOKEN"] = token
        try:
            app = create_app(str(folder), options)
        finally:
            os.environ.pop("PROFILER_TOKEN", None)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        return f"127.0.0.1:{self.port}"

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def announced_2gb(host):
    """The status line the server answers to a request announcing a 2 GB body (sent raw: HTTP
    clients will not announce more than they send)."""
    import socket

    addr, port = host.split(":")
    with socket.create_connection((addr, int(port)), timeout=30) as sock:
        sock.sendall(f"POST /profile HTTP/1.1\r\nHost: {host}\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                     f"Content-Length: {2 * 2 ** 30}\r\n\r\n".encode())
        return sock.recv(4096).decode(errors="replace")


@pytest.fixture(scope="module")
def clip(tiny_run):
    root, _ = tiny_run
    return str(sorted((root / "demo" / "wav").glob("adult_f*.wav"))[0])


def test_profile_a_file_and_the_model_endpoints(tiny_run, clip):
    from recipes.inference.interface import SpeakerProfilerInterface

    _, out = tiny_run
    expected = SpeakerProfilerInterface.from_folder(str(out)).classify_file(clip)
    with Server(out) as host:
        with httpx.Client(base_url=f"http://{host}", timeout=120) as c:
            assert c.get("/health").json() == {"status": "ok"} and c.get("/ready").json()["ready"]
            model = c.get("/model").json()
            assert model["sample_rate"] == 8000 and model["label_space"]["gender"] == ["f", "m"]
            with open(clip, "rb") as f:
                rec = c.post("/profile", files={"file": ("a.wav", f, "audio/wav")}).json()
            assert rec["file"] == "a.wav" and rec["gender"]["probs"] == pytest.approx(expected["gender"]["probs"], abs=1e-5)
            with open(clip, "rb") as f:
                calls = c.post("/profile?speakers=auto", files={"file": ("a.wav", f)}).json()
            assert isinstance(calls, list) and calls[0]["speaker"] == "S1"
            assert "paths" in c.get("/openapi.json").json() and "/profile" in c.get("/openapi.json").json()["paths"]


def test_bad_uploads_and_limits(tiny_run, clip, tmp_path):
    from recipes.service.app import ServiceOptions

    _, out = tiny_run
    truncated = tmp_path / "t.wav"
    truncated.write_bytes(open(clip, "rb").read()[:2000])
    with Server(out, ServiceOptions(max_upload_mb=0.05, max_duration_seconds=2.0)) as host:
        with httpx.Client(base_url=f"http://{host}", timeout=60) as c:
            assert c.post("/profile", files={"file": ("x.txt", b"not audio at all")}).status_code == 400
            empty = c.post("/profile", files={"file": ("e.wav", b"")})
            assert empty.status_code == 400 and empty.json().get("detail") == "empty upload", empty.text
            r = c.post("/profile", files={"file": ("t.wav", truncated.read_bytes())})
            assert r.status_code == 400 and "truncated WAV t.wav" in r.json()["detail"], r.text
            long = tmp_path / "long.wav"
            sf.write(long, np.zeros(8000 * 3, dtype=np.float32), 8000, subtype="PCM_16")
            assert c.post("/profile", files={"file": ("l.wav", long.read_bytes())}).status_code == 413  # 3 s > 2 s
            big = c.post("/profile", files={"file": ("b.wav", b"\0" * 200_000)})
            assert big.status_code == 413
            assert announced_2gb(host).startswith("HTTP/1.1 413")  # refused before reading a byte of it
            assert c.get("/health").status_code == 200  # still answering


def test_the_token_guards_every_request(tiny_run):
    _, out = tiny_run
    with Server(out, token="s3cret") as host:
        with httpx.Client(base_url=f"http://{host}", timeout=60) as c:
            assert c.get("/health").status_code == 401
            assert c.get("/model", headers={"Authorization": "Bearer wrong"}).status_code == 401
            assert c.get("/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_a_stream_ends_with_the_files_answer_and_a_client_may_leave(tiny_run, clip, tmp_path):
    import websockets.sync.client as wsc

    from recipes.calls.call import profile_call
    from recipes.inference.interface import SpeakerProfilerInterface

    _, out = tiny_run
    audio, rate = sf.read(clip, dtype="float32", always_2d=True)
    audio = audio[:, 0]  # one channel (the demo clip is a stereo copy)
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    profiler = SpeakerProfilerInterface.from_folder(str(out))
    opts = dict(profiler.hparams.call.to_dict(), block_seconds=profiler.hparams.call.stream_block_seconds)
    with Server(out) as host:
        with wsc.connect(f"ws://{host}/stream") as ws:  # a client that leaves after one chunk
            ws.send(json.dumps({"format": "pcm16", "sample_rate": rate, "channels": 1}))
            ws.send(pcm[: rate // 2].tobytes())
            json.loads(ws.recv())
        with wsc.connect(f"ws://{host}/stream") as ws:
            ws.send(json.dumps({"format": "pcm16", "sample_rate": rate, "channels": 1}))
            for start in range(0, len(pcm), rate // 3):
                assert "running" in json.loads(ws.recv() if ws.send(pcm[start:start + rate // 3].tobytes()) is None else "")
            ws.send("end")
            final = json.loads(ws.recv())["final"]
        with httpx.Client(base_url=f"http://{host}", timeout=60) as c:
            assert c.get("/ready").status_code == 200  # the service goes on after the client that left
    sf.write(tmp_path / "sent.wav", pcm.astype(np.float32) / 32768.0, rate, subtype="PCM_16")  # what was streamed
    offline = profile_call(profiler, str(tmp_path / "sent.wav"), options=opts)
    assert [r["speaker"] for r in final] == [r["speaker"] for r in offline]
    assert final[0]["gender"]["probs"] == pytest.approx(offline[0]["gender"]["probs"], abs=1e-4)
