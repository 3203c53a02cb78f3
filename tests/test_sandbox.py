"""Adversarial programs in the sandbox: none may hang or harm the test process, and each counts as failed."""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from t2cli.tasks import sandbox
from t2cli.tasks.sandbox import run_program, run_programs

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _own_tempdir(tmp_path, monkeypatch):
    """Sandbox work folders go under this test's tmp dir, so we can check they are deleted."""
    root = tmp_path / "sbx"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield
    assert list(root.iterdir()) == [], "a sandbox work folder was left behind"


def _our_sandbox_pids() -> list[int]:
    """Processes still running under this evaluator's dedicated sandbox uids (root only)."""
    low = sandbox._UID_BASE + (os.getpid() % 100_000) * 1000
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                uid = os.stat(f"/proc/{entry}").st_uid
            except OSError:
                continue
            if low <= uid < low + 1000:
                try:
                    state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
                except OSError:
                    continue
                if state != "Z":
                    pids.append(int(entry))
    return pids


def test_passing_and_failing_programs():
    ok = run_program("import re, collections\nprint('hello')\nassert 1 + 1 == 2\n", timeout=5)
    assert ok.status == "passed" and ok.passed and "hello" in ok.output_tail
    bad = run_program("assert 1 + 1 == 3, 'nope'\n", timeout=5)
    assert bad.status == "failed" and not bad.passed and "AssertionError" in bad.output_tail
    syntax = run_program("def f(:\n", timeout=5)
    assert syntax.status == "failed" and "SyntaxError" in syntax.output_tail


@pytest.mark.parametrize("source", ["while True:\n    pass\n", "import time\ntime.sleep(60)\n"])
def test_infinite_loop_and_sleep_time_out(source):
    start = time.monotonic()
    result = run_program(source, timeout=1.5)
    assert result.status == "timeout" and not result.passed
    assert time.monotonic() - start < 5


@pytest.mark.parametrize("source", ["x = bytearray(4 * 1024 ** 3)\n", "xs = []\nwhile True:\n    xs.append(bytearray(10 ** 7))\n"])
def test_memory_bomb_fails(source):
    result = run_program(source, timeout=5, memory_mb=256)
    assert not result.passed and result.status in ("failed", "error")
    assert "MemoryError" in result.output_tail


@pytest.fixture(scope="module")
def caps():
    return sandbox.sandbox_capabilities()


@pytest.mark.parametrize("namespaces", [True, False], ids=["isolated", "fallback-watchdog"])
def test_fork_bomb_is_contained(namespaces):
    source = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    start = time.monotonic()
    result = run_program(source, timeout=2, max_processes=16, namespaces=namespaces)
    assert not result.passed and time.monotonic() - start < 8
    time.sleep(0.3)
    if os.geteuid() == 0:
        assert _our_sandbox_pids() == []
    assert run_program("print('still fine')", timeout=5).passed


def test_escaped_daemon_is_killed():
    source = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\nprint('parent done')\n"
    result = run_program(source, timeout=3)
    assert result.passed  # the program itself finished; its daemon must not outlive it
    time.sleep(0.3)
    if os.geteuid() == 0:
        assert _our_sandbox_pids() == []


def test_writes_outside_its_folder_do_not_land(caps):
    if not (caps.get("root_read_only") and caps.get("tmp_is_private")) and not caps.get("uid_dropped"):
        pytest.skip(f"no mount namespace and no uid drop on this machine: {caps}")
    name = f"t2_sandbox_probe_{uuid.uuid4().hex}"
    targets = [f"/tmp/../{name}", str(REPO / name), f"/tmp/{name}", f"/var/tmp/{name}", str(Path.home() / name)]
    source = "import os\nfor path in %r:\n    try:\n        open(path, 'w').write('x')\n    except OSError:\n        pass\nopen('inside.txt', 'w').write('ok')\nassert open(os.path.expanduser('~/inside.txt')).read() == 'ok'\n" % (targets,)
    result = run_program(source, timeout=5)
    assert result.passed, result.output_tail  # writing in its own folder (cwd == HOME) works
    for target in targets:
        assert not os.path.exists(target), f"sandboxed program wrote {target}"


def test_killing_its_parent_does_not_kill_the_evaluator():
    source = "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nimport time\ntime.sleep(0.2)\nassert False, 'survived'\n"
    result = run_program(source, timeout=3)
    assert not result.passed
    again = run_programs(["print(1)", source, "print(2)"], workers=2, timeout=3)
    assert [r.passed for r in again] == [True, False, True]


def test_capabilities_report(caps):
    assert caps["status"] == "passed"
    assert {"uid_dropped", "pid_namespace", "tmp_is_private", "root_read_only", "no_network"} <= set(caps)


def test_no_network_to_localhost():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    server.setblocking(False)
    port = server.getsockname()[1]
    try:
        programs = [
            f"import socket\ns = socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n",
            f"import _socket\ns = _socket.socket()\ns.settimeout(1)\ns.connect(('127.0.0.1', {port}))\n",
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
        ]
        results = run_programs(programs, workers=2, timeout=4)
        assert [r.passed for r in results] == [False, False, False]
        with pytest.raises(BlockingIOError):
            server.accept()
    finally:
        server.close()


def test_megabytes_of_output_are_capped():
    start = time.monotonic()
    result = run_program("import sys\nwhile True:\n    sys.stdout.write('x' * 100000)\n", timeout=5, max_output_kb=64)
    assert result.status == "error" and not result.passed
    assert len(result.output_tail) <= sandbox.TAIL_BYTES + 100 and "output limit" in result.output_tail
    assert time.monotonic() - start < 5
    big_once = run_program("print('y' * 3_000_000)\n", timeout=5)
    assert not big_once.passed and len(big_once.output_tail) <= sandbox.TAIL_BYTES + 100


@pytest.mark.parametrize("source", ["import sys\nsys.exit(0)\nassert False\n", "import os\nos._exit(0)\n", "raise SystemExit\n"])
def test_exiting_early_is_not_passing(source):
    assert not run_program(source, timeout=5).passed


def test_run_programs_keeps_order():
    sources = [f"import time\ntime.sleep({0.3 if i % 2 else 0})\nassert {i} % 3 != 0\n" for i in range(8)]
    results = run_programs(sources, workers=3, timeout=5)
    assert [r.passed for r in results] == [i % 3 != 0 for i in range(8)]
    assert run_programs([], workers=2) == []


def test_environment_is_minimal_and_home_is_cwd():
    source = "import os\nassert os.getcwd() == os.environ['HOME']\nassert 'T2_HOME' not in os.environ\nassert not os.listdir('.') or os.listdir('.') == ['program.py']\n"
    result = run_program(source, timeout=5)
    assert result.passed, result.output_tail
