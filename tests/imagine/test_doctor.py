"""``python -m imagine doctor``: each check on this CPU box, the GPU ones with a fake device report."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
from pathlib import Path

from imagine.doctor import (
    GIB,
    DeviceReport,
    check_data_dir,
    check_gpu,
    check_model,
    check_nats,
    check_port,
    check_token,
    report,
)
from tests.support.nats_server import free_port

ROOT = Path(__file__).resolve().parents[2]
H100 = DeviceReport("NVIDIA H100 80GB HBM3", 80 * GIB, 78 * GIB, "12.8")


def test_a_large_gpu_holds_the_batch() -> None:
    """An H100 with 78 GiB free holds MAX_BATCH 4 at 1024²; the line names the card and the need."""
    check = check_gpu([H100], "auto", 4, (1024, 1024))
    assert check.status == "ok" and "H100" in check.detail and "needs about 23.5 GiB" in check.detail


def test_a_small_gpu_fails_with_what_to_lower() -> None:
    """An 8 GiB card cannot hold even one 1024² image with the full-precision VAE decode: fail, and say how."""
    check = check_gpu([DeviceReport("RTX 3070", 8 * GIB, 7 * GIB, "12.1")], "cuda:0", 4, (1024, 1024))
    assert check.status == "fail" and "MAX_BATCH" in check.fix


def test_a_gpu_short_of_the_batch_but_not_of_one_image_warns() -> None:
    """16 GiB free runs one image but not four: a warning to lower MAX_BATCH."""
    check = check_gpu([DeviceReport("RTX 4080", 16 * GIB, 16 * GIB, "12.4")], "auto", 4, (1024, 1024))
    assert check.status == "warn" and "lower MAX_BATCH" in check.fix


def test_a_missing_device_index_fails() -> None:
    """DEVICE=cuda:1 on a one-GPU box fails and says how many devices torch sees."""
    check = check_gpu([H100], "cuda:1", 1, (1024, 1024))
    assert check.status == "fail" and "sees 1 CUDA device" in check.detail


def test_no_gpu_is_a_warning_not_a_failure() -> None:
    """On this CPU box the service still runs (slowly): a warning."""
    assert check_gpu([], "auto", 4, (1024, 1024)).status == "warn"


def test_a_well_shaped_token_passes_and_is_never_shown() -> None:
    """A token shaped like Discord's (base64 of the bot's id, then two parts) passes; only the id is named."""
    token = base64.b64encode(b"123456789012345678").decode().rstrip("=") + ".GhIjKl.secret-part-xyz"
    check = check_token(token)
    assert check.status == "ok" and "123456789012345678" in check.detail and "secret-part" not in check.detail


def test_a_client_secret_pasted_as_the_token_fails() -> None:
    """A 32-character client secret is not a bot token: fail, with where to copy the right one."""
    check = check_token("k3JdP0aQ9xZ2mN8vB7cX6zL5wQ4eR1tY")
    assert check.status == "fail" and "Bot tab" in check.fix and "k3JdP0" not in check.detail


def test_a_taken_port_fails() -> None:
    """Something already listens on ADMIN_PORT: fail, naming the address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        check = check_port("admin_port", "127.0.0.1", port)
    assert check.status == "fail" and f"127.0.0.1:{port} is taken" in check.detail


def test_nats_that_does_not_answer_fails() -> None:
    """NATS_URL pointing at nothing: fail, with how to start the server."""
    check = check_nats(f"nats://127.0.0.1:{free_port()}")
    assert check.status == "fail" and "scripts/nats-server.sh" in check.fix


def test_a_shared_data_dir_warns(tmp_path: Path) -> None:
    """DATA_DIR readable by other users: a warning with the chmod to run."""
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    check = check_data_dir(data)
    assert check.status == "warn" and f"chmod 700 {data}" in check.fix


def test_a_local_model_folder_without_its_index_fails(tmp_path: Path, tiny_model_dir: Path) -> None:
    """MODEL_ID naming a folder that is not in diffusers format fails; the tiny model's folder passes."""
    (tmp_path / "not-a-model").mkdir()
    assert check_model(str(tmp_path / "not-a-model"), tmp_path, lambda: False)[0].status == "fail"
    assert check_model(str(tiny_model_dir), tmp_path, lambda: False)[0].status == "ok"


def test_a_model_neither_cached_nor_reachable_fails(tmp_path: Path) -> None:
    """Offline without the weights: fail, saying how to bring them."""
    checks = check_model("segmind/SSD-1B-not-cached", tmp_path, lambda: False)
    model = next(c for c in checks if c.name == "model")
    assert model.status == "fail" and "MODEL_ID to its folder" in model.fix
    assert next(c for c in checks if c.name == "disk").status in ("ok", "fail")


def test_the_report_fails_on_a_failure_only() -> None:
    """Warnings leave the exit code 0; one failure makes it 1 and says how many to fix."""
    text, code = report([check_gpu([], "auto", 1, (1024, 1024))])
    assert code == 0 and text.endswith("ready to start")
    text, code = report([check_token("nope")])
    assert code == 1 and "1 problem(s) to fix" in text


def test_doctor_from_the_command_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    """``python -m imagine doctor`` with a local model and a free port: every check passes or warns, exit 0; with
    a model folder that does not exist it names the problem and exits 1."""
    env = dict(os.environ, MODEL_ID=str(tiny_model_dir), DATA_DIR=str(tmp_path / "data"), ADMIN_PORT=str(free_port()),
               DISCORD_TOKEN="", NATS_URL="", DEVICE="cpu", SIZES="64x64", DEFAULT_SIZE="64x64", HF_HUB_OFFLINE="1")
    done = subprocess.run([sys.executable, "-m", "imagine", "doctor"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok   model: local directory" in done.stdout and "ready to start" in done.stdout
    env["MODEL_ID"] = str(tmp_path / "nowhere")
    done = subprocess.run([sys.executable, "-m", "imagine", "doctor"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 1 and "FAIL model" in done.stdout
