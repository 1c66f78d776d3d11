"""serve.py with 2 server processes (a real subprocess on 127.0.0.1): the process serving a slow
request is killed (SIGKILL) mid-request; that client gets an error, not a hang, the next requests
answer 200, the supervisor starts a new process, and SIGTERM leaves no process behind."""

import http.client
import io
import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest
import soundfile as sf

from conftest import ROOT, free_port

httpx = pytest.importorskip("httpx")


def children(pid):
    """Pids of the uvicorn worker processes of ``pid`` (multiprocessing spawn children)."""
    out = []
    for p in os.listdir("/proc"):
        try:
            with open(f"/proc/{p}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{p}/cmdline", "rb") as f:
                cmd = f.read()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"spawn_main" in cmd:
            out.append(int(p))
    return sorted(out)


def connection_owner(server_port, client_port, pids):
    """The pid among ``pids`` holding the server end of the TCP connection from ``client_port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                cols = line.split()
                local, remote = int(cols[1].rsplit(":", 1)[1], 16), int(cols[2].rsplit(":", 1)[1], 16)
                if local == server_port and remote == client_port:
                    inodes.add(cols[9])
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}").strip("socket:[]") in inodes:
                    return pid
            except OSError:
                continue
    return None


def multipart(name, data):
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def test_a_killed_worker_fails_only_its_request(tiny_run):
    root, out = tiny_run
    clip = sorted((root / "demo" / "wav").glob("*.wav"))[0]
    audio, rate = sf.read(str(clip), dtype="float32", always_2d=True)
    long = io.BytesIO()  # about 20 minutes: seconds of work for the tiny model
    sf.write(long, np.tile(audio[:, 0], int(1200 * rate / len(audio)) + 1), rate, format="WAV", subtype="PCM_16")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "serve.py", str(out), "--port", str(port), "--processes", "2",
                             "--workers", "1"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    seen = set()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
            for _ in range(240):
                try:
                    if c.get("/ready").status_code == 200 and len(children(proc.pid)) == 2:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
                time.sleep(0.5)
            workers = children(proc.pid)
            seen.update(workers)
            assert len(workers) == 2
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.connect()
            client_port = conn.sock.getsockname()[1]
            body, headers = multipart("long.wav", long.getvalue())
            outcome = {}

            def slow_request():
                try:
                    conn.request("POST", "/profile", body, headers)
                    outcome["status"] = conn.getresponse().status
                except (OSError, http.client.HTTPException) as err:  # RemoteDisconnected, reset
                    outcome["error"] = err

            t = threading.Thread(target=slow_request)
            t.start()
            owner = None
            for _ in range(100):
                owner = connection_owner(port, client_port, workers)
                if owner:
                    break
                time.sleep(0.1)
            assert owner in workers
            time.sleep(1.0)  # the upload is in, the model at work
            assert t.is_alive(), outcome  # still being served
            os.kill(owner, signal.SIGKILL)
            t.join(timeout=60)
            assert not t.is_alive(), "the client hangs"
            assert "error" in outcome and "status" not in outcome, outcome
            small = clip.read_bytes()
            for _ in range(4):  # the service keeps answering (the other process, then the new one too)
                r = c.post("/profile", files={"file": ("a.wav", small, "audio/wav")})
                assert r.status_code == 200 and r.json()["gender"]["label"] in ("f", "m")
            for _ in range(240):  # the supervisor replaces the dead process
                now = children(proc.pid)
                if len(now) == 2 and owner not in now:
                    break
                time.sleep(0.5)
            assert len(now) == 2 and owner not in now, now
            seen.update(now)
            assert c.get("/ready").status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    time.sleep(1.0)
    assert not [p for p in seen if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
