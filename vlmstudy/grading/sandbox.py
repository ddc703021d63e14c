"""Where the submission's process runs while it is graded, and what it can reach.

:func:`start_worker` starts :mod:`vlmstudy.grading.worker` on a **copy of the package**
(:func:`shadow_package`) that holds no checks (``vlmstudy/grading/`` is only the channel, the
worker and :mod:`~vlmstudy.grading.standin`) and in which the functions the exercise asks for
(``Part.references``, e.g. ``vlmstudy.contrastive.clip_loss``) raise ``ReferenceOutOfReach``.

With bubblewrap (``bwrap``; Debian's ``bubblewrap``) the process is **confined**:

* its own user, PID, network (none: ``--unshare-net``), IPC and UTS namespaces, all capabilities
  dropped, a new session (no terminal), killed with the grader (``--die-with-parent``);
* a read-only view of the system (``/usr``), of the Python installation and the virtual
  environment, of the package copy and of ``assets/`` (the course models); nothing else of the
  repository: not the real package, not ``solutions/``, not ``tools/exercises/`` (the masters),
  not ``.git``, not the other submissions;
* its own ``/tmp`` (a tmpfs of :data:`TMP_BYTES`), which is also its working folder;
* resource limits set before it starts (address space, CPU seconds, file size, no core dumps);
  the grader enforces the wall-clock limits and kills the whole sandbox at the end.

Where ``bwrap`` is missing or cannot create namespaces (tested at run time), the worker runs
unconfined, still on the package copy and with the limits, and the grade says so
(``NOT CONFINED: ...``) in its table and JSON, with a warning.
"""

from __future__ import annotations

import ast
import functools
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..settings import ASSETS_DIR, PACKAGE_DIR

__all__ = ["Confinement", "confinement", "shadow_package", "start_worker", "Worker", "CONFINED", "MEMORY_LIMIT"]

CONFINED = "confined: bubblewrap"
#: The submission's address-space limit (RLIMIT_AS), bytes: torch and the tiny models need ~3 GiB.
MEMORY_LIMIT = 8 << 30
TMP_BYTES = 512 << 20
MAX_FILE_BYTES = 256 << 20
INSIDE_ROOT = "/opt/vlmstudy"          # where the package copy appears in the sandbox
GRADING_FILES = ("core.py", "remote.py", "worker.py")   # all of vlmstudy/grading/ a submission gets
ETC = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "passwd", "group", "nsswitch.conf", "localtime",
       "alternatives", "fonts", "mime.types", "hosts")
REFERENCE_ERROR = "ReferenceOutOfReach"


@dataclass(frozen=True)
class Confinement:
    """How a submission runs: ``confined`` (bubblewrap works here) and the line the grade shows."""

    confined: bool
    label: str


# ----------------------------------------------------------------------------- the package copy

def _stub_body(qualname: str) -> list[ast.stmt]:
    message = (f"{qualname} is out of reach while this exercise is graded: the exercise asks you to write it "
               "yourself")
    return ast.parse(f"raise __import__('vlmstudy.grading', fromlist=['{REFERENCE_ERROR}']).{REFERENCE_ERROR}"
                     f"({message!r})").body


def _strip(source: str, names: list[list[str]], module: str) -> str:
    """``source`` with the functions (or methods: ``Class.method``) in ``names`` made to raise."""
    tree = ast.parse(source)
    for path in names:
        scope, node = tree.body, None
        for part in path:
            node = next((n for n in scope if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
                         and n.name == part), None)
            if node is None:
                raise LookupError(f"{module}.{'.'.join(path)} is not defined (a reference named in the registry)")
            scope = node.body
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            raise LookupError(f"{module}.{'.'.join(path)} is not a function")
        node.body = _stub_body(f"{module}.{'.'.join(path)}")
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def shadow_package(references: tuple[str, ...], dest: Path) -> Path:
    """Write the submission's copy of the package under ``dest`` (``dest/vlmstudy``) and return
    ``dest``: the package's files without ``__pycache__`` and without the checks; every name in
    ``references`` (``vlmstudy.contrastive.clip_loss``, ``vlmstudy.tasks.ChatSession.ask``) made
    to raise ``ReferenceOutOfReach``."""
    target = dest / "vlmstudy"
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "grading"))
    grading = target / "grading"
    grading.mkdir()
    here = Path(__file__).parent
    for name in GRADING_FILES:
        shutil.copy2(here / name, grading / name)
    shutil.copy2(here / "standin.py", grading / "__init__.py")
    by_file: dict[Path, list[list[str]]] = {}
    for ref in references:
        parts = ref.split(".")
        for cut in range(len(parts) - 1, 0, -1):  # the longest prefix that is a module file
            candidate = dest.joinpath(*parts[:cut]).with_suffix(".py")
            if candidate.is_file():
                by_file.setdefault(candidate, []).append(parts[cut:])
                break
        else:
            raise LookupError(f"no module for the reference {ref}")
    for path, names in by_file.items():
        module = ".".join(path.relative_to(dest).with_suffix("").parts)
        path.write_text(_strip(path.read_text(encoding="utf-8"), names, module), encoding="utf-8")
    (dest / "assets").mkdir(exist_ok=True)  # the mount point of the real assets in the sandbox
    for p in [dest, *dest.rglob("*")]:  # readable, never writable, by the submission
        p.chmod(0o555 if p.is_dir() else 0o444)
    return dest


# ----------------------------------------------------------------------------- bubblewrap

def _system_binds() -> list[str]:
    args = []
    for top in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):
            args += ["--symlink", os.readlink(top), top]
        elif os.path.isdir(top):
            args += ["--ro-bind", top, top]
    for name in ETC:
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def _python_dirs() -> list[str]:
    """The Python installation, the virtual environment and the site-packages folders: never the
    repository, a script's folder or the working folder that ``sys.path`` may also hold."""
    import site

    repo = PACKAGE_DIR.parent.resolve()
    roots = {Path(p).resolve() for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    roots.add(Path(sys.executable).resolve().parent.parent)
    sites = [*site.getsitepackages(), site.getusersitepackages(), *sys.path]
    roots |= {Path(p).resolve() for p in sites
              if p and Path(p).name in ("site-packages", "dist-packages") and Path(p).is_dir()}
    roots = {d for d in roots if d.is_dir() and d != repo and (not _inside(repo, d))}  # never a folder above the repo
    keep = sorted(roots, key=lambda p: len(p.parts))
    return [str(d) for i, d in enumerate(keep) if not any(_inside(d, e) for e in keep[:i])]


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def bwrap_args(shadow: Path) -> list[str]:
    """The bubblewrap command line (up to the program) for a worker on the package copy ``shadow``."""
    args = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            *_system_binds(), "--proc", "/proc", "--dev", "/dev",
            "--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--dir", "/tmp/work", "--chdir", "/tmp/work"]
    for d in _python_dirs():
        args += ["--ro-bind", d, d]
    args += ["--ro-bind", str(shadow), INSIDE_ROOT, "--ro-bind", str(ASSETS_DIR.resolve()), f"{INSIDE_ROOT}/assets"]
    return args


def _environment(root: str, assets: str, home: str) -> dict:
    keep = {k: os.environ[k] for k in ("LANG", "LC_ALL", "TZ") if k in os.environ}
    return {**keep, "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "TMPDIR": home, "PYTHONPATH": root,
            "PYTHONDONTWRITEBYTECODE": "1", "PYTHONNOUSERSITE": "1", "VLMSTUDY_ASSETS": assets,
            "VLMSTUDY_DEVICE": "cpu", "HF_HOME": f"{home}/hf", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "MPLBACKEND": "Agg", "MPLCONFIGDIR": f"{home}/mpl", "TOKENIZERS_PARALLELISM": "false",
            "MALLOC_ARENA_MAX": "2", "PYTHONIOENCODING": "utf-8"}


@functools.lru_cache(maxsize=1)
def confinement() -> Confinement:
    """Whether bubblewrap can confine a worker on this machine (tried once per process: a Python
    started in the sandbox must import the package copy and find the network gone)."""
    if os.environ.get("VLMSTUDY_GRADE_CONFINEMENT", "").lower() in ("0", "off", "no", "none"):
        return Confinement(False, "NOT CONFINED: switched off by VLMSTUDY_GRADE_CONFINEMENT")
    if shutil.which("bwrap") is None:
        return Confinement(False, "NOT CONFINED: bubblewrap (bwrap) is not installed; apt-get install bubblewrap")
    import tempfile

    probe = ("import socket, vlmstudy; s = socket.socket()\n"
             "try:\n    s.connect(('1.1.1.1', 53)); print('network')\nexcept OSError:\n    print('ok')")
    with tempfile.TemporaryDirectory(prefix="vlmstudy-probe-") as tmp:
        root = Path(tmp) / "root"
        (root / "vlmstudy").mkdir(parents=True)
        (root / "vlmstudy" / "__init__.py").write_text("")
        (root / "assets").mkdir()
        cmd = bwrap_args(root) + ["--clearenv", *_setenv(_environment(INSIDE_ROOT, f"{INSIDE_ROOT}/assets", "/tmp")),
                                  "--", sys.executable, "-c", probe]
        try:
            run = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as err:
            return Confinement(False, f"NOT CONFINED: bubblewrap did not start ({type(err).__name__})")
    if run.returncode != 0 or run.stdout.strip() != "ok":
        why = (run.stderr.strip().splitlines() or [run.stdout.strip() or f"exit {run.returncode}"])[-1][:160]
        return Confinement(False, f"NOT CONFINED: bubblewrap cannot create its namespaces here ({why})")
    return Confinement(True, CONFINED)


def _setenv(env: dict) -> list[str]:
    return [a for k, v in env.items() for a in ("--setenv", k, v)]


# ----------------------------------------------------------------------------- the worker

def _limits(memory: int, cpu_seconds: int):
    import resource  # Unix only: imported when a worker starts, not with the CLI

    def apply():  # runs in the child between fork and exec: inherited by bubblewrap and the worker
        for limit, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu_seconds),
                             (resource.RLIMIT_FSIZE, MAX_FILE_BYTES), (resource.RLIMIT_CORE, 0)):
            resource.setrlimit(limit, (value, value))
    return apply


class Worker:
    """A started worker: its process (group), the grader's ends of the pipes, the temp folder."""

    def __init__(self, process: subprocess.Popen, read_fd: int, write_fd: int):
        self.process, self.read_fd, self.write_fd = process, read_fd, write_fd

    def kill(self) -> None:
        """End the worker and everything it started (the whole sandbox; in the fallback, its group)."""
        for fd in (self.read_fd, self.write_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.process.kill()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


#: Starts the worker from the copy's files without importing ``vlmstudy`` itself (seconds of
#: torch and transformers): a submission that never imports the package does not pay for it.
LAUNCH = """
import importlib.util, sys
folder, read_fd, write_fd = sys.argv[1:4]
for name in ("remote", "worker"):
    spec = importlib.util.spec_from_file_location("vlmstudy.grading." + name, folder + "/" + name + ".py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
sys.exit(module.main([read_fd, write_fd]))
"""


def start_worker(shadow: Path, mode: Confinement, home: Path, memory: int = MEMORY_LIMIT,
                 cpu_seconds: int = 3600) -> Worker:
    """Start the worker on the package copy ``shadow`` (``home``: its own folder when unconfined).
    Its output goes nowhere: what a submission prints never reaches the grade or the terminal."""
    to_worker_r, to_worker_w = os.pipe()
    from_worker_r, from_worker_w = os.pipe()
    root = INSIDE_ROOT if mode.confined else str(shadow)
    program = [sys.executable, "-c", LAUNCH, f"{root}/vlmstudy/grading", str(to_worker_r), str(from_worker_w)]
    if mode.confined:
        env = _environment(INSIDE_ROOT, f"{INSIDE_ROOT}/assets", "/tmp")
        cmd = bwrap_args(shadow) + ["--clearenv", *_setenv(env), "--", *program]
        cwd, env = "/", {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    else:
        (home / "work").mkdir(parents=True, exist_ok=True)
        cmd, cwd = program, str(home / "work")
        env = _environment(str(shadow), str(ASSETS_DIR.resolve()), str(home))
    try:
        process = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL,
                                   pass_fds=(to_worker_r, from_worker_w), start_new_session=True,
                                   preexec_fn=_limits(memory, cpu_seconds))
    finally:
        os.close(to_worker_r)
        os.close(from_worker_w)
    return Worker(process, from_worker_r, to_worker_w)
