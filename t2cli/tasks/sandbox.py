"""Run untrusted, model-written Python programs and report whether they finished cleanly.

Why: the code tasks (MBPP, HumanEval) score a completion by executing it with the task's asserts. The model's
code is untrusted, so each program runs in its own process with limits, and a hostile or broken program only
ever counts as a failed answer.

How one program runs (``run_program``):

* The evaluator writes the program into a fresh temporary directory and starts ``python -I -c <launcher>``
  in a new session (its own process group), stdin from /dev/null, stdout+stderr merged into one pipe.
* The launcher (still the evaluator's user) tries, in this order, and records what worked:
  - ``unshare(CLONE_NEWUSER)`` first when not root (maps the user to root inside a user namespace);
  - ``unshare(CLONE_NEWNET)``: a network namespace with no interfaces up, so even 127.0.0.1 is unreachable;
  - ``unshare(CLONE_NEWNS)``: a private mount namespace in which every mount is made read-only
    (``mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)``) and fresh, size-capped tmpfs are mounted on
    /tmp, /var/tmp, /dev/shm and /run/lock; the program's working directory lives in that /tmp tmpfs, so
    nothing it writes survives it or reaches the real file system;
  - ``unshare(CLONE_NEWPID)``: the program is PID 1 of a new PID namespace, so when it ends (or is killed)
    the kernel kills every process it started, including ones that escaped with ``setsid``.
* It then forks the program process, which (when the launcher is root) drops to a dedicated, otherwise
  unused uid/gid (``setgroups([])``, ``setresgid``, ``setresuid``; one uid per concurrently running program).
  Being unprivileged, the program cannot signal the evaluator or the launcher, cannot write root-owned
  files, and is subject to ``RLIMIT_NPROC`` (root ignores that limit, which is why we drop privileges).
* Limits set in the program process: ``RLIMIT_AS`` (memory_mb), ``RLIMIT_CPU`` (timeout + 1 s),
  ``RLIMIT_FSIZE`` (16 MiB), ``RLIMIT_CORE`` 0, ``RLIMIT_NPROC`` (max_processes, only with a dedicated uid),
  ``PR_SET_PDEATHSIG`` = SIGKILL (dies with the launcher), HOME/TMPDIR = its working directory, a minimal
  environment, and a Python-level guard that makes ``socket.connect/bind/sendto`` raise.
* The launcher kills the program's process group on timeout; without a PID namespace it also kills every
  process of the dedicated uid (``kill(-1)`` as that uid). The evaluator keeps a backstop deadline
  (timeout + 3 s) after which it kills the launcher's whole process group itself.
* Output: the evaluator reads at most ``max_output_kb`` KiB (default 64) and keeps the last 4 KiB; a program
  that prints more is killed and reported as ``error``. Nothing is ever buffered beyond that.
* "passed" means the program ran to its end: the launcher uses a random success exit code per run, so a program
  that calls ``sys.exit(0)`` / ``os._exit(0)`` before its asserts is *not* counted as passed.

Verified on the development machine (root, Linux 6.x VM): all four namespaces, the read-only root, the tmpfs
overlays and the uid drop work; the adversarial tests in tests/test_sandbox.py (infinite loop, memory bomb,
fork bomb, writes outside the directory, killing the parent, sockets, megabytes of output, early exit) pass.

Not enforced / known gaps:
* Without root and without unprivileged user namespaces: no uid drop, no namespaces — the program runs as the
  evaluator's user, can write wherever that user can, can open sockets through ``_socket`` directly, and a fork
  bomb is bounded by a watchdog in the launcher that counts the program's process group every 20 ms and kills
  the group above ``max_processes`` (``RLIMIT_NPROC`` would count the user's other processes too, and root
  ignores it), plus the timeout; a daemon that escapes with ``setsid`` survives. The same fallback applies as
  root when the interpreter sits in a folder others cannot enter (e.g. /root) and no mount namespace is
  available to re-expose it, and with ``namespaces=False`` (debugging only: that is *no* isolation here).
  ``sandbox_capabilities()`` runs a probe and reports what is in effect.
* No cgroup: total memory of a program's *processes* is ``max_processes x memory_mb`` at worst; no CPU-share or
  disk-bandwidth limits; /proc of the host is still readable (read-only).
* This is a containment layer for model mistakes and casual hostility, not a security boundary against a
  determined attacker (no seccomp filter; a program can read ``/proc`` or inspect the launcher's frames).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import secrets
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Status = Literal["passed", "failed", "timeout", "error"]

TAIL_BYTES = 4096
_TIMEOUT_CODE = 124
_SETUP_ERROR_CODE = 99
_EARLY_EXIT_CODE = 3
_UID_BASE = 3_000_000  # dedicated sandbox uids live far above any real account


@dataclass(frozen=True)
class SandboxResult:
    status: Status
    passed: bool
    seconds: float
    output_tail: str


# The launcher runs as `python -I -c _LAUNCHER <json config>`. It must stay self-contained (stdlib only).
_LAUNCHER = r'''
import ctypes, json, os, resource, signal, sys
cfg = json.loads(sys.argv[1]); del sys.argv[1:]
libc = ctypes.CDLL(None, use_errno=True)
NEWNS, NEWNET, NEWPID, NEWUSER = 0x00020000, 0x40000000, 0x20000000, 0x10000000
ns = []
with open(cfg["program"], "rb") as fh:
    src = fh.read()
workdir = cfg["workdir"]
uid = cfg["uid"]
is_root = os.geteuid() == 0
def unshare(flag):
    return libc.unshare(ctypes.c_int(flag)) == 0
def write(path, text):
    with open(path, "w") as fh:
        fh.write(text)
if cfg["namespaces"]:
    if not is_root:
        ouid, ogid = os.getuid(), os.getgid()
        if unshare(NEWUSER):
            try:
                write("/proc/self/setgroups", "deny")
                write("/proc/self/uid_map", "0 %d 1" % ouid)
                write("/proc/self/gid_map", "0 %d 1" % ogid)
                ns.append("user")
            except OSError:
                pass
        uid = None
    for name, flag in (("net", NEWNET), ("mnt", NEWNS), ("pid", NEWPID)):
        if unshare(flag):
            ns.append(name)
if "mnt" in ns:
    mount = libc.mount
    mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
    MS_NOSUID, MS_NODEV, MS_REC, MS_PRIVATE = 2, 4, 0x4000, 1 << 18
    ok = mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]
    attr = MountAttr(1, 0, 0, 0)
    if ok and libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), ctypes.c_char_p(b"/"),
                           ctypes.c_uint(0x8000), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr))) == 0:
        ns.append("ro")
    size = ("size=%dk,mode=1777" % cfg["tmpfs_kb"]).encode()
    for d in ("/tmp", "/var/tmp", "/dev/shm", "/run/lock"):
        if os.path.isdir(d) and mount(b"tmpfs", d.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, size) == 0 and d == "/tmp":
            workdir = "/tmp/sandbox"
            os.mkdir(workdir, 0o700)
            with open(workdir + "/program.py", "wb") as fh:
                fh.write(src)
            if uid is not None:
                os.chown(workdir, uid, uid)
            ns.append("tmpfs")
if uid is not None and cfg["expose"]:
    # The interpreter lives under a directory others cannot enter (e.g. /root): in our mount namespace, hide
    # that directory behind an empty tmpfs (mode 0755) and bind only the interpreter's folders back, read-only.
    exposed = "mnt" in ns
    for parent, children in (cfg["expose"].items() if exposed else ()):
        try:
            fds = [(os.open(c, os.O_PATH), os.path.basename(c)) for c in children]
            if mount(b"tmpfs", parent.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"size=64k,mode=0755") != 0:
                raise OSError("tmpfs")
            for fd, name in fds:
                target = os.path.join(parent, name)
                os.mkdir(target, 0o755)
                if mount(("/proc/self/fd/%d" % fd).encode(), target.encode(), None, 0x1000 | MS_REC, None) != 0:
                    raise OSError("bind")
                os.close(fd)
        except OSError:
            exposed = False
            break
    if not exposed:
        uid = None
if uid is None:
    ns.append("same-uid")
pid = os.fork()
if pid == 0:
    try:
        os.setpgid(0, 0)
        if uid is not None and is_root:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
        libc.prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL (after the uid change, which clears it)
        R = resource
        mem = cfg["memory_mb"] * 1024 * 1024
        R.setrlimit(R.RLIMIT_AS, (mem, mem))
        R.setrlimit(R.RLIMIT_CPU, (cfg["cpu_s"], cfg["cpu_s"] + 1))
        R.setrlimit(R.RLIMIT_FSIZE, (cfg["fsize"], cfg["fsize"]))
        R.setrlimit(R.RLIMIT_CORE, (0, 0))
        if uid is not None and is_root:
            R.setrlimit(R.RLIMIT_NPROC, (cfg["nproc"], cfg["nproc"]))
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update(HOME=workdir, TMPDIR=workdir, PATH="/usr/local/bin:/usr/bin:/bin", LANG="C.UTF-8")
        import socket, types
        def _no_network(*args, **kwargs):
            raise OSError("network access is disabled in the t2 sandbox")
        for _name in ("connect", "connect_ex", "bind", "sendto", "sendmsg"):
            setattr(socket.socket, _name, _no_network)
        main = types.ModuleType("__main__")
        main.__file__ = os.path.join(workdir, "program.py")
        sys.modules["__main__"] = main
        sys.argv = ["program.py"]
        ok_code, nsl = cfg["ok"], ",".join(ns)
        del cfg, libc
    except BaseException as exc:
        sys.stderr.write("sandbox setup failed: %r\n" % (exc,))
        sys.stderr.flush()
        os._exit(99)
    try:
        exec(compile(src, "program.py", "exec"), main.__dict__)
    except SystemExit as exc:
        sys.stderr.write("program exited early (SystemExit %r) before finishing\n" % (exc.code,))
        sys.stderr.flush()
        os._exit(3)
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)
    try:
        sys.stdout.flush(); sys.stderr.flush()
    except BaseException:
        os._exit(1)
    os._exit(ok_code)
timed_out = []
def on_alarm(signum, frame):
    timed_out.append(1)
    try:
        os.killpg(pid, 9)
    except OSError:
        pass
    try:
        os.kill(pid, 9)
    except OSError:
        pass
signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, cfg["timeout"])
if uid is None and "pid" not in ns:
    # No RLIMIT_NPROC that bites (same uid, maybe root) and no PID namespace: watch the process count of the
    # program's group and kill the group when it exceeds the limit (fork-bomb defence of last resort).
    import time
    status = None
    while status is None:
        done, st = os.waitpid(pid, os.WNOHANG)
        if done:
            status = st
            break
        count = 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open("/proc/%s/stat" % entry, "rb") as fh:
                        fields = fh.read().rsplit(b")", 1)[1].split()
                except OSError:
                    continue
                if int(fields[2]) == pid:
                    count += 1
        if count > cfg["nproc"]:
            try:
                os.killpg(pid, 9)
            except OSError:
                pass
            sys.stderr.write("too many processes (%d > %d)\n" % (count, cfg["nproc"]))
        time.sleep(0.02)
else:
    _, status = os.waitpid(pid, 0)
signal.setitimer(signal.ITIMER_REAL, 0)
try:
    os.killpg(pid, 9)
except OSError:
    pass
if uid is not None and is_root and "pid" not in ns:
    sweeper = os.fork()
    if sweeper == 0:
        try:
            os.setresgid(uid, uid, uid); os.setresuid(uid, uid, uid); os.kill(-1, 9)
        except BaseException:
            pass
        os._exit(0)
    os.waitpid(sweeper, 0)
if timed_out:
    os._exit(124)
if os.WIFSIGNALED(status):
    sig = os.WTERMSIG(status)
    sys.stderr.write("program killed by signal %d\n" % sig)
    os._exit(128 + sig)
os._exit(os.WEXITSTATUS(status))
'''

_uid_counter = itertools.count()
_uid_lock = threading.Lock()


def _next_uid() -> int:
    """A dedicated uid per running program (pid-derived, so two evaluators rarely collide)."""
    with _uid_lock:
        slot = next(_uid_counter) % 1000
    return _UID_BASE + (os.getpid() % 100_000) * 1000 + slot


def _hidden_interpreter_dirs() -> dict[str, list[str]] | None:
    """Ancestors of the interpreter's folders that others cannot enter, mapped to the children to re-expose.

    Returns {} when everything is reachable by an unprivileged uid and None when it cannot be fixed with one
    tmpfs-and-bind level (then the program keeps the evaluator's uid).
    """
    import site

    paths = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.realpath(sys.executable))}
    paths.update(p for p in site.getsitepackages() if os.path.isdir(p))
    paths.update(p for p in sys.path if p and os.path.isdir(p) and p.startswith(sys.prefix))
    expose: dict[str, set[str]] = {}
    for path in paths:
        parts = os.path.realpath(path).split(os.sep)[1:]
        current = "/"
        blocked_at = None
        for part in parts:
            nxt = os.path.join(current, part)
            mode = os.stat(current).st_mode
            if not mode & 0o001 and blocked_at is None:
                blocked_at = current
                expose.setdefault(current, set()).add(nxt)
            elif not mode & 0o001:
                return None  # a second blocked level: give up on the uid drop
            current = nxt
    return {k: sorted(v) for k, v in expose.items()}


_EXPOSE: dict[str, list[str]] | None | bool = False


def _expose() -> dict[str, list[str]] | None:
    global _EXPOSE
    if _EXPOSE is False:
        _EXPOSE = _hidden_interpreter_dirs()
    return _EXPOSE  # type: ignore[return-value]


_PROBE = r"""
import os, socket
info = {"uid_dropped": os.getuid() != int(os.environ.get("T2_PROBE_UID", "-1")), "pid_namespace": os.getpid() == 1}
mounts = open("/proc/self/mountinfo").read().splitlines()
info["tmp_is_private"] = any(line.split()[4] == "/tmp" and "tmpfs" in line for line in mounts)
root = [line for line in mounts if line.split()[4] == "/"]
info["root_read_only"] = bool(root) and "ro" in root[-1].split()[5].split(",")
try:
    s = socket.socket(); s.settimeout(0.5); socket.socket.__mro__[1].connect(s, ("127.0.0.1", 9))
    info["no_network"] = False
except OSError as exc:
    info["no_network"] = exc.errno in (101, 99)  # ENETUNREACH / EADDRNOTAVAIL: no interface up
print(repr(info))
"""


def sandbox_capabilities() -> dict:
    """What isolation is in effect on this machine: runs a probe program and returns booleans
    (uid_dropped, pid_namespace, tmp_is_private, root_read_only, no_network) plus ``root``."""
    import ast

    result = run_program(_PROBE.replace('"T2_PROBE_UID", "-1"', f'"T2_PROBE_UID", "{os.getuid()}"'), timeout=10.0)
    info = {"root": os.geteuid() == 0, "status": result.status}
    if result.passed:
        try:
            info.update(ast.literal_eval(result.output_tail.strip().splitlines()[-1]))
        except (ValueError, SyntaxError, IndexError):
            pass
    return info


def run_program(
    source: str,
    timeout: float = 10.0,
    memory_mb: int = 512,
    max_processes: int = 32,
    max_output_kb: int = 64,
    namespaces: bool = True,
) -> SandboxResult:
    """Run one Python program in the sandbox; ``passed`` is True only if it ran to its end within the limits."""
    start = time.monotonic()
    workdir = tempfile.mkdtemp(prefix="t2-sandbox-")
    expose = _expose()
    uid = _next_uid() if os.geteuid() == 0 and expose is not None else None
    ok_code = 10 + secrets.randbelow(100)
    try:
        program = os.path.join(workdir, "program.py")
        with open(program, "w", encoding="utf-8") as fh:
            fh.write(source)
        if uid is not None:
            os.chown(workdir, uid, uid)
        cfg = {
            "program": program,
            "workdir": workdir,
            "uid": uid,
            "namespaces": namespaces,
            "timeout": float(timeout),
            "cpu_s": int(timeout) + 1,
            "memory_mb": int(memory_mb),
            "nproc": int(max_processes),
            "fsize": 16 * 1024 * 1024,
            "tmpfs_kb": 64 * 1024,
            "ok": ok_code,
            "expose": expose or {},
        }
        try:
            proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _LAUNCHER, json.dumps(cfg)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"},
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            log.warning("sandbox could not start a process: %s", exc)
            return SandboxResult("error", False, time.monotonic() - start, f"could not start: {exc}")
        tail, overflow, backstop = _collect(proc, start + timeout + 3.0, max_output_kb * 1024)
        code = proc.returncode
        seconds = time.monotonic() - start
        text = tail.decode("utf-8", errors="replace")
        if overflow:
            return SandboxResult("error", False, seconds, text + "\n[t2 sandbox: output limit exceeded]")
        if backstop or code == _TIMEOUT_CODE or code == 128 + signal.SIGXCPU:
            return SandboxResult("timeout", False, seconds, text)
        if code == ok_code:
            return SandboxResult("passed", True, seconds, text)
        if code == _SETUP_ERROR_CODE or (code is not None and code > 128):
            return SandboxResult("error", False, seconds, text)
        return SandboxResult("failed", False, seconds, text)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except OSError:
        pass


def _collect(proc: subprocess.Popen, deadline: float, limit: int) -> tuple[bytes, bool, bool]:
    """Read the merged output pipe until EOF, keeping the tail; returns (tail, overflowed, backstop_hit)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    tail = bytearray()
    total = 0
    overflow = backstop = False
    exited_at: float | None = None
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if now >= deadline:
                backstop = True
                break
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 0.2:
                break  # launcher gone; a straggler may hold the pipe open
            if not sel.select(timeout=min(0.05, deadline - now)):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            total += len(chunk)
            tail += chunk
            if len(tail) > TAIL_BYTES:
                del tail[: len(tail) - TAIL_BYTES]
            if total > limit:
                overflow = True
                break
    if overflow or backstop:
        _kill_group(proc)
    proc.stdout.close()
    try:
        proc.wait(timeout=max(0.5, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        proc.wait()
        backstop = True
    _kill_group(proc)
    return bytes(tail), overflow, backstop


def run_programs(sources: list[str], workers: int = 2, **limits) -> list[SandboxResult]:
    """Run many programs with at most ``workers`` at a time; results are in the order of ``sources``."""
    sources = list(sources)
    if not sources:
        return []
    workers = max(1, min(int(workers), len(sources)))
    if workers == 1:
        return [run_program(s, **limits) for s in sources]
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="t2-sandbox") as pool:
        return list(pool.map(lambda s: run_program(s, **limits), sources))
