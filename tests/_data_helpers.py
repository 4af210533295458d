"""Shared helpers for the data/benchmark/CLI tests: shared-data location, synthetic audio files, a
loopback HTTP server with Range support, and an independent per-sample reference of OPERA's probe."""

from __future__ import annotations

import http.server
import threading
import wave
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from _paths import REPO_ROOT

SHARED_DATA = REPO_ROOT / ".." / "shared" / "data"


def shared_path(*parts: str) -> Path:
    """Path under ../shared/data, or skip the test with the reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data {path} is not available (expected at ../shared/data relative to the repository)")
    return path


def write_wav(path: Path, samples: np.ndarray, sampling_rate: int) -> Path:
    """16-bit PCM mono WAV (standard library only, so tests do not depend on an encoder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0)
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(sampling_rate)
        handle.writeframes((pcm * 32767).astype("<i2").tobytes())
    return path


def tone(
    seconds: float, sampling_rate: int, frequency: float = 440.0, amplitude: float = 0.3, seed: int = 0
) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return amplitude * np.sin(2 * np.pi * frequency * t) + 0.01 * rng.standard_normal(t.size)


def write_tones(folder: Path, count: int, sampling_rate: int, base_hz: float, step_hz: float) -> list[Path]:
    """`count` one-second tones `clip00.wav`, ... at `base_hz`, `base_hz + step_hz`, ..., each with its own noise."""
    return [
        write_wav(folder / f"clip{i:02d}.wav", tone(1.0, sampling_rate, base_hz + step_hz * i, seed=i), sampling_rate)
        for i in range(count)
    ]


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves files from ``server.directory``; honours ``Range: bytes=N-``; can cut the first
    transfer of a file after ``server.cut_after`` bytes to simulate a dropped connection."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        name = self.path.lstrip("/").split("?")[0]
        path = Path(server.directory) / name
        server.requests.append((name, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        if self.headers.get("Range") and server.honour_ranges:
            start = int(self.headers["Range"].split("=")[1].split("-")[0])
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.cut_after is not None and name not in server.already_cut:
            server.already_cut.add(name)
            self.wfile.write(body[: server.cut_after])
            self.wfile.flush()
            self.connection.shutdown(2)  # drop the connection mid-transfer
            return
        self.wfile.write(body)


@contextmanager
def loopback_server(directory: Path, cut_after: int | None = None, honour_ranges: bool = True):
    """HTTP server on 127.0.0.1 serving ``directory``; yields ``(base_url, server)``."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
    server.directory = str(directory)
    server.cut_after = cut_after
    server.already_cut = set()
    server.honour_ranges = honour_ranges
    server.requests = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()


def reference_probe_loop(features, targets, run, protocol, kind="classification", n_classes=2):
    """OPERA's probe written the plain way: one seed at a time, a per-sample Dataset, nn.Linear,
    autograd, ``torch.optim.Adam`` and ``clip_grad_norm_``. It draws its initialisation and shuffling
    from the same per-seed generator as the vectorised probe, so both must end in the same weights.

    Returns ``(test_predictions, best_epoch)``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny per-sample tensors: threading only adds overhead
    try:
        return _reference_probe_loop(features, targets, run, protocol, kind, n_classes)
    finally:
        torch.set_num_threads(threads)


def _reference_probe_loop(features, targets, run, protocol, kind, n_classes):
    import torch

    class PerSample(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            row = self.rows[i]
            dtype = torch.long if kind == "classification" else torch.float32
            return torch.tensor(features[row], dtype=torch.float32), torch.tensor(targets[row], dtype=dtype)

    out_dim = n_classes if kind == "classification" else 1
    generator = torch.Generator().manual_seed(int(run.seed))
    head = torch.nn.Linear(features.shape[1], out_dim)
    with torch.no_grad():
        head.weight.copy_(torch.randn(out_dim, features.shape[1], generator=generator) * 0.01)
        head.bias.zero_()
    optimizer = torch.optim.Adam(head.parameters(), lr=protocol.learning_rate)
    train_rows = np.asarray(run.train)
    mean = float(np.mean(targets[train_rows])) if kind == "regression" else 0.0
    std = float(np.std(targets[train_rows])) if kind == "regression" else 1.0
    dataset = PerSample(train_rows)

    def predict(rows):
        with torch.no_grad():
            out = head(torch.tensor(features[rows], dtype=torch.float32))
            return torch.softmax(out, -1).numpy() if kind == "classification" else (out[:, 0] * std + mean).numpy()

    def score(rows):
        from sklearn.metrics import mean_absolute_error, roc_auc_score

        p = predict(rows)
        if kind == "classification":
            return (
                roc_auc_score(targets[rows], p[:, 1])
                if n_classes == 2
                else roc_auc_score(targets[rows], p, multi_class="ovr")
            )
        return mean_absolute_error(targets[rows], p)

    best_state, best_val, best_epoch = None, None, -1
    stop_best, stop_wait = np.inf, 0  # Lightning's EarlyStopping on validation MAE, checked every epoch
    batch = protocol.batch_size or len(train_rows)
    for epoch in range(protocol.epochs):
        permutation = torch.randperm(len(train_rows), generator=generator).tolist()
        for start in range(0, len(permutation), batch):
            items = [dataset[i] for i in permutation[start : start + batch]]
            x = torch.stack([item[0] for item in items])
            y = torch.stack([item[1] for item in items])
            out = head(x)
            if kind == "classification":
                loss = torch.nn.functional.cross_entropy(out, y)
            else:
                loss = torch.nn.functional.mse_loss(out[:, 0] * std + mean, y)
            loss = loss + protocol.l2_strength * sum(p.pow(2).sum() for p in head.parameters())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(head.parameters(), protocol.grad_clip)
            optimizer.step()
        for group in optimizer.param_groups:
            group["lr"] *= protocol.lr_decay
        if (epoch + 1) % protocol.checkpoint_every == 0:
            value = score(run.validation)
            better = best_val is None or (value > best_val if kind == "classification" else value < best_val)
            if better:
                best_val, best_epoch = value, epoch
                best_state = {k: v.clone() for k, v in head.state_dict().items()}
        if protocol.early_stopping_patience is not None:
            value = score(run.validation)
            if value < stop_best - protocol.early_stopping_min_delta:
                stop_best, stop_wait = value, 0
            else:
                stop_wait += 1
            if stop_wait >= protocol.early_stopping_patience:
                break
    head.load_state_dict(best_state)
    return predict(run.test), best_epoch
