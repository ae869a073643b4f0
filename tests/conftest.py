import os

import pytest
import torch

# Keep tests reproducible and light on a 2-core machine.
torch.set_num_threads(1)
os.environ.setdefault("MPLBACKEND", "Agg")


def _own_compile_cache() -> None:
    """widerl's compile-cost index in a folder of this test process (tests never read or
    write the user's ~/.cache/widerl, and one test's figures never steer another's
    --compile auto), with torch's own caches where torch keeps them by default (the tests
    that compile with inductor reuse what earlier test runs built)."""
    import atexit
    import shutil
    import tempfile

    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    if not os.environ.get("WIDERL_CACHE"):
        folder = tempfile.mkdtemp(prefix="widerl-cache-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        os.environ["WIDERL_CACHE"] = folder
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", default_cache_dir())


_own_compile_cache()


@pytest.fixture
def tiny_overrides() -> dict:
    return {"units": 16, "layers": 2, "batch_size": 32, "buffer_size": 5_000}


# Every way of reading a tensor's value on the host. On a GPU each of them waits for the
# stream; on a CPU, patching them to raise is the stand-in for CUDA's sync debug mode.
HOST_READS = ("item", "cpu", "tolist", "numpy", "__bool__", "__float__", "__int__")


@pytest.fixture
def forbid_host_sync(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """A context-manager factory: inside `with forbid_host_sync(device):` any host
    synchronisation raises (CUDA: `torch.cuda.set_sync_debug_mode("error")`; CPU: the reads
    above are patched to raise)."""
    import contextlib

    def boom(*_: object, **__: object) -> None:
        raise AssertionError("host synchronisation")

    @contextlib.contextmanager
    def forbid(device: str | torch.device):  # noqa: ANN202
        if torch.device(device).type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                yield
            finally:
                torch.cuda.set_sync_debug_mode("default")
            return
        with monkeypatch.context() as m:
            for name in HOST_READS:
                m.setattr(torch.Tensor, name, boom)
            m.setattr(torch, "nonzero", boom)
            yield

    return forbid


@pytest.fixture
def cli_without():  # noqa: ANN201
    """`cli_without(packages, argv)`: `widerl argv` in a fresh interpreter where `packages`
    cannot be imported (an optional extra not installed); the finished process."""
    import subprocess
    import sys

    def run(packages: list[str], argv: list[str]) -> subprocess.CompletedProcess:
        hide = "; ".join(f"sys.modules[{p!r}] = None" for p in packages)
        code = f"import sys; {hide}\nfrom widerl.cli import main\nsys.exit(main({argv!r}))"
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)

    return run


@pytest.fixture
def learn_step_sizes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The updates of every call of a learning step (run/step.py's LearnStep), in order."""
    from widerl.run.step import LearnStep

    sizes: list[int] = []
    call = LearnStep.__call__

    def counted(self: LearnStep, grad_step: int, total: int, n: int = 1):  # noqa: ANN202
        sizes.append(n)
        return call(self, grad_step, total, n)

    monkeypatch.setattr(LearnStep, "__call__", counted)
    return sizes


RAY_MODULES = {"test_cluster", "test_distributed", "test_experiments_ray", "test_reliability_ray"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts Ray is marked `ray`: `make test` runs the others on two
    pytest-xdist workers and then these one after another on their own. Each has its own
    temp folder, ports and PIDs, but with another test beside them on 2 cores, Ray's timing
    changed enough to fail two of them (a SPREAD placement, a SIGTERM's exit code)."""
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "ray_tmp" in fixtures or item.module.__name__ in RAY_MODULES:
            item.add_marker(pytest.mark.ray)
